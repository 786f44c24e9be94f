"""Operations on a transaction: ``POST /operation/{id}/charge|cancel|refund``."""

from __future__ import annotations

from decimal import Decimal

from .models import LedgerEntry, Refund
from .oauth import OAuth
from .state import SimState
from .validation import decimal_from, is_money
from .wire import Request, Response, json_response, op_failed, unauthorized

MIN_REFUND = Decimal(10)


def _arg(req: Request, name: str) -> object:
    """An operation argument: from the query, else a JSON body, else a form body."""
    if name in req.query:
        return req.query[name]
    if isinstance(req.json, dict):
        return req.json.get(name)
    if req.form is not None:
        return req.form.get(name)
    return None


def _amount(req: Request) -> Decimal | Response | None:
    """The optional ``amount`` argument; a refusal when it is not money."""
    raw = _arg(req, "amount")
    if raw in (None, ""):
        return None
    amount = decimal_from(raw)
    if amount is None or not is_money(amount):
        return op_failed("invalid amount")
    return amount


class Operations:
    """Capture, void and refund, with ePay's rules on which status allows which."""

    def __init__(self, state: SimState, oauth: OAuth) -> None:
        self._state = state
        self._oauth = oauth

    def charge(self, req: Request) -> Response:
        """Capture a held AUTH, wholly or partly (not above the held amount)."""
        entry = self._entry(req)
        if isinstance(entry, Response):
            return entry
        amount = _amount(req)
        if isinstance(amount, Response):
            return amount
        with self._state.lock:
            if entry.status_name != "AUTH":
                return op_failed(f"charge needs AUTH, transaction is {entry.status_name}")
            capture = entry.amount if amount is None else amount
            if capture > entry.amount:
                return op_failed("amount exceeds the held amount")
            entry.status_name = "CHARGE"
            entry.captured_amount = capture
            entry.history.append(f"charge: CHARGE {capture} of {entry.amount}")
        return json_response(200, {})

    def cancel(self, req: Request) -> Response:
        """Void a held AUTH."""
        entry = self._entry(req)
        if isinstance(entry, Response):
            return entry
        with self._state.lock:
            if entry.status_name != "AUTH":
                return op_failed(f"cancel needs AUTH, transaction is {entry.status_name}")
            entry.status_name = "CANCEL"
            entry.history.append("cancel: CANCEL")
        return json_response(200, {})

    def refund(self, req: Request) -> Response:
        """Refund a CHARGE: at least ``MIN_REFUND``, partial keeps CHARGE, full makes REFUND."""
        entry = self._entry(req)
        if isinstance(entry, Response):
            return entry
        amount = _amount(req)
        if isinstance(amount, Response):
            return amount
        external = _arg(req, "externalID")
        external_id = str(external) if external not in (None, "") else ""
        with self._state.lock:
            refused = _refund_refusal(entry, amount, external_id)
            if refused is not None:
                return refused
            refund = entry.captured_amount - entry.refunded_amount if amount is None else amount
            entry.refunded_amount += refund
            entry.refunds.append(Refund(refund, external_id, self._state.now()))
            if entry.refunded_amount == entry.captured_amount:
                entry.status_name = "REFUND"
            entry.history.append(
                f"refund: {refund} (total {entry.refunded_amount}) -> {entry.status_name}"
                + (f" externalID={external_id}" if external_id else "")
            )
        return json_response(200, {})

    def _entry(self, req: Request) -> LedgerEntry | Response:
        """The transaction of ``{id}`` if the bearer's terminal owns it; else the refusal
        (a token of another terminal of the same merchant may not touch it)."""
        grant = self._oauth.bearer(req)
        if grant is None:
            return unauthorized()
        entry = self._state.entry_by_transaction(req.params["id"])
        if entry is None:
            return op_failed("unknown transaction id")
        if grant.terminal is None or grant.terminal != entry.terminal:
            return op_failed("the token's terminal does not own this transaction")
        return entry


def _refund_refusal(
    entry: LedgerEntry, amount: Decimal | None, external_id: str
) -> Response | None:
    """Why ePay refuses this refund, or None."""
    if entry.status_name != "CHARGE":
        return op_failed(f"refund needs CHARGE, transaction is {entry.status_name}")
    if external_id and external_id in entry.refund_external_ids:
        return op_failed(f"externalID {external_id} already refunded")
    remaining = entry.captured_amount - entry.refunded_amount
    refund = remaining if amount is None else amount
    if refund < MIN_REFUND:
        return op_failed(f"refund below the minimum of {MIN_REFUND}")
    if refund > remaining:
        return op_failed("refund exceeds the charged amount not yet refunded")
    return None
