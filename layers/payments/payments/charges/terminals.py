"""Our ePay terminals: what each is for, how a charge picks one, and each one's two names.

A merchant may run several terminals under one client (epay-api.md; the credentials secret lists
them). Each serves purposes: `cit` (customer-present charges), `mit` (merchant-initiated,
recurring charges and renewals), `setup` (saving a card). A charge is routed to a terminal of its
purpose, spread by weight; the charge records it, and every later call about the charge uses it.

A terminal has two names: the UUID of the credentials and the 8-digit code of ePay's records.
ePay's own records (and so its postLinks) may carry the code (`"terminal": "98458031"`) where the
credentials know only the UUID. The status API names both at once (`terminal` beside
`terminalID`), so the code is learned from it and kept per terminal, written once.
"""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # the gateway port names Terminal: only the type goes the other way
    from payments.charges.payment_gateway import TransactionStatus

_CODE_RE = re.compile(r"[0-9]{8}")


class Purpose(StrEnum):
    """What a terminal is used for."""

    CIT = "cit"  # customer-initiated: the customer is present (3-D Secure may be asked)
    MIT = "mit"  # merchant-initiated: recurring charges and subscription renewals
    SETUP = "setup"  # saving a card through ePay's payment page


@dataclass(frozen=True)
class Terminal:
    """One ePay terminal of the merchant: its UUID, what it serves, its share of the traffic."""

    id: str
    purposes: frozenset[Purpose]
    weight: int = 1


def charge_purpose(recurrent: bool) -> Purpose:
    """A charge's purpose: merchant-initiated when recurrent, customer-initiated otherwise."""
    return Purpose.MIT if recurrent else Purpose.CIT


def route(
    terminals: Sequence[Terminal], purpose: Purpose, rand: Callable[[], float] = random.random
) -> list[Terminal]:
    """The terminals serving `purpose`, in the order to try them: a weighted draw without
    replacement, so traffic spreads by weight and a full terminal falls through to the next."""
    pool = [t for t in terminals if purpose in t.purposes]
    order: list[Terminal] = []
    while pool:
        point = rand() * sum(t.weight for t in pool)
        for index, terminal in enumerate(pool):
            point -= terminal.weight
            if point < 0 or index == len(pool) - 1:
                order.append(pool.pop(index))
                break
    return order


def resolve(terminal_id: str, terminals: Sequence[Terminal]) -> str:
    """The terminal a charge used: its own, or for a charge stored before charges recorded one
    (empty), the first terminal of the credentials."""
    return terminal_id or terminals[0].id


class TerminalDirectory(Protocol):
    """Where a terminal's code is kept once learned (one small item per terminal)."""

    def terminal_code(self, terminal_id: str) -> str | None:
        """The code kept for the terminal, or None while none is known."""
        ...

    def remember_terminal_code(self, terminal_id: str, code: str) -> str:
        """Keep `code` unless a code is kept already (a conditional write); the code kept."""
        ...


def _norm(name: str) -> str:
    return name.strip().lower()


def looks_like_code(name: str) -> bool:
    """Whether `name` has the shape of a terminal code (8 digits) rather than a UUID."""
    return bool(_CODE_RE.fullmatch(name.strip()))


@dataclass(frozen=True)
class TerminalNames:
    """The names our terminal is known by: its UUID, and its code once learned."""

    terminal_id: str
    code: str | None = None

    def named(self, offered: str) -> bool:
        """Whether `offered` is one of our terminal's names (any case)."""
        names = {_norm(self.terminal_id)} | ({_norm(self.code)} if self.code else set())
        return _norm(offered) in names

    def to_confirm(self, offered: str | None) -> bool:
        """Whether `offered` may be our code, not learned yet: only the status API can tell."""
        return (
            offered is not None
            and self.code is None
            and not self.named(offered)
            and looks_like_code(offered)
        )


class TerminalCodes:
    """Knows our terminals' codes: learned from status answers, kept in the directory, cached
    per container (a known code is never written again)."""

    def __init__(
        self, directory: TerminalDirectory, terminals: Callable[[], Sequence[Terminal]]
    ) -> None:
        self._directory = directory
        self._terminals = terminals
        self._known: dict[str, str] = {}
        self._lock = threading.Lock()

    def names(self, charge_terminal: str) -> TerminalNames:
        """The UUID of a charge's terminal, and its code if learned (read once it is)."""
        terminal_id = resolve(charge_terminal, self._terminals())
        with self._lock:
            code = self._known.get(terminal_id)
        if code is None:
            code = self._directory.terminal_code(terminal_id)
            if code is not None:
                with self._lock:
                    self._known[terminal_id] = code
        return TerminalNames(terminal_id, code)

    def learn(self, transaction: TransactionStatus | None, charge_terminal: str) -> str | None:
        """Keep the code a status answer gives beside the UUID of the charge's terminal; the
        code known."""
        terminal_id = resolve(charge_terminal, self._terminals())
        with self._lock:
            known = self._known.get(terminal_id)
        if known is not None or transaction is None:
            return known
        code, named = transaction.terminal_code, transaction.terminal_id
        if not code or named is None or _norm(named) != _norm(terminal_id):
            return None
        kept = self._directory.remember_terminal_code(terminal_id, code.strip())
        with self._lock:
            self._known[terminal_id] = kept
        return kept
