"""Operator API: settle a NEEDS_REVIEW charge by a person's word where ePay agrees, and replay a
stored postLink. IAM-signed; every action names its caller. Thin: parse, call one use case,
answer.

The resolution rules and the postLink inbox are imported by the routes that use them, on the first
request, not at init (cold start: docs/decisions.md, 2026-12-06).
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

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


def _is_inbox_id(value: str) -> bool:
    """The inbox id rule, from the inbox's records (postLink parsing), loaded on a replay only."""
    from payments.charges.inbox_records import is_inbox_id

    return is_inbox_id(value)


app = router.Router(path_ids={"chargeId": is_charge_id, "inboxId": _is_inbox_id})


@app.route("POST", "/charges/{chargeId}/resolve")
def resolve_charge(request: Request, context: router.Context) -> Reply:
    """Resolve a NEEDS_REVIEW charge to the status ePay's status API confirms."""
    from payments.charges.resolution import operator_of, parse_resolution

    operator = operator_of(request.caller)
    resolution = parse_resolution(request.json_body())  # a bad body is a 400 before any read
    charge_id = request.path_params["chargeId"]
    charge = bootstrap.resolutions().resolve(
        charge_id, resolution, operator, deadline.deadline_from(context)
    )
    logger.info(
        "charge resolved by an operator",
        extra={"charge_id": charge_id, "status": charge.status.value, "operator": operator},
    )
    # A resolved charge is never REQUIRES_3DS: it has no 3-D Secure page to link to.
    return router.json_response(200, views.charge_resource(charge))


@app.route("POST", "/postlinks/{inboxId}/replay")
def replay_postlink(request: Request, context: router.Context) -> Reply:
    """Verify and settle a stored postLink notification again; answer its new verdict."""
    from payments.charges.resolution import operator_of

    operator = operator_of(request.caller)
    if request.json_body(required=False) not in (None, {}):
        raise ValidationError("a replay takes no body")
    inbox_id = request.path_params["inboxId"]
    outcome = bootstrap.postlink_service().replay(
        inbox_id, operator, deadline.deadline_from(context)
    )
    logger.info(
        "postLink replayed by an operator",
        extra={
            "inbox_id": inbox_id,
            "verdict": outcome.verdict.value,
            "charge_id": outcome.charge_id,
            "operator": operator,
        },
    )
    return router.json_response(200, views.replay_resource(inbox_id, outcome))


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """API Gateway (REST, proxy) entry point."""
    return app.resolve(event, context)
