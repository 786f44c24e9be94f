"""The state every area of the simulator shares: settings, clock, lock and the records."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from .cards import (
    NONFINAL_MESSAGES,
    TEST_CLIENT_ID,
    TEST_CLIENT_SECRET,
    TEST_TERMINAL_CODE,
    TEST_TERMINAL_ID,
)
from .faults import FaultBook
from .models import (
    JournalEntry,
    LedgerEntry,
    NotifyLinks,
    PostLinkDelivery,
    ThreeDSStep,
    TokenGrant,
)

DEFAULT_SCOPE = "webapi usermanagement email_send verification statement statistics payment"
CONFIRM_RESPONSES = ("redirect", "json")
# How a postLink names the terminal: its 8-digit code (as ePay's records do), its UUID, or not.
POSTLINK_TERMINALS = ("code", "uuid", "none")


def checked_final_status(value: object) -> str | None:
    """``value`` if it is a valid ``three_ds_final_status`` (None, AUTH or CHARGE); else raise."""
    if value is None:
        return None
    if value in ("AUTH", "CHARGE"):
        return str(value)
    raise ValueError("three_ds_final_status must be None, 'AUTH' or 'CHARGE'")


def checked_postlink_terminal(value: object) -> str:
    """``value`` if it is a valid ``postlink_terminal`` (code, uuid or none); else raise."""
    if value not in POSTLINK_TERMINALS:
        raise ValueError(f"postlink_terminal must be one of {POSTLINK_TERMINALS}")
    return str(value)


def checked_nonfinal_code(value: object) -> int:
    """``value`` if it is a code of ``NONFINAL_MESSAGES``; else raise."""
    if value not in NONFINAL_MESSAGES:
        raise ValueError(f"nonfinal_code must be one of {sorted(NONFINAL_MESSAGES)}")
    return int(str(value))


@dataclass
class Settings:
    """How this ePay behaves; tests and ``POST /_sim/config`` may change it while it serves."""

    client_id: str = TEST_CLIENT_ID
    client_secret: str = TEST_CLIENT_SECRET
    terminal_id: str = TEST_TERMINAL_ID
    expires_in: int = 1200
    expires_in_as_string: bool = False
    single_stage: bool = False
    three_ds_final_status: str | None = None  # None: follow single_stage
    confirm_response: str = "redirect"
    reason_code_as_string: bool = False
    unique_last6: bool = True
    default_scope: str = DEFAULT_SCOPE
    postlink_delay: float = 0.0
    postlink_duplicates: int = 0
    postlink_drop: bool = False
    terminal_code: str = TEST_TERMINAL_CODE
    postlink_terminal: str = "code"
    nonfinal_code: int = 454

    def __post_init__(self) -> None:
        self.three_ds_final_status = checked_final_status(self.three_ds_final_status)
        if self.confirm_response not in CONFIRM_RESPONSES:
            raise ValueError("confirm_response must be 'redirect' or 'json'")
        checked_postlink_terminal(self.postlink_terminal)
        checked_nonfinal_code(self.nonfinal_code)

    def postlink_terminal_name(self) -> str | None:
        """The terminal as postLinks name it (None: left out)."""
        return {"code": self.terminal_code, "uuid": self.terminal_id}.get(self.postlink_terminal)

    def nonfinal(self) -> tuple[int, str]:
        """The non-final error the ``nonfinal_*`` faults answer: (code, message)."""
        return self.nonfinal_code, NONFINAL_MESSAGES[self.nonfinal_code]

    def final_three_ds_status(self) -> str:
        """What an approved 3DS step ends as: the override, else CHARGE on single-stage."""
        if self.three_ds_final_status is not None:
            return self.three_ds_final_status
        return "CHARGE" if self.single_stage else "AUTH"

    def reason_code(self, code: int) -> int | str:
        """A reason code as this ePay writes it (a number, or a string when so configured)."""
        return str(code) if self.reason_code_as_string else code


class SimState:
    """Settings, clock, one lock and every record, shared by the areas (guard writes with lock)."""

    def __init__(self, settings: Settings, clock: Callable[[], float]) -> None:
        self.settings = settings
        self.clock = clock
        self.lock = threading.RLock()
        self.postlink_sent = threading.Condition(self.lock)
        self.stopping = threading.Event()  # set on stop: held connections and waits end early
        self.base_url = ""  # set while serving
        self.faults = FaultBook(self.lock)
        self.journal: list[JournalEntry] = []
        self.ledger: dict[str, LedgerEntry] = {}
        self.postlinks: list[PostLinkDelivery] = []
        self.tokens: dict[str, TokenGrant] = {}
        self.three_ds: dict[str, ThreeDSStep] = {}  # by MD
        self.links: dict[str, NotifyLinks] = {}  # by invoice id
        self.deactivated: set[str] = set()
        self._clock_offset = 0.0

    def now(self) -> float:
        """The simulator's time: the injected clock plus any ``advance_clock`` offset."""
        return self.clock() + self._clock_offset

    def advance_clock(self, seconds: float) -> None:
        """Move the simulator's time forward."""
        with self.lock:
            self._clock_offset += seconds

    def reset(self) -> None:
        """Forget every record and armed fault (settings and clock stay)."""
        with self.lock:
            self.journal.clear()
            self.ledger.clear()
            self.postlinks.clear()
            self.faults.clear()
            self.tokens.clear()
            self.three_ds.clear()
            self.links.clear()
            self.deactivated.clear()

    def entry_by_transaction(self, transaction_id: str) -> LedgerEntry | None:
        """The ledger entry with this ePay transaction id."""
        with self.lock:
            for entry in self.ledger.values():
                if entry.transaction_id == transaction_id:
                    return entry
        return None
