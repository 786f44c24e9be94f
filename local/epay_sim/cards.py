"""The simulator's test cards: the card id chosen in an auth request decides its outcome."""

from __future__ import annotations

from dataclasses import dataclass

# Public sandbox merchant published by Halyk Bank (epay-api.md, "Hosts").
TEST_CLIENT_ID = "test"
TEST_CLIENT_SECRET = "yF587AV9Ms94qN2QShFzVR3vFnWkhjbAK3sG"
TEST_TERMINAL_ID = "67e34d63-102f-4bd1-898e-370781d0074d"
# The terminal's 8-digit code, as ePay's records show it beside the UUID (the status API gives
# both: "terminal" and "terminalID"; postLinks carry the code). Not published: one of this shape.
TEST_TERMINAL_CODE = "98120001"
# A second terminal of the same merchant for tests of several terminals (not a bank value): e.g.
# one without 3-D Secure for merchant-initiated charges. Configure it with ``terminals=[...]``.
TEST_TERMINAL2_ID = "3f1c7a52-9b4e-4d2a-8c6f-5e0b9d7a1c24"
TEST_TERMINAL2_CODE = "98120002"


@dataclass(frozen=True, slots=True)
class CardProfile:
    """How the simulated issuer answers for one saved card.

    ``outcome`` is ``"AUTH"`` (money held; ``CHARGE`` on a single-stage terminal), ``"CHARGE"``
    (money taken), ``"3D"`` (3-D Secure required) or ``"REJECT"`` (declined with ``code``).
    """

    outcome: str
    code: int
    message: str
    mask: str
    payer_name: str = "TEST CARDHOLDER"
    payment_available: bool = True
    listed: bool = True  # shown by GET /cards/{accountId}

    @property
    def list_mask(self) -> str:
        """The mask as the card list shows it: first four, dots, last four (``4400...0178``)."""
        return f"{self.mask[:4]}...{self.mask[-4:]}" if self.mask else ""


CARD_AUTH = "c0000000-0000-4000-8000-000000000001"
CARD_CHARGE = "c0000000-0000-4000-8000-000000000002"
CARD_3DS = "c0000000-0000-4000-8000-000000000003"
CARD_INSUFFICIENT_FUNDS = "c0000000-0000-4000-8000-000000000004"
CARD_STOLEN = "c0000000-0000-4000-8000-000000000005"
CARD_EXPIRED = "c0000000-0000-4000-8000-000000000006"
CARD_3DS_FAILED = "c0000000-0000-4000-8000-000000000007"
CARD_FORMAT_ERROR = "c0000000-0000-4000-8000-000000000008"
CARD_ISSUER_UNAVAILABLE = "c0000000-0000-4000-8000-000000000009"
CARD_NO_SUCH_CARD = "c0000000-0000-4000-8000-000000000010"

NO_SUCH_CARD_CODE = 471
# Error codes ePay does not document as final ("request the payment status"): the fault
# ``nonfinal_*`` answers one of them (``Settings.nonfinal_code``). 1267 is not in ePay's table.
NONFINAL_MESSAGES: dict[int, str] = {
    454: "Операция не удалась, проверьте, не заблокирована ли сумма на карте и повторите "
    "попытку позже",
    459: "Сервер не отвечает. Попробуйте попозже",
    1267: "Ошибка связи с карточной системой",  # noqa: RUF001 (ePay's own Russian text)
}
# GET /cards/{accountId} for an account without saved cards (ePay's "no record").
NO_RECORD_CODE = 1373
NO_RECORD_MESSAGE = "Запись не найдена!"
# Accounts whose id starts with this have no saved cards (the data chooses, as card ids do).
UNKNOWN_ACCOUNT_PREFIX = "unknown"

DECLINE_MESSAGES: dict[int, str] = {
    484: "Insufficient funds",
    483: "Stolen card, pick up",
    478: "Expired card",
    455: "3-D Secure authentication failed",
    477: "Format error",
    493: "Issuer or switch is inoperative",
    471: "No such card",
}

CARDS: dict[str, CardProfile] = {
    CARD_AUTH: CardProfile("AUTH", 0, "", "440043******0178"),
    CARD_CHARGE: CardProfile("CHARGE", 0, "", "440043******0186"),
    CARD_3DS: CardProfile("3D", 0, "", "440043******0194"),
    CARD_INSUFFICIENT_FUNDS: CardProfile("REJECT", 484, DECLINE_MESSAGES[484], "440043******0202"),
    CARD_STOLEN: CardProfile(
        "REJECT", 483, DECLINE_MESSAGES[483], "440043******0210", payment_available=False
    ),
    CARD_EXPIRED: CardProfile(
        "REJECT", 478, DECLINE_MESSAGES[478], "440043******0228", payment_available=False
    ),
    CARD_3DS_FAILED: CardProfile("REJECT", 455, DECLINE_MESSAGES[455], "440043******0236"),
    CARD_FORMAT_ERROR: CardProfile("REJECT", 477, DECLINE_MESSAGES[477], "440043******0244"),
    CARD_ISSUER_UNAVAILABLE: CardProfile("REJECT", 493, DECLINE_MESSAGES[493], "440043******0251"),
    CARD_NO_SUCH_CARD: CardProfile(
        "REJECT", 471, DECLINE_MESSAGES[471], "", payment_available=False, listed=False
    ),
}

# The issuer every simulated card comes from (postLinks and the status API say so).
ISSUER = "HALYK BANK"
# What the payment page fills in when the customer types no card number (the AUTH card's number).
DEFAULT_CARD_NUMBER = "4400430000000178"
_PROFILES_BY_MASK: dict[str, CardProfile] = {p.mask: p for p in CARDS.values() if p.mask}


def card_type(mask: str) -> str:
    """The scheme of a card by its first digits: VISA, MC, AMEX, or "" when unknown."""
    if mask.startswith("4"):
        return "VISA"
    if mask.startswith(("5", "2")):
        return "MC"
    if mask.startswith(("34", "37")):
        return "AMEX"
    return ""


def card_mask(number: str) -> str:
    """A card number as ePay masks it: the first 6 digits, ``******``, the last 4."""
    return f"{number[:6]}******{number[-4:]}"


def saved_profile(mask: str, payer_name: str) -> CardProfile:
    """How a card saved on the payment page answers later auths: as the test card with the same
    mask (e.g. ``4400430000000194`` asks for 3-D Secure), else approved like ``CARD_AUTH``."""
    like = _PROFILES_BY_MASK.get(mask, CARDS[CARD_AUTH])
    return CardProfile(
        like.outcome,
        like.code,
        like.message,
        mask,
        payer_name=payer_name,
        payment_available=like.payment_available,
    )
