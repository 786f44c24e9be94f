"""3-D Secure use cases: the customer's redirect page and the ACS's return to TermUrl.

Flow (epay-api.md section 3): the charge's resource carries `nextAction.url` (the page, with a
single-use token); the page auto-posts PaReq/MD/TermUrl to ePay's `secure3D.action`; the ACS posts
PaRes/MD back to TermUrl; we forward them to ePay's confirm endpoint once, then ask the status API
and settle through `ChargeSettler.settle` — the same state machine as every other signal.

No events, no HTML, no boto3 or urllib3 here: only the models, the ports and the charge service.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import unquote_plus, urlencode, urlsplit, urlunsplit

from payments.charges.model import (
    CHECK_LADDER,
    Charge,
    ChargeError,
    ChargeStatus,
    Source,
    is_charge_id,
)
from payments.charges.page_tokens import PageTokens
from payments.charges.transitions import Change, ChargeTransitions
from payments.errors import GatewayError, NotFoundError, StaleStateError, ValidationError
from payments.shared.clock import utc_now

if TYPE_CHECKING:
    from payments.charges.links import PublicLinks
    from payments.charges.payment_gateway import PaymentGateway
    from payments.charges.ports import ChargeStore, Telemetry
    from payments.charges.settlement import ChargeSettler
    from payments.shared.deadline import Deadline

S = ChargeStatus
# A host that may appear in a CSP source and a form action as it is (no quotes, spaces, `;`, `,`).
SAFE_NETLOC_RE = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
MAX_ACTION_LENGTH = 2048
SUCCESS = frozenset({S.AUTHORIZED, S.CAPTURED, S.PARTIALLY_REFUNDED, S.REFUNDED})
FAILURE = frozenset({S.DECLINED, S.EXPIRED, S.FAILED, S.CANCELLED})
ACS_UNUSABLE = ChargeError(
    code="3ds_unavailable",
    message="the issuer's 3-D Secure page cannot be opened safely",
    category="authentication",
)


class MdMismatchError(ValidationError):
    """The ACS's MD is not the one ePay gave for this charge: nothing changes."""

    code = "md_mismatch"


@dataclass(frozen=True)
class AutoSubmit:
    """The form the customer's browser posts to the issuer's ACS."""

    charge_id: str
    action: str
    action_origin: str
    pa_req: str
    md: str
    term_url: str
    language: str


@dataclass(frozen=True)
class Finish:
    """Where the 3DS step ended: a redirect to the merchant's link, or a plain result page."""

    charge: Charge
    redirect: str | None


def outcome_kind(status: ChargeStatus) -> str:
    """`success`, `failure` or `pending`: which link and which words the customer gets."""
    if status in SUCCESS:
        return "success"
    if status in FAILURE:
        return "failure"
    return "pending"


def with_query(url: str, **params: str) -> str:
    """`url` with `params` set in its query (replacing same-named ones, keeping the others).

    The merchant's own parameters are kept byte for byte (not decoded and encoded again, which
    would change escapes such as `%FF` or `+`); ours are appended percent-encoded.
    """
    parts = urlsplit(url)
    kept = [
        pair
        for pair in parts.query.split("&")
        if pair and unquote_plus(pair.partition("=")[0]) not in params
    ]
    return urlunsplit(parts._replace(query="&".join([*kept, urlencode(params)])))


class PageLinks:
    """The customer-facing URLs of a charge's 3DS step: its page (with the token) and TermUrl."""

    def __init__(self, tokens: PageTokens, links: PublicLinks) -> None:
        self._tokens = tokens
        self._links = links

    @property
    def base_origin(self) -> str:
        """scheme://host[:port] of PUBLIC_BASE_URL."""
        return self._links.base_origin

    def term_url(self, charge_id: str) -> str:
        """Where the ACS posts PaRes/MD."""
        return self._links.term_url(charge_id)

    def page_url(self, charge: Charge) -> str | None:
        """`nextAction.url` of a REQUIRES_3DS charge (its token recomputed), else None."""
        three_ds = charge.three_ds
        if charge.status is not S.REQUIRES_3DS or three_ds is None or not three_ds.page_nonce:
            return None
        return self._links.page_url(charge.id, self._tokens.token(charge.id, three_ds.page_nonce))


class ThreeDSService:
    """Serve the redirect page once, take the ACS's return once, settle by the status API."""

    def __init__(
        self,
        *,
        store: ChargeStore,
        gateway: PaymentGateway,
        settler: ChargeSettler,
        transitions: ChargeTransitions,
        telemetry: Telemetry,
        links: PageLinks,
        allow_loopback_acs: bool = False,
        clock: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], None] = time.sleep,
        double_submit_wait: float = 5.0,
    ) -> None:
        self._store = store
        self._gateway = gateway
        self._settler = settler
        self._tx = transitions
        self._telemetry = telemetry
        self._links = links
        self._allow_loopback = allow_loopback_acs
        self._clock = clock
        self._sleep = sleep
        self._wait = double_submit_wait

    # --- the redirect page ---------------------------------------------------------------

    def open_page(
        self, charge_id: str, token: str | None, deadline: Deadline
    ) -> AutoSubmit | Finish:
        """The auto-submit form for a valid, unused, unexpired token (which it uses up).

        A wrong, missing or used token is NotFoundError (the same answer as no such charge). An
        expired one ends the charge EXPIRED; an ACS address that is not https (loopback http only
        where allowed) ends it DECLINED; both answer the outcome instead of the form.
        """
        charge = self._charge_with_3ds(charge_id)
        three_ds = charge.three_ds
        assert three_ds is not None
        if not PageTokens.matches(token, three_ds.page_token_digest):
            raise NotFoundError("not found")
        if three_ds.page_served_at is not None:
            raise NotFoundError("not found")  # used
        if charge.status is not S.REQUIRES_3DS:
            return self.finish(charge)  # settled before the customer came: show where it ended
        self._telemetry.bind_charge(charge)
        now = self._clock()
        if now >= three_ds.token_expires_at:
            return self.finish(self._expire(charge, deadline))
        origin = self._action_origin(three_ds.action)
        if origin is None:
            ended = self._settler.end_3ds(
                charge, S.DECLINED, "ACS address refused", Source.THREEDS_PAGE, ACS_UNUSABLE
            )
            return self.finish(ended)
        served = Change(Source.THREEDS_PAGE, three_ds=replace(three_ds, page_served_at=now))
        try:
            self._tx.apply(charge, served)
        except StaleStateError as exc:
            # Another request served it first, or another path moved the charge: single use.
            raise NotFoundError("not found") from exc
        return AutoSubmit(
            charge_id=charge.id,
            action=three_ds.action,
            action_origin=origin,
            pa_req=three_ds.pa_req,
            md=three_ds.md,
            term_url=self._links.term_url(charge.id),
            language=charge.language,
        )

    def _expire(self, charge: Charge, deadline: Deadline) -> Charge:
        """The status API first (it is the authority); still waiting for 3DS -> EXPIRED."""
        # If ePay cannot answer: the customer never got the ACS form, so nothing can have been
        # authorised; the reconciler checks again and a contradiction would go to NEEDS_REVIEW.
        charge = self._settler.settle_or_report(charge, Source.THREEDS_PAGE, deadline)
        return self._settler.end_3ds(
            charge, S.EXPIRED, "3-D Secure page expired", Source.THREEDS_PAGE
        )

    def _action_origin(self, action: str) -> str | None:
        """scheme://netloc of a usable ACS address, or None."""
        if len(action) > MAX_ACTION_LENGTH or any(ord(c) < 0x21 or c == "\x7f" for c in action):
            return None
        try:
            parts = urlsplit(action)
            host = parts.hostname
        except ValueError:
            return None
        if not host or parts.username or parts.password:
            return None
        if not SAFE_NETLOC_RE.fullmatch(parts.netloc):
            return None
        if parts.scheme == "https":
            return f"https://{parts.netloc}"
        if parts.scheme == "http" and self._allow_loopback and host in LOOPBACK_HOSTS:
            return f"http://{parts.netloc}"
        return None

    # --- TermUrl -------------------------------------------------------------------------

    def complete(self, charge_id: str, pa_res: str, md: str, deadline: Deadline) -> Finish:
        """Take the ACS's PaRes/MD: confirm at ePay once, then settle from the status API.

        MD must be the stored one (constant-time) or MdMismatchError and nothing changes. A
        charge settled first (postLink, reconciler, an earlier return) is shown as it is; a second
        post of a return being handled waits briefly for the first and never calls ePay again.
        """
        charge = self._charge_with_3ds(charge_id)
        three_ds = charge.three_ds
        assert three_ds is not None
        if not three_ds.md_matches(md):
            raise MdMismatchError("the 3-D Secure answer does not belong to this charge")
        self._telemetry.bind_charge(charge)
        claimed = self._claim_return(charge, deadline)
        if claimed is None:
            return self.finish(self._store.get(charge_id) or charge)
        charge = claimed
        try:
            self._gateway.confirm_3ds(three_ds.access_token, pa_res, md, deadline)
        except GatewayError as exc:
            # Refused, unreachable or ambiguous: the status API below says what happened.
            self._telemetry.gateway_failure(charge, exc)
        # If the status API is down, the charge stays REQUIRES_3DS for the reconciler.
        return self.finish(self._settler.settle_or_report(charge, Source.THREEDS_RETURN, deadline))

    def _claim_return(self, charge: Charge, deadline: Deadline) -> Charge | None:
        """Record that the return arrived (conditional write): the winner alone calls ePay.

        None when there is nothing to confirm: the charge is settled, or another request holds
        the return (then after waiting briefly for its outcome).
        """
        for _attempt in range(3):
            three_ds = charge.three_ds
            assert three_ds is not None
            if charge.status is not S.REQUIRES_3DS:
                return None
            if three_ds.returned_at is not None:
                self._await_first(charge, deadline)
                return None
            now = self._clock()
            claim = Change(
                Source.THREEDS_RETURN,
                three_ds=replace(three_ds, returned_at=now),
                # Should we die after the confirm, the reconciler looks soon, not after expiry.
                next_check_at=now + CHECK_LADDER[0],
            )
            try:
                return self._tx.apply(charge, claim)
            except StaleStateError:
                charge = self._tx.latest(charge)
        return None

    def _await_first(self, charge: Charge, deadline: Deadline) -> Charge:
        """A return is being handled by another request: wait (briefly) for its outcome."""
        until = min(self._wait, max(0.0, deadline.remaining() - 1.0))
        waited = 0.0
        step = 0.2
        while charge.status is S.REQUIRES_3DS and waited < until:
            self._sleep(step)
            waited += step
            charge = self._store.get(charge.id) or charge
        return charge

    # --- shared --------------------------------------------------------------------------

    def finish(self, charge: Charge) -> Finish:
        """Where to send the customer: `backLink` on success or while pending, `failureBackLink`
        (else `backLink`) on failure, each with `chargeId` and `status`; None: a result page."""
        kind = outcome_kind(charge.status)
        payer = self._store.payer(charge)  # kept with the invoice: one read, here only
        link = payer.back_link
        if kind == "failure":
            link = payer.failure_back_link or payer.back_link
        if not link:
            return Finish(charge, None)
        return Finish(charge, with_query(link, chargeId=charge.id, status=charge.status.value))

    def _charge_with_3ds(self, charge_id: str) -> Charge:
        charge = self._store.get(charge_id) if is_charge_id(charge_id) else None
        if charge is None or charge.three_ds is None:
            raise NotFoundError("not found")
        return charge
