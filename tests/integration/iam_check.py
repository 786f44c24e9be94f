"""Each function's DynamoDB calls, checked against what template.yaml's IAM lets it do.

The local parts (DynamoDB Local, moto) enforce no IAM, so a least-privilege statement that misses
an action or a key prefix the code really uses would only fail in AWS. `checked` wraps a
function's handler: while it runs, every DynamoDB request its thread makes is evaluated against
the function's inline statements (the `Policies` of the function, or of its `Role`) the way IAM
evaluates them for DynamoDB: the action (`dynamodb:<Operation>`; a transaction's items each as
the Put, Update, Delete or ConditionCheck they are), the resource (the table, or one of its
indexes) and the `dynamodb:LeadingKeys` condition (`ForAllValues:StringLike` patterns; `Null:
false` wants a key). A request no statement allows is recorded in VIOLATIONS; the tier's autouse
fixture fails the test that made it. The current function is known per thread, and a task
submitted to a thread pool (the reconciler's, the renewal dispatcher's) carries it along.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from botocore.client import BaseClient

from local.template import load_template

ROOT = Path(__file__).resolve().parents[2]
VIOLATIONS: list[str] = []
_current = threading.local()
_installed = False
_install_lock = threading.Lock()


@functools.cache
def _template() -> dict[str, Any]:
    return load_template(ROOT / "template.yaml")


def function_id_of(name: str) -> str:
    """The logical id of the function whose code is functions/<name>/."""
    for logical_id, resource in _template()["Resources"].items():
        properties = resource.get("Properties") or {}
        if (
            resource.get("Type") == "AWS::Serverless::Function"
            and properties.get("CodeUri") == f"functions/{name}/"
        ):
            return str(logical_id)
    raise KeyError(name)


def statements(function_id: str) -> list[dict[str, Any]]:
    """The inline IAM statements of a function (its Policies, or its Role's)."""
    resources = _template()["Resources"]
    properties = resources[function_id]["Properties"]
    found: list[dict[str, Any]] = []
    role = properties.get("Role")
    if isinstance(role, dict) and "Fn::GetAtt" in role:
        for policy in resources[role["Fn::GetAtt"][0]]["Properties"].get("Policies", []):
            found.extend(policy["PolicyDocument"]["Statement"])
        return found
    for policy in properties.get("Policies") or []:
        if isinstance(policy, dict) and "Statement" in policy:
            found.extend(policy["Statement"])
    return found


def _resource_names(statement: Mapping[str, Any]) -> list[str]:
    """'table' and 'index:<pattern>' for each resource of the payments table it names."""
    names = []
    for resource in statement.get("Resource", []):
        if resource == {"Fn::GetAtt": ["PaymentsTable", "Arn"]}:
            names.append("table")
        elif isinstance(resource, dict) and "Fn::Sub" in resource:
            text = resource["Fn::Sub"]
            match = re.fullmatch(r"\$\{PaymentsTable\.Arn\}/index/(.+)", str(text))
            if match:
                names.append(f"index:{match[1]}")
    return names


def _allows(statement: Mapping[str, Any], action: str, resource: str, keys: list[str]) -> bool:
    actions = statement.get("Action", [])
    actions = [actions] if isinstance(actions, str) else actions
    if statement.get("Effect") != "Allow" or action not in actions:
        return False
    if not any(
        name == resource or (name.startswith("index:") and resource.startswith("index:")
                             and fnmatchcase(resource[6:], name[6:]))
        for name in _resource_names(statement)
    ):  # fmt: skip
        return False
    condition = statement.get("Condition") or {}
    if condition.get("Null", {}).get("dynamodb:LeadingKeys") == "false" and not keys:
        return False
    patterns = condition.get("ForAllValues:StringLike", {}).get("dynamodb:LeadingKeys")
    if patterns is not None:
        return all(any(fnmatchcase(key, p) for p in patterns) for key in keys)
    return True


def _pk(key: Mapping[str, Any]) -> str:
    return str(key["pk"]["S"])


def _query_key(params: Mapping[str, Any]) -> list[str]:
    """The partition value a Query asks for (the first `name = :value` of its key condition)."""
    match = re.match(r"\s*(#?\w+)\s*=\s*(:\w+)", str(params.get("KeyConditionExpression", "")))
    if not match:
        return []
    value = params.get("ExpressionAttributeValues", {}).get(match[2], {})
    return [str(v) for v in value.values()][:1]


_TRANSACT_KINDS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


def requests(operation: str, params: Mapping[str, Any]) -> Iterator[tuple[str, str, list[str]]]:
    """(IAM action, 'table' or 'index:<name>', leading keys) IAM authorises a request by."""
    action = f"dynamodb:{operation}"
    index = params.get("IndexName")
    where = f"index:{index}" if index else "table"
    if operation in ("GetItem", "DeleteItem", "UpdateItem", "PutItem"):
        yield action, "table", [_pk(params.get("Key") or params["Item"])]
    elif operation in ("Query", "Scan"):
        yield action, where, _query_key(params) if operation == "Query" else []
    elif operation in ("BatchGetItem", "BatchWriteItem"):
        for entries in params["RequestItems"].values():
            keys = (
                entries["Keys"] if operation == "BatchGetItem" else [_written(w) for w in entries]
            )
            yield action, "table", [_pk(key) for key in keys]
    elif operation == "TransactWriteItems":
        for item in params["TransactItems"]:
            ((kind, body),) = item.items()
            yield (
                f"dynamodb:{_TRANSACT_KINDS[kind]}",
                "table",
                [_pk(body.get("Key") or body["Item"])],
            )
    elif operation == "TransactGetItems":
        for item in params["TransactItems"]:
            yield "dynamodb:GetItem", "table", [_pk(item["Get"]["Key"])]
    else:
        yield action, "table", []


def _written(write: Mapping[str, Any]) -> Mapping[str, Any]:
    """The key of one BatchWriteItem request (a put's item, or a delete's key)."""
    put = write.get("PutRequest")
    return put["Item"] if put else write["DeleteRequest"]["Key"]


def problems(function_id: str, operation: str, params: Mapping[str, Any]) -> list[str]:
    """What IAM would refuse of one DynamoDB request of `function_id` (empty: all allowed)."""
    found = []
    for action, resource, keys in requests(operation, params):
        if not any(_allows(s, action, resource, keys) for s in statements(function_id)):
            found.append(f"{function_id}: {action} on {resource} with keys {keys} is not allowed")
    return found


def _install() -> None:
    global _installed
    with _install_lock:
        if _installed:
            return
        make_call = BaseClient._make_api_call

        def guarded(client: Any, operation: str, params: dict[str, Any]) -> Any:
            function_id = getattr(_current, "function_id", None)
            if function_id is not None and client.meta.service_model.service_name == "dynamodb":
                VIOLATIONS.extend(problems(function_id, operation, params))
            return make_call(client, operation, params)

        BaseClient._make_api_call = guarded  # type: ignore[method-assign]
        submit = ThreadPoolExecutor.submit

        def carried(pool: Any, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
            function_id = getattr(_current, "function_id", None)

            def task() -> Any:
                previous = getattr(_current, "function_id", None)
                _current.function_id = function_id
                try:
                    return fn(*args, **kwargs)
                finally:
                    _current.function_id = previous

            return submit(pool, task)

        ThreadPoolExecutor.submit = carried  # type: ignore[method-assign]
        _installed = True


def checked(handler: Callable[..., Any], name: str) -> Callable[..., Any]:
    """`handler` (of functions/<name>), its DynamoDB requests checked against its IAM."""
    function_id = function_id_of(name)
    _install()

    @functools.wraps(handler)
    def run(event: Any, context: Any) -> Any:
        previous = getattr(_current, "function_id", None)
        _current.function_id = function_id
        try:
            return handler(event, context)
        finally:
            _current.function_id = previous

    return run
