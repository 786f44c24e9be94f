"""Merchant subscriptions API: create, read, list, change, pause, resume, cancel. Thin.

Request parsing is imported by the routes that parse a body or a query (cold start:
docs/decisions.md, 2026-12-06).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from payments import bootstrap
from payments.http import router
from payments.http.router import Reply, Request
from payments.observability import logger, metrics
from payments.shared.fields import validate_idempotency_key
from payments.subscriptions.model import is_subscription_id
from payments.subscriptions.views import subscription_resource

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

app = router.Router(path_ids={"subscriptionId": is_subscription_id})


@app.route("POST", "/subscriptions")
def create_subscription(request: Request, _context: router.Context) -> Reply:
    """Create a subscription once per Idempotency-Key."""
    from payments.subscriptions.requests import parse_subscription_request

    key = validate_idempotency_key(request.header("Idempotency-Key"))
    service = bootstrap.subscriptions()
    result = service.create(parse_subscription_request(request.json_body(), service.now()), key)
    resource = subscription_resource(result.subscription)
    if result.replayed:
        return router.json_response(200, resource, **{"Idempotent-Replayed": "true"})
    return router.json_response(201, resource, Location=f"/subscriptions/{result.subscription.id}")


@app.route("GET", "/subscriptions")
def list_subscriptions(request: Request, _context: router.Context) -> Reply:
    """One page of an account's subscriptions (`accountId`, `limit`, `cursor`)."""
    from payments.subscriptions.requests import parse_list_query

    account_id, limit, cursor = parse_list_query(request.query)
    items, next_cursor = bootstrap.subscriptions().list_for_account(account_id, limit, cursor)
    return router.json_response(
        200, {"items": [subscription_resource(s) for s in items], "nextCursor": next_cursor}
    )


@app.route("GET", "/subscriptions/{subscriptionId}")
def get_subscription(request: Request, _context: router.Context) -> Reply:
    """Read a subscription."""
    sub = bootstrap.subscriptions().get(request.path_params["subscriptionId"])
    return router.json_response(200, subscription_resource(sub))


@app.route("PATCH", "/subscriptions/{subscriptionId}")
def update_subscription(request: Request, _context: router.Context) -> Reply:
    """Change the card (next attempt) or the amount (next cycle) or the description."""
    from payments.subscriptions.requests import parse_subscription_update

    change = parse_subscription_update(request.json_body())
    sub = bootstrap.subscriptions().update(request.path_params["subscriptionId"], change)
    return router.json_response(200, subscription_resource(sub))


@app.route("POST", "/subscriptions/{subscriptionId}/cancel")
def cancel_subscription(request: Request, _context: router.Context) -> Reply:
    """Cancel (repeatable)."""
    sub = bootstrap.subscriptions().cancel(request.path_params["subscriptionId"])
    return router.json_response(200, subscription_resource(sub))


@app.route("POST", "/subscriptions/{subscriptionId}/pause")
def pause_subscription(request: Request, _context: router.Context) -> Reply:
    """Pause (repeatable)."""
    sub = bootstrap.subscriptions().pause(request.path_params["subscriptionId"])
    return router.json_response(200, subscription_resource(sub))


@app.route("POST", "/subscriptions/{subscriptionId}/resume")
def resume_subscription(request: Request, _context: router.Context) -> Reply:
    """Resume (repeatable)."""
    sub = bootstrap.subscriptions().resume(request.path_params["subscriptionId"])
    return router.json_response(200, subscription_resource(sub))


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """API Gateway (REST, proxy) entry point."""
    return app.resolve(event, context)
