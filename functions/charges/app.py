"""Merchant charge API: create, read, capture and reconcile charges. Thin: parse, call one use
case, answer."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from payments import api, bootstrap, web
from payments.api import Reply, Request
from payments.models import parse_capture_request, parse_charge_request, validate_idempotency_key
from payments.observability import logger, metrics

app = api.Router()


@app.route("POST", "/charges")
def create_charge(request: Request, context: api.Context) -> Reply:
    """Charge a saved card once per Idempotency-Key."""
    key = validate_idempotency_key(request.header("Idempotency-Key"))
    body = web.parse_json_body(request.body_bytes())
    charge_request = parse_charge_request(body, bootstrap.settings().capture_mode)
    result = bootstrap.charge_service().create_charge(
        charge_request, key, web.deadline_from(context)
    )
    resource = web.charge_resource(result.charge, bootstrap.page_url)
    if result.replayed:
        return api.json_response(200, resource, **{"Idempotent-Replayed": "true"})
    return api.json_response(201, resource, Location=f"/charges/{result.charge.id}")


@app.route("GET", "/charges/{chargeId}")
def get_charge(request: Request, _context: api.Context) -> Reply:
    """Read a charge."""
    charge = bootstrap.charge_service().get_charge(request.path_params["chargeId"])
    return api.json_response(200, web.charge_resource(charge, bootstrap.page_url))


@app.route("POST", "/charges/{chargeId}/capture")
def capture_charge(request: Request, context: api.Context) -> Reply:
    """Capture a held (AUTHORIZED) charge, wholly or partly."""
    amount = parse_capture_request(web.parse_json_body(request.body_bytes(), required=False))
    charge = bootstrap.charge_service().capture_charge(
        request.path_params["chargeId"], amount, web.deadline_from(context)
    )
    return api.json_response(200, web.charge_resource(charge, bootstrap.page_url))


@app.route("POST", "/charges/{chargeId}/reconcile")
def reconcile_charge(request: Request, context: api.Context) -> Reply:
    """Check a charge against ePay's status API now (the reconciler's check, on demand)."""
    result = bootstrap.reconciler().check(
        request.path_params["chargeId"], web.deadline_from(context), forced=True
    )
    return api.json_response(200, web.charge_resource(result.charge, bootstrap.page_url))


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """API Gateway (REST, proxy) entry point."""
    return app.resolve(event, context)
