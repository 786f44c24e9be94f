"""What an on-call engineer does (issue 14): read a charge's timeline (GET /charges/{id}/history,
the charges function), resolve a NEEDS_REVIEW charge and replay a stored postLink (the operator
function). Handlers in-process on API Gateway events, DynamoDB Local, the ePay simulator."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import pytest

from payments.charges.inbox_records import is_inbox_id
from payments.charges.model import is_charge_id
from tests.integration.conftest import (
    Answer,
    Stack,
    at_path,
    aws_calls,
    create_event,
    load_event,
    load_function,
)
from tests.integration.test_postlink import (
    INSUFFICIENT_FUNDS,
    PostLinkStack,
    body,
    pl,
    unknown_charge,
)

__all__ = ["pl"]  # the postLink stack fixture

OPERATOR_ARN = "arn:aws:sts::123456789012:assumed-role/payments-operator/alice"
NOTE = "Checked ePay's cabinet: CHARGE 1500.50 KZT, reference in the cabinet"
GUESSED = "guessed-secret-value-1234567890"


# ------------------------------------------------------------------------------ events


def _path_event(
    template: str, method: str, resource: str, params: dict[str, str]
) -> dict[str, Any]:
    event = load_event(template)
    path = resource
    for name, value in params.items():
        path = path.replace("{" + name + "}", value)
    event["routeKey"] = event["requestContext"]["routeKey"] = f"{method} {resource}"
    event["requestContext"]["http"]["method"] = method
    return at_path(event, path, **params)


def history_event(charge_id: str) -> dict[str, Any]:
    return _path_event(
        "charges/get-charge.json",
        "GET",
        "/charges/{chargeId}/history",
        {"chargeId": charge_id},
    )


def reconcile_event(charge_id: str) -> dict[str, Any]:
    event = _path_event(
        "charges/capture-charge.json",
        "POST",
        "/charges/{chargeId}/reconcile",
        {"chargeId": charge_id},
    )
    event["body"] = None
    return event


def resolve_event(charge_id: str, payload: Any, *, raw: str | None = None) -> dict[str, Any]:
    event = _path_event(
        "operator/resolve-charge.json",
        "POST",
        "/charges/{chargeId}/resolve",
        {"chargeId": charge_id},
    )
    event["body"] = raw if raw is not None else json.dumps(payload)
    return event


def replay_event(inbox_id: str) -> dict[str, Any]:
    return _path_event(
        "operator/replay-postlink.json",
        "POST",
        "/postlinks/{inboxId}/replay",
        {"inboxId": inbox_id},
    )


def resolve(stack: Stack, charge_id: str, status: str, note: str = NOTE) -> Answer:
    """POST /charges/{chargeId}/resolve through the operator function."""
    return operator(stack).invoke(resolve_event(charge_id, {"status": status, "note": note}))


def operator(stack: Stack) -> Stack:
    """The operator function over the same table and simulator."""
    handler = load_function("operator").lambda_handler
    return Stack(stack.table, stack.dynamodb, stack.simulator, handler)


def digest_of(payload: dict[str, Any]) -> str:
    """The SHA-256 of a notification's body as PostLinkStack.post delivers it."""
    return hashlib.sha256(json.dumps(payload).encode("utf-8")).hexdigest()


def inbox_id(payload: dict[str, Any]) -> str:
    """The inbox id of a notification as PostLinkStack.post delivers it: its invoice id, a dot,
    its body's SHA-256."""
    return f"{payload['invoiceId']}.{digest_of(payload)}"


def charge_item(stack: Stack, charge_id: str) -> dict[str, Any]:
    item = stack.dynamodb.get_item(
        TableName=stack.table,
        Key={"pk": {"S": f"CHARGE#{charge_id}"}, "sk": {"S": "CHARGE"}},
        ConsistentRead=True,
    )["Item"]
    return dict(item)


def inbox_key(inbox_id: str) -> dict[str, Any]:
    """Where an inbox id's item is: POSTLINKS#<invoiceId> / INBOX#<sha256>, or (a bare digest)
    INBOX#<sha256> / INBOX, the layout before 2026-12-06."""
    invoice_id, _, digest = inbox_id.rpartition(".")
    if not invoice_id:
        return {"pk": {"S": f"INBOX#{digest}"}, "sk": {"S": "INBOX"}}
    return {"pk": {"S": f"POSTLINKS#{invoice_id}"}, "sk": {"S": f"INBOX#{digest}"}}


def inbox_item(stack: Stack, inbox_id: str) -> dict[str, Any]:
    item = stack.dynamodb.get_item(
        TableName=stack.table, Key=inbox_key(inbox_id), ConsistentRead=True
    )["Item"]
    return dict(item)


def statuses(stack: Stack) -> int:
    return len(stack.simulator.requests("status"))


def needs_review(stack: Stack, key: str = "order-r") -> dict[str, Any]:
    """A charge declined here whose money ePay's ledger later shows taken: the reconciler sends
    it to review ("status API: CHARGE but the charge is DECLINED")."""
    created = stack.invoke(create_event(body(cardId=INSUFFICIENT_FUNDS), key))
    assert created.body["status"] == "DECLINED", created.raw
    ledger = stack.simulator.ledger[created.body["invoiceId"]]
    ledger.status_name, ledger.reason_code, ledger.reason = "CHARGE", 0, ""
    ledger.captured_amount = ledger.amount
    checked = stack.invoke(reconcile_event(created.body["id"]))
    assert checked.body["status"] == "NEEDS_REVIEW", checked.raw
    return dict(checked.body)


def history(stack: Stack, charge_id: str) -> Answer:
    return stack.invoke(history_event(charge_id))


# ------------------------------------------------------------------------------ the timeline


def test_history_shows_every_transition_and_the_invoices_postlinks_in_order(
    pl: PostLinkStack,
) -> None:
    # Given a charge whose auth answer was lost (UNKNOWN), a forged notification for its invoice,
    # then ePay's genuine one, which settled it (AUTHORIZED, then auto-captured)
    charge = unknown_charge(pl)
    genuine = pl.notification()
    forged = {**genuine, "secret_hash": GUESSED}
    assert pl.post(forged).status == 403
    time.sleep(0.01)  # received one after the other
    assert pl.post(genuine).status == 200

    # When the timeline is read
    answer = history(pl.charges, charge["id"])

    # Then every transition is there, oldest first, with who made it
    assert answer.status == 200, answer.raw
    assert answer.body["chargeId"] == charge["id"]
    assert [(h["from"], h["to"], h["source"]) for h in answer.body["data"]] == [
        (None, "PROCESSING", "api"),
        ("PROCESSING", "UNKNOWN", "api"),
        ("UNKNOWN", "AUTHORIZED", "postlink"),
        ("AUTHORIZED", "CAPTURED", "postlink"),
    ]
    assert all(set(h) == {"from", "to", "source", "at", "detail"} for h in answer.body["data"])
    assert answer.body["data"][2]["detail"] == "status API: AUTH"
    # And both notifications of its invoice, oldest first, with their verdicts
    first, second = answer.body["postLinks"]
    assert (first["inboxId"], first["verdict"], first["detail"]) == (
        inbox_id(forged),
        "forged",
        "mismatched: secret_hash",
    )
    assert (second["inboxId"], second["verdict"]) == (inbox_id(genuine), "settled")
    assert second["detail"] == "changed: CAPTURED"
    assert first["receivedAt"] <= second["receivedAt"]
    for entry in (first, second):
        assert entry["route"] == "success"
        assert entry["deliveries"] == 1
        assert entry["code"] == genuine.get("code")
        assert set(entry) == {
            "inboxId",
            "receivedAt",
            "route",
            "verdict",
            "detail",
            "deliveries",
            "code",
            "reasonCode",
        }
    # And no secret: neither the genuine one, the guess, nor the digests kept of them
    stored = charge_item(pl.charges, charge["id"])["secretHashDigest"]["B"].hex()
    for secret in (genuine["secret_hash"], GUESSED, stored, "secretHashDigest"):
        assert secret not in answer.raw


def test_history_reads_both_notifications_of_the_invoice_with_one_query(pl: PostLinkStack) -> None:
    # Given a charge with two notifications of its invoice stored: a forged one, then ePay's
    charge = unknown_charge(pl)
    genuine = pl.notification()
    forged = {**genuine, "secret_hash": GUESSED}
    assert pl.post(forged).status == 403
    time.sleep(0.01)
    assert pl.post(genuine).status == 200
    # When the timeline is read (recording the charges function's AWS requests)
    with aws_calls() as calls:
        answer = history(pl.charges, charge["id"])

    # Then both notifications are listed, oldest first, by ids a replay takes
    assert answer.status == 200, answer.raw
    assert [p["inboxId"] for p in answer.body["postLinks"]] == [
        inbox_id(forged),
        inbox_id(genuine),
    ]
    assert [p["verdict"] for p in answer.body["postLinks"]] == ["forged", "settled"]
    # And they were read with one Query of the invoice's partition of the table: no index, no
    # BatchGetItem, and never the secret's digest
    inbox_reads = [
        params
        for operation, params in calls
        if operation == "Query" and "POSTLINKS#" in json.dumps(params)
    ]
    (query,) = inbox_reads
    assert "IndexName" not in query
    assert query["ExpressionAttributeValues"][":pk"] == {"S": f"POSTLINKS#{charge['invoiceId']}"}
    assert "secretHashDigest" not in query["ExpressionAttributeNames"].values()
    assert "BatchGetItem" not in [operation for operation, _ in calls]
    assert not any(params.get("IndexName") for _, params in calls)


def test_history_of_a_charge_without_postlinks_and_of_no_charge(pl: PostLinkStack) -> None:
    # Given a charge whose notifications nobody delivered
    charge = unknown_charge(pl)
    # When its timeline is read / Then it has its transitions and no postLinks
    answer = history(pl.charges, charge["id"])
    assert answer.status == 200
    assert answer.body["postLinks"] == []
    assert [h["to"] for h in answer.body["data"]] == ["PROCESSING", "UNKNOWN"]
    # And a charge that does not exist, or an id of another shape, is 404
    assert history(pl.charges, "ch_" + "0" * 32).status == 404
    assert history(pl.charges, "not-a-charge").status == 404


def test_history_lists_only_the_charges_own_invoice(pl: PostLinkStack) -> None:
    # Given two charges, each with a notification delivered
    first = unknown_charge(pl, "order-a")
    second = unknown_charge(pl, "order-b")
    for charge in (first, second):
        assert pl.post(pl.notification(charge["invoiceId"])).status == 200
    # When the first one's timeline is read / Then only its own notification is listed
    (only,) = history(pl.charges, first["id"]).body["postLinks"]
    stored = inbox_item(pl.charges, only["inboxId"])
    assert stored["invoiceId"]["S"] == first["invoiceId"]


# ------------------------------------------------------------------------------ resolve


def test_resolve_settles_a_needs_review_charge_where_epay_agrees_and_names_the_operator(
    stack: Stack,
) -> None:
    # Given a charge under review that ePay's status API shows CHARGE
    charge = needs_review(stack)
    asked = statuses(stack)

    # When an operator resolves it CAPTURED with a note
    answer = operator(stack).invoke(
        resolve_event(charge["id"], {"status": "CAPTURED", "note": NOTE})
    )

    # Then it is CAPTURED with what ePay took, after one more status check
    assert answer.status == 200, answer.raw
    assert (answer.body["id"], answer.body["status"]) == (charge["id"], "CAPTURED")
    assert answer.body["capturedAmount"] == 1500.5
    assert statuses(stack) == asked + 1
    # And its timeline names the operator, the note and ePay's word
    entries = history(stack, charge["id"]).body["data"]
    last = entries[-1]
    assert (last["from"], last["to"], last["source"]) == ("NEEDS_REVIEW", "CAPTURED", "operator")
    assert OPERATOR_ARN in last["detail"]
    assert NOTE in last["detail"]
    assert "status API: CHARGE" in last["detail"]
    assert [e["to"] for e in entries].count("CAPTURED") == 1

    # When the same resolution is sent again
    again = operator(stack).invoke(
        resolve_event(charge["id"], {"status": "CAPTURED", "note": NOTE})
    )

    # Then the charge is answered as it is: nothing written, ePay not asked
    assert again.status == 200
    assert again.body == answer.body
    assert statuses(stack) == asked + 1
    assert len(history(stack, charge["id"]).body["data"]) == len(entries)
    # And another status is refused: the charge is no longer under review
    other = operator(stack).invoke(
        resolve_event(charge["id"], {"status": "DECLINED", "note": NOTE})
    )
    assert (other.status, other.body["error"]["code"]) == (409, "invalid_state")


def test_resolve_refuses_a_charge_that_is_not_under_review(stack: Stack) -> None:
    # Given a charge captured the ordinary way
    created = stack.invoke(create_event(body(), "order-1"))
    assert created.body["status"] == "CAPTURED"
    asked = statuses(stack)

    # When an operator tries to resolve it / Then it is 409 invalid_state, ePay is not asked
    answer = operator(stack).invoke(
        resolve_event(created.body["id"], {"status": "CAPTURED", "note": NOTE})
    )
    assert (answer.status, answer.body["error"]["code"]) == (409, "invalid_state")
    assert statuses(stack) == asked


def test_resolve_that_epay_contradicts_is_409_and_changes_nothing(stack: Stack) -> None:
    # Given a charge under review that ePay shows CHARGE
    charge = needs_review(stack)
    before = charge_item(stack, charge["id"])

    # When an operator says it was declined
    answer = operator(stack).invoke(
        resolve_event(charge["id"], {"status": "DECLINED", "note": NOTE})
    )

    # Then the contradiction is refused with its own code, and the charge is as it was
    assert answer.status == 409
    assert answer.body["error"]["code"] == "resolution_contradicted"
    assert "CHARGE" in answer.body["error"]["message"]
    assert charge_item(stack, charge["id"]) == before


def test_resolve_while_epay_is_pending_or_unreachable_changes_nothing(stack: Stack) -> None:
    # Given a charge under review
    charge = needs_review(stack)
    before = charge_item(stack, charge["id"])
    event = resolve_event(charge["id"], {"status": "CAPTURED", "note": NOTE})

    # When ePay's status API answers "in progress" / Then nothing can be confirmed: 409
    stack.simulator.inject("status", "in_progress", count=1)
    pending = operator(stack).invoke(event)
    assert (pending.status, pending.body["error"]["code"]) == (409, "resolution_unconfirmed")

    # When ePay cannot be reached at all / Then 503, and nothing changed either time
    stack.simulator.inject("status", "down", count=3)
    down = operator(stack).invoke(event)
    assert (down.status, down.body["error"]["code"]) == (503, "gateway_unavailable")
    assert charge_item(stack, charge["id"]) == before
    assert stack.simulator.faults() == []


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({"status": "PROCESSING", "note": NOTE}, {"status"}),
        ({"status": "NEEDS_REVIEW", "note": NOTE}, {"status"}),
        ({"status": "CAPTURED"}, {"note"}),
        ({"status": "CAPTURED", "note": ""}, {"note"}),
        ({"status": "CAPTURED", "note": "x" * 501}, {"note"}),
        ({"status": "CAPTURED", "note": NOTE, "amount": 1500.5}, {"amount"}),
    ],
)
def test_resolve_with_a_bad_body_is_400_and_writes_nothing(
    stack: Stack, payload: dict[str, Any], fields: set[str]
) -> None:
    # Given a charge under review, and the table as it is
    charge = needs_review(stack)
    items, asked = stack.items(), statuses(stack)

    # When a resolution with a bad body arrives
    answer = operator(stack).invoke(resolve_event(charge["id"], payload))

    # Then it is 400 naming the fields, nothing is written and ePay is not asked
    assert answer.status == 400, answer.raw
    assert answer.body["error"]["code"] == "validation_error"
    assert set(answer.body["error"]["fields"]) == fields
    assert stack.items() == items
    assert statuses(stack) == asked


def test_resolve_without_a_caller_identity_is_refused(stack: Stack) -> None:
    # Given a charge under review and a request whose IAM identity is missing
    charge = needs_review(stack)
    event = resolve_event(charge["id"], {"status": "CAPTURED", "note": NOTE})
    del event["requestContext"]["authorizer"]

    # When it arrives / Then nothing is done for an unnamed caller
    answer = operator(stack).invoke(event)
    assert (answer.status, answer.body["error"]["code"]) == (403, "caller_unidentified")
    assert charge_item(stack, charge["id"])["status"]["S"] == "NEEDS_REVIEW"


# ------------------------------------------------------------------------------ replay


def test_replay_of_a_deferred_notification_settles_the_charge(pl: PostLinkStack) -> None:
    # Given an UNKNOWN charge whose notification arrived while ePay's status API was down
    charge = unknown_charge(pl)
    payload = pl.notification()
    pl.simulator.inject("status", "down", count=3)
    assert pl.post(payload).status == 200
    stored_id = inbox_id(payload)
    assert stored_id == f"{charge['invoiceId']}.{digest_of(payload)}"
    assert inbox_item(pl.charges, stored_id)["verdict"]["S"] == "deferred"
    assert pl.simulator.faults() == []
    assert pl.charge(charge["id"])["status"]["S"] == "UNKNOWN"

    # When an operator replays it
    answer = operator(pl.charges).invoke(replay_event(stored_id))

    # Then it is verified and settled: the charge is CAPTURED through the status API
    assert answer.status == 200, answer.raw
    assert answer.body == {
        "inboxId": stored_id,
        "verdict": "settled",
        "chargeId": charge["id"],
        "status": "CAPTURED",
        "detail": "changed: CAPTURED",
    }
    assert pl.charge(charge["id"])["status"]["S"] == "CAPTURED"
    assert [h[2] for h in pl.history(charge["id"])][-2:] == ["postlink", "postlink"]
    # And the inbox item has its new verdict and names who replayed it
    item = inbox_item(pl.charges, stored_id)
    assert item["verdict"]["S"] == "settled"
    assert item["lastReplayedBy"]["S"] == OPERATOR_ARN
    assert item["replays"]["N"] == "1"
    assert item["deliveries"]["N"] == "1"  # a replay is no delivery
    assert "secret_hash" not in json.dumps(item)


def test_replay_of_a_forged_notification_stays_forged(pl: PostLinkStack) -> None:
    # Given an UNKNOWN charge and a forged notification for it, refused on delivery
    charge = unknown_charge(pl)
    forged = {**pl.notification(), "secret_hash": GUESSED}
    assert pl.post(forged).status == 403

    # When an operator replays it
    answer = operator(pl.charges).invoke(replay_event(inbox_id(forged)))

    # Then it is answered (200) as still forged, ePay is not asked and nothing moves
    assert answer.status == 200, answer.raw
    assert answer.body == {
        "inboxId": inbox_id(forged),
        "verdict": "forged",
        "chargeId": charge["id"],
        "status": "UNKNOWN",
        "detail": "mismatched: secret_hash",
    }
    assert pl.ops("status") == 0
    assert pl.charge(charge["id"])["status"]["S"] == "UNKNOWN"
    assert inbox_item(pl.charges, inbox_id(forged))["verdict"]["S"] == "forged"


def test_replay_of_a_genuine_notification_already_settled_changes_nothing(
    pl: PostLinkStack,
) -> None:
    # Given a charge settled by its notification
    charge = unknown_charge(pl)
    payload = pl.notification()
    assert pl.post(payload).status == 200
    before = pl.history(charge["id"])

    # When it is replayed / Then it is settled again without a second transition
    answer = operator(pl.charges).invoke(replay_event(inbox_id(payload)))
    assert (answer.body["verdict"], answer.body["status"]) == ("settled", "CAPTURED")
    assert answer.body["detail"] == "unchanged: CAPTURED"
    assert pl.history(charge["id"]) == before
    assert pl.ops("charge") == 1  # captured once


@pytest.mark.parametrize("unknown", ["0" * 64, "000000042." + "0" * 64, "CARD0001." + "a" * 64])
def test_replay_of_an_unknown_inbox_id_is_404(stack: Stack, unknown: str) -> None:
    # Given a well-formed inbox id (of either layout) that names nothing
    # When it is replayed / Then it is 404
    answer = operator(stack).invoke(replay_event(unknown))
    assert (answer.status, answer.body["error"]["code"]) == (404, "not_found")


@pytest.mark.parametrize(
    "malformed",
    [
        "F" * 64,
        "abc",
        "0" * 65,
        "000000042." + "0" * 63,
        "000000042.." + "0" * 64,
        "42." + "0" * 64,
        "INBOX#" + "0" * 64,
        "000000042%2E" + "0" * 64,
        "000000042." + "0" * 64 + " ",
        "x" * 2000,
    ],
)
def test_replay_of_a_malformed_inbox_id_is_404_before_any_read(
    stack: Stack, malformed: str
) -> None:
    # Given an inbox id of no shape the inbox gives (counting the function's AWS requests)
    # When it is replayed
    with aws_calls() as calls:
        answer = operator(stack).invoke(replay_event(malformed))

    # Then it names no notification (the router's path id rule), and nothing was read or asked
    assert (answer.status, answer.body["error"]["code"]) == (404, "not_found"), answer.raw
    assert calls == []


def test_replay_by_a_bare_digest_finds_a_notification_stored_the_old_way(
    pl: PostLinkStack,
) -> None:
    # Given a deferred notification of an UNKNOWN charge, as stored before 2026-12-06: its own
    # item INBOX#<sha256> / INBOX (moved there from its invoice's partition)
    charge = unknown_charge(pl)
    payload = pl.notification()
    pl.simulator.inject("status", "down", count=3)
    assert pl.post(payload).status == 200
    item = inbox_item(pl.charges, inbox_id(payload))
    old_key = inbox_key(digest_of(payload))
    pl.charges.dynamodb.put_item(TableName=pl.charges.table, Item={**item, **old_key})
    pl.charges.dynamodb.delete_item(TableName=pl.charges.table, Key=inbox_key(inbox_id(payload)))

    # When an operator replays it by its bare digest (what a timeline showed then)
    answer = operator(pl.charges).invoke(replay_event(digest_of(payload)))

    # Then it is found, verified and settled, and the old item names who replayed it
    assert answer.status == 200, answer.raw
    assert (answer.body["inboxId"], answer.body["verdict"]) == (digest_of(payload), "settled")
    assert pl.charge(charge["id"])["status"]["S"] == "CAPTURED"
    replayed = inbox_item(pl.charges, digest_of(payload))
    assert (replayed["verdict"]["S"], replayed["replays"]["N"]) == ("settled", "1")
    # And no item was made in the invoice's partition for it
    assert [i["pk"]["S"] for i in pl.inbox()] == [f"INBOX#{digest_of(payload)}"]


def test_replay_takes_no_body(pl: PostLinkStack) -> None:
    unknown_charge(pl)
    payload = pl.notification()
    assert pl.post(payload).status == 200
    event = replay_event(inbox_id(payload))
    event["headers"]["Content-Type"] = "application/json"
    event["body"] = json.dumps({"force": True})
    answer = operator(pl.charges).invoke(event)
    assert (answer.status, answer.body["error"]["code"]) == (400, "validation_error")


def test_canonical_events_name_real_routes() -> None:
    # Given the operator's canonical events / Then they aim at well-formed ids
    resolve = load_event("operator/resolve-charge.json")
    replay = load_event("operator/replay-postlink.json")
    assert is_charge_id(resolve["pathParameters"]["chargeId"])
    assert is_inbox_id(replay["pathParameters"]["inboxId"])
    assert "." in replay["pathParameters"]["inboxId"]  # the current layout's id
    assert resolve["requestContext"]["authorizer"]["iam"]["userArn"] == OPERATOR_ARN
