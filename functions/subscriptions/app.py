"""Merchant subscriptions API: create, read, list, change, pause, resume, cancel. Thin."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from payments import bootstrap, web
from payments.errors import PaymentsError
from payments.models import validate_idempotency_key
from payments.observability import logger, metrics
from payments.subscriptions import (
    parse_list_query,
    parse_subscription_request,
    parse_subscription_update,
    subscription_resource,
)

app = APIGatewayRestResolver()


def _json(status: int, body: dict[str, Any], **headers: str) -> Response[str]:
    return Response(status, body=web.dumps(body), headers={**web.JSON_HEADERS, **headers})


@app.post("/subscriptions")
def create_subscription() -> Response[str]:
    """Create a subscription once per Idempotency-Key."""
    event = app.current_event
    key = validate_idempotency_key(event.headers.get("Idempotency-Key"))
    service = bootstrap.subscriptions()
    request = parse_subscription_request(web.parse_json_body(event.decoded_body), service.now())
    result = service.create(request, key)
    resource = subscription_resource(result.subscription)
    if result.replayed:
        return _json(200, resource, **{"Idempotent-Replayed": "true"})
    return _json(201, resource, Location=f"/subscriptions/{result.subscription.id}")


@app.get("/subscriptions")
def list_subscriptions() -> Response[str]:
    """One page of an account's subscriptions (`accountId`, `limit`, `cursor`)."""
    account_id, limit, cursor = parse_list_query(app.current_event.query_string_parameters)
    items, next_cursor = bootstrap.subscriptions().list_for_account(account_id, limit, cursor)
    return _json(
        200, {"items": [subscription_resource(s) for s in items], "nextCursor": next_cursor}
    )


@app.get("/subscriptions/<subscription_id>")
def get_subscription(subscription_id: str) -> Response[str]:
    """Read a subscription."""
    return _json(200, subscription_resource(bootstrap.subscriptions().get(subscription_id)))


@app.patch("/subscriptions/<subscription_id>")
def update_subscription(subscription_id: str) -> Response[str]:
    """Change the card (next attempt) or the amount (next cycle) or the description."""
    change = parse_subscription_update(web.parse_json_body(app.current_event.decoded_body))
    sub = bootstrap.subscriptions().update(subscription_id, change)
    return _json(200, subscription_resource(sub))


@app.post("/subscriptions/<subscription_id>/cancel")
def cancel_subscription(subscription_id: str) -> Response[str]:
    """Cancel (repeatable)."""
    return _json(200, subscription_resource(bootstrap.subscriptions().cancel(subscription_id)))


@app.post("/subscriptions/<subscription_id>/pause")
def pause_subscription(subscription_id: str) -> Response[str]:
    """Pause (repeatable)."""
    return _json(200, subscription_resource(bootstrap.subscriptions().pause(subscription_id)))


@app.post("/subscriptions/<subscription_id>/resume")
def resume_subscription(subscription_id: str) -> Response[str]:
    """Resume (repeatable)."""
    return _json(200, subscription_resource(bootstrap.subscriptions().resume(subscription_id)))


# Powertools' exception_handler decorator is untyped; the handlers below are fully typed.
@app.exception_handler(PaymentsError)  # type: ignore[untyped-decorator]
def payments_error(error: PaymentsError) -> Response[str]:
    """Every error of ours becomes its HTTP status and a JSON body with a stable code."""
    if error.http_status >= 500:
        logger.warning("request failed", extra={"code": error.code, "error": type(error).__name__})
    return _json(error.http_status, web.error_body(error))


@app.exception_handler(Exception)  # type: ignore[untyped-decorator]
def unexpected_error(error: Exception) -> Response[str]:
    """A bug: log it with its traceback and answer a bare 500."""
    logger.exception("unexpected error", extra={"error": type(error).__name__})
    return _json(500, web.error_body(PaymentsError("internal error")))


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """API Gateway (REST, proxy) entry point."""
    return app.resolve(event, context)
