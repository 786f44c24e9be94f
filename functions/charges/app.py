"""Merchant charge API: create, read, capture and reconcile charges, and a charge's timeline.
Thin: parse, call one use case, answer.

What only some routes use (request parsing, search, refunds) is imported by those routes, so a
cold start imports the router and the charge model only (docs/decisions.md, 2026-12-06).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from payments import bootstrap
from payments.charges import views
from payments.charges.model import is_charge_id
from payments.errors import ValidationError
from payments.http import router
from payments.http.router import Reply, Request
from payments.observability import logger, metrics
from payments.shared import deadline
from payments.shared.fields import validate_idempotency_key

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from payments.charges.model import Charge


def _is_refund_id(value: str) -> bool:
    """The refund id rule, from the refund model, loaded by the refund routes only."""
    from payments.refunds.model import is_refund_id

    return is_refund_id(value)


app = router.Router(path_ids={"chargeId": is_charge_id, "refundId": _is_refund_id})


def _resource(charge: Charge) -> dict[str, Any]:
    """The charge's JSON, with its 3-D Secure page URL when it has one."""
    return views.charge_resource(charge, bootstrap.page_url(charge))


@app.route("POST", "/charges")
def create_charge(request: Request, context: router.Context) -> Reply:
    """Charge a saved card once per Idempotency-Key."""
    from payments.charges.requests import parse_charge_request

    key = validate_idempotency_key(request.header("Idempotency-Key"))
    charge_request = parse_charge_request(request.json_body(), bootstrap.settings().capture_mode)
    result = bootstrap.charge_service().create_charge(
        charge_request, key, deadline.deadline_from(context)
    )
    resource = _resource(result.charge)
    if result.replayed:
        return router.json_response(200, resource, **{"Idempotent-Replayed": "true"})
    return router.json_response(201, resource, Location=f"/charges/{result.charge.id}")


@app.route("GET", "/charges")
def search_charges(request: Request, _context: router.Context) -> Reply:
    """Charges of an account, a subscription or a status, newest first, a page at a time."""
    from payments.charges.search import parse_charge_query

    query = parse_charge_query(request.query)  # a bad query is a 400 before anything is read
    page = bootstrap.charge_search().page(query)
    return router.json_response(200, views.charge_page(page, bootstrap.page_url))


@app.route("GET", "/charges/{chargeId}")
def get_charge(request: Request, _context: router.Context) -> Reply:
    """Read a charge."""
    charge = bootstrap.charge_service().get_charge(request.path_params["chargeId"])
    return router.json_response(200, _resource(charge))


@app.route("GET", "/charges/{chargeId}/history")
def charge_history(request: Request, _context: router.Context) -> Reply:
    """A charge's timeline: its transitions and its invoice's postLinks, oldest first."""
    timeline = bootstrap.charge_timeline().of(request.path_params["chargeId"])
    return router.json_response(200, views.timeline_resource(timeline))


@app.route("POST", "/charges/{chargeId}/capture")
def capture_charge(request: Request, context: router.Context) -> Reply:
    """Capture a held (AUTHORIZED) charge, wholly or partly."""
    from payments.charges.requests import parse_capture_request

    amount = parse_capture_request(request.json_body(required=False))
    charge = bootstrap.charge_service().capture_charge(
        request.path_params["chargeId"], amount, deadline.deadline_from(context)
    )
    return router.json_response(200, _resource(charge))


@app.route("POST", "/charges/{chargeId}/reconcile")
def reconcile_charge(request: Request, context: router.Context) -> Reply:
    """Check a charge against ePay's status API now (the reconciler's check, on demand)."""
    result = bootstrap.reconciler().check(
        request.path_params["chargeId"], deadline.deadline_from(context), forced=True
    )
    return router.json_response(200, _resource(result.charge))


@app.route("POST", "/charges/{chargeId}/cancel")
def cancel_charge(request: Request, context: router.Context) -> Reply:
    """Cancel (void) a held or 3-D Secure-waiting charge; a CANCELLED one is answered as it is."""
    validate_idempotency_key(request.header("Idempotency-Key"))
    if request.json_body(required=False) not in (None, {}):
        raise ValidationError("a cancel takes no body")
    charge = bootstrap.voids().cancel(
        request.path_params["chargeId"], deadline.deadline_from(context)
    )
    return router.json_response(200, _resource(charge))


@app.route("POST", "/charges/{chargeId}/refunds")
def create_refund(request: Request, context: router.Context) -> Reply:
    """Refund a captured charge, wholly or partly, once per Idempotency-Key."""
    from payments.refunds.requests import parse_refund_request
    from payments.refunds.views import refund_resource

    key = validate_idempotency_key(request.header("Idempotency-Key"))
    refund_request = parse_refund_request(request.json_body(required=False))
    result = bootstrap.refunds().create_refund(
        request.path_params["chargeId"], refund_request, key, deadline.deadline_from(context)
    )
    resource = refund_resource(result.refund)
    if result.replayed:
        return router.json_response(200, resource, **{"Idempotent-Replayed": "true"})
    return router.json_response(201, resource, Location=f"/refunds/{result.refund.id}")


@app.route("GET", "/charges/{chargeId}/refunds")
def list_refunds(request: Request, _context: router.Context) -> Reply:
    """A charge's refunds, oldest first."""
    from payments.refunds.views import refund_resource

    refunds = bootstrap.refunds().list_refunds(request.path_params["chargeId"])
    return router.json_response(200, {"data": [refund_resource(r) for r in refunds]})


@app.route("GET", "/refunds/{refundId}")
def get_refund(request: Request, _context: router.Context) -> Reply:
    """Read a refund."""
    from payments.refunds.views import refund_resource

    refund = bootstrap.refunds().get_refund(request.path_params["refundId"])
    return router.json_response(200, refund_resource(refund))


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """API Gateway (REST, proxy) entry point."""
    return app.resolve(event, context)
