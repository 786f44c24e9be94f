"""POST /epay/postlink and /epay/postlink/failure: the postLink function in-process against
DynamoDB Local and the simulator, which sends its notifications to a loopback receiver standing
for the function's URL (POSTLINK_BASE_URL) that turns them into Lambda function URL events for
the real handler (or only records them, for tests that choose the moment of delivery
themselves)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from local.apigw import build_function_url_event
from payments import bootstrap
from payments.aws.charge_store import DynamoChargeStore
from payments.shared.deadline import Deadline
from tests.integration.conftest import (
    Answer,
    Context,
    Stack,
    aws_calls,
    create_event,
    load_event,
    load_function,
)

APPROVE = "c0000000-0000-4000-8000-000000000001"
SINGLE_STAGE = "c0000000-0000-4000-8000-000000000002"
THREE_DS = "c0000000-0000-4000-8000-000000000003"
INSUFFICIENT_FUNDS = "c0000000-0000-4000-8000-000000000004"
BODY: dict[str, Any] = {
    "amount": 1500.5,
    "currency": "KZT",
    "cardId": APPROVE,
    "accountId": "customer-42",
    "description": "Order 42",
}


def body(**changes: Any) -> dict[str, Any]:
    return {**BODY, **changes}


# ------------------------------------------------------------------------------ the receiver


@dataclass
class Received:
    path: str
    body: bytes
    status: int


@dataclass
class Receiver:
    """A loopback HTTP server at POSTLINK_BASE_URL (the function URL): ePay's postLinks land
    here."""

    handler: Callable[[dict[str, Any], Any], dict[str, Any]]
    forward: bool = True
    received: list[Received] = field(default_factory=list)
    # Closed while a create runs (PostLinkStack.create): a postLink ePay sends meanwhile waits
    # for the create's answer, so a test never depends on which of the two a busy machine runs
    # first.
    gate: threading.Event = field(default_factory=threading.Event)
    _server: ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        receiver = self
        self.gate.set()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length)
                status, answer = 200, b'{"received":true}'
                receiver.gate.wait(timeout=30)
                if receiver.forward:
                    path = urllib.parse.urlsplit(self.path).path
                    # ePay posts to the postLink function's URL: a function URL event.
                    event = build_function_url_event(
                        "POST",
                        path,
                        list(self.headers.items()),
                        "",
                        data,
                        source_ip=self.client_address[0],
                    )
                    result = receiver.handler(event, Context())
                    status, answer = result["statusCode"], (result.get("body") or "").encode()
                receiver.received.append(Received(self.path, data, status))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@dataclass
class PostLinkStack:
    charges: Stack
    postlink: Stack
    receiver: Receiver

    @property
    def simulator(self) -> Any:
        return self.charges.simulator

    def create(self, charge_body: dict[str, Any], key: str) -> dict[str, Any]:
        """Create a charge; the postLinks ePay sends meanwhile are handled after its answer."""
        self.receiver.gate.clear()
        try:
            answer = self.charges.invoke(create_event(charge_body, key))
        finally:
            self.receiver.gate.set()
        assert answer.status in (200, 201), answer.raw
        result: dict[str, Any] = answer.body
        return result

    def notification(self, invoice_id: str | None = None) -> dict[str, Any]:
        """The payload of the postLink the simulator sent (for `invoice_id`), waiting for it."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for delivery in self.simulator.wait_for_postlinks(1, timeout=1):
                if invoice_id in (None, delivery.payload["invoiceId"]):
                    return dict(delivery.payload)
            time.sleep(0.02)
        raise AssertionError(f"the simulator sent no postLink for {invoice_id}")

    def post(self, payload: dict[str, Any] | str | bytes, *, failure: bool = False) -> Answer:
        """Deliver a notification to the handler in-process, on the canonical event."""
        name = "postlink/postlink-failure.json" if failure else "postlink/postlink-success.json"
        event = load_event(name)
        if isinstance(payload, bytes):
            event["body"] = base64.b64encode(payload).decode()
            event["isBase64Encoded"] = True
        else:
            event["body"] = payload if isinstance(payload, str) else json.dumps(payload)
        return self.postlink.invoke(event)

    def charge(self, charge_id: str) -> dict[str, Any]:
        item = self.charges.dynamodb.get_item(
            TableName=self.charges.table,
            Key={"pk": {"S": f"CHARGE#{charge_id}"}, "sk": {"S": "CHARGE"}},
            ConsistentRead=True,
        )["Item"]
        return dict(item)

    def history(self, charge_id: str) -> list[tuple[str | None, str, str, str]]:
        """The charge's transitions as the store reads them: (from, to, source, detail)."""
        store = DynamoChargeStore(self.charges.table, self.charges.dynamodb)
        return [
            (e.from_status.value if e.from_status else None, e.to_status.value, e.source, e.detail)
            for e in store.history(charge_id)
        ]

    def inbox(self) -> list[dict[str, Any]]:
        """The inbox items: in their invoices' partitions (POSTLINKS#<invoiceId> /
        INBOX#<sha256>), or of the layout before 2026-12-06 (INBOX#<sha256> / INBOX)."""
        return [
            i
            for i in self.charges.items()
            if i["pk"]["S"].startswith("POSTLINKS#") or i["sk"]["S"] == "INBOX"
        ]

    def ops(self, op: str) -> int:
        return len(self.simulator.requests(op))


@pytest.fixture
def pl(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[PostLinkStack]:
    handler = load_function("postlink").lambda_handler
    receiver = Receiver(handler).start()
    monkeypatch.setenv("PUBLIC_BASE_URL", receiver.url)
    # The charge path sends the function URL's form (a trailing "/") as ePay's postLink base.
    monkeypatch.setenv("POSTLINK_BASE_URL", receiver.url + "/")
    bootstrap.reset()
    yield PostLinkStack(
        stack, Stack(stack.table, stack.dynamodb, stack.simulator, handler), receiver
    )
    receiver.stop()


def unknown_charge(pl: PostLinkStack, key: str = "order-u", **changes: Any) -> dict[str, Any]:
    """A charge that ePay authorised but whose answer we lost: UNKNOWN here, AUTH at ePay."""
    pl.receiver.forward = False  # the test delivers the notification itself
    pl.simulator.inject("auth", "500_after_commit", count=1)
    charge = pl.create(body(**changes), key)
    assert charge["status"] == "UNKNOWN"
    return charge


# ------------------------------------------------------------------------------ the happy paths


def test_simulator_postlink_after_a_capture_is_stored_verified_and_changes_nothing(
    pl: PostLinkStack,
) -> None:
    # Given a charge captured synchronously / When ePay's postLink arrives over the wire
    charge = pl.create(body(), "order-1")
    assert charge["status"] == "CAPTURED"
    (delivery,) = pl.simulator.wait_for_postlinks(1, timeout=10)

    # Then it is answered 200 at the success link
    assert delivery.status == 200, delivery.error
    assert delivery.url == f"{pl.receiver.url}/epay/postlink"
    # And the status API was asked, and the charge and its history are as they were
    assert pl.ops("status") == 1
    assert pl.charge(charge["id"])["status"]["S"] == "CAPTURED"
    assert [h[2] for h in pl.history(charge["id"])] == ["api", "api", "api"]
    # And the inbox keeps what verification and audit need, with its verdict: no secret, no
    # payer contacts, the card id masked
    (item,) = pl.inbox()
    assert item["verdict"]["S"] == "settled"
    assert item["detail"]["S"] == "unchanged: CAPTURED"
    assert item["route"]["S"] == "success"
    assert item["chargeId"]["S"] == charge["id"]
    assert item["invoiceId"]["S"] == charge["invoiceId"]
    assert int(item["expiresAt"]["N"]) > time.time() + 29 * 86400
    stored = json.loads(item["notification"]["S"])
    assert stored["invoiceId"] == charge["invoiceId"]
    assert "secret_hash" not in stored
    assert "body" not in item
    for private in ("email", "phone", "ip", "ipCity", "accountId", "name"):
        assert private not in stored
    if "cardId" in delivery.payload:
        assert stored["cardId"] == "****" + str(delivery.payload["cardId"])[-4:]
    assert delivery.payload["secret_hash"] not in json.dumps(pl.charges.items(), default=bytes.hex)


def test_postlink_telling_what_a_captured_charge_holds_is_one_read_one_write_no_epay_call(
    pl: PostLinkStack,
) -> None:
    # Given a first charge whose postLink taught us the terminal's 8-digit code (status API)
    pl.create(body(), "order-1")
    (first,) = pl.simulator.wait_for_postlinks(1, timeout=10)
    assert first.status == 200
    # And a second charge captured synchronously, its postLink held back
    pl.receiver.forward = False
    charge = pl.create(body(), "order-2")
    notification = pl.notification(charge["invoiceId"])
    statuses, history = pl.ops("status"), pl.history(charge["id"])
    # When the postLink arrives (counting the handler's AWS requests)
    with aws_calls() as calls:
        answer = pl.post(notification)

    # Then it is answered 200 after one read (the charge, by the id its secret_hash leads with)
    # and one write (the inbox item with its verdict), and ePay was not asked
    assert answer.status == 200
    assert [operation for operation, _ in calls] == ["GetItem", "UpdateItem"]
    assert pl.ops("status") == statuses
    assert pl.history(charge["id"]) == history
    (item,) = [i for i in pl.inbox() if i["invoiceId"]["S"] == charge["invoiceId"]]
    assert item["verdict"]["S"] == "settled"
    assert item["detail"]["S"] == "agrees: CAPTURED"
    assert item["chargeId"]["S"] == charge["id"]
    assert item["deliveries"]["N"] == "1"
    # When the same body comes again / Then it is counted on the same item, and still no call
    assert pl.post(notification).status == 200
    (item,) = [i for i in pl.inbox() if i["invoiceId"]["S"] == charge["invoiceId"]]
    assert item["deliveries"]["N"] == "2"
    assert pl.ops("status") == statuses


@pytest.mark.parametrize("reason_code_as_string", [False, True])
def test_failure_postlink_goes_to_the_failure_route(
    pl: PostLinkStack, reason_code_as_string: bool
) -> None:
    # Given a declined card, and ePay sending reasonCode as a number or as a string
    pl.simulator.reason_code_as_string = reason_code_as_string
    charge = pl.create(body(cardId=INSUFFICIENT_FUNDS), "order-d")
    assert charge["status"] == "DECLINED"

    # When its failure notification arrives
    (delivery,) = pl.simulator.wait_for_postlinks(1, timeout=10)

    # Then it went to the failure link and was answered 200
    assert delivery.url == f"{pl.receiver.url}/epay/postlink/failure"
    assert delivery.payload["code"] == "error"
    assert delivery.payload["reasonCode"] == ("484" if reason_code_as_string else 484)
    assert delivery.status == 200
    # And the charge stays DECLINED with its code
    item = pl.charge(charge["id"])
    assert item["status"]["S"] == "DECLINED"
    assert item["error"]["M"]["code"]["S"] == "484"
    assert len(pl.history(charge["id"])) == 2
    (inbox,) = pl.inbox()
    assert inbox["route"]["S"] == "failure"
    assert inbox["verdict"]["S"] == "settled"


def test_postlink_settles_an_unknown_charge_through_the_status_api(pl: PostLinkStack) -> None:
    # Given a charge whose auth answer was lost (UNKNOWN here, AUTH at ePay)
    charge = unknown_charge(pl)
    payload = pl.notification()

    # When the notification is delivered
    answer = pl.post(payload)

    # Then it answers 200 and the charge is settled from the status API, then auto-captured
    assert answer.status == 200
    assert answer.body == {"received": True}
    assert pl.charge(charge["id"])["status"]["S"] == "CAPTURED"
    assert [(h[0], h[1], h[2]) for h in pl.history(charge["id"])] == [
        (None, "PROCESSING", "api"),
        ("PROCESSING", "UNKNOWN", "api"),
        ("UNKNOWN", "AUTHORIZED", "postlink"),
        ("AUTHORIZED", "CAPTURED", "postlink"),
    ]
    assert pl.simulator.ledger[charge["invoiceId"]].status_name == "CHARGE"
    # And the reconciler has nothing left to do for it
    assert "nextCheckAt" not in pl.charge(charge["id"])


def test_form_encoded_notification_is_accepted(pl: PostLinkStack) -> None:
    # Given an UNKNOWN charge and its notification as a urlencoded form (reasonCode a string)
    charge = unknown_charge(pl)
    payload = pl.notification()
    event = load_event("postlink/postlink-form.json")
    event["body"] = urllib.parse.urlencode({k: str(v) for k, v in payload.items()})

    # When it is delivered
    answer = pl.postlink.invoke(event)

    # Then it is verified and settles the charge
    assert answer.status == 200
    assert pl.charge(charge["id"])["status"]["S"] == "CAPTURED"
    (item,) = pl.inbox()
    assert item["contentType"]["S"] == "application/x-www-form-urlencoded"
    assert json.loads(item["notification"]["S"])["invoiceId"] == charge["invoiceId"]
    assert payload["secret_hash"] not in json.dumps(item)


# ------------------------------------------------------------------------------ forgeries


def test_forged_secret_hash_is_403_and_changes_nothing(
    pl: PostLinkStack, captured_logs: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an UNKNOWN charge, and a notification for it with a guessed secret_hash
    charge = unknown_charge(pl)
    payload = {**pl.notification(), "secret_hash": "guessed-secret-value-1234567890"}
    capsys.readouterr()

    # When it is delivered
    answer = pl.post(payload)

    # Then it is refused with 403, ePay's status API is not asked and nothing changes
    assert answer.status == 403
    assert answer.body["error"]["code"] == "forbidden"
    assert pl.ops("status") == 0
    assert pl.charge(charge["id"])["status"]["S"] == "UNKNOWN"
    assert len(pl.history(charge["id"])) == 2
    # And it is kept with its verdict
    (item,) = pl.inbox()
    assert item["verdict"]["S"] == "forged"
    assert item["detail"]["S"] == "mismatched: secret_hash"
    # And a security log line names the mismatch but carries no secret
    logs = captured_logs.getvalue()
    lines = [json.loads(line) for line in logs.splitlines() if '"security"' in line]
    assert len(lines) == 1
    assert lines[0]["mismatched"] == ["secret_hash"]
    assert lines[0]["invoice_id"] == charge["invoiceId"]
    assert "guessed-secret-value" not in logs
    # And the forgery is counted
    assert "PostLinkForged" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("field_name", "value"),
    [("amount", 1.5), ("amount", "150050"), ("currency", "USD"), ("terminal", "evil-terminal")],
)
def test_tampered_fields_are_403_even_with_the_right_secret(
    pl: PostLinkStack, field_name: str, value: Any
) -> None:
    # Given a genuine notification with one field changed
    charge = unknown_charge(pl)
    payload = {**pl.notification(), field_name: value}

    # When it is delivered / Then it is refused and nothing changes
    answer = pl.post(payload)
    assert answer.status == 403
    assert pl.ops("status") == 0
    assert pl.charge(charge["id"])["status"]["S"] == "UNKNOWN"
    (item,) = pl.inbox()
    assert item["detail"]["S"] == f"mismatched: {field_name}"


def test_another_charges_invoice_with_this_secret_is_forged(pl: PostLinkStack) -> None:
    # Given two UNKNOWN charges, and the first one's notification retargeted at the second
    first = unknown_charge(pl, "order-a")
    second = unknown_charge(pl, "order-b")
    payload = {**pl.notification(first["invoiceId"]), "invoiceId": second["invoiceId"]}

    # When it is delivered / Then the secret does not match the second charge
    answer = pl.post(payload)
    assert answer.status == 403
    assert pl.charge(first["id"])["status"]["S"] == "UNKNOWN"
    assert pl.charge(second["id"])["status"]["S"] == "UNKNOWN"


def test_unknown_invoice_is_200_and_kept_for_review(pl: PostLinkStack) -> None:
    # Given a notification for an invoice no charge has
    pl.create(body(), "order-1")
    payload = {**pl.notification(), "invoiceId": "999999999"}

    # When it is delivered
    answer = pl.post(payload)

    # Then it is answered 200 (no retries invited) and kept, without asking ePay
    assert answer.status == 200
    assert pl.ops("status") == 1  # the over-the-wire delivery of the real one only
    items = [i for i in pl.inbox() if i["invoiceId"]["S"] == "999999999"]
    assert len(items) == 1
    assert items[0]["verdict"]["S"] == "unknown_invoice"


# ------------------------------------------------------------------------------ duplicates


def test_same_notification_five_times_over_the_wire_gives_one_transition(
    pl: PostLinkStack,
) -> None:
    # Given ePay sending every notification five times, and a charge whose answer was lost
    pl.simulator.postlink_duplicates = 4
    pl.simulator.inject("auth", "500_after_commit", count=1)
    charge = pl.create(body(), "order-x5")
    assert charge["status"] == "UNKNOWN"

    # When the five copies arrive (one after another)
    deliveries = pl.simulator.wait_for_postlinks(5, timeout=15)

    # Then each is answered 200
    assert [d.status for d in deliveries] == [200] * 5
    # And the charge moved once, ePay was asked once and captured once
    assert pl.charge(charge["id"])["status"]["S"] == "CAPTURED"
    assert [h[1] for h in pl.history(charge["id"])] == [
        "PROCESSING",
        "UNKNOWN",
        "AUTHORIZED",
        "CAPTURED",
    ]
    assert pl.ops("status") == 1
    assert pl.ops("charge") == 1
    # And one inbox item counts the five deliveries
    (item,) = pl.inbox()
    assert item["deliveries"]["N"] == "5"
    assert item["verdict"]["S"] == "settled"


def test_a_postlink_is_one_item_in_its_invoices_partition_without_index_keys(
    pl: PostLinkStack,
) -> None:
    # Given an UNKNOWN charge and ePay's notification for it
    charge = unknown_charge(pl)
    payload = pl.notification()
    digest = hashlib.sha256(json.dumps(payload).encode("utf-8")).hexdigest()
    writes: list[list[tuple[str, dict[str, Any]]]] = []
    kinds = ("PutItem", "UpdateItem", "TransactWriteItems", "BatchWriteItem")

    # When the same body is delivered twice (recording each delivery's writes)
    for _ in range(2):
        with aws_calls() as calls:
            assert pl.post(payload).status == 200
        writes.append([(operation, params) for operation, params in calls if operation in kinds])

    # Then there is one inbox item, in the invoice's partition, keyed by the body's digest
    (item,) = pl.inbox()
    assert item["pk"]["S"] == f"POSTLINKS#{charge['invoiceId']}"
    assert item["sk"]["S"] == f"INBOX#{digest}"
    # And it counts both deliveries, keeping the verdict the first one reached
    assert item["deliveries"]["N"] == "2"
    assert item["verdict"]["S"] == "settled"
    assert pl.charge(charge["id"])["status"]["S"] == "CAPTURED"
    # And it carries no ChargeListIndex keys (a postLink costs no index write)
    assert "chargeList" not in item
    assert "chargeSort" not in item
    # And nothing of the old layout was written
    assert [i for i in pl.charges.items() if i["sk"]["S"] == "INBOX"] == []
    # And every inbox write was an UpdateItem of that item; the repeat was exactly one
    key = {"pk": item["pk"], "sk": item["sk"]}
    first, second = (
        [(operation, params.get("Key")) for operation, params in delivery] for delivery in writes
    )
    assert first[0] == ("UpdateItem", key)  # stored before anything acts on it
    assert all(operation != "PutItem" or k != key for operation, k in first)
    assert second == [("UpdateItem", key)]


def test_concurrent_duplicates_give_one_transition_and_one_capture(pl: PostLinkStack) -> None:
    # Given an UNKNOWN charge and five warm "containers" of the postLink function
    charge = unknown_charge(pl)
    payload = pl.notification()
    handlers = [load_function("postlink").lambda_handler for _ in range(5)]

    def deliver(handler: Callable[[dict[str, Any], Any], dict[str, Any]]) -> Answer:
        event = load_event("postlink/postlink-success.json")
        event["body"] = json.dumps(payload)
        return Stack(pl.charges.table, pl.charges.dynamodb, pl.simulator, handler).invoke(event)

    # When the same notification reaches all five at once
    with ThreadPoolExecutor(max_workers=5) as pool:
        answers = list(pool.map(deliver, handlers))

    # Then every copy gets 200, and the charge moved exactly once to each state
    assert [a.status for a in answers] == [200] * 5
    assert pl.charge(charge["id"])["status"]["S"] == "CAPTURED"
    assert [h[1] for h in pl.history(charge["id"])] == [
        "PROCESSING",
        "UNKNOWN",
        "AUTHORIZED",
        "CAPTURED",
    ]
    # And ePay was asked once (copies in flight are not settled twice) and took the money once
    assert pl.ops("status") == 1
    ledger = pl.simulator.ledger[charge["invoiceId"]]
    assert ledger.status_name == "CHARGE"
    assert ledger.captured_amount == Decimal("1500.5")
    (item,) = pl.inbox()
    assert item["deliveries"]["N"] == "5"


# ------------------------------------------------------------------------------ ordering


def test_failure_after_success_never_moves_a_charge_backwards(pl: PostLinkStack) -> None:
    # Given a captured charge and its genuine success notification handled
    charge = pl.create(body(), "order-1")
    success = pl.notification()
    pl.simulator.wait_for_postlinks(1)
    before = pl.history(charge["id"])

    # When a (late, or replayed) failure notification for the same invoice arrives
    failure = {**success, "code": "error", "reason": "Insufficient funds", "reasonCode": "484"}
    answer = pl.post(failure, failure=True)

    # Then it answers 200, the status API still says CHARGE, and nothing moves
    assert answer.status == 200
    assert pl.charge(charge["id"])["status"]["S"] == "CAPTURED"
    assert pl.history(charge["id"]) == before
    failure_items = [i for i in pl.inbox() if i["route"]["S"] == "failure"]
    assert failure_items[0]["verdict"]["S"] == "settled"


def test_status_api_contradicting_a_final_state_needs_review_with_both_facts(
    pl: PostLinkStack,
) -> None:
    # Given a declined charge, and ePay's ledger later showing the money taken
    pl.receiver.forward = False
    charge = pl.create(body(cardId=INSUFFICIENT_FUNDS), "order-d")
    assert charge["status"] == "DECLINED"
    failure = pl.notification()
    ledger = pl.simulator.ledger[charge["invoiceId"]]
    ledger.status_name, ledger.reason_code, ledger.reason = "CHARGE", 0, ""
    ledger.captured_amount = ledger.amount

    # When a success notification arrives
    answer = pl.post({**failure, "code": "ok", "reasonCode": 0})

    # Then the charge is not silently flipped: it needs review, with both facts in its history
    assert answer.status == 200
    assert pl.charge(charge["id"])["status"]["S"] == "NEEDS_REVIEW"
    history = pl.history(charge["id"])
    assert history[-2][:2] == ("PROCESSING", "DECLINED")
    assert "484" in history[-2][3]
    assert history[-1][:3] == ("DECLINED", "NEEDS_REVIEW", "postlink")
    assert history[-1][3] == "status API: CHARGE but the charge is DECLINED"


@pytest.mark.parametrize(("card", "captures"), [(APPROVE, 1), (SINGLE_STAGE, 0)])
def test_notification_before_the_synchronous_answer_converges(
    pl: PostLinkStack, monkeypatch: pytest.MonkeyPatch, card: str, captures: int
) -> None:
    # Given ePay's notification handled after ePay decided but before our auth call returns
    pl.receiver.forward = False
    client = bootstrap.gateway()
    real_authorize = client.authorize
    early: list[Answer] = []

    def authorize_then_postlink(*args: Any, **kwargs: Any) -> Any:
        result = real_authorize(*args, **kwargs)
        early.append(pl.post(pl.notification()))
        return result

    monkeypatch.setattr(client, "authorize", authorize_then_postlink)

    # When the charge is created
    answer = pl.charges.invoke(create_event(body(cardId=card), "order-race"))

    # Then the notification was answered 200 and settled the charge first
    assert [a.status for a in early] == [200]
    # And the synchronous path converged to the same final state, without a second capture
    assert answer.status == 201
    assert answer.body["status"] == "CAPTURED"
    charge_id = answer.body["id"]
    assert pl.charge(charge_id)["status"]["S"] == "CAPTURED"
    history = pl.history(charge_id)
    assert history[0][:2] == (None, "PROCESSING")
    assert {h[2] for h in history[1:]} == {"postlink"}
    assert history[-1][1] == "CAPTURED"
    ledger = pl.simulator.ledger[answer.body["invoiceId"]]
    assert ledger.status_name == "CHARGE"
    assert ledger.captured_amount == Decimal("1500.5")
    assert ledger.auth_count == 1
    assert len([e for e in pl.simulator.requests("charge") if e.status == 200]) == captures


def test_notification_before_the_3ds_return_converges(pl: PostLinkStack) -> None:
    # Given a charge waiting for 3-D Secure
    charge = pl.create(body(cardId=THREE_DS), "order-3d")
    assert charge["status"] == "REQUIRES_3DS"
    three_ds = pl.charge(charge["id"])["threeDS"]["M"]

    # When the customer approves at the issuer and ePay confirms (our 3DS return never comes)
    acs = urllib.parse.urlencode(
        {
            "PaReq": three_ds["paReq"]["S"],
            "MD": three_ds["md"]["S"],
            "TermUrl": "http://127.0.0.1:9/3ds/return",
        }
    ).encode()
    with urllib.request.urlopen(three_ds["action"]["S"], data=acs, timeout=5) as page:
        html = page.read().decode()
    pa_res = re.search(r'id="approve-form".*?name="PaRes" value="([^"]+)"', html, re.S)
    assert pa_res is not None
    confirm = urllib.request.Request(
        f"{pl.simulator.api_url}/payments/cards/confirmPayment?"
        + urllib.parse.urlencode({"Access": three_ds["accessToken"]["S"]}),
        data=urllib.parse.urlencode({"PaRes": pa_res.group(1), "MD": three_ds["md"]["S"]}).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    with pytest.raises(urllib.error.HTTPError) as redirect:
        urllib.request.build_opener(NoRedirect).open(confirm, timeout=5)
    assert redirect.value.code == 302

    # Then ePay's postLink alone settles the charge
    (delivery,) = pl.simulator.wait_for_postlinks(1, timeout=10)
    assert delivery.status == 200
    assert pl.charge(charge["id"])["status"]["S"] == "CAPTURED"
    assert [(h[1], h[2]) for h in pl.history(charge["id"])] == [
        ("PROCESSING", "api"),
        ("REQUIRES_3DS", "api"),
        ("AUTHORIZED", "postlink"),
        ("CAPTURED", "postlink"),
    ]
    # And a later 3DS return settling through the same machine finds nothing left to do
    settlement = bootstrap.settler().settle(charge["id"], "3ds", Deadline.after(5))
    assert settlement.outcome == "unchanged"
    assert settlement.charge.status.value == "CAPTURED"


# ------------------------------------------------------------------------ bad input, slow ePay


@pytest.mark.parametrize(
    "raw",
    [
        "not a notification",
        "{broken json",
        "[]",
        '{"invoiceId": "000000001"}',
        '{"invoiceId": "12", "amount": 1, "currency": "KZT", "terminal": "t"}',
        '{"invoiceId": "000000001", "amount": "NaN", "currency": "KZT", "terminal": "t"}',
        "",
    ],
)
def test_malformed_body_is_400_unstored_and_changes_nothing(pl: PostLinkStack, raw: str) -> None:
    # Given a charge ePay decided on
    charge = unknown_charge(pl)
    items_before = len(pl.charges.items())

    # When a malformed notification arrives
    answer = pl.post(raw)

    # Then it is 400 and nothing is written (junk never fills the table), neither ePay nor the
    # charge is touched
    assert answer.status == 400
    assert answer.body["error"]["code"] == "validation_error"
    assert pl.inbox() == []
    assert len(pl.charges.items()) == items_before
    assert pl.ops("status") == 0
    assert pl.charge(charge["id"])["status"]["S"] == "UNKNOWN"


def test_binary_body_is_400_and_oversized_body_is_413_unstored(pl: PostLinkStack) -> None:
    # A base64 (binary) body that is not UTF-8 is malformed
    assert pl.post(b"\xff\xfe\x00garbage").status == 400
    assert pl.inbox() == []
    # A body over 16 KiB is refused before anything is stored
    answer = pl.post(json.dumps({"invoiceId": "000000001", "pad": "x" * 17000}))
    assert answer.status == 413
    assert answer.body["error"]["code"] == "payload_too_large"
    assert pl.inbox() == []


def test_slow_status_api_answers_200_in_time_and_leaves_the_charge_to_the_reconciler(
    pl: PostLinkStack,
) -> None:
    # Given an UNKNOWN charge and a status API slower than the function has time for
    charge = unknown_charge(pl)
    payload = pl.notification()
    next_check = pl.charge(charge["id"])["nextCheckAt"]["S"]
    pl.simulator.inject("status", "slow", count=1, delay=6.0)
    event = load_event("postlink/postlink-success.json")
    event["body"] = json.dumps(payload)

    # When the notification arrives at a function with 4 s left
    started = time.monotonic()
    result = pl.postlink.handler(event, Context(timeout_seconds=4.0))
    elapsed = time.monotonic() - started

    # Then it still answers 200, before its own deadline
    assert result["statusCode"] == 200
    assert elapsed < 4.0
    # And the charge is untouched, still scheduled for the reconciler
    item = pl.charge(charge["id"])
    assert item["status"]["S"] == "UNKNOWN"
    assert item["nextCheckAt"]["S"] == next_check
    (inbox,) = pl.inbox()
    assert inbox["verdict"]["S"] == "deferred"

    # And a later copy of the same notification is handled again, and settles
    assert pl.simulator.faults() == []
    assert pl.post(payload).status == 200
    assert pl.charge(charge["id"])["status"]["S"] == "CAPTURED"
