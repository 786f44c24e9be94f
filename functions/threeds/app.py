"""3-D Secure pages for the customer's browser: the redirect page and TermUrl. Thin: parse, call
one use case, answer HTML. Public routes (no SigV4): the page by its single-use token, the return
by the charge's MD.

The 3-D Secure use case (and the charge writer it brings) is imported by the routes, on the first
request, not at init (cold start: docs/decisions.md, 2026-12-06).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from payments import bootstrap
from payments.charges.model import is_charge_id
from payments.errors import NotFoundError, PaymentsError, ValidationError
from payments.http import pages, router
from payments.http.router import Reply, Request
from payments.observability import logger, metrics
from payments.shared import deadline

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


def _html(page: pages.HtmlPage) -> Reply:
    return Reply(page.status, page.body, dict(page.headers))


def _error_page(error: Exception) -> Reply:
    """HTML answers for errors: a bare 404 reveals nothing; 400 changes nothing; else 5xx."""
    if isinstance(error, NotFoundError):
        # Wrong, missing or used token, unknown charge: the same bare 404.
        return _html(pages.error_page(404))
    if isinstance(error, ValidationError):
        logger.warning("3DS request refused", extra={"code": error.code})
        return _html(pages.error_page(400))
    if isinstance(error, PaymentsError):
        logger.warning(
            "3DS request failed", extra={"code": error.code, "error": type(error).__name__}
        )
        return _html(pages.error_page(error.http_status if error.http_status >= 500 else 500))
    logger.exception("unexpected error", extra={"error": type(error).__name__})
    return _html(pages.error_page(500))


app = router.Router(on_error=_error_page, path_ids={"chargeId": is_charge_id})


@app.route("GET", "/charges/{chargeId}/3ds")
def redirect_page(request: Request, context: router.Context) -> Reply:
    """The page that takes the customer to the issuer's ACS (once per token)."""
    from payments.charges.threeds import AutoSubmit

    answer = bootstrap.three_ds_service().open_page(
        request.path_params["chargeId"], request.query.get("token"), deadline.deadline_from(context)
    )
    if isinstance(answer, AutoSubmit):
        return _html(pages.auto_submit_page(answer, bootstrap.page_links().base_origin))
    return _html(pages.finish_page(answer))


@app.route("POST", "/charges/{chargeId}/3ds/return")
def term_url(request: Request, context: router.Context) -> Reply:
    """The ACS's PaRes/MD: confirm at ePay, settle from the status API, send the customer on."""
    form = pages.parse_form(request.body, request.is_base64_encoded)
    pa_res, md = form.get("PaRes"), form.get("MD")
    if not pa_res or not md:
        raise ValidationError("PaRes and MD are required")
    finish = bootstrap.three_ds_service().complete(
        request.path_params["chargeId"], pa_res, md, deadline.deadline_from(context)
    )
    return _html(pages.finish_page(finish))


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """API Gateway (REST, proxy) entry point."""
    return app.resolve(event, context)
