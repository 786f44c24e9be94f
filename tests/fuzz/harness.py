"""Send generated requests through the real handlers and check what they did (fuzz tier, bench).

Shared by the fuzz tier (tests/fuzz) and bench/fuzz_bench.py. Routes come from template.yaml's
`Api` and `HttpApi` events (local.template.api_routes; the function URL's paths too), events
from local.apigw.build_route_event (build_function_url_event for the function URL), handlers
from local.apigw.load_handler, exactly as the local API Gateway runs them. What is observed of
each request: the proxy response, the table's writes (its DynamoDB stream) and ePay's calls (the
simulator's journal). What must hold:

* no 5xx but the documented `503 gateway_unavailable` (HTML pages: no 5xx but 503);
* a JSON error body is exactly `{"error": {"code": str, "message": str, "fields"?: {str: str}}}`;
* every response header is printable ASCII (a raw character in Location dropped the connection);
* the 3-D Secure pages answer HTML with their security headers (HSTS among them);
* a rejected request (4xx) calls no one (but a resolution ePay's status API refused: it must
  ask to know), and, but on postLink (which keeps every body it is sent in its inbox), writes
  nothing.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from local.apigw import (
    LambdaContext,
    build_function_url_event,
    build_route_event,
    load_handler,
    parse_proxy_response,
)
from local.epay_sim.cards import CARD_3DS, CARD_AUTH, CARD_EXPIRED, CARD_INSUFFICIENT_FUNDS
from local.template import Route
from tests.fuzz.strategies import (
    BACK_LINK,
    FORM,
    HTML_FUNCTIONS,
    INBOX_FUNCTIONS,
    ROOT,
    FuzzRequest,
    Raw,
    Seeds,
    route_name,
    template_routes,
    to_json,
)

SECURITY_HEADERS = ("strict-transport-security", "content-security-policy", "cache-control")
# Refusals that are ePay's own word: a resolution is checked against the status API first.
EPAY_CHECKED_REFUSALS = frozenset(
    {
        ("POST /charges/{chargeId}/resolve", 409, "resolution_contradicted"),
        ("POST /charges/{chargeId}/resolve", 409, "resolution_unconfirmed"),
    }
)
STREAM_PAGE = 1000  # GetRecords answers at most this many records at a time


# ------------------------------------------------------------------------------ sending


@dataclass(frozen=True)
class Outcome:
    """What one request did: its status, the contract it broke, what it wrote and called."""

    route: str
    status: int
    problems: tuple[str, ...]
    writes: int
    epay_calls: int
    keeps_bodies: bool = False  # postLink: a refused body is still kept in the inbox


def _printable(value: str) -> bool:
    return all(0x20 <= ord(c) <= 0x7E for c in value)


def problems_of(route: Route, result: Any, writes: int, epay_calls: int) -> list[str]:
    """How a proxy response and what the request did break the contract (empty: none)."""
    answer = parse_proxy_response(result)
    if answer.status == 502:
        return ["not a valid proxy response (API Gateway answers 502)"]
    problems: list[str] = []
    headers = {name.lower(): value for name, value in answer.headers}
    for name, value in answer.headers:
        if not (_printable(name) and _printable(value)):
            problems.append(f"header {name!r} is not printable ASCII: {value[:80]!r}")
    status = answer.status
    if route.function_id in HTML_FUNCTIONS:
        problems += _html_problems(status, headers)
    else:
        problems += _json_problems(status, headers, answer.body)
    if 400 <= status < 500:
        refusal = (route_name(route), status, _code(_decoded(answer.body)))
        if epay_calls and refusal not in EPAY_CHECKED_REFUSALS:
            problems.append(f"a rejected request ({status}) made {epay_calls} call(s) to ePay")
        if writes and route.function_id not in INBOX_FUNCTIONS:
            problems.append(f"a rejected request ({status}) wrote {writes} item(s)")
    return problems


def _html_problems(status: int, headers: Mapping[str, str]) -> list[str]:
    problems = []
    if status >= 500 and status != 503:
        problems.append(f"status {status}")
    if headers.get("content-type") != "text/html; charset=utf-8":
        problems.append(f"content-type {headers.get('content-type')!r}, not HTML")
    problems += [f"no {name} header" for name in SECURITY_HEADERS if name not in headers]
    if status in (301, 302, 303, 307, 308):
        location = headers.get("location", "")
        if urlsplit(location).scheme != "https":
            problems.append(f"redirect to a non-https location {location[:80]!r}")
    return problems


def _json_problems(status: int, headers: Mapping[str, str], raw: bytes) -> list[str]:
    if not headers.get("content-type", "").startswith("application/json"):
        return [f"content-type {headers.get('content-type')!r}, not JSON"]
    try:
        body = json.loads(raw)
    except ValueError:
        return ["the body is not JSON"]
    if status < 400:
        return [] if isinstance(body, dict) else ["a success body that is not an object"]
    problems = error_shape_problems(body)
    if status >= 500 and (status, _code(body)) != (503, "gateway_unavailable"):
        problems.append(f"undocumented {status} {_code(body)!r}")
    return problems


def _decoded(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _code(body: Any) -> Any:
    return body.get("error", {}).get("code") if isinstance(body, dict) else None


def error_shape_problems(body: Any) -> list[str]:
    """How `body` differs from {"error": {"code": str, "message": str, "fields"?: {str: str}}}."""
    if not isinstance(body, dict) or set(body) != {"error"} or not isinstance(body["error"], dict):
        return [f"error body not in the documented shape: {str(body)[:120]}"]
    error = body["error"]
    problems = []
    if not set(error) <= {"code", "message", "fields"} or not {"code", "message"} <= set(error):
        problems.append(f"error keys {sorted(error)}")
    if not isinstance(error.get("code"), str) or not isinstance(error.get("message"), str):
        problems.append("error code and message must be strings")
    fields = error.get("fields", {})
    if not isinstance(fields, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in fields.items()
    ):
        problems.append(f"error fields not {{str: str}}: {str(fields)[:120]}")
    return problems


class StreamWrites:
    """Counts a table's writes from its stream (every write, whoever made it).

    One GetRecords per open shard a call; the stream is described again when a shard closes
    (its children are read from their start) and every `DESCRIBE_EVERY` calls.
    """

    DESCRIBE_EVERY = 50

    def __init__(self, dynamodb: Any, streams: Any, table: str) -> None:
        self._streams = streams
        self._arn = str(dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"])
        self._open: dict[str, str] = {}  # shard id -> where to read next
        self._closed: set[str] = set()
        self._calls = 0
        self._describe("LATEST")

    def _describe(self, start_at: str) -> None:
        stream = self._streams.describe_stream(StreamArn=self._arn)["StreamDescription"]
        for shard in stream.get("Shards", []):
            shard_id = shard["ShardId"]
            if shard_id not in self._open and shard_id not in self._closed:
                self._open[shard_id] = self._streams.get_shard_iterator(
                    StreamArn=self._arn, ShardId=shard_id, ShardIteratorType=start_at
                )["ShardIterator"]

    def _drain(self, shard_id: str) -> int:
        iterator: str | None = self._open[shard_id]
        count = 0
        while iterator is not None:
            answer = self._streams.get_records(ShardIterator=iterator, Limit=STREAM_PAGE)
            count += len(answer.get("Records", []))
            iterator = answer.get("NextShardIterator")
            if len(answer.get("Records", [])) < STREAM_PAGE:
                break
        if iterator is None:
            del self._open[shard_id]
            self._closed.add(shard_id)
        else:
            self._open[shard_id] = iterator
        return count

    def count(self) -> int:
        """Records written since the last call."""
        self._calls += 1
        closed_before = len(self._closed)
        if self._calls % self.DESCRIBE_EVERY == 0:
            self._describe("TRIM_HORIZON")
        total = sum(self._drain(shard_id) for shard_id in list(self._open))
        if len(self._closed) > closed_before:  # the closed shards' children, from their start
            self._describe("TRIM_HORIZON")
            total += sum(self._drain(shard_id) for shard_id in list(self._open))
        return total


class Api:
    """Sends requests to the routes' real handlers in process and observes the table and ePay.

    `dynamodb` and `streams` are clients of the table's endpoint; the table's stream (every
    write, whoever made it) counts writes; the simulator's journal counts calls to ePay.
    """

    def __init__(self, dynamodb: Any, streams: Any, table: str, simulator: Any) -> None:
        self.dynamodb = dynamodb
        self.table = table
        self.simulator = simulator
        self.routes = {route_name(route): route for route in template_routes()}
        self._stream = StreamWrites(dynamodb, streams, table)

    def writes(self) -> int:
        """Items written to the table since the last call."""
        return self._stream.count()

    def invoke(self, route: Route, request: FuzzRequest) -> dict[str, Any]:
        """The handler's proxy response to `request` as an API Gateway event."""
        path = route.resource
        for name, value in request.path_params.items():
            path = path.replace("{" + name + "}", quote(value, safe="", errors="surrogatepass"))
        if route.function_url:  # ePay's postLink: the postLink function's URL (payload 2.0)
            event = build_function_url_event(
                route.method, path, list(request.headers), list(request.query), request.body
            )
        else:  # the merchant API (HTTP API, payload 2.0) or the public pages (REST, 1.0)
            event = build_route_event(
                route.http_api,
                route.method,
                route.resource,
                path,
                request.path_params or None,
                list(request.headers),
                list(request.query),
                request.body,
                iam_auth=route.auth == "AWS_IAM",
            )
        handler = load_handler(route.code_uri, route.handler, ROOT)
        context = LambdaContext(route.function_id, route.memory, route.timeout)
        result: dict[str, Any] = handler(event, context)
        return result

    def send(self, route: Route, request: FuzzRequest) -> Outcome:
        """Invoke, then check the answer and what it did against the contract."""
        calls_before = len(self.simulator.journal)
        result = self.invoke(route, request)
        writes = self.writes()
        calls = len(self.simulator.journal) - calls_before
        problems = problems_of(route, result, writes, calls)
        return Outcome(
            route_name(route),
            result.get("statusCode", 0),
            tuple(problems),
            writes,
            calls,
            route.function_id in INBOX_FUNCTIONS,
        )

    def call(self, key: str, body: Any = None, **request: Any) -> dict[str, Any]:
        """A well-formed request by route name (seeding): the decoded JSON answer."""
        raw = None if body is None else to_json(body).encode()
        headers = (("Content-Type", "application/json"), *request.pop("headers", ()))
        answer = self.invoke(self.routes[key], FuzzRequest(headers=headers, body=raw, **request))
        decoded: dict[str, Any] = json.loads(answer["body"])
        return decoded


def _charge(api: Api, key: str, card: str, **fields: Any) -> dict[str, Any]:
    body = {
        "amount": Raw("1500.00"),
        "currency": "KZT",
        "cardId": card,
        "accountId": "customer-42",
        "description": "Order 42",
        "backLink": BACK_LINK,
    }
    return api.call("POST /charges", {**body, **fields}, headers=(("Idempotency-Key", key),))


def _through_3ds(api: Api, charge: dict[str, Any]) -> tuple[str, str]:
    """Take a REQUIRES_3DS charge through its page, the simulator's ACS (approve) and TermUrl,
    as a browser would; the MD and PaRes that the return carried."""
    token = charge["nextAction"]["url"].rsplit("token=", 1)[1]
    page = api.invoke(
        api.routes["GET /charges/{chargeId}/3ds"],
        FuzzRequest(path_params={"chargeId": charge["id"]}, query=(("token", token),)),
    )["body"]
    fields = {name: html.unescape(value) for name, value in _HIDDEN.findall(page)}
    action = html.unescape(_ACTION.findall(page)[0])
    with urllib.request.urlopen(action, data=urlencode(fields).encode(), timeout=5) as answer:
        acs = answer.read().decode()
    pa_res = html.unescape(_APPROVE.findall(acs)[0])
    form = urlencode({"PaRes": pa_res, "MD": fields["MD"]}).encode()
    answer = api.invoke(
        api.routes["POST /charges/{chargeId}/3ds/return"],
        FuzzRequest(
            path_params={"chargeId": charge["id"]}, headers=(("Content-Type", FORM),), body=form
        ),
    )
    assert answer["statusCode"] == 303, answer
    return fields["MD"], pa_res


_HIDDEN = re.compile(r'<input type="hidden" name="(\w+)" value="([^"]*)">')
_ACTION = re.compile(r'<form id="threeds-form" method="post" action="([^"]*)">')
_APPROVE = re.compile(r'<form id="approve-form".*?name="PaRes" value="([^"]*)"', re.DOTALL)


def plant_seeds(api: Api) -> Seeds:
    """Made through the handlers: an AUTHORIZED charge, a REQUIRES_3DS charge whose page is
    still to be served, one taken through 3-D Secure (its MD and PaRes: a replayed return shows
    the outcome at once; one still pending would make every replay wait for it), and two
    subscriptions of one account (for a cursor)."""
    charge = _charge(api, "seed-authorized", CARD_AUTH, capture="manual")
    pending = _charge(api, "seed-3ds-pending", CARD_3DS)
    returned = _charge(api, "seed-3ds-returned", CARD_3DS)
    md, pa_res = _through_3ds(api, returned)
    subscription = {"accountId": "customer-42", "cardId": CARD_AUTH, "amount": Raw("4990.00"),
                    "currency": "KZT", "description": "Monthly plan",
                    "interval": {"unit": "month", "count": Raw("1")}}  # fmt: skip
    subscriptions = [
        api.call("POST /subscriptions", subscription, headers=(("Idempotency-Key", f"sub-{n}"),))
        for n in range(2)
    ]
    page = api.call("GET /subscriptions", query=(("accountId", "customer-42"), ("limit", "1")))
    to_refund = _charge(api, "seed-refund", CARD_AUTH)
    refund = api.call(
        "POST /charges/{chargeId}/refunds",
        {"amount": Raw("100.00")},
        path_params={"chargeId": to_refund["id"]},
        headers=(("Idempotency-Key", "seed-refund-1"),),
    )
    to_cancel = _charge(api, "seed-cancel", CARD_AUTH, capture="manual")
    setup = api.call(
        "POST /card-setups",
        {"accountId": "customer-42", "mode": "verify", "backLink": BACK_LINK},
        headers=(("Idempotency-Key", "seed-setup"),),
    )
    listed = api.call(
        "GET /accounts/{accountId}/cards",
        path_params={"accountId": "customer-42"},
        query=(("refresh", "true"),),
    )
    review = _needs_review(api)
    inbox_id = _forged_notification(api, charge["invoiceId"])
    api.writes()  # the seeds' own writes are no request's doing
    assert charge["status"] == "AUTHORIZED", charge
    assert pending["status"] == "REQUIRES_3DS", pending
    assert refund["status"] == "SUCCEEDED", refund
    return Seeds(
        charge_id=charge["id"],
        invoice_id=charge["invoiceId"],
        three_ds_charge_id=pending["id"],
        page_token=pending["nextAction"]["url"].rsplit("token=", 1)[1],
        returned_charge_id=returned["id"],
        md=md,
        pa_res=pa_res,
        subscription_id=subscriptions[0]["id"],
        account_id="customer-42",
        cursor=page.get("nextCursor"),
        refund_id=refund["id"],
        refund_charge_id=to_refund["id"],
        cancel_charge_id=to_cancel["id"],
        setup_id=setup["id"],
        setup_page_token=setup["url"].rsplit("token=", 1)[1],
        # A card no generated charge names, so removing it leaves the charges' paths deep.
        card_id=next(c["id"] for c in listed["data"] if c["id"] == CARD_EXPIRED),
        review_charge_id=review["id"],
        inbox_id=inbox_id,
    )


def _needs_review(api: Api) -> dict[str, Any]:
    """A charge declined here whose money ePay's ledger then shows taken: the reconciler sends it
    to review (so a resolution to CAPTURED is what ePay confirms)."""
    declined = _charge(api, "seed-review", CARD_INSUFFICIENT_FUNDS)
    ledger = api.simulator.ledger[declined["invoiceId"]]
    ledger.status_name, ledger.reason_code, ledger.reason = "CHARGE", 0, ""
    ledger.captured_amount = ledger.amount
    checked = api.call(
        "POST /charges/{chargeId}/reconcile", path_params={"chargeId": declined["id"]}
    )
    assert checked["status"] == "NEEDS_REVIEW", checked
    return checked


def _forged_notification(api: Api, invoice_id: str) -> str:
    """A notification with a wrong secret_hash, refused and kept in the inbox: its inbox id
    (`<invoiceId>.<sha256 of the body>`)."""
    fields = {"invoiceId": invoice_id, "amount": Raw("1500.00"), "currency": "KZT",
              "secret_hash": "not-the-secret", "code": "ok"}  # fmt: skip
    raw = to_json(fields).encode()
    answer = api.invoke(
        api.routes["POST /epay/postlink"],
        FuzzRequest(headers=(("Content-Type", "application/json"),), body=raw),
    )
    assert answer["statusCode"] == 403, answer
    return f"{invoice_id}.{hashlib.sha256(raw).hexdigest()}"


def summarize(outcomes: Iterable[Outcome]) -> dict[str, int]:
    """Totals: requests, 5xx, contract problems, requests that wrote, rejected ones that wrote."""
    totals = {"requests": 0, "5xx": 0, "problems": 0, "writing": 0, "rejected_writing": 0}
    for outcome in outcomes:
        totals["requests"] += 1
        totals["5xx"] += outcome.status >= 500
        totals["problems"] += bool(outcome.problems)
        totals["writing"] += outcome.writes > 0
        rejected = 400 <= outcome.status < 500 and not outcome.keeps_bodies
        totals["rejected_writing"] += rejected and outcome.writes > 0
    return totals
