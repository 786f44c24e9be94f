"""The customer's card setup page: ePay's payment widget, saving the card. Thin: parse, call one
use case, answer HTML. Public route (no SigV4): the page opens once, by its single-use token."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from payments import bootstrap
from payments.cards.model import is_setup_id
from payments.errors import NotFoundError, PaymentsError
from payments.http import card_pages, pages, router
from payments.http.router import Reply, Request
from payments.observability import logger, metrics
from payments.shared import deadline

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


def _html(page: pages.HtmlPage) -> Reply:
    return Reply(page.status, page.body, dict(page.headers))


def _error_page(error: Exception) -> Reply:
    """HTML answers for errors: a bare 404 reveals nothing (wrong, used or expired token, unknown
    setup); ePay or the store failing is a 5xx the customer may retry (the page is not used up)."""
    if isinstance(error, NotFoundError):
        return _html(pages.error_page(404))
    if isinstance(error, PaymentsError):
        logger.warning(
            "card setup page failed", extra={"code": error.code, "error": type(error).__name__}
        )
        return _html(pages.error_page(error.http_status if error.http_status >= 500 else 500))
    logger.exception("unexpected error", extra={"error": type(error).__name__})
    return _html(pages.error_page(500))


app = router.Router(on_error=_error_page, path_ids={"setupId": is_setup_id})


@app.route("GET", "/card-setups/{setupId}/page")
def setup_page(request: Request, context: router.Context) -> Reply:
    """The page that opens ePay's payment widget for a card setup (once per token)."""
    page = bootstrap.card_setups().open_page(
        request.path_params["setupId"], request.query.get("token"), deadline.deadline_from(context)
    )
    return _html(card_pages.widget_page(page))


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """API Gateway (REST, proxy) entry point."""
    return app.resolve(event, context)
