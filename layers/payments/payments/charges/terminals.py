"""Our ePay terminal's two names: the UUID of the credentials and the 8-digit code of ePay's
records.

ePay's own records (and so its postLinks) may carry the code (`"terminal": "98458031"`) where the
credentials know only the UUID. The status API names both at once (`terminal` beside
`terminalID`), so the code is learned from it and kept per terminal, written once.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from payments.charges.payment_gateway import TransactionStatus

_CODE_RE = re.compile(r"[0-9]{8}")


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
    """Knows our terminal's code: learned from status answers, kept in the directory, cached
    per container (a known code is never written again)."""

    def __init__(self, directory: TerminalDirectory, terminal_id: Callable[[], str]) -> None:
        self._directory = directory
        self._terminal_id = terminal_id
        self._known: dict[str, str] = {}
        self._lock = threading.Lock()

    def names(self) -> TerminalNames:
        """Our terminal's UUID, and its code if learned (read once it is)."""
        terminal_id = self._terminal_id()
        with self._lock:
            code = self._known.get(terminal_id)
        if code is None:
            code = self._directory.terminal_code(terminal_id)
            if code is not None:
                with self._lock:
                    self._known[terminal_id] = code
        return TerminalNames(terminal_id, code)

    def learn(self, transaction: TransactionStatus | None) -> str | None:
        """Keep the code a status answer gives beside our terminal's UUID; the code known."""
        terminal_id = self._terminal_id()
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
