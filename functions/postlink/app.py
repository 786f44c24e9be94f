"""ePay postLink intake (success and failure links). Thin: parse, call one use case, answer.

Public route: ePay does not sign notifications, so the use case stores, verifies (secret_hash,
invoice, amount, currency, terminal) and settles only from ePay's status API.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from payments import api, bootstrap, web
from payments.observability import logger, metrics
from payments.postlink import Delivery, Route, body_bytes

app = api.new_resolver()


def _receive(route: Route) -> Response[str]:
    event = app.current_event
    delivery = Delivery(
        body=body_bytes(event.body, bool(event.is_base64_encoded)),
        content_type=event.headers.get("Content-Type"),
        route=route,
        source_ip=event.request_context.identity.source_ip,
    )
    bootstrap.postlink_service().receive(delivery, web.deadline_from(app.lambda_context))
    return api.json_response(200, {"received": True})


@app.post("/epay/postlink")
def postlink() -> Response[str]:
    """ePay's postLink (success notifications, and failures when no failurePostLink is used)."""
    return _receive(Route.SUCCESS)


@app.post("/epay/postlink/failure")
def failure_postlink() -> Response[str]:
    """ePay's failurePostLink (failure notifications)."""
    return _receive(Route.FAILURE)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """API Gateway (REST, proxy) entry point."""
    return app.resolve(event, context)
