"""The charge use cases wired to one set of ports: the writer, the settler and the service.

bootstrap builds them on the real adapters; tests and the chaos scenario on fakes or the
simulator. Wiring them in one place keeps every caller on the same state machine.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from payments.charges.invoices import InvoiceAllocator
from payments.charges.links import PublicLinks
from payments.charges.payment_gateway import PaymentGateway
from payments.charges.ports import CardRules, ChargeStore, Telemetry
from payments.charges.service import ChargeService
from payments.charges.settlement import ChargeSettler
from payments.charges.transitions import ChargeTransitions
from payments.charges.voids import ChargeVoids
from payments.shared.clock import utc_now


@dataclass(frozen=True)
class ChargeUseCases:
    """One writer, one settler, the service and voids, sharing a store, a gateway and a clock."""

    transitions: ChargeTransitions
    settler: ChargeSettler
    service: ChargeService
    voids: ChargeVoids

    @classmethod
    def build(
        cls,
        *,
        store: ChargeStore,
        gateway: PaymentGateway,
        telemetry: Telemetry,
        links: PublicLinks,
        allocator: InvoiceAllocator,
        clock: Callable[[], datetime] = utc_now,
        page_token: Callable[[str], tuple[str, str]] | None = None,
        new_secret: Callable[[], str] = lambda: secrets.token_urlsafe(32),
        cards: CardRules | None = None,
    ) -> ChargeUseCases:
        """Wire the three on the given ports."""
        transitions = ChargeTransitions(store=store, telemetry=telemetry, clock=clock)
        settler = ChargeSettler(
            store=store, gateway=gateway, transitions=transitions, telemetry=telemetry
        )
        service = ChargeService(
            store=store,
            gateway=gateway,
            settler=settler,
            transitions=transitions,
            telemetry=telemetry,
            links=links,
            allocator=allocator,
            clock=clock,
            new_secret=new_secret,
            page_token=page_token,
            cards=cards,
        )
        voids = ChargeVoids(store=store, gateway=gateway, transitions=transitions, settler=settler)
        return cls(transitions, settler, service, voids)
