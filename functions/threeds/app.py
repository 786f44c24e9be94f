"""3-D Secure pages for the customer's browser: the redirect page and TermUrl. Thin: parse, call
one use case, answer HTML. Public routes (no SigV4): the page by its single-use token, the return
by the charge's MD."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from payments import bootstrap, pages, web
from payments.errors import NotFoundError, PaymentsError, ValidationError
from payments.observability import logger, metrics
from payments.threeds import AutoSubmit

app = APIGatewayRestResolver()


def _html(page: pages.HtmlPage) -> Response[str]:
    return Response(page.status, body=page.body, headers=dict(page.headers))


@app.get("/charges/<charge_id>/3ds")
def redirect_page(charge_id: str) -> Response[str]:
    """The page that takes the customer to the issuer's ACS (once per token)."""
    token = app.current_event.get_query_string_value("token")
    answer = bootstrap.three_ds_service().open_page(
        charge_id, token, web.deadline_from(app.lambda_context)
    )
    if isinstance(answer, AutoSubmit):
        return _html(pages.auto_submit_page(answer, bootstrap.page_links().base_origin))
    return _html(pages.finish_page(answer))


@app.post("/charges/<charge_id>/3ds/return")
def term_url(charge_id: str) -> Response[str]:
    """The ACS's PaRes/MD: confirm at ePay, settle from the status API, send the customer on."""
    event = app.current_event
    form = pages.parse_form(event.body, bool(event.is_base64_encoded))
    pa_res, md = form.get("PaRes"), form.get("MD")
    if not pa_res or not md:
        raise ValidationError("PaRes and MD are required")
    finish = bootstrap.three_ds_service().complete(
        charge_id, pa_res, md, web.deadline_from(app.lambda_context)
    )
    return _html(pages.finish_page(finish))


# Powertools' exception_handler decorator is untyped; the handlers below are fully typed.
@app.exception_handler(NotFoundError)  # type: ignore[untyped-decorator]
def not_found(_error: NotFoundError) -> Response[str]:
    """Wrong, missing or used token, unknown charge: the same bare 404."""
    return _html(pages.error_page(404))


@app.exception_handler(ValidationError)  # type: ignore[untyped-decorator]
def bad_request(error: ValidationError) -> Response[str]:
    """A malformed form or an MD that is not the charge's: 400, nothing changed."""
    logger.warning("3DS request refused", extra={"code": error.code})
    return _html(pages.error_page(400))


@app.exception_handler(PaymentsError)  # type: ignore[untyped-decorator]
def payments_error(error: PaymentsError) -> Response[str]:
    """Anything else of ours (store or gateway down): a page that says to try later."""
    logger.warning("3DS request failed", extra={"code": error.code, "error": type(error).__name__})
    return _html(pages.error_page(error.http_status if error.http_status >= 500 else 500))


@app.exception_handler(Exception)  # type: ignore[untyped-decorator]
def unexpected_error(error: Exception) -> Response[str]:
    """A bug: log it with its traceback and answer a bare 500 page."""
    logger.exception("unexpected error", extra={"error": type(error).__name__})
    return _html(pages.error_page(500))


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """API Gateway (REST, proxy) entry point."""
    return app.resolve(event, context)
