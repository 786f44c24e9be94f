"""Cards of successful charges are remembered once; a container reads each card once."""

from __future__ import annotations

from dataclasses import dataclass, field

from payments.cards.model import Card
from payments.cards.service import CardService
from payments.charges.model import ChargeStatus, EpayRef
from tests.fakes import TEST_NOW, make_charge

CARD = "c0000000-0000-4000-8000-000000000009"


@dataclass
class RecordingCards:
    """The card store's reads and adds, over a dict."""

    cards: dict[str, Card] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def get(self, card_id: str) -> Card | None:
        self.calls.append("get")
        return self.cards.get(card_id)

    def add(self, card: Card) -> bool:
        self.calls.append("add")
        if card.id in self.cards:
            return False
        self.cards[card.id] = card
        return True


def service(cards: RecordingCards) -> CardService:
    def no_gateway() -> object:
        raise AssertionError("remembering a card never calls ePay")

    return CardService(cards=cards, gateway=no_gateway, clock=lambda: TEST_NOW)  # type: ignore[arg-type]


def test_an_unseen_card_is_remembered_once_and_then_never_read_again() -> None:
    # Given a card the service never saw, paid with twice (two status changes of a charge)
    cards = RecordingCards()
    cards_service = service(cards)
    authorized = make_charge(
        status=ChargeStatus.AUTHORIZED, card_id=CARD, epay=EpayRef("tx", None, None, "4400****0009")
    )
    captured = make_charge(status=ChargeStatus.CAPTURED, card_id=CARD)
    # When the changes are seen / Then the card is read and added once, then known
    remembered = cards_service.remember(authorized)
    assert remembered is not None
    assert (remembered.id, remembered.account_id, remembered.mask) == (
        CARD,
        authorized.account_id,
        "4400****0009",
    )
    assert cards_service.remember(captured) is None
    assert cards.calls == ["get", "add"]


def test_a_known_card_is_read_once_a_container() -> None:
    # Given a card the store holds / When three charges paid with it succeed
    cards = RecordingCards()
    cards_service = service(cards)
    first = make_charge(status=ChargeStatus.CAPTURED, card_id=CARD)
    assert cards_service.remember(first) is not None
    again = service(cards)  # another container
    # Then it is read once there, and never added again
    for n in range(3):
        assert (
            again.remember(make_charge(id=f"ch_{n}", status=ChargeStatus.CAPTURED, card_id=CARD))
            is None
        )
    assert cards.calls == ["get", "add", "get"]


def test_a_failed_charge_remembers_nothing_and_reads_nothing() -> None:
    cards = RecordingCards()
    assert service(cards).remember(make_charge(status=ChargeStatus.DECLINED, card_id=CARD)) is None
    assert cards.calls == []
