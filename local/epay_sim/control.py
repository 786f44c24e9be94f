"""Test controls over HTTP (``/_sim/*``), for tests that run the simulator in another process."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .state import (
    SimState,
    checked_final_status,
    checked_nonfinal_code,
    checked_postlink_terminal,
)
from .validation import decimal_from
from .wire import Response, json_response

# Settings that ``POST /_sim/config`` may change, with the type each value is converted to
# (``three_ds_final_status`` and ``terminals`` are handled apart: validated, None allowed for the
# first; the second is checked against the default terminal).
SETTABLE: dict[str, Callable[[Any], object]] = {
    "postlink_delay": float,
    "postlink_duplicates": int,
    "postlink_drop": bool,
    "single_stage": bool,
    "expires_in": int,
    "expires_in_as_string": bool,
    "reason_code_as_string": bool,
    "unique_last6": bool,
    "terminal_code": str,
    "postlink_terminal": checked_postlink_terminal,
    "nonfinal_code": checked_nonfinal_code,
}

_OK: dict[str, Any] = {"ok": True}


def _bad(message: str) -> Response:
    return json_response(400, {"error": message})


def _json_object(body: bytes) -> dict[str, Any] | Response:
    """The body as a JSON object (empty: ``{}``), or the 400 answer."""
    try:
        data = json.loads(body.decode("utf-8")) if body.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        return _bad("body must be JSON")
    if not isinstance(data, dict):
        return _bad("body must be a JSON object")
    return data


class Controls:
    """Read the journal, ledger, postLinks and faults; arm faults, reset, move time, configure."""

    def __init__(self, state: SimState) -> None:
        self._state = state
        self._views: dict[str, Callable[[], object]] = {
            "/_sim/journal": lambda: [entry.to_dict() for entry in state.journal],
            "/_sim/ledger": lambda: {k: v.to_dict() for k, v in state.ledger.items()},
            "/_sim/postlinks": lambda: [d.to_dict() for d in state.postlinks],
            "/_sim/faults": lambda: [vars(f) for f in state.faults.armed()],
            "/_sim/terminals": lambda: [t.to_dict() for t in state.settings.all_terminals()],
            "/_sim/saved_cards": lambda: [c.to_dict() for c in state.saved_cards.values()],
        }
        self._actions: dict[str, Callable[[dict[str, Any]], Response]] = {
            "/_sim/faults": self._inject,
            "/_sim/reset": self._reset,
            "/_sim/clock": self._advance_clock,
            "/_sim/config": self._configure,
        }

    def handle(self, method: str, path: str, body: bytes) -> Response:
        """Answer one control request; never journaled."""
        data = _json_object(body)
        if isinstance(data, Response):
            return data
        path = path.rstrip("/")
        if method == "GET" and path in self._views:
            with self._state.lock:
                return json_response(200, self._views[path]())
        if method == "POST" and path in self._actions:
            return self._actions[path](data)
        return json_response(404, {"error": "unknown control endpoint"})

    def _inject(self, data: dict[str, Any]) -> Response:
        """``{"op", "fault", "count", "delay"}``, as ``EpaySimulator.inject``."""
        try:
            delay = data.get("delay")
            self._state.faults.arm(
                str(data.get("op")),
                str(data.get("fault")),
                int(data.get("count", 1)),
                None if delay is None else float(delay),
            )
        except (TypeError, ValueError) as exc:
            return _bad(str(exc))
        return json_response(200, _OK)

    def _reset(self, _data: dict[str, Any]) -> Response:
        self._state.reset()
        return json_response(200, _OK)

    def _advance_clock(self, data: dict[str, Any]) -> Response:
        """``{"advance": seconds}``; answers the simulator's new time."""
        seconds = decimal_from(data.get("advance", 0))
        if seconds is None:
            return _bad("advance must be a number of seconds")
        self._state.advance_clock(float(seconds))
        return json_response(200, {"now": self._state.now()})

    def _configure(self, data: dict[str, Any]) -> Response:
        """Change settings (``SETTABLE``, ``three_ds_final_status``, ``terminals``); unknown keys
        are a 400, and so are bad terminals (then nothing changes)."""
        unknown = sorted(set(data) - set(SETTABLE) - {"three_ds_final_status", "terminals"})
        if unknown:
            return _bad(f"not settable: {', '.join(unknown)}")
        settings = self._state.settings
        try:
            terminals = (
                settings.checked_terminals(data["terminals"]) if "terminals" in data else None
            )
            if "three_ds_final_status" in data:
                settings.three_ds_final_status = checked_final_status(data["three_ds_final_status"])
            for key, kind in SETTABLE.items():
                if key in data:
                    setattr(settings, key, kind(data[key]))
            if terminals is not None:
                settings.terminals = terminals
        except (TypeError, ValueError) as exc:
            return _bad(str(exc))
        return json_response(200, _OK)
