"""ePay postLink intake (success and failure links). Thin: parse, call one use case, answer.

Served by the function's own Lambda function URL (AuthType NONE, payload 2.0), not the REST API:
ePay does not sign notifications, so the use case stores, verifies (secret_hash, invoice, amount,
currency, terminal) and settles only from ePay's status API. The router reads the function URL's
event (any other path is a 404); the function sees only the Request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from payments import bootstrap
from payments.http import router
from payments.http.router import Reply, Request
from payments.observability import logger, metrics
from payments.shared import deadline

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

app = router.Router()


def _receive(request: Request, context: router.Context, success: bool) -> Reply:
    # Imported by the first delivery (the intake loads it then anyway): not by the import.
    from payments.charges.notifications import Delivery, Route, body_bytes

    route = Route.SUCCESS if success else Route.FAILURE
    delivery = Delivery(
        body=body_bytes(request.body, request.is_base64_encoded),
        content_type=request.header("Content-Type"),
        route=route,
        source_ip=request.source_ip,
    )
    bootstrap.postlink_service().receive(delivery, deadline.deadline_from(context))
    return router.json_response(200, {"received": True})


@app.route("POST", "/epay/postlink")
def postlink(request: Request, context: router.Context) -> Reply:
    """ePay's postLink (success notifications, and failures when no failurePostLink is used)."""
    return _receive(request, context, success=True)


@app.route("POST", "/epay/postlink/failure")
def failure_postlink(request: Request, context: router.Context) -> Reply:
    """ePay's failurePostLink (failure notifications)."""
    return _receive(request, context, success=False)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Lambda function URL entry point (a REST proxy event is read the same way)."""
    return app.resolve(event, context)
