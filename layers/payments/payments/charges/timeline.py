"""A charge's timeline (`GET /charges/{chargeId}/history`): what moved it, and the postLinks
ePay sent for its invoice with what became of each.

Read only: the charge (strongly consistent), its history items (one Query of its partition) and
its invoice's notifications (one Query of the invoice's inbox partition; never a Scan). The inbox
keeps no secret_hash, so a timeline cannot show one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from payments.errors import NotFoundError

if TYPE_CHECKING:
    from payments.charges.inbox_records import Inbox, InboxEntry
    from payments.charges.model import Charge, HistoryEntry
    from payments.charges.ports import ChargeHistory


@dataclass(frozen=True)
class Timeline:
    """A charge, its transitions oldest first, and its invoice's postLinks oldest first."""

    charge: Charge
    history: list[HistoryEntry]
    postlinks: list[InboxEntry]


class ChargeTimeline:
    """Reads a charge's timeline."""

    def __init__(self, *, charges: ChargeHistory, inbox: Inbox) -> None:
        self._charges = charges
        self._inbox = inbox

    def of(self, charge_id: str) -> Timeline:
        """The timeline of a charge; NotFoundError when there is no such charge."""
        charge = self._charges.get(charge_id)
        if charge is None:
            raise NotFoundError("no such charge")
        return Timeline(
            charge=charge,
            history=self._charges.history(charge_id),
            postlinks=self._inbox.for_invoice(charge.invoice_id),
        )
