"""A faithful loopback simulator of Halyk Bank's ePay gateway (stdlib only).

It embodies ePay as /work/shared/epay-api.md describes it and never imports the project's
``payments`` layer. Use it in-process::

    sim = EpaySimulator(host="127.0.0.1", port=0, clock=time.time).start()
    sim.oauth_url, sim.api_url          # point the client here
    sim.journal, sim.ledger             # what was asked, what really happened
    sim.ledger_entry(invoice, terminal_id)  # one invoice on one terminal
    sim.record(ledger_entry)            # seed a transaction as if ePay had made it
    sim.inject("auth", "timeout_after_commit", count=1, delay=2.0)
    sim.reset(); sim.stop()

or standalone: ``python -m local.epay_sim --host 127.0.0.1 --port 8081``.

Endpoints (ePay's paths, names and casing)
-----------------------------------------
``POST /oauth2/token`` (form urlencoded or multipart), ``POST /payments/cards/auth``,
``GET|POST /acs`` (the issuer's 3DS page), ``POST /payments/cards/confirmPayment?Access=<token>``,
``GET /check-status/payment/transaction/{invoiceId}``,
``POST /operation/{id}/charge|cancel|refund``, ``GET /cards/{accountId}``,
``POST /card/deactivate/{cardId}``; ``GET /3ds/result`` is a plain page that the confirm redirect
lands on when the auth carried no backLink. The payment page (ePay's widget, where cards are
saved): ``GET /payform/payment-api.js``, ``POST /payform/``, ``POST /payform/pay``,
``POST /payform/3ds`` (``sim.widget_url``, ``sim.payform_url``).

Payment page (epay-api.md section 9; module ``payform`` has the full contract)
------------------------------------------------------------------------------
``payment-api.js`` defines ``halyk.pay(paymentObject)`` (and ``showPaymentWidget``, which does the
same full-page redirect and never calls its callback): it POSTs every field of the payment object
as a urlencoded form to ``/payform/`` (``auth``, the whole token JSON, as JSON text; booleans as
"true"/"false"). The page checks the object against its token's binding (a live token requested
with invoiceID; invoiceId, amount, currency, terminal equal; ``paymentType: "cardVerification"``
is amount 0, USD; a token may be bound to amount 0), else 400 HTML. Its form posts ``session``,
``cardNumber`` (``#card-number``) and ``outcome`` (``#approve``, ``#decline``, ``#three-ds``) to
``/payform/pay``: approve is VERIFIED (verification; reference and approval code empty, as real
ePay sends them), else AUTH, CHARGE on a single-stage terminal; decline is REJECT 484; 3ds shows
the issuer's page (``#acs-approve``, ``#acs-fail``: REJECT 455). A final outcome sends the postLink
(as any: ``secret_hash`` from the token, links from the object or else the token, every postLink
knob applies) and answers 303 to backLink (failures: failureBackLink, else backLink). A session
is submitted once (again: 409). With ``cardSave: true`` an approval saves a new card id under
``accountId``: ``GET /cards/{accountId}`` lists it beside the test cards, ``/payments/cards/auth``
with that ``accountId`` charges it (under another account: 471), and it answers as the test card
with the same number (``4400430000000194``: 3D on a 3DS terminal; ``...0202``: 484; any other
number: approved); deactivated, it is "no such card". ``sim.saved_cards`` holds them;
``local.epay_sim.payform_client.submit_payment`` plays a customer without a browser.

Terminals (one merchant, several terminals)
-------------------------------------------
One ``client_id``/``client_secret`` may run several terminals. The default (first) terminal is
``terminal_id`` (UUID, ``TEST_TERMINAL_ID``), ``terminal_code`` (8 digits, ``TEST_TERMINAL_CODE``)
and ``single_stage``, with 3-D Secure. ``terminals`` (constructor keyword, ``sim.terminals``,
``POST /_sim/config``, standalone ``--terminal UUID:CODE[:single-stage][:no-3ds]``) adds more:
a list of ``{"id": <uuid>, "code": <8 digits, a string>, "single_stage"?: false,
"three_ds"?: true}`` (or ``Terminal`` objects); ids and codes must differ from each other and
from the default terminal's, anything else is a ``ValueError`` (a 400 over HTTP; nothing
changes). ``TEST_TERMINAL2_ID``/``TEST_TERMINAL2_CODE`` name a second test terminal. Settings
(``terminals`` among them) outlive ``reset``; ``GET /_sim/terminals`` lists every terminal.

* A token may name any configured terminal (another: 400 ``unknown terminal``) and is bound to
  it; an auth's ``terminalId`` must be the token's (else code 2). The ledger entry keeps the
  terminal's UUID in ``terminal``.
* Each terminal has its own invoice space: "invoice used" and the ``unique_last6`` clash
  (code 3) look only at that terminal's transactions, so one invoice id may exist on two
  terminals. ``sim.ledger`` keys an entry by invoice id, or by ``<terminal uuid>/<invoice id>``
  when another terminal already holds that id; ``sim.ledger_entry(invoice, terminal_id)``
  finds either (default: the first terminal).
* ``single_stage`` is per terminal (the global setting is the default terminal's), and so is
  how an approved 3DS step ends (unless ``three_ds_final_status`` overrides it for all). A
  terminal with ``three_ds: false`` approves the 3-D Secure card without the step (AUTH, or
  CHARGE when single-stage; ``secure`` false), as a terminal set up without 3DS does.
* The status API looks the invoice up among the token's terminal's transactions (only on
  another terminal: resultCode 106); ``terminal`` and ``terminalID`` are the transaction's
  terminal's code and UUID. postLink's ``terminal`` names the transaction's terminal. charge,
  cancel and refund need a token of the transaction's terminal (else code 100); the card list's
  ``Terminal`` is the token's terminal.

Test cards (``CARDS``; the card id in ``cardId.id`` decides the outcome)
-----------------------------------------------------------------------
=========================================  =========================================
card id                                    outcome
=========================================  =========================================
``c0000000-0000-4000-8000-000000000001``   AUTH, money held (CHARGE on a single-stage terminal)
``c0000000-0000-4000-8000-000000000002``   CHARGE, money taken (single-stage answer)
``c0000000-0000-4000-8000-000000000003``   3D: ``secure3D {paReq, md, action=<base>/acs}``
                                           (as ...0001 on a terminal without 3DS)
``c0000000-0000-4000-8000-000000000004``   decline 484 insufficient funds
``c0000000-0000-4000-8000-000000000005``   decline 483 stolen card
``c0000000-0000-4000-8000-000000000006``   decline 478 expired card
``c0000000-0000-4000-8000-000000000007``   decline 455 3-D Secure failed
``c0000000-0000-4000-8000-000000000008``   decline 477 format error
``c0000000-0000-4000-8000-000000000009``   decline 493 issuer unavailable
``c0000000-0000-4000-8000-000000000010``   decline 471 no such card
any other id, or a deactivated card        decline 471 no such card
=========================================  =========================================

Declines answer HTTP 400 ``{"code": <code>, "message": "<text>"}``; the ledger keeps status REJECT
with ``reason_code``. A 3DS step ends at confirmPayment: approve -> ``three_ds_final_status``
(AUTH, or CHARGE when the terminal is single-stage), fail -> REJECT 455.

Shapes as ePay's records show them: the auth answer echoes ``accountId`` (not ``accountID``),
``amountBonus``, ``description``, ``email``, ``phone``, ``language``, ``invoiceIdAlt``; the status
transaction carries ``amount`` (what it stands at), ``orgAmount`` (what it was made for) and
``payoutAmount`` (what went back to the card), ``amountBonus``, ``data``, ``intReference``, the
terminal's 8-digit code in ``terminal`` beside the UUID in ``terminalID`` (``TEST_TERMINAL_CODE``),
``secure`` as a boolean and ``reasonCode`` as a string; tokens carry ``refresh_token: ""``;
postLink ``dateTime`` has fractional seconds and ``terminal`` is the code, the UUID or left out
(``postlink_terminal``: code | uuid | none; default code). ``GET /cards/{accountId}`` lists cards
with ``TransactionId``, ``Reference``, ``IntReference``, ``Token`` and ``CardMask`` like
``4400...0178``; an account id starting with ``unknown`` has none: 400
``{"code": 1373, "message": "Запись не найдена!"}``.

Request errors (HTTP 400 ``{"code", "message"}``, nothing committed unless said)
--------------------------------------------------------------------------------
* code 1 (``ERR_REQUEST``): malformed field: invoiceId not a string of 6-15 digits, amount not a
  JSON number / not > 0 / more than 2 decimals, currency, description over 125 UTF-8 bytes,
  paymentType != "cardId", cardId not an object with "id", name not Latin, phone not digits,
  language not rus/kaz/eng, Content-Type not application/json; also unknown MD / bad PaRes.
* code 2 (``ERR_TOKEN_BINDING``): invoiceId, amount, currency or terminalId differ from the
  token's binding, or the token was requested without invoiceID; confirmPayment with another token.
* code 3 (``ERR_INVOICE_USED``): the invoice already has a transaction (any status) on this
  terminal, or its last 6 digits clash with another invoice's of this terminal
  (``unique_last6``). A reuse increments the existing entry's ``auth_count`` so a client that
  re-sends an auth is caught (a correct client keeps 1); a last-6 clash does not.
* code 100 (``OPERATION_FAILED``): charge/cancel/refund/deactivate refused, body
  ``{"code": 100, "message": ""}``; the reason is in the ``X-Epay-Sim-Reason`` header.

Token errors: 400 ``{"error": "invalid_request"|"unsupported_grant_type", ...}``, bad credentials
401 ``{"error": "invalid_client"}``. API calls without a valid (known, unexpired) bearer token:
401 ``{"error": "invalid_token", ...}``. Tokens expire by the injected clock (``advance_clock``).
Status answers 200 with ``resultCode`` 100 (found), 102 (no such invoice), 104 (token without
terminal), 106 (the invoice is only on another terminal).

Operations: charge only from AUTH (partial allowed, not above the held amount, ``?amount=`` or
JSON ``{"amount"}``); cancel only from AUTH; refund only from CHARGE, at least 10, not above what
is left, partial refunds keep CHARGE until fully refunded (then REFUND); a repeated
``externalID`` is refused. The ledger entry lists every refund in ``refunds`` (``Refund``:
``amount``, ``external_id``, ``at``; ``to_dict``: ``[{"amount", "externalID", "at"}]``) beside
``refunded_amount`` and ``refund_external_ids``. The status transaction's ``amount`` is what it
stands at (0 after CANCEL or REFUND; captured minus refunded on CHARGE), ``orgAmount`` what it
was made for and ``payoutAmount`` the difference (orgAmount = amount + payoutAmount).

Faults: ``inject(op, fault, count=1, delay=None)``, op in ``OPS`` (token, auth, status, charge,
cancel, refund, cards, deactivate, confirm, acs, widget, payform, payform_pay, payform_3ds: each
honours every fault; "commit" is what the op does, e.g. a refund or a void), fault in ``FAULTS``:
``timeout_after_commit`` (commit, hold the connection ``delay`` s, default 30, then close without
answering), ``500_after_commit``, ``500_before_commit`` (500 ``{"message": "Internal error"}``),
``broken_body`` (commit, then 200 with truncated JSON), ``slow`` (sleep ``delay``, default 2 s, then
answer), ``down`` (close the connection without answering, nothing committed), ``in_progress``
(status only: resultCode 107, ask later), ``nonfinal_after_commit`` (commit, then answer 400 with a
code ePay does not document as final: ``nonfinal_code``, 454 by default, or 459 / 1267; the
transaction may well have gone through), ``nonfinal_before_commit`` (the same answer, nothing
committed) and ``error_as_200`` (a 4xx ``{code, message}`` answered with HTTP 200, as some ePay
errors come). The journal records ``status`` 0 when no answer was sent.

postLink: after each final outcome (auth, confirm or the payment page), a JSON notification
(epay-api.md section 6) goes from a daemon thread to the auth's postLink (or the token's), failures
to failurePostLink when set; only to loopback hosts (anything else is logged in ``sim.postlinks``
and not sent). Knobs: ``postlink_delay``, ``postlink_duplicates`` (extra copies), ``postlink_drop``.
Deliveries share kept-alive connections (``postlinks.ConnectionPool``; a connection the host
closes while idle is replaced and the notification sent once more on the new one).

Control endpoints (not journaled): ``GET /_sim/journal``, ``GET /_sim/ledger``,
``GET /_sim/postlinks``, ``GET /_sim/terminals``, ``GET /_sim/saved_cards``,
``GET|POST /_sim/faults`` (``{"op","fault","count","delay"}``), ``POST /_sim/reset``,
``POST /_sim/clock`` (``{"advance": seconds}``), ``POST /_sim/config`` (postlink_*, single_stage,
three_ds_final_status, expires_in, expires_in_as_string, terminal_code, postlink_terminal,
nonfinal_code, terminals, ...).

Modules (one ePay area each, over one shared ``SimState``)
---------------------------------------------------------
``simulator`` (``EpaySimulator``: composition, lifecycle, journal, test controls), ``state``
(settings, terminals, clock, lock, records), ``oauth`` (tokens, bearer check),
``card_payments`` (cards/auth, approve/reject, status API), ``validation`` (field and
auth-body rules), ``operations`` (charge/cancel/refund), ``acs`` (ACS page, PaRes,
confirmPayment, result page), ``saved_cards`` (card list, deactivate), ``payform`` and
``payform_pages`` (the payment page, its script and pages), ``payform_client`` (a customer
without a browser), ``postlinks`` (notifications), ``faults``, ``control`` (``/_sim/*``),
``wire`` (requests, answers, routing), ``server`` (HTTP plumbing), ``cards``, ``models``.
"""

from __future__ import annotations

from .cards import (
    CARD_3DS,
    CARD_3DS_FAILED,
    CARD_AUTH,
    CARD_CHARGE,
    CARD_EXPIRED,
    CARD_FORMAT_ERROR,
    CARD_INSUFFICIENT_FUNDS,
    CARD_ISSUER_UNAVAILABLE,
    CARD_NO_SUCH_CARD,
    CARD_STOLEN,
    CARDS,
    NO_RECORD_CODE,
    NONFINAL_MESSAGES,
    TEST_CLIENT_ID,
    TEST_CLIENT_SECRET,
    TEST_TERMINAL2_CODE,
    TEST_TERMINAL2_ID,
    TEST_TERMINAL_CODE,
    TEST_TERMINAL_ID,
    CardProfile,
)
from .models import FAULTS, OPS, Fault, JournalEntry, LedgerEntry, PostLinkDelivery, Refund
from .simulator import EpaySimulator
from .state import DEFAULT_SCOPE, Terminal
from .wire import ERR_INVOICE_USED, ERR_REQUEST, ERR_TOKEN_BINDING, OPERATION_FAILED

__all__ = [
    "CARDS",
    "CARD_3DS",
    "CARD_3DS_FAILED",
    "CARD_AUTH",
    "CARD_CHARGE",
    "CARD_EXPIRED",
    "CARD_FORMAT_ERROR",
    "CARD_INSUFFICIENT_FUNDS",
    "CARD_ISSUER_UNAVAILABLE",
    "CARD_NO_SUCH_CARD",
    "CARD_STOLEN",
    "DEFAULT_SCOPE",
    "ERR_INVOICE_USED",
    "ERR_REQUEST",
    "ERR_TOKEN_BINDING",
    "FAULTS",
    "NONFINAL_MESSAGES",
    "NO_RECORD_CODE",
    "OPERATION_FAILED",
    "OPS",
    "TEST_CLIENT_ID",
    "TEST_CLIENT_SECRET",
    "TEST_TERMINAL2_CODE",
    "TEST_TERMINAL2_ID",
    "TEST_TERMINAL_CODE",
    "TEST_TERMINAL_ID",
    "CardProfile",
    "EpaySimulator",
    "Fault",
    "JournalEntry",
    "LedgerEntry",
    "PostLinkDelivery",
    "Refund",
    "Terminal",
]
