"""``EpaySimulator``: composes ePay's areas over one shared state and serves them on loopback.

See the package docstring (``local/epay_sim/__init__.py``) for the card table, error codes,
faults and control endpoints. No module of this package imports the project's ``payments`` layer.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from typing import Self, overload

from .acs import ThreeDSecure
from .card_payments import CardPayments
from .cards import TEST_CLIENT_ID, TEST_CLIENT_SECRET, TEST_TERMINAL_CODE, TEST_TERMINAL_ID
from .control import Controls
from .faults import answer_through
from .models import Fault, JournalEntry, LedgerEntry, PostLinkDelivery, SavedCard
from .oauth import OAuth
from .operations import Operations
from .payform import PaymentForm
from .postlinks import PostLinks
from .saved_cards import SavedCards
from .server import Server
from .state import (
    DEFAULT_SCOPE,
    Settings,
    SimState,
    Terminal,
    TerminalSpec,
    checked_final_status,
    checked_terminals,
)
from .wire import ERR_REQUEST, Request, Response, internal_error, is_loopback_url, json_response

type _Route = Callable[[Request], Response]


class _Setting[T]:
    """An ``EpaySimulator`` attribute stored in its ``Settings``, where every area reads it."""

    def __set_name__(self, owner: type[object], name: str) -> None:
        self._name = name

    @overload
    def __get__(self, sim: None, owner: type[object]) -> Self: ...
    @overload
    def __get__(self, sim: EpaySimulator, owner: type[object] | None = None) -> T: ...
    def __get__(self, sim: EpaySimulator | None, owner: type[object] | None = None) -> T | Self:
        if sim is None:
            return self
        value: T = getattr(sim.settings, self._name)
        return value

    def __set__(self, sim: EpaySimulator, value: T) -> None:
        setattr(sim.settings, self._name, value)


class EpaySimulator:
    """A faithful loopback ePay: token, auth, 3DS (ACS + confirmPayment), status, operations.

    Thread-safe; every request is journaled and every money movement is kept in ``ledger``.
    One merchant (``client_id``/``client_secret``) with a default terminal (``terminal_id``,
    ``terminal_code``, ``single_stage``) and any ``terminals`` more, each with its own invoices.
    """

    # Settings as attributes: tests flip them between requests and every area sees the change.
    client_id = _Setting[str]()
    client_secret = _Setting[str]()
    terminal_id = _Setting[str]()
    expires_in = _Setting[int]()
    expires_in_as_string = _Setting[bool]()
    single_stage = _Setting[bool]()
    confirm_response = _Setting[str]()
    reason_code_as_string = _Setting[bool]()
    unique_last6 = _Setting[bool]()
    default_scope = _Setting[str]()
    postlink_delay = _Setting[float]()
    postlink_duplicates = _Setting[int]()
    postlink_drop = _Setting[bool]()
    terminal_code = _Setting[str]()
    postlink_terminal = _Setting[str]()
    nonfinal_code = _Setting[int]()

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
        *,
        client_id: str = TEST_CLIENT_ID,
        client_secret: str = TEST_CLIENT_SECRET,
        terminal_id: str = TEST_TERMINAL_ID,
        expires_in: int = 1200,
        expires_in_as_string: bool = False,
        single_stage: bool = False,
        three_ds_final_status: str | None = None,
        confirm_response: str = "redirect",
        reason_code_as_string: bool = False,
        unique_last6: bool = True,
        default_scope: str = DEFAULT_SCOPE,
        postlink_delay: float = 0.0,
        postlink_duplicates: int = 0,
        postlink_drop: bool = False,
        terminal_code: str = TEST_TERMINAL_CODE,
        postlink_terminal: str = "code",
        nonfinal_code: int = 454,
        terminals: Iterable[TerminalSpec] = (),
    ) -> None:
        if not is_loopback_url(f"http://{host}/"):
            raise ValueError(f"the simulator only listens on loopback, not {host!r}")
        extra_terminals = checked_terminals(terminals, terminal_id, terminal_code)
        self.settings = Settings(
            client_id=client_id,
            client_secret=client_secret,
            terminal_id=terminal_id,
            expires_in=expires_in,
            expires_in_as_string=expires_in_as_string,
            single_stage=single_stage,
            three_ds_final_status=three_ds_final_status,
            confirm_response=confirm_response,
            reason_code_as_string=reason_code_as_string,
            unique_last6=unique_last6,
            default_scope=default_scope,
            postlink_delay=postlink_delay,
            postlink_duplicates=postlink_duplicates,
            postlink_drop=postlink_drop,
            terminal_code=terminal_code,
            postlink_terminal=postlink_terminal,
            nonfinal_code=nonfinal_code,
            terminals=extra_terminals,
        )
        self.host = host
        self.port = port
        self._state = SimState(self.settings, clock)
        self._postlinks = PostLinks(self._state)
        self._controls = Controls(self._state)
        self._routes, self._result_page = self._compose()
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    def _compose(self) -> tuple[dict[str, _Route], _Route]:
        """The areas over the shared state: a handler per op, and the 3DS result page."""
        state = self._state
        oauth = OAuth(state)
        payments = CardPayments(state, oauth, self._postlinks)
        operations = Operations(state, oauth)
        cards = SavedCards(state, oauth)
        three_ds = ThreeDSecure(state, oauth, self._postlinks)
        payform = PaymentForm(state, oauth, self._postlinks)
        routes: dict[str, _Route] = {
            "token": oauth.token,
            "auth": payments.auth,
            "status": payments.status,
            "charge": operations.charge,
            "cancel": operations.cancel,
            "refund": operations.refund,
            "cards": cards.list_cards,
            "deactivate": cards.deactivate,
            "confirm": three_ds.confirm,
            "acs": three_ds.acs,
            "widget": payform.script,
            "payform": payform.page,
            "payform_pay": payform.pay,
            "payform_3ds": payform.issuer,
        }
        return routes, three_ds.result_page

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> EpaySimulator:
        """Bind and serve in a daemon thread; returns self."""
        if self._server is not None:
            return self
        self._state.stopping.clear()
        self._server = Server((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self._state.base_url = self.base_url
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"epay-sim:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, release held connections and close every open socket."""
        server = self._server
        if server is None:
            return
        self._state.stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        self._postlinks.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> EpaySimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ addresses and state

    @property
    def base_url(self) -> str:
        """``http://host:port`` while serving."""
        if self._server is None:
            raise RuntimeError("the simulator is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def oauth_url(self) -> str:
        """Where to ask for tokens (``EPAY_OAUTH_URL``)."""
        return f"{self.base_url}/oauth2/token"

    @property
    def api_url(self) -> str:
        """The REST API base (``EPAY_API_URL``)."""
        return self.base_url

    @property
    def acs_url(self) -> str:
        """The issuer's 3DS page (``secure3D.action``)."""
        return f"{self.base_url}/acs"

    @property
    def widget_url(self) -> str:
        """The widget script (ePay's ``payform/payment-api.js``) defining ``halyk.pay``."""
        return f"{self.base_url}/payform/payment-api.js"

    @property
    def payform_url(self) -> str:
        """The payment page that ``halyk.pay`` POSTs the payment object to."""
        return f"{self.base_url}/payform/"

    @property
    def clock(self) -> Callable[[], float]:
        """The injected clock (``now`` adds any ``advance_clock`` offset)."""
        return self._state.clock

    @clock.setter
    def clock(self, clock: Callable[[], float]) -> None:
        self._state.clock = clock

    @property
    def three_ds_final_status(self) -> str:
        """What an approved 3DS step ends as: AUTH, or CHARGE (default: CHARGE if single-stage)."""
        return self.settings.final_three_ds_status()

    @three_ds_final_status.setter
    def three_ds_final_status(self, value: str | None) -> None:
        self.settings.three_ds_final_status = checked_final_status(value)

    @property
    def terminals(self) -> tuple[Terminal, ...]:
        """The extra terminals (the default one is ``terminal_id``/``terminal_code``)."""
        return self.settings.terminals

    @terminals.setter
    def terminals(self, value: Iterable[TerminalSpec]) -> None:
        self.settings.terminals = self.settings.checked_terminals(value)

    def all_terminals(self) -> tuple[Terminal, ...]:
        """Every terminal of the merchant, the default one first."""
        return self.settings.all_terminals()

    @property
    def journal(self) -> list[JournalEntry]:
        """Every request received, in order (control endpoints excluded)."""
        return self._state.journal

    @property
    def ledger(self) -> dict[str, LedgerEntry]:
        """What really happened, by invoice id. Each terminal has its own invoices: a transaction
        whose invoice id another terminal holds already is keyed ``<terminal uuid>/<invoice id>``
        (``ledger_entry`` finds either)."""
        return self._state.ledger

    def ledger_entry(self, invoice_id: str, terminal_id: str | None = None) -> LedgerEntry | None:
        """The ledger entry of an invoice on a terminal (default: the first terminal)."""
        return self._state.entry(invoice_id, terminal_id or self.terminal_id)

    def record(self, entry: LedgerEntry) -> str:
        """Put a transaction in the ledger as if ePay had made it (seeding tests and benchmarks);
        returns its ledger key. Lookups (status, operations, invoice reuse) find it at once."""
        return self._state.record(entry)

    @property
    def saved_cards(self) -> dict[str, SavedCard]:
        """Cards saved on the payment page (``cardSave``), by card id; deactivated ones stay
        here (``GET /cards`` leaves them out)."""
        return self._state.saved_cards

    @property
    def postlinks(self) -> list[PostLinkDelivery]:
        """Every postLink notification sent (or refused)."""
        return self._state.postlinks

    # ------------------------------------------------------------------ test controls

    def now(self) -> float:
        """The simulator's time: the injected clock plus any ``advance_clock`` offset."""
        return self._state.now()

    def advance_clock(self, seconds: float) -> None:
        """Move the simulator's time forward (tokens expire by it)."""
        self._state.advance_clock(seconds)

    def inject(self, op: str, fault: str, count: int = 1, delay: float | None = None) -> None:
        """Arm ``fault`` for the next ``count`` requests of ``op``.

        ``delay`` defaults to 30 s for ``timeout_after_commit``, 2 s for ``slow``, else 0.
        """
        self._state.faults.arm(op, fault, count, delay)

    def faults(self) -> list[Fault]:
        """Faults still armed."""
        return self._state.faults.armed()

    def reset(self) -> None:
        """Forget journal, ledger, faults, tokens, 3DS steps, deactivations, postLinks, payment
        page sessions and the cards saved there.

        Settings stay, the configured ``terminals`` among them.
        """
        self._state.reset()

    def requests(self, op: str) -> list[JournalEntry]:
        """Journal entries of one op, in order."""
        with self._state.lock:
            return [entry for entry in self._state.journal if entry.op == op]

    def wait_for_postlinks(self, count: int, timeout: float = 5.0) -> list[PostLinkDelivery]:
        """Wait until ``count`` postLink deliveries are recorded (or timeout); return them all."""
        return self._postlinks.wait_for(count, timeout)

    def entry_by_transaction(self, transaction_id: str) -> LedgerEntry | None:
        """The ledger entry with this ePay transaction id."""
        return self._state.entry_by_transaction(transaction_id)

    # ------------------------------------------------------------------ serving

    def handle(self, req: Request) -> Response | None:
        """Journal one ePay request and answer it through any armed fault (None: no answer)."""
        entry = self._record(req)
        fault = self._state.faults.take(req.op)
        response = answer_through(
            fault,
            entry,
            lambda: self._answer(req),
            self._state.stopping.wait,
            self.settings.nonfinal(),
        )
        if response is not None:
            entry.status = response.status
        return response

    def control(self, method: str, path: str, body: bytes) -> Response:
        """Out-of-process test controls (``/_sim/*``); never journaled."""
        return self._controls.handle(method, path, body)

    def dispatch(self, req: Request) -> Response:
        """Answer one ePay request (no faults applied here)."""
        if not req.method_allowed:
            return json_response(405, {"code": ERR_REQUEST, "message": "method not allowed"})
        handler = self._routes.get(req.op)
        if handler is not None:
            return handler(req)
        if req.method == "GET" and req.path.rstrip("/") == "/3ds/result":
            return self._result_page(req)
        return json_response(404, {"code": 404, "message": "not found"})

    def _answer(self, req: Request) -> Response:
        try:
            return self.dispatch(req)
        except Exception:  # a simulator bug must still answer, like a real 500
            traceback.print_exc(file=sys.stderr)
            return internal_error()

    def _record(self, req: Request) -> JournalEntry:
        entry = JournalEntry(
            method=req.method,
            path=req.path,
            query=dict(req.query),
            headers=dict(req.headers),
            raw_body=req.body,
            form=dict(req.form) if req.form is not None else None,
            json=req.json,
            op=req.op,
            at=self.now(),
        )
        with self._state.lock:
            self._state.journal.append(entry)
        return entry
