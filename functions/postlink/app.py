"""ePay postLink intake (success and failure links). Thin: parse, call one use case, answer.

Public route: ePay does not sign notifications, so the use case stores, verifies (secret_hash,
invoice, amount, currency, terminal) and settles only from ePay's status API.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from payments import bootstrap, web
from payments.errors import PaymentsError
from payments.observability import logger, metrics
from payments.postlink import Delivery, Route, body_bytes

app = APIGatewayRestResolver()


def _json(status: int, body: dict[str, Any]) -> Response[str]:
    return Response(status, body=web.dumps(body), headers=dict(web.JSON_HEADERS))


def _receive(route: Route) -> Response[str]:
    event = app.current_event
    delivery = Delivery(
        body=body_bytes(event.body, bool(event.is_base64_encoded)),
        content_type=event.headers.get("Content-Type"),
        route=route,
        source_ip=event.request_context.identity.source_ip,
    )
    bootstrap.postlink_service().receive(delivery, web.deadline_from(app.lambda_context))
    return _json(200, {"received": True})


@app.post("/epay/postlink")
def postlink() -> Response[str]:
    """ePay's postLink (success notifications, and failures when no failurePostLink is used)."""
    return _receive(Route.SUCCESS)


@app.post("/epay/postlink/failure")
def failure_postlink() -> Response[str]:
    """ePay's failurePostLink (failure notifications)."""
    return _receive(Route.FAILURE)


# Powertools' exception_handler decorator is untyped; the handler below is fully typed.
@app.exception_handler(PaymentsError)  # type: ignore[untyped-decorator]
def payments_error(error: PaymentsError) -> Response[str]:
    """Every error of ours becomes its HTTP status and a JSON body with a stable code."""
    if error.http_status >= 500:
        logger.warning("request failed", extra={"code": error.code, "error": type(error).__name__})
    return _json(error.http_status, web.error_body(error))


@app.exception_handler(Exception)  # type: ignore[untyped-decorator]
def unexpected_error(error: Exception) -> Response[str]:
    """A bug: log it with its traceback and answer a bare 500 (ePay will deliver again)."""
    logger.exception("unexpected error", extra={"error": type(error).__name__})
    return _json(500, web.error_body(PaymentsError("internal error")))


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """API Gateway (REST, proxy) entry point."""
    return app.resolve(event, context)
