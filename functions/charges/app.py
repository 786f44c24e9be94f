"""Merchant charge API: create, read and capture charges. Thin: parse, call one use case, answer."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from payments import bootstrap, web
from payments.errors import PaymentsError
from payments.models import parse_capture_request, parse_charge_request, validate_idempotency_key
from payments.observability import logger, metrics

app = APIGatewayRestResolver()


def _json(status: int, body: dict[str, Any], **headers: str) -> Response[str]:
    return Response(status, body=web.dumps(body), headers={**web.JSON_HEADERS, **headers})


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
        return _json(200, resource, **{"Idempotent-Replayed": "true"})
    return _json(201, resource, Location=f"/charges/{result.charge.id}")


@app.get("/charges/<charge_id>")
def get_charge(charge_id: str) -> Response[str]:
    """Read a charge."""
    charge = bootstrap.charge_service().get_charge(charge_id)
    return _json(200, web.charge_resource(charge, bootstrap.page_url))


@app.post("/charges/<charge_id>/capture")
def capture_charge(charge_id: str) -> Response[str]:
    """Capture a held (AUTHORIZED) charge, wholly or partly."""
    amount = parse_capture_request(
        web.parse_json_body(app.current_event.decoded_body, required=False)
    )
    charge = bootstrap.charge_service().capture_charge(
        charge_id, amount, web.deadline_from(app.lambda_context)
    )
    return _json(200, web.charge_resource(charge, bootstrap.page_url))


@app.post("/charges/<charge_id>/reconcile")
def reconcile_charge(charge_id: str) -> Response[str]:
    """Check a charge against ePay's status API now (the reconciler's check, on demand)."""
    result = bootstrap.reconciler().check(
        charge_id, web.deadline_from(app.lambda_context), forced=True
    )
    return _json(200, web.charge_resource(result.charge, bootstrap.page_url))


# Powertools' exception_handler decorator is untyped; the handler below is fully typed.
@app.exception_handler(PaymentsError)  # type: ignore[untyped-decorator]
def payments_error(error: PaymentsError) -> Response[str]:
    """Every error of ours becomes its HTTP status and a JSON body with a stable code."""
    if error.http_status >= 500:
        logger.warning("request failed", extra={"code": error.code, "error": type(error).__name__})
    return _json(error.http_status, web.error_body(error))


@app.exception_handler(Exception)  # type: ignore[untyped-decorator]
def unexpected_error(error: Exception) -> Response[str]:
    """A bug: log it with its traceback and answer a bare 500 (the charge state is unchanged)."""
    logger.exception("unexpected error", extra={"error": type(error).__name__})
    return _json(500, web.error_body(PaymentsError("internal error")))


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """API Gateway (REST, proxy) entry point."""
    return app.resolve(event, context)
