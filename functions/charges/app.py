"""Merchant charge API: create, read and capture charges. Thin: parse, call one use case, answer."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from payments import api, bootstrap, web
from payments.models import parse_capture_request, parse_charge_request, validate_idempotency_key
from payments.observability import logger, metrics

app = api.new_resolver()


@app.post("/charges")
def create_charge() -> Response[str]:
    """Charge a saved card once per Idempotency-Key."""
    event = app.current_event
    key = validate_idempotency_key(event.headers.get("Idempotency-Key"))
    body = web.parse_json_body(event.decoded_body)
    request = parse_charge_request(body, bootstrap.settings().capture_mode)
    result = bootstrap.charge_service().create_charge(
        request, key, web.deadline_from(app.lambda_context)
    )
    resource = web.charge_resource(result.charge, bootstrap.page_url)
    if result.replayed:
        return api.json_response(200, resource, **{"Idempotent-Replayed": "true"})
    return api.json_response(201, resource, Location=f"/charges/{result.charge.id}")


@app.get("/charges/<charge_id>")
def get_charge(charge_id: str) -> Response[str]:
    """Read a charge."""
    charge = bootstrap.charge_service().get_charge(charge_id)
    return api.json_response(200, web.charge_resource(charge, bootstrap.page_url))


@app.post("/charges/<charge_id>/capture")
def capture_charge(charge_id: str) -> Response[str]:
    """Capture a held (AUTHORIZED) charge, wholly or partly."""
    amount = parse_capture_request(
        web.parse_json_body(app.current_event.decoded_body, required=False)
    )
    charge = bootstrap.charge_service().capture_charge(
        charge_id, amount, web.deadline_from(app.lambda_context)
    )
    return api.json_response(200, web.charge_resource(charge, bootstrap.page_url))


@app.post("/charges/<charge_id>/reconcile")
def reconcile_charge(charge_id: str) -> Response[str]:
    """Check a charge against ePay's status API now (the reconciler's check, on demand)."""
    result = bootstrap.reconciler().check(
        charge_id, web.deadline_from(app.lambda_context), forced=True
    )
    return api.json_response(200, web.charge_resource(result.charge, bootstrap.page_url))


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """API Gateway (REST, proxy) entry point."""
    return app.resolve(event, context)
