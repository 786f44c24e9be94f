"""The state every area of the simulator shares: settings, clock, lock and the records."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

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
    PayformSession,
    PostLinkDelivery,
    SavedCard,
    ThreeDSStep,
    TokenGrant,
)

DEFAULT_SCOPE = "webapi usermanagement email_send verification statement statistics payment"
CONFIRM_RESPONSES = ("redirect", "json")
# How a postLink names the terminal: its 8-digit code (as ePay's records do), its UUID, or not.
POSTLINK_TERMINALS = ("code", "uuid", "none")
_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_CODE_RE = re.compile(r"^[0-9]{8}$")
_TERMINAL_KEYS = frozenset({"id", "code", "single_stage", "three_ds"})


@dataclass(frozen=True, slots=True)
class Terminal:
    """One ePay terminal of the merchant: its UUID, its 8-digit code and how the bank set it up.

    ``single_stage``: an approval is CHARGE at once (else AUTH, captured later). ``three_ds``:
    the 3-D Secure test card asks for 3DS; when False it is approved without the step.
    """

    id: str
    code: str
    single_stage: bool = False
    three_ds: bool = True

    def to_dict(self) -> dict[str, object]:
        """As ``POST /_sim/config`` takes it."""
        return {
            "id": self.id,
            "code": self.code,
            "single_stage": self.single_stage,
            "three_ds": self.three_ds,
        }


type TerminalSpec = Terminal | Mapping[str, object]


def _checked_terminal(spec: object, index: int) -> Terminal:
    """One terminal of ``terminals`` (a ``Terminal`` or a mapping); else raise ValueError."""
    if isinstance(spec, Terminal):
        spec = spec.to_dict()
    where = f"terminals[{index}]"
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where} must be an object {{id, code, single_stage?, three_ds?}}")
    unknown = sorted(str(k) for k in set(spec) - _TERMINAL_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown keys {', '.join(unknown)}")
    terminal_id, code = spec.get("id"), spec.get("code")
    if not isinstance(terminal_id, str) or not _UUID_RE.match(terminal_id):
        raise ValueError(f"{where}.id must be a terminal UUID")
    if not isinstance(code, str) or not _CODE_RE.match(code):
        raise ValueError(f"{where}.code must be a string of 8 digits")
    single_stage = spec.get("single_stage", False)
    three_ds = spec.get("three_ds", True)
    if not isinstance(single_stage, bool) or not isinstance(three_ds, bool):
        raise ValueError(f"{where}: single_stage and three_ds must be booleans")
    return Terminal(terminal_id, code, single_stage, three_ds)


def checked_terminals(
    value: object, default_id: str = "", default_code: str = ""
) -> tuple[Terminal, ...]:
    """``value`` as the extra terminals (a list of ``Terminal`` or ``{id, code, single_stage?,
    three_ds?}``) with ids and codes distinct from each other and from the default terminal's;
    else raise ValueError."""
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise ValueError("terminals must be a list of {id, code, single_stage?, three_ds?}")
    terminals = tuple(_checked_terminal(spec, i) for i, spec in enumerate(value))
    ids = [default_id.lower(), *(t.id.lower() for t in terminals)]
    codes = [default_code, *(t.code for t in terminals)]
    if len(set(ids)) != len(ids):
        raise ValueError("terminals: every terminal id must differ (from terminal_id too)")
    if len(set(codes)) != len(codes):
        raise ValueError("terminals: every terminal code must differ (from terminal_code too)")
    return terminals


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
    # Extra terminals of the same merchant; the first (default) terminal is terminal_id,
    # terminal_code and single_stage (with 3-D Secure).
    terminals: tuple[Terminal, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        self.three_ds_final_status = checked_final_status(self.three_ds_final_status)
        if self.confirm_response not in CONFIRM_RESPONSES:
            raise ValueError("confirm_response must be 'redirect' or 'json'")
        checked_postlink_terminal(self.postlink_terminal)
        checked_nonfinal_code(self.nonfinal_code)
        self.terminals = self.checked_terminals(self.terminals)

    def checked_terminals(self, value: object) -> tuple[Terminal, ...]:
        """``value`` as extra terminals of this merchant (see ``checked_terminals``)."""
        return checked_terminals(value, self.terminal_id, self.terminal_code)

    def default_terminal(self) -> Terminal:
        """The first terminal, as the ``terminal_*`` and ``single_stage`` settings describe it."""
        return Terminal(self.terminal_id, self.terminal_code, self.single_stage, three_ds=True)

    def all_terminals(self) -> tuple[Terminal, ...]:
        """Every terminal of the merchant, the default one first."""
        return (self.default_terminal(), *self.terminals)

    def terminal(self, terminal_id: str | None) -> Terminal | None:
        """The configured terminal with this UUID (None: no such terminal)."""
        if terminal_id is None:
            return None
        for terminal in self.all_terminals():
            if terminal.id == terminal_id:
                return terminal
        return None

    def terminal_code_of(self, terminal_id: str) -> str:
        """The 8-digit code of a terminal ("" when it is no longer configured)."""
        terminal = self.terminal(terminal_id)
        return terminal.code if terminal is not None else ""

    def postlink_terminal_name(self, terminal_id: str | None = None) -> str | None:
        """A terminal (default: the first) as postLinks name it (None: left out)."""
        terminal_id = self.terminal_id if terminal_id is None else terminal_id
        if self.postlink_terminal == "uuid":
            return terminal_id
        if self.postlink_terminal == "code":
            return self.terminal_code_of(terminal_id)
        return None

    def nonfinal(self) -> tuple[int, str]:
        """The non-final error the ``nonfinal_*`` faults answer: (code, message)."""
        return self.nonfinal_code, NONFINAL_MESSAGES[self.nonfinal_code]

    def is_single_stage(self, terminal_id: str | None = None) -> bool:
        """Whether a terminal (default: the first) charges at once."""
        terminal = self.terminal(self.terminal_id if terminal_id is None else terminal_id)
        return terminal.single_stage if terminal is not None else self.single_stage

    def final_three_ds_status(self, terminal_id: str | None = None) -> str:
        """What an approved 3DS step ends as on a terminal (default: the first): the override,
        else CHARGE on a single-stage terminal."""
        if self.three_ds_final_status is not None:
            return self.three_ds_final_status
        return "CHARGE" if self.is_single_stage(terminal_id) else "AUTH"

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
        self.links: dict[str, NotifyLinks] = {}  # by transaction id
        self.deactivated: set[str] = set()
        self.saved_cards: dict[str, SavedCard] = {}  # by card id (payment-page cards)
        self.payforms: dict[str, PayformSession] = {}  # by session id
        self._clock_offset = 0.0
        # Lookups into the ledger, kept by record(): a scan per auth, status or operation grew
        # with every transaction of a long `make run` session. A ledger changed behind record()'s
        # back (an entry put in or taken out directly) is noticed by its size and reindexed.
        self._indexed = 0
        self._by_invoice: dict[tuple[str | None, str], LedgerEntry] = {}  # (terminal, invoice)
        self._by_tail: dict[tuple[str | None, str], LedgerEntry] = {}  # (terminal, last 6)
        self._by_transaction: dict[str, LedgerEntry] = {}
        self._invoices: set[str] = set()  # on any terminal

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
            self._by_invoice.clear()
            self._by_tail.clear()
            self._by_transaction.clear()
            self._invoices.clear()
            self._indexed = 0
            self.postlinks.clear()
            self.faults.clear()
            self.tokens.clear()
            self.three_ds.clear()
            self.links.clear()
            self.deactivated.clear()
            self.saved_cards.clear()
            self.payforms.clear()

    def entry(self, invoice_id: str, terminal_id: str | None) -> LedgerEntry | None:
        """The ledger entry of an invoice on one terminal (invoices are unique per terminal)."""
        with self.lock:
            self._check_index()
            return self._by_invoice.get((terminal_id, invoice_id))

    def has_invoice(self, invoice_id: str) -> bool:
        """Whether any terminal has a transaction for this invoice."""
        with self.lock:
            self._check_index()
            return invoice_id in self._invoices

    def record(self, entry: LedgerEntry) -> str:
        """Add a new entry to the ledger; returns its key: the invoice id, or
        ``<terminal uuid>/<invoice id>`` when another terminal already holds that invoice id."""
        with self.lock:
            key = entry.invoice_id
            if key in self.ledger:
                key = f"{entry.terminal}/{entry.invoice_id}"
            self._check_index()
            self.ledger[key] = entry
            self._index(entry)
        return key

    def _index(self, entry: LedgerEntry) -> None:
        # setdefault: the oldest entry wins, as the scans these replace found it first.
        self._by_invoice.setdefault((entry.terminal, entry.invoice_id), entry)
        self._by_tail.setdefault((entry.terminal, entry.invoice_id[-6:]), entry)
        self._by_transaction.setdefault(entry.transaction_id, entry)
        self._invoices.add(entry.invoice_id)
        self._indexed += 1

    def _check_index(self) -> None:
        # Under the lock. Rebuilds the lookups when the ledger's size says it changed directly.
        if self._indexed == len(self.ledger):
            return
        self._by_invoice.clear()
        self._by_tail.clear()
        self._by_transaction.clear()
        self._invoices.clear()
        self._indexed = 0
        for entry in self.ledger.values():
            self._index(entry)

    def invoice_clash(self, invoice_id: str, terminal_id: str) -> str | None:
        """Why a new transaction for this invoice on this terminal is refused (each terminal has
        its own invoice space): the invoice, or its last 6 digits (``unique_last6``), is taken."""
        with self.lock:
            if self.entry(invoice_id, terminal_id) is not None:
                return "invoiceId already used"
            if self.settings.unique_last6:  # entry() above checked the index
                other = self._by_tail.get((terminal_id, invoice_id[-6:]))
                if other is not None:
                    return f"the last 6 digits of invoiceId clash with invoice {other.invoice_id}"
        return None

    def entry_by_transaction(self, transaction_id: str) -> LedgerEntry | None:
        """The ledger entry with this ePay transaction id."""
        with self.lock:
            self._check_index()
            return self._by_transaction.get(transaction_id)
