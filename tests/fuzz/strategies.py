"""Hypothesis strategies for requests to every API route of template.yaml, around valid ones.

Each route's path ids always vary (real ones, well-formed unknown ones, near misses, anything);
then its body, its query, its headers, or all of them at once, the other parts kept valid so the
deep paths (ePay, the store) run too. Bodies around a valid one are valid, or break one field,
or are chaos, or garbage. Values come from what broke this service before: trailing newlines,
lone surrogates, Unicode digits, amounts past Decimal's precision, lists where strings belong,
times that leave the calendar in UTC, ids too long for a key, raw characters in links.
"""

from __future__ import annotations

import json
import string
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from hypothesis import strategies as st

from local.epay_sim.cards import (
    CARD_3DS,
    CARD_AUTH,
    CARD_CHARGE,
    CARD_INSUFFICIENT_FUNDS,
    CARD_STOLEN,
)
from local.template import Route, api_routes, function_url_routes, load_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.yaml"
HTML_FUNCTIONS = frozenset({"ThreeDSFunction", "CardPagesFunction"})
# postLink keeps every body in its inbox, even one it refuses (README: "store it first").
INBOX_FUNCTIONS = frozenset({"PostLinkFunction"})
BACK_LINK = "https://shop.example.kz/pay/done?order=42"


def takes_input(route: Route) -> bool:
    """True for a route with a body or a query to vary (more examples go there)."""
    return route.function_id in INBOX_FUNCTIONS or route_name(route) in {
        "POST /charges",
        "POST /subscriptions",
        "PATCH /subscriptions/{subscriptionId}",
        "POST /charges/{chargeId}/capture",
        "GET /subscriptions",
        "GET /charges",
        "GET /charges/{chargeId}/3ds",
        "POST /charges/{chargeId}/3ds/return",
        "POST /charges/{chargeId}/refunds",
        "POST /charges/{chargeId}/resolve",
        "POST /card-setups",
        "GET /accounts/{accountId}/cards",
        "GET /card-setups/{setupId}/page",
    }


def template_routes() -> list[Route]:
    """Every route of every API function, as template.yaml declares them, and the paths of its
    function URL (ePay's postLink: posted to, so fuzzed as POST)."""
    template = load_template(TEMPLATE_PATH)
    urls = [replace(route, method="POST") for route in function_url_routes(template)]
    return [*api_routes(template), *urls]


def route_name(route: Route) -> str:
    """`METHOD /resource/{param}`, as the template writes it."""
    return f"{route.method} {route.resource}"


# ------------------------------------------------------------------------------ values


class Raw(str):
    """A JSON fragment written as it is (numbers json.dumps cannot write, such as 1e26)."""


def to_json(value: Any, *, ascii_only: bool = True) -> str:
    """JSON text of `value`; `Raw` parts verbatim; lone surrogates as \\udXXX escapes."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        items = (f"{to_json(str(k), ascii_only=ascii_only)}:{to_json(v, ascii_only=ascii_only)}"
                 for k, v in value.items())  # fmt: skip
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(to_json(v, ascii_only=ascii_only) for v in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only)


def utf8(text: str) -> bytes:
    """Bytes of `text`; lone surrogates become the (invalid) bytes a broken client would send."""
    return text.encode("utf-8", "surrogatepass")


SURROGATES = st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff"])
NASTY_STRINGS = [
    "", " ", "\n", "x\n", "\r\n", "\x00", "\x85", "\u2028", "\u2029", "\t", "😀", "ä", "²", "٣",
    "\uff11", "1e26", "null", "true", "[]", "{}", "<script>", "%00", "%FF", "../", "ch_", "sub_",
    "a" * 300, "é" * 70, "\ufeff", "\uffff", "\U0010ffff", "Robert'); DROP TABLE",
    "0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "2027-02-30T00:00:00Z",
]  # fmt: skip
TEXT = st.one_of(
    st.sampled_from(NASTY_STRINGS),
    st.text(max_size=24),
    st.text(alphabet=st.one_of(st.characters(), SURROGATES), max_size=12),
)
NUMBERS = [
    "0", "-0", "1", "-1", "0.001", "1.005", "10.50", "1e2", "1E-7", "1e26", "1E+400", "-1e26",
    "999999999.99", "1000000000", "1" + "0" * 30, "12345678901234567890.12", "0.1e1", "5e-324",
    "1.7976931348623157e308", "1e-400", "100", "2500", "4990.00",
]  # fmt: skip
NUMBER = st.one_of(
    st.sampled_from(NUMBERS),
    st.integers().map(str),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
).map(Raw)
LEAF = st.one_of(st.none(), st.booleans(), NUMBER, TEXT)
JSON_VALUE = st.recursive(
    LEAF, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)  # fmt: skip


# Numbers that broke or bend money handling: past Decimal's 28 digits, below a cent, signs.
EDGE_NUMBERS = ["1e26", "1E+400", "-1e26", "1" + "0" * 30, "1e-400", "0.001", "-0", "0", "-1",
                "1.005", "1000000000", "999999999.99"]  # fmt: skip
# Strings that broke a rule whatever the field: Unicode digits, times past the calendar's ends.
EDGE_STRINGS = ["\ud800", "", "²", "٣", "0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"]


MISSING = object()  # a near miss that leaves the field out


def near_misses(value: Any) -> list[Any]:
    """Values near a valid one: with a newline, a surrogate, a line separator or an emoji after
    it, boxed in a list or an object, padded, doubled, left out; edge numbers for numbers."""
    if isinstance(value, Raw):
        return [Raw(n) for n in EDGE_NUMBERS] + [str(value), [value], True, MISSING]
    if isinstance(value, bool):
        return ["true", 1, 0, [value], MISSING]
    if isinstance(value, dict):
        return [{**value, k: miss} for k, v in value.items() for miss in near_misses(v)
                if miss is not MISSING] + [[value], "x", MISSING]  # fmt: skip
    text = str(value)
    return [text + "\n", text + "\ud800", [text], {"value": text}, text + "\u2028",
            text + "\x85", text + "😀", text + "\r\n", " " + text, text.upper(), text * 40,
            Raw("1e26"), None, MISSING, *EDGE_STRINGS]  # fmt: skip


@dataclass(frozen=True)
class Field:
    """A body field: a valid value (what its near misses are made from) and, optionally, a
    strategy for more valid values."""

    example: Any
    values: st.SearchStrategy[Any] | None = None

    def valid(self) -> st.SearchStrategy[Any]:
        return self.values if self.values is not None else st.just(self.example)


Fields = Mapping[str, Any]  # name -> Field, or a plain valid value


def _fields(fields: Fields) -> dict[str, Field]:
    return {k: v if isinstance(v, Field) else Field(v) for k, v in fields.items()}


def valid_bodies(valid: Fields, optional: Fields) -> st.SearchStrategy[dict[str, Any]]:
    """Valid bodies: the required fields and any subset of the optional ones."""
    return st.builds(
        lambda required, extra: {**required, **extra},
        st.fixed_dictionaries({k: f.valid() for k, f in _fields(valid).items()}),
        st.fixed_dictionaries({}, optional={k: f.valid() for k, f in _fields(optional).items()}),
    )


def _with(body: dict[str, Any], *changes: tuple[str, Any]) -> dict[str, Any]:
    body = dict(body)
    for name, value in changes:
        if value is MISSING:
            body.pop(name, None)
        else:
            body[name] = value
    return body


@st.composite
def _chaos(draw: Callable[..., Any], valid: Fields, optional: Fields) -> dict[str, Any]:
    """Each field valid, any JSON or left out; unknown fields."""
    body: dict[str, Any] = {}
    for name, field_ in _fields({**valid, **optional}).items():
        roll = draw(st.integers(0, 3))
        if roll == 0 or (roll == 1 and name in valid):
            body[name] = draw(field_.valid())
        elif roll == 2:
            body[name] = draw(JSON_VALUE)
    body.update(draw(st.dictionaries(TEXT, JSON_VALUE, max_size=2)))
    return body


def bodies(valid: Fields, optional: Fields | None = None) -> st.SearchStrategy[dict[str, Any]]:
    """Bodies around a valid one: with one or two near misses (every (field, miss) pair equally
    likely, so each kind of bad value is tried on each field), chaos, or valid."""
    optional = optional or {}
    chaos = _chaos(valid, optional)
    misses = [(name, miss) for name, f in _fields({**valid, **optional}).items()
              for miss in near_misses(f.example)]  # fmt: skip
    if not misses:
        return st.one_of(st.just({}), chaos)
    base = valid_bodies(valid, optional)
    miss = st.sampled_from(misses)
    # Hypothesis favours earlier branches: the broken bodies come first.
    return st.one_of(
        st.builds(_with, base, miss),
        st.builds(_with, base, miss, miss),
        st.builds(_with, base, miss, miss, miss),
        chaos,
        base,
    )


GARBAGE_BODY = st.one_of(
    st.sampled_from(
        [
            "",
            "{",
            "null",
            "[]",
            "{}",
            '{"a":1,"a":2}',
            '{"amount": NaN}',
            "\ufeff{}",
            '{"x": "\\ud800"}',
            "true",
            "1e26",
        ]
    ),
    st.text(max_size=40),
    st.integers(1000, 3000).map(lambda n: "[" * n),  # deeper than the JSON parser goes
).map(utf8) | st.binary(max_size=40)


@dataclass(frozen=True)
class Varied:
    """A part of a request (body or query): its valid values, and values around them."""

    calm: st.SearchStrategy[Any]
    wild: st.SearchStrategy[Any]


def _json(body: dict[str, Any], ascii_only: bool) -> bytes:
    return utf8(to_json(body, ascii_only=ascii_only))


def json_body(valid: Fields, optional: Fields | None = None) -> Varied:
    """Valid JSON bodies, and bodies around them (sometimes raw UTF-8 instead of escapes, now and
    then garbage)."""
    optional = optional or {}
    wild = st.builds(_json, bodies(valid, optional), st.booleans())
    return Varied(
        calm=st.builds(_json, valid_bodies(valid, optional), st.just(True)),
        wild=st.one_of(wild, wild, wild, wild, wild, GARBAGE_BODY),
    )


NO_BODY = Varied(calm=st.none(), wild=st.one_of(st.none(), GARBAGE_BODY))


# ------------------------------------------------------------------------------ requests


@dataclass(frozen=True)
class Seeds:
    """Resources that exist before generation starts, so paths and bodies can name real ones."""

    charge_id: str  # AUTHORIZED, manual capture
    invoice_id: str
    three_ds_charge_id: str  # REQUIRES_3DS: its page not served yet
    page_token: str
    returned_charge_id: str  # through 3-D Secure and back (CAPTURED): its MD and PaRes
    md: str
    pa_res: str
    subscription_id: str
    account_id: str
    cursor: str | None
    refund_id: str = ""  # a SUCCEEDED refund of a captured charge
    refund_charge_id: str = ""  # CAPTURED, partly refunded: what refund requests aim at
    cancel_charge_id: str = ""  # AUTHORIZED: what cancel requests aim at (the others stay)
    setup_id: str = ""  # a PENDING card setup whose page is still to be opened
    setup_page_token: str = ""
    card_id: str = ""  # an ACTIVE saved card of the account: what removals aim at
    review_charge_id: str = ""  # NEEDS_REVIEW (ePay shows CHARGE): what resolutions aim at
    inbox_id: str = ""  # a stored (forged) postLink: what replays aim at


@dataclass(frozen=True)
class FuzzRequest:
    """One generated request: path parameters, headers, query and body as a client sends them."""

    path_params: dict[str, str] = field(default_factory=dict)
    headers: tuple[tuple[str, str], ...] = ()
    query: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None


JSON_TYPES = [
    "application/json", "application/json; charset=utf-8", "Application/JSON", "text/plain",
    "application/x-www-form-urlencoded", "application/json; charset=latin-1",
    "multipart/form-data; boundary=x", "application/octet-stream", "", "application/jsonx",
]  # fmt: skip
KEY_POOL = st.sampled_from(["fuzz-1", "fuzz-2", "fuzz-3"])  # repeats: replays, 409s and 422s
IDEMPOTENCY_KEYS = st.one_of(
    KEY_POOL,
    KEY_POOL,
    st.uuids().map(str),
    st.uuids().map(str),
    st.sampled_from(["fuzz-1\n", "k" * 256, "has space", "ключ", "\ud800", ""]),
    TEXT,
    st.none(),
)
HEADER_NAMES = st.text(alphabet=string.ascii_letters + "-", min_size=1, max_size=12)
FORM = "application/x-www-form-urlencoded"
DIGITS = string.digits
TOKENISH = st.text(alphabet=string.ascii_letters + DIGITS + "+/=", min_size=1, max_size=40)


def _content_type(usual: str | None) -> st.SearchStrategy[str | None]:
    return st.one_of(*[st.just(usual)] * 4, st.sampled_from(JSON_TYPES), st.none(), TEXT)


@st.composite
def _headers(
    draw: Callable[..., Any], *, usual: str | None, idempotency: bool, wild: bool
) -> tuple[tuple[str, str], ...]:
    """Headers a client sends: calm (the usual Content-Type, a fine Idempotency-Key) or wild."""
    headers: list[tuple[str, str]] = []
    content_type = draw(_content_type(usual) if wild else st.just(usual))
    if content_type is not None:
        headers.append((draw(st.sampled_from(["Content-Type", "content-type"])), content_type))
    keys = IDEMPOTENCY_KEYS if wild else st.one_of(*[st.uuids().map(str)] * 3, KEY_POOL)
    if idempotency and (key := draw(keys)) is not None:
        headers.append(("Idempotency-Key", key))
    if wild:
        headers += draw(st.lists(st.tuples(HEADER_NAMES, TEXT), max_size=2))
    return tuple(headers)


def _ids(real: list[str], prefix: str) -> st.SearchStrategy[str]:
    """Path ids other than the real ones: near misses, too long for a key, well-formed but
    unknown, anything."""
    return st.one_of(
        st.sampled_from([real[0] + "\n", real[0].upper(), real[0][:-1], prefix, "", " "]),
        st.integers(2048, 5000).map(lambda n: prefix + "f" * n),  # past DynamoDB's key size
        st.binary(min_size=16, max_size=16).map(lambda b: prefix + b.hex()),
        TEXT,
    )


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else to_json(value)


def _pairs(values: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple((k, _as_text(v)) for k, v in values.items())


def _urlencoded(values: dict[str, Any]) -> bytes:
    return urlencode(_pairs(values), errors="surrogatepass").encode()


def _query(valid: Fields, optional: Fields | None = None) -> Varied:
    """Valid query strings and ones around them (values as strings)."""
    return Varied(
        calm=valid_bodies(valid, optional or {}).map(_pairs),
        wild=bodies(valid, optional).map(_pairs),
    )


def _form(valid: Fields, optional: Fields | None = None) -> Varied:
    """Valid urlencoded forms and ones around them (broken UTF-8 where one holds a surrogate)."""
    return Varied(
        calm=valid_bodies(valid, optional or {}).map(_urlencoded),
        wild=st.one_of(bodies(valid, optional).map(_urlencoded), GARBAGE_BODY),
    )


def _amounts(low: int, high: int) -> Field:
    values = st.decimals(min_value=low, max_value=high, places=2).map(lambda d: Raw(str(d)))
    return Field(Raw(f"{low}.00"), values)


def _ints(digits: int) -> st.SearchStrategy[str]:
    return st.integers(0, 10**digits - 1).map(lambda n: f"{n:0{digits}d}")


def _invoice_ids() -> Field:
    return Field("796507934543", _ints(12))


def _one_of(*choices: Any) -> Field:
    return Field(choices[0], st.sampled_from(choices))


def _charge_bodies() -> Varied:
    cards = [CARD_AUTH, CARD_CHARGE, CARD_3DS, CARD_INSUFFICIENT_FUNDS, CARD_STOLEN]
    valid = {
        "amount": _amounts(1, 100_000),
        "currency": _one_of("KZT", "USD"),
        "cardId": _one_of(*cards),
        "accountId": "customer-42",
        "description": "Order 42",
    }
    optional = {
        "invoiceId": _invoice_ids(),
        "invoiceIdAlt": _invoice_ids(),
        "name": "Ivan Petrov",
        "email": "ivan@example.kz",
        "phone": "77001234567",
        "language": _one_of("rus", "kaz", "eng"),
        "backLink": BACK_LINK,
        "failureBackLink": "https://shop.example.kz/pay/failed",
        "recurrent": _one_of(False, True),
        "capture": _one_of("manual", "auto"),
    }
    return json_body(valid, optional)


def _subscription_bodies() -> Varied:
    start = datetime.now(UTC) + timedelta(days=1)
    valid = {
        "accountId": "customer-42",
        "cardId": CARD_AUTH,
        "amount": _amounts(1, 100_000),
        "currency": "KZT",
        "description": "Monthly plan",
        "interval": Field(
            {"unit": "month", "count": Raw("1")},
            st.fixed_dictionaries(
                {"unit": st.sampled_from(["day", "week", "month", "year"])},
                optional={"count": st.integers(1, 3).map(lambda n: Raw(str(n)))},
            ),
        ),
    }
    optional = {
        "startAt": _one_of(start.isoformat(), start.strftime("%Y-%m-%dT%H:%M:%SZ")),
        "email": "ivan@example.kz",
        "phone": "77001234567",
        "backLink": BACK_LINK,
        "failureBackLink": "https://shop.example.kz/pay/failed",
    }
    return json_body(valid, optional)


def _notification_bodies(seeds: Seeds) -> st.SearchStrategy[tuple[bytes, str | None]]:
    valid = {
        "invoiceId": Field(seeds.invoice_id, st.one_of(st.just(seeds.invoice_id), _ints(12))),
        "amount": Field(Raw("1500.00"), st.one_of(st.just(Raw("1500.00")), _amounts(1, 9).valid())),
        "currency": "KZT",
        "terminal": "67e34d63-102f-4bd1-898e-370781d0074d",
    }
    optional = {
        "secret_hash": "not-the-secret",
        "code": _one_of("ok", "error"),
        "id": str(uuid.UUID(int=1)),
        "reason": "",
        "reasonCode": Raw("0"),
    }
    as_json = bodies(valid, optional).map(lambda body: utf8(to_json(body)))
    return st.one_of(
        st.tuples(as_json, st.sampled_from(["application/json", "text/plain"])),
        st.tuples(_form(valid, optional).wild, st.just(FORM)),
        st.tuples(GARBAGE_BODY, st.one_of(st.sampled_from(JSON_TYPES), st.none())),
    )


def _postlink_requests(seeds: Seeds) -> st.SearchStrategy[FuzzRequest]:
    def request(typed: tuple[bytes, str | None], extra: list[tuple[str, str]]) -> FuzzRequest:
        body, content_type = typed
        headers = [("Content-Type", content_type)] if content_type is not None else []
        return FuzzRequest(headers=tuple(headers + extra), body=body)

    return st.builds(
        request, _notification_bodies(seeds), st.lists(st.tuples(HEADER_NAMES, TEXT), max_size=1)
    )


def _path_ids(route: Route, seeds: Seeds) -> Varied:
    """Real path ids (calm), and any (wild: well-formed unknown ones, near misses, anything)."""
    name, real, prefix = "", [""], ""
    if "{chargeId}" in route.resource:
        name, prefix = "chargeId", "ch_"
        real = [seeds.charge_id, seeds.three_ds_charge_id, seeds.returned_charge_id]
        if route.function_id in HTML_FUNCTIONS:  # the 3DS routes aim at a 3DS charge
            real.insert(0, real.pop(2 if "return" in route.resource else 1))
        if route.resource.endswith("/refunds"):
            real = [seeds.refund_charge_id, seeds.charge_id]
        if route.resource.endswith("/cancel"):  # the other seeds keep their states
            real = [seeds.cancel_charge_id]
        if route.resource.endswith("/resolve"):  # under review, or not (409)
            real = [seeds.review_charge_id, seeds.charge_id]
    elif "{inboxId}" in route.resource:
        real = [seeds.inbox_id]
        return Varied(
            calm=st.just({"inboxId": seeds.inbox_id}),
            wild=st.one_of(
                _ids(real, ""),
                # well-formed, unknown: the current layout's id, and a bare digest (the old one)
                st.binary(min_size=32, max_size=32).map(lambda b: f"{seeds.invoice_id}.{b.hex()}"),
                st.binary(min_size=32, max_size=32).map(bytes.hex),
                # near misses: the real digest alone, or under another invoice
                st.just(seeds.inbox_id.rpartition(".")[2]),
                st.just("000000001." + seeds.inbox_id.rpartition(".")[2]),
            ).map(lambda value: {"inboxId": value}),
        )
    elif "{refundId}" in route.resource:
        name, real, prefix = "refundId", [seeds.refund_id], "re_"
    elif "{subscriptionId}" in route.resource:
        name, real, prefix = "subscriptionId", [seeds.subscription_id], "sub_"
    elif "{setupId}" in route.resource:
        name, real, prefix = "setupId", [seeds.setup_id], "cs_"
    elif "{accountId}" in route.resource:
        return _account_ids(route, seeds)
    if not name:
        return Varied(st.just({}), st.just({}))
    return Varied(
        calm=st.sampled_from(real).map(lambda value: {name: value}),
        wild=_ids(real, prefix).map(lambda value: {name: value}),
    )


def _account_ids(route: Route, seeds: Seeds) -> Varied:
    """An account's card routes: its id (and the card's), real, or anything."""
    accounts = st.one_of(st.just(seeds.account_id), TEXT, st.just("x" * 101))
    if "{cardId}" not in route.resource:
        return Varied(
            calm=st.just({"accountId": seeds.account_id}),
            wild=accounts.map(lambda value: {"accountId": value}),
        )
    real = [seeds.card_id]
    return Varied(
        calm=st.just({"accountId": seeds.account_id, "cardId": seeds.card_id}),
        wild=st.builds(
            lambda account, card: {"accountId": account, "cardId": card},
            accounts,
            st.one_of(st.sampled_from(real), _ids(real, "")),
        ),
    )


def _setup_bodies() -> Varied:
    valid = {"accountId": "customer-42", "mode": "verify", "backLink": BACK_LINK}
    optional = {
        "failureBackLink": "https://shop.example.kz/cards/failed",
        "language": _one_of("rus", "kaz", "eng"),
        "description": "Save a card",
        "mode": _one_of("verify", "pay"),
        "amount": _amounts(1, 100_000),
        "currency": _one_of("KZT", "USD"),
    }
    return json_body(valid, optional)


def _charge_search_query(seeds: Seeds) -> Varied:
    """GET /charges: valid queries around the seeded account (by account, status or the seeded
    subscription, in a window), and near misses, chaos and forbidden combinations around them."""
    statuses = _one_of("CAPTURED", "NEEDS_REVIEW", "AUTHORIZED", "REQUIRES_3DS", "DECLINED")
    instants = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)).map(
        lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    window = {
        "createdFrom": Field("2020-01-01T00:00:00Z", instants),
        "createdTo": Field("2099-01-01T00:00:00Z"),
        "limit": Field("20", st.integers(1, 100).map(str)),
    }
    by_account = _query({"accountId": seeds.account_id}, {"status": statuses, **window})
    by_status = _query({"status": statuses}, window)
    by_subscription = _query({"subscriptionId": seeds.subscription_id}, window)
    # A cursor of another query, or none of ours, with the query it does not belong to.
    cursors = _query(
        {"accountId": seeds.account_id, "cursor": _one_of("e30", seeds.cursor or "x")}, {}
    )
    return Varied(
        calm=st.one_of(by_account.calm, by_status.calm, by_subscription.calm),
        wild=st.one_of(
            by_account.wild, by_status.wild, by_subscription.wild, cursors.calm, _query({}).wild
        ),
    )


# GET routes whose query is all that varies (no body).
_QUERY_ONLY: dict[str, Callable[[Seeds], Varied]] = {
    "GET /charges": _charge_search_query,
    "GET /charges/{chargeId}/3ds": lambda seeds: _query({"token": seeds.page_token}),
    "GET /card-setups/{setupId}/page": lambda seeds: _query({"token": seeds.setup_page_token}),
}


def _shape(key: str, seeds: Seeds) -> tuple[Varied, Varied, str | None]:
    """What varies on a route besides its path: (query, body, its usual Content-Type)."""
    if key in _QUERY_ONLY:
        return _QUERY_ONLY[key](seeds), NO_BODY, None
    amounts = _amounts(1, 100_000)
    if key == "POST /charges":
        return _query({}), _charge_bodies(), "application/json"
    if key == "POST /subscriptions":
        return _query({}), _subscription_bodies(), "application/json"
    if key == "PATCH /subscriptions/{subscriptionId}":
        change = {"cardId": CARD_AUTH, "amount": amounts}
        return _query({}), json_body({"description": "Pro plan"}, change), "application/json"
    if key == "POST /charges/{chargeId}/capture":
        capture = json_body({}, {"amount": _amounts(1, 1500)})
        return (
            _query({}),
            Varied(st.one_of(st.none(), capture.calm), capture.wild),
            "application/json",
        )
    if key == "POST /charges/{chargeId}/refunds":
        refund = json_body({}, {"amount": _amounts(1, 200), "reason": Field("damaged", TEXT)})
        return (
            _query({}),
            Varied(st.one_of(st.none(), refund.calm), refund.wild),
            "application/json",
        )
    if key == "POST /charges/{chargeId}/resolve":
        valid = {
            "status": _one_of("CAPTURED", "DECLINED", "FAILED", "AUTHORIZED", "REFUNDED"),
            "note": Field("Checked ePay's cabinet", st.sampled_from(["ok", "é" * 500, "x"])),
        }
        return _query({}), json_body(valid), "application/json"
    if key == "GET /subscriptions":
        limits = Field("20", st.integers(1, 100).map(str))
        optional = {"limit": limits, "cursor": seeds.cursor or ""}
        return _query({"accountId": seeds.account_id}, optional), NO_BODY, None
    if key == "POST /card-setups":
        return _query({}), _setup_bodies(), "application/json"
    if key == "GET /accounts/{accountId}/cards":
        limits = Field("20", st.integers(1, 100).map(str))
        optional = {"limit": limits, "refresh": _one_of("false", "true"), "cursor": "e30"}
        return _query({}, optional), NO_BODY, None
    if key == "POST /charges/{chargeId}/3ds/return":
        pa_res = Field(seeds.pa_res, st.one_of(st.just(seeds.pa_res), TOKENISH))
        return _query({}), _form({"PaRes": pa_res, "MD": seeds.md}), FORM
    return _query({}), NO_BODY, None


def requests_for(route: Route, seeds: Seeds) -> st.SearchStrategy[FuzzRequest]:
    """Generated requests for one route of the template: its body, its query, its path id or its
    headers vary, or all at once (the rest kept valid, so the deep paths run too)."""
    if route.function_id in INBOX_FUNCTIONS:
        return _postlink_requests(seeds)
    key = route_name(route)
    query, body, usual = _shape(key, seeds)
    idempotent = key in (
        "POST /charges",
        "POST /subscriptions",
        "POST /charges/{chargeId}/refunds",
        "POST /charges/{chargeId}/cancel",
        "POST /card-setups",
    )
    calm = _headers(usual=usual, idempotency=idempotent, wild=False)
    wild = _headers(usual=usual, idempotency=idempotent, wild=True)
    ids = _path_ids(route, seeds)
    body_varies = st.builds(FuzzRequest, ids.calm, calm, query.calm, body.wild)
    return st.one_of(
        body_varies,
        body_varies,
        body_varies,
        st.builds(FuzzRequest, ids.calm, calm, query.wild, body.calm),
        st.builds(FuzzRequest, ids.wild, calm, query.calm, body.calm),
        st.builds(FuzzRequest, ids.calm, wild, query.calm, body.calm),
        st.builds(FuzzRequest, ids.wild, wild, query.wild, body.wild),
    )
