"""The customer's card setup page: ePay's payment widget, every value escaped, strict headers.

Its own module so the 3-D Secure pages never load the cards domain (cold start).
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from payments.http.pages import (
    _HTML_LANG,
    BASE_HEADERS,
    STYLE_HASH,
    HtmlPage,
    _csp_hash,
    _document,
    _paragraphs,
    header_safe_url,
)
from payments.shared import jsonutil

if TYPE_CHECKING:
    from payments.cards.setups import WidgetPage

# The card setup page's one script: hand the payment object (a JSON data block, never run) to
# ePay's widget; show a message when the widget's script did not load.
WIDGET_SCRIPT = (
    'var o=JSON.parse(document.getElementById("payment-object").textContent);'
    "if(window.halyk){window.halyk.pay(o);}"
    'else{document.getElementById("widget-missing").hidden=false;}'
)
WIDGET_SCRIPT_HASH = _csp_hash(WIDGET_SCRIPT)
OPENING_TEXT = (
    ("kk", "Банктің карта бетін ашып жатырмыз…"),
    ("ru", "Открываем страницу банка для карты…"),
    ("en", "Opening the bank's card page…"),
)
NO_SCRIPT_TEXT = (
    ("kk", "Банк беті JavaScript-ті қажет етеді: оны қосып, бетті қайта ашыңыз."),
    ("ru", "Странице банка нужен JavaScript: включите его и откройте ссылку снова."),  # noqa: RUF001
    ("en", "The bank's page needs JavaScript: turn it on and open the link again."),
)
WIDGET_MISSING_TEXT = (
    ("kk", "Банк беті ашылмады. Кейінірек қайталаңыз."),
    ("ru", "Не удалось открыть страницу банка. Попробуйте позже."),  # noqa: RUF001
    ("en", "The bank's page could not be opened. Please try again later."),
)
BACK_TEXT = "Дүкенге оралу · Вернуться в магазин · Back to the shop"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _json_block(value: object) -> str:
    """JSON inside a <script type="application/json"> block: nothing in it can end the block."""
    text = jsonutil.dumps(value)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def widget_page(page: WidgetPage) -> HtmlPage:
    """The card setup page: loads ePay's widget script and hands it the payment object (with the
    invoice's token and `cardSave: true`). The widget may navigate, frame, post and fetch only
    to its own origin; without JavaScript the customer is told so and can go back."""
    widget = _origin(page.script_url)
    back = escape(header_safe_url(page.leave_url), quote=True)
    back_link = f'<p><a id="back" href="{back}">{escape(BACK_TEXT)}</a></p>'
    body = (
        _paragraphs(OPENING_TEXT)
        + f"<noscript>{_paragraphs(NO_SCRIPT_TEXT)}{back_link}</noscript>"
        + f'<div id="widget-missing" hidden>{_paragraphs(WIDGET_MISSING_TEXT)}{back_link}</div>'
        + '<script type="application/json" id="payment-object">'
        + _json_block(page.payment_object)
        + "</script>"
        + f'<script src="{escape(page.script_url, quote=True)}"></script>'
        + f"<script>{WIDGET_SCRIPT}</script>"
    )
    csp = "; ".join(
        [
            "default-src 'none'",
            f"script-src {WIDGET_SCRIPT_HASH} {widget}",
            f"style-src {STYLE_HASH}",
            f"connect-src {widget}",
            f"frame-src {widget}",
            f"img-src {widget} data:",
            f"form-action {widget}",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ]
    )
    headers = {**BASE_HEADERS, "Content-Security-Policy": csp}
    lang = _HTML_LANG.get(page.language, "ru")
    return HtmlPage(200, _document(lang, "Card", body), headers)
