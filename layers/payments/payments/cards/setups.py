"""Card setups: a customer saves a card on ePay's payment page, once per idempotency key.

create   writes the setup (an invoice of a `setup` terminal) before anything reaches ePay;
page     the customer's single-use page obtains ePay's token for the invoice and hands it to
         ePay's widget with `cardSave: true` (a zero-amount verification, or a first payment);
settle   payments.cards.settlement (a postLink or the reconciler, through the status API).

The setup's `secret_hash` is never stored: it is an HMAC of the setup's page nonce under the page
key (derived from the ePay client secret), recomputed when the page asks ePay for the token; the
setup keeps only its digest, which verifies the postLink as for charges.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from payments.cards.model import (
    SETUP_CHECK_LADDER,
    SETUP_TTL,
    CardSetup,
    SetupMode,
    SetupStatus,
)
from payments.charges.model import (
    secret_hash_digest,
)
from payments.charges.payment_gateway import (
    GatewayStatus,
    InvoiceTokenRequest,
)
from payments.charges.terminals import Purpose, Terminal, resolve, route
from payments.errors import (
    ConfigurationError,
    ConflictError,
    DuplicateKeyError,
    IdempotencyInFlightError,
    InvoiceSpaceExhaustedError,
    NotFoundError,
    PaymentsError,
    StaleStateError,
)
from payments.shared.clock import utc_now
from payments.shared.idempotency import IdempotencyRecord, create_once, fingerprint

if TYPE_CHECKING:
    from payments.cards.ports import CardGateway, SetupStore
    from payments.cards.requests import SetupRequest
    from payments.charges.invoices import InvoiceAllocator
    from payments.charges.links import PublicLinks
    from payments.shared.deadline import Deadline

G = GatewayStatus
# What ends a verification well (ePay shows VERIFIED; a terminal that verifies by a hold may
# show AUTH or CHARGE of 0), and what says a first payment exists at ePay.
_VERIFIED = frozenset({G.VERIFIED, G.AUTH, G.CHARGE})
_PAID = frozenset({G.AUTH, G.CHARGE, G.CANCEL, G.CANCEL_OLD, G.REFUND})
_REFUSED = frozenset({G.REJECT, G.FAILED, G.CANCEL, G.CANCEL_OLD, G.REFUND})


class PageTokens(Protocol):
    """Single-use page tokens (payments.charges.page_tokens.PageTokens)."""

    def token(self, charge_id: str, nonce: str) -> str:
        """The token of a resource, recomputed from its nonce."""
        ...

    def issue(self, charge_id: str) -> tuple[str, str]:
        """A fresh (nonce, digest) pair."""
        ...

    @staticmethod
    def matches(presented: str | None, stored_digest: str | None) -> bool:
        """True when `presented` is the token whose digest is stored."""
        ...


@dataclass(frozen=True)
class CreatedSetup:
    """The setup a create request produced, and whether it was a replay."""

    setup: CardSetup
    replayed: bool


@dataclass(frozen=True)
class WidgetPage:
    """What the customer's page hands to ePay's widget: the script and the payment object."""

    script_url: str
    payment_object: Mapping[str, Any] = field(repr=False)  # holds ePay's access token
    language: str
    leave_url: str  # where a customer without JavaScript goes back to


def setup_terminal(terminals: tuple[Terminal, ...], rand: Callable[[], float]) -> list[Terminal]:
    """The terminals that may take a card setup, in the order to try: those serving `setup`,
    else those serving customer-initiated charges."""
    return route(terminals, Purpose.SETUP, rand) or route(terminals, Purpose.CIT, rand)


class CardSetups:
    """Creates card setups, serves their page, and settles them from ePay's status API."""

    def __init__(
        self,
        *,
        store: SetupStore,
        gateway: CardGateway,
        allocator: InvoiceAllocator,
        links: PublicLinks,
        tokens: PageTokens,
        widget_url: str,
        clock: Callable[[], datetime] = utc_now,
        rand: Callable[[], float] = random.random,
        new_id: Callable[[], str] = lambda: "cs_" + secrets.token_hex(16),
    ) -> None:
        self._store = store
        self._gateway = gateway
        self._allocator = allocator
        self._links = links
        self._tokens = tokens
        self._widget_url = widget_url
        self._clock = clock
        self._rand = rand
        self._new_id = new_id

    # --- create and read ------------------------------------------------------------------

    def create(self, request: SetupRequest, key: str) -> CreatedSetup:
        """Write a setup once per idempotency key (nothing is sent to ePay yet)."""
        request_hash = fingerprint(request.fingerprint_fields())
        once = create_once(
            key,
            request_hash,
            lookup=self._store.get_idempotency,
            create=lambda: self._insert(request, key, request_hash),
            replay=self._replay,
        )
        return CreatedSetup(once.value, once.replayed)

    def _replay(self, record: IdempotencyRecord) -> CardSetup:
        setup = self._store.get(record.resource_id)
        if setup is None:
            raise IdempotencyInFlightError("a request with this Idempotency-Key is being processed")
        return setup

    def _insert(self, request: SetupRequest, key: str, request_hash: str) -> CardSetup | None:
        order = setup_terminal(self._gateway.terminals(), self._rand)
        if not order:
            raise ConfigurationError("no ePay terminal serves card setups")
        problem: PaymentsError | None = None
        for terminal in order:

            def write(invoice_id: str, terminal_id: str = terminal.id) -> CardSetup:
                return self._write(request, key, request_hash, terminal_id, invoice_id)

            try:
                return self._allocator.allocate(terminal.id, write)
            except InvoiceSpaceExhaustedError as exc:
                problem = problem or exc
            except DuplicateKeyError as exc:
                if exc.which == "idempotency":
                    return None
                raise ConflictError("no free invoice id was found; retry") from exc
        assert problem is not None
        raise problem

    def _write(
        self, request: SetupRequest, key: str, request_hash: str, terminal_id: str, invoice_id: str
    ) -> CardSetup:
        now = self._clock()
        setup_id = self._new_id()
        nonce, digest = self._tokens.issue(setup_id)
        setup = CardSetup(
            id=setup_id,
            account_id=request.account_id,
            mode=request.mode,
            amount=request.amount,
            currency=request.currency,
            invoice_id=invoice_id,
            terminal_id=terminal_id,
            status=SetupStatus.PENDING,
            back_link=request.back_link,
            failure_back_link=request.failure_back_link,
            language=request.language,
            description=request.description,
            idempotency_key=key,
            request_hash=request_hash,
            secret_hash_digest=secret_hash_digest(self._secret_hash(setup_id, nonce)),
            page_nonce=nonce,
            page_token_digest=digest,
            created_at=now,
            updated_at=now,
            expires_at=now + SETUP_TTL,
            # Nothing can exist at ePay before the page is opened: the first look is at expiry.
            next_check_at=now + SETUP_TTL,
        )
        self._store.create(setup)
        return setup

    def get(self, setup_id: str) -> CardSetup:
        """The stored setup, or NotFoundError."""
        setup = self._store.get(setup_id)
        if setup is None:
            raise NotFoundError("no such card setup")
        return setup

    def page_url(self, setup: CardSetup) -> str | None:
        """The customer's page while it can still be opened (once, before expiry)."""
        if not setup.open or setup.page_served_at is not None:
            return None
        return self._links.setup_page_url(setup.id, self._tokens.token(setup.id, setup.page_nonce))

    def _secret_hash(self, setup_id: str, nonce: str) -> str:
        return self._tokens.token(setup_id, nonce + "#secret_hash")

    # --- the customer's page --------------------------------------------------------------

    def open_page(self, setup_id: str, token: str | None, deadline: Deadline) -> WidgetPage:
        """The widget's payment object, once per page token; NotFoundError for a wrong, used or
        expired token, or a setup that is over (the same answer for each, revealing nothing)."""
        setup = self._store.get(setup_id)
        now = self._clock()
        if (
            setup is None
            or not setup.open
            or setup.page_served_at is not None
            or now >= setup.expires_at
            or not self._tokens.matches(token, setup.page_token_digest)
        ):
            raise NotFoundError("no such page")
        # The token first: should ePay fail, the page is not used up and the customer may retry.
        epay_token = self._gateway.invoice_token(
            InvoiceTokenRequest(
                invoice_id=setup.invoice_id,
                amount=setup.amount,
                currency=setup.currency,
                post_link=self._links.post_link,
                failure_post_link=self._links.failure_post_link,
                secret_hash=self._secret_hash(setup.id, setup.page_nonce),
                terminal_id=setup.terminal_id,
            ),
            deadline,
        )
        served = replace(
            setup,
            page_served_at=now,
            updated_at=now,
            next_check_at=now + SETUP_CHECK_LADDER[0],
            check_attempts=0,
        )
        try:
            self._store.save(setup, served)
        except StaleStateError as exc:
            raise NotFoundError("no such page") from exc
        auth = dict(epay_token.raw) or {"access_token": epay_token.access_token}
        return WidgetPage(
            script_url=self._widget_url,
            payment_object=self._payment_object(setup, auth),
            language=setup.language,
            leave_url=setup.failure_back_link or setup.back_link,
        )

    def _payment_object(self, setup: CardSetup, auth: Mapping[str, object]) -> dict[str, Any]:
        """ePay's payment object (epay-api.md section 9), saving the card."""
        payment: dict[str, Any] = {
            "invoiceId": setup.invoice_id,
            "backLink": setup.back_link,
            "failureBackLink": setup.failure_back_link or setup.back_link,
            "postLink": self._links.post_link,
            "failurePostLink": self._links.failure_post_link,
            "language": setup.language,
            "description": setup.description,
            "accountId": setup.account_id,
            "terminal": resolve(setup.terminal_id, self._gateway.terminals()),
            "amount": setup.amount,
            "currency": setup.currency,
            "cardSave": True,
            "auth": auth,
        }
        if setup.mode is SetupMode.VERIFY:
            payment["paymentType"] = "cardVerification"
        return payment
