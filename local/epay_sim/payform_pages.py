"""What the payment page area sends to the browser: the widget script and the HTML pages.

Every value put into HTML is escaped here. Element ids and field names are a contract with the
browser tests and ``payform_client``: see ``payform``'s module docstring.
"""

from __future__ import annotations

import html
import json
from decimal import Decimal

from .cards import DEFAULT_CARD_NUMBER
from .wire import Response, page

_LABELS: dict[str, dict[str, str]] = {
    "eng": {
        "title": "Payment",
        "verify": "Card verification",
        "amount": "Amount",
        "card": "Card number",
        "approve": "Pay",
        "decline": "Decline (insufficient funds)",
        "three_ds": "Pay with 3-D Secure",
    },
    "rus": {
        "title": "Оплата",
        "verify": "Проверка карты",
        "amount": "Сумма",
        "card": "Номер карты",
        "approve": "Оплатить",
        "decline": "Отказ (недостаточно средств)",
        "three_ds": "Оплатить через 3-D Secure",
    },
    "kaz": {
        "title": "Төлем",
        "verify": "Картаны тексеру",
        "amount": "Сома",
        "card": "Карта нөмірі",
        "approve": "Төлеу",
        "decline": "Бас тарту (қаражат жеткіліксіз)",
        "three_ds": "3-D Secure арқылы төлеу",
    },
}
_LANGUAGE_ALIASES = {"ru": "rus", "kk": "kaz", "kz": "kaz", "en": "eng"}

# The stand-in for ePay's payment-api.js. __PAYFORM_URL__ is the simulator's /payform/ URL
# (used when the script cannot tell where it was loaded from).
_WIDGET_JS = """\
/* ePay simulator: a stand-in for ePay's payform/payment-api.js (epay-api.md section 9).
 *
 * halyk.pay(paymentObject) navigates to the simulator's payment page: it POSTs a form
 * (application/x-www-form-urlencoded, UTF-8) to <simulator>/payform/ with every top-level field
 * of the payment object. Objects (auth: the whole token JSON; data) go as JSON text, booleans as
 * "true"/"false", numbers as text; null and undefined fields are left out.
 *
 * halyk.showPaymentWidget(paymentObject, callback) does the same as halyk.pay (a full-page
 * redirect, not ePay's iframe): callback is never called; the outcome comes back, as with
 * halyk.pay, through backLink/failureBackLink and postLink/failurePostLink.
 */
(function (window, document) {
  "use strict";
  var payformUrl = __PAYFORM_URL__;
  var script = document.currentScript;
  if (script && script.src) {
    try {
      payformUrl = new URL("./", script.src).href;
    } catch (ignored) {
      /* keep the simulator's own URL */
    }
  }

  function asText(value) {
    if (typeof value === "boolean") {
      return value ? "true" : "false";
    }
    if (typeof value === "object") {
      return JSON.stringify(value);
    }
    return String(value);
  }

  function submit(paymentObject) {
    if (!paymentObject || typeof paymentObject !== "object") {
      throw new TypeError("halyk.pay needs a payment object");
    }
    var form = document.createElement("form");
    form.setAttribute("method", "POST");
    form.setAttribute("action", payformUrl);
    form.setAttribute("enctype", "application/x-www-form-urlencoded");
    form.setAttribute("accept-charset", "UTF-8");
    form.style.display = "none";
    Object.keys(paymentObject).forEach(function (name) {
      var value = paymentObject[name];
      if (value === undefined || value === null || typeof value === "function") {
        return;
      }
      var input = document.createElement("input");
      input.setAttribute("type", "hidden");
      input.setAttribute("name", name);
      input.value = asText(value);
      form.appendChild(input);
    });
    (document.body || document.documentElement).appendChild(form);
    HTMLFormElement.prototype.submit.call(form);
  }

  window.halyk = {
    pay: function (paymentObject) {
      submit(paymentObject);
    },
    showPaymentWidget: function (paymentObject, callback) {
      submit(paymentObject);
    }
  };
})(window, document);
"""


def widget_script(payform_url: str) -> Response:
    """``payment-api.js``: defines ``window.halyk`` with ``pay`` and ``showPaymentWidget``."""
    body = _WIDGET_JS.replace("__PAYFORM_URL__", json.dumps(payform_url))
    return Response(
        200,
        body.encode("utf-8"),
        "application/javascript; charset=utf-8",
        {"Cache-Control": "no-store"},
    )


def refusal(status: int, message: str) -> Response:
    """An HTML error page; the reason is in the element ``#error``."""
    return page(status, "Payment error", f'<p id="error">{html.escape(message)}</p>')


def _labels(language: str) -> dict[str, str]:
    key = language.strip().lower()
    return _LABELS.get(_LANGUAGE_ALIASES.get(key, key), _LABELS["eng"])


def _money(amount: Decimal, currency: str) -> str:
    return html.escape(f"{amount} {currency}")


def payment_page(
    *,
    action: str,
    session_id: str,
    payment: dict[str, str],
    amount: Decimal,
    verification: bool,
) -> Response:
    """The payment page: what is paid, a card number and three buttons (approve, decline, 3ds)
    that POST ``session``, ``cardNumber`` and ``outcome`` to ``action``."""
    labels = _labels(payment.get("language", ""))
    title = labels["verify"] if verification else labels["title"]
    spaced = " ".join(DEFAULT_CARD_NUMBER[i : i + 4] for i in range(0, 16, 4))
    body = (
        f"<p>{html.escape(labels['amount'])}: "
        f'<b id="amount">{_money(amount, payment.get("currency", ""))}</b></p>'
        f'<p id="description">{html.escape(payment.get("description", ""))}</p>'
        f'<p>Invoice <span id="invoice-id">{html.escape(payment.get("invoiceId", ""))}</span></p>'
        f'<form id="payform" method="post" action="{html.escape(action, quote=True)}">'
        f'<input type="hidden" name="session" value="{html.escape(session_id, quote=True)}">'
        f'<label for="card-number">{html.escape(labels["card"])}</label> '
        '<input type="text" id="card-number" name="cardNumber" inputmode="numeric" '
        f'autocomplete="off" placeholder="{spaced}"> '
        f'<button type="submit" id="approve" name="outcome" value="approve">'
        f"{html.escape(labels['approve'])}</button> "
        f'<button type="submit" id="decline" name="outcome" value="decline">'
        f"{html.escape(labels['decline'])}</button> "
        f'<button type="submit" id="three-ds" name="outcome" value="3ds">'
        f"{html.escape(labels['three_ds'])}</button>"
        "</form>"
    )
    return page(200, f"ePay (simulator): {title}", body)


def issuer_page(
    *, action: str, session_id: str, amount: Decimal, currency: str, mask: str
) -> Response:
    """The simulated issuer's 3-D Secure step: Approve (``#acs-approve``) or Fail
    (``#acs-fail``) POST ``session`` and ``result`` (approve | fail) to ``action``."""
    body = (
        f'<p>Payment of <b id="amount">{_money(amount, currency)}</b> with card '
        f'<span id="card-mask">{html.escape(mask)}</span>.</p><p>Confirm this payment?</p>'
        f'<form id="acs-form" method="post" action="{html.escape(action, quote=True)}">'
        f'<input type="hidden" name="session" value="{html.escape(session_id, quote=True)}">'
        '<button type="submit" id="acs-approve" name="result" value="approve">Approve</button> '
        '<button type="submit" id="acs-fail" name="result" value="fail">Fail</button>'
        "</form>"
    )
    return page(200, "Simulated issuer 3-D Secure (ACS)", body)
