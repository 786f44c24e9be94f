"""The customer-facing HTML of the 3-D Secure step: every value escaped, strict headers.

Pages carry no secrets in their headers and no external resources. The only script is a fixed
one-liner allowed by its hash, so a gateway answer with quotes or `<script>` stays text.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, field
from html import escape
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from payments.errors import ValidationError

if TYPE_CHECKING:
    from payments.charges.threeds import AutoSubmit, Finish

MAX_FORM_BYTES = 64 * 1024
SCRIPT = 'document.getElementById("threeds-form").submit();'
STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;"
    "color:#222}p{margin:.4rem 0}button{margin-top:1.2rem;padding:.6rem 1.2rem;font-size:1rem}"
)


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


SCRIPT_HASH = _csp_hash(SCRIPT)
STYLE_HASH = _csp_hash(STYLE)
BASE_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # The customer's browser only ever reaches these pages over https (API Gateway): keep it so.
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
}
# What may stay as it is in a URL put into a header: RFC 3986's reserved characters and `%`
# (escapes already made); quote() keeps letters, digits and `_.-~` as well. Everything else
# (controls, spaces, quotes, U+2028, non-ASCII...) is percent-encoded as UTF-8.
URL_SAFE = ":/?#[]@!$&'()*+,;=%"
WAIT_TEXT = (
    ("kk", "Күте тұрыңыз: банктің растау бетіне өтіп жатырсыз…"),
    ("ru", "Пожалуйста, подождите: переходим на страницу подтверждения банка…"),
    ("en", "Please wait: taking you to your bank's confirmation page…"),
)
CONTINUE_TEXT = "Жалғастыру · Продолжить · Continue"
OUTCOME_TEXT = {
    "success": (
        ("kk", "Төлем сәтті өтті."),
        ("ru", "Оплата прошла успешно."),
        ("en", "The payment was successful."),
    ),
    "failure": (
        ("kk", "Төлем өтпеді."),
        ("ru", "Оплата не прошла."),
        ("en", "The payment did not go through."),
    ),
    "pending": (
        ("kk", "Төлем өңделуде."),
        ("ru", "Платёж обрабатывается."),
        ("en", "The payment is being processed."),
    ),
}
ERROR_TEXT = {
    400: (("kk", "Қате сұрау."), ("ru", "Неверный запрос."), ("en", "Bad request.")),
    404: (("kk", "Бет табылмады."), ("ru", "Страница не найдена."), ("en", "Not found.")),
    500: (
        ("kk", "Қазір қолжетімсіз, кейінірек қайталаңыз."),
        ("ru", "Сервис временно недоступен, попробуйте позже."),
        ("en", "Temporarily unavailable, please try again later."),
    ),
}
_HTML_LANG = {"kaz": "kk", "rus": "ru", "eng": "en"}


@dataclass(frozen=True)
class HtmlPage:
    """A status, an HTML body and its headers."""

    status: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)


def _csp(*, script: bool, form_action: str) -> str:
    parts = [
        "default-src 'none'",
        f"script-src {SCRIPT_HASH}" if script else "script-src 'none'",
        f"style-src {STYLE_HASH}",
        f"form-action {form_action}",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
    return "; ".join(parts)


def _document(lang: str, title: str, body: str, *, script: bool = False) -> str:
    return (
        f'<!doctype html><html lang="{escape(lang)}"><head><meta charset="utf-8">'
        '<meta name="referrer" content="no-referrer">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>{body}"
        + (f"<script>{SCRIPT}</script>" if script else "")
        + "</body></html>"
    )


def _paragraphs(texts: tuple[tuple[str, str], ...], **attrs: str) -> str:
    extra = "".join(f' {name}="{escape(value)}"' for name, value in attrs.items())
    return "".join(f'<p lang="{lang}"{extra}>{escape(text)}</p>' for lang, text in texts)


def auto_submit_page(form: AutoSubmit, base_origin: str) -> HtmlPage:
    """The page that posts PaReq, MD and TermUrl to the ACS on load (a button without JS)."""
    hidden = "".join(
        f'<input type="hidden" name="{name}" value="{escape(value, quote=True)}">'
        for name, value in (("PaReq", form.pa_req), ("MD", form.md), ("TermUrl", form.term_url))
    )
    body = (
        _paragraphs(WAIT_TEXT)
        + f'<form id="threeds-form" method="post" action="{escape(form.action, quote=True)}">'
        + hidden
        + f'<button type="submit" id="continue">{escape(CONTINUE_TEXT)}</button></form>'
    )
    form_action = form.action_origin
    if base_origin != form.action_origin:
        form_action += f" {base_origin}"
    headers = {
        **BASE_HEADERS,
        "Content-Security-Policy": _csp(script=True, form_action=form_action),
    }
    lang = _HTML_LANG.get(form.language, "ru")
    html = _document(lang, "3-D Secure", body, script=True)
    return HtmlPage(200, html, headers)


def result_page(finish: Finish) -> HtmlPage:
    """A plain outcome page for a charge without back links."""
    # Imported on use: the card setup page shares this module and never shows a charge's outcome.
    from payments.charges.threeds import outcome_kind

    charge = finish.charge
    kind = outcome_kind(charge.status)
    body = (
        _paragraphs(OUTCOME_TEXT[kind])
        + f'<p>Status: <span id="status">{escape(charge.status.value)}</span></p>'
        + f'<p>Charge: <span id="charge-id">{escape(charge.id)}</span></p>'
    )
    headers = {**BASE_HEADERS, "Content-Security-Policy": _csp(script=False, form_action="'none'")}
    lang = _HTML_LANG.get(charge.language, "ru")
    return HtmlPage(200, _document(lang, "Payment", body), headers)


def header_safe_url(url: str) -> str:
    """`url` as printable ASCII, fit for a header such as Location: an international host in its
    IDNA (xn--) form, every other character outside RFC 3986's set percent-encoded as UTF-8.

    Links are validated as ASCII when they are given (shared.fields); this keeps a header safe
    whatever reaches it (an older stored link, a value from elsewhere): a raw non-ASCII or
    control character in a header breaks the response, and with it the customer's way back.
    """
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed [ in the host: percent-encoded as it is
        parts = None
    if parts is not None and not parts.netloc.isascii():
        url = urlunsplit(parts._replace(netloc=_idna_netloc(parts.netloc)))
    return quote(url, safe=URL_SAFE, errors="backslashreplace")


def _idna_netloc(netloc: str) -> str:
    """`host[:port]` with the host in IDNA form; as it is when IDNA cannot write it (then the
    caller percent-encodes it like the rest)."""
    host, sep, port = netloc.partition(":")
    if "@" in netloc or (port and not (port.isascii() and port.isdigit())):
        return netloc
    try:
        return host.encode("idna").decode("ascii") + sep + port
    except UnicodeError:
        return netloc


def redirect_page(location: str) -> HtmlPage:
    """A 303 to the merchant's link (with a link in the body for clients that show it)."""
    location = header_safe_url(location)
    href = escape(location, quote=True)
    body = f'<p><a href="{href}">{escape(CONTINUE_TEXT)}</a></p>'
    headers = {
        **BASE_HEADERS,
        "Location": location,
        "Content-Security-Policy": _csp(script=False, form_action="'none'"),
    }
    return HtmlPage(303, _document("ru", "Payment", body), headers)


def finish_page(finish: Finish) -> HtmlPage:
    """The answer to a finished step: a 303 to the merchant, or the result page."""
    return redirect_page(finish.redirect) if finish.redirect else result_page(finish)


def error_page(status: int) -> HtmlPage:
    """A page that says only what kind of failure it is (400, 404 or a 5xx)."""
    texts = ERROR_TEXT.get(status) or ERROR_TEXT[500]
    headers = {**BASE_HEADERS, "Content-Security-Policy": _csp(script=False, form_action="'none'")}
    return HtmlPage(status, _document("ru", "Payment", _paragraphs(texts)), headers)


def parse_form(raw: str | None, is_base64: bool) -> dict[str, str]:
    """Decode an application/x-www-form-urlencoded body (API Gateway may base64 it)."""
    if not raw:
        return {}
    try:
        data = base64.b64decode(raw, validate=True) if is_base64 else raw.encode("utf-8")
        if len(data) > MAX_FORM_BYTES:
            raise ValidationError("the form is too large")
        text = data.decode("ascii")  # urlencoded: anything else is percent-encoded
    except (binascii.Error, UnicodeError) as exc:
        raise ValidationError("the form is not urlencoded") from exc
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False, max_num_fields=20)
    except ValueError as exc:
        raise ValidationError("the form has too many fields") from exc
    form: dict[str, str] = {}
    for key, value in pairs:
        form.setdefault(key, value)
    return form
