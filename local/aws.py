"""Create the template's stateful resources (tables, secrets, queues, buses) in moto or elsewhere.

The definitions come from template.yaml itself, so the local stack cannot drift from what is
deployed: the table gets the template's keys, indexes and TTL attribute; the secret gets the name
the functions are told about. Everything here is idempotent: resources that already exist are kept
as they are (an existing secret's value is never overwritten).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol

from botocore.exceptions import ClientError

from local.template import parameter_defaults, resolve, resources_of_type

__all__ = [
    "LOCAL_EPAY_CREDENTIALS",
    "SessionLike",
    "create_resources",
]

#: ePay's public sandbox merchant (published by Halyk Bank for its test environment; not a secret).
LOCAL_EPAY_CREDENTIALS: str = json.dumps(
    {
        "client_id": "test",
        "client_secret": "yF587AV9Ms94qN2QShFzVR3vFnWkhjbAK3sG",
        "terminal_id": "67e34d63-102f-4bd1-898e-370781d0074d",
    },
    separators=(",", ":"),
)

# Properties of AWS::DynamoDB::Table that CreateTable takes with the same shape.
_TABLE_PASSTHROUGH = ("AttributeDefinitions", "KeySchema", "LocalSecondaryIndexes")
_INDEX_KEYS = ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput")


class SessionLike(Protocol):
    """What :func:`create_resources` needs of a ``boto3.session.Session``."""

    def client(self, service_name: str, **kwargs: Any) -> Any: ...


class _Clients:
    def __init__(self, aws: SessionLike | Mapping[str, Any], endpoint_url: str | None) -> None:
        self._aws = aws
        self._endpoint_url = endpoint_url
        self._made: dict[str, Any] = {}

    def __getitem__(self, service: str) -> Any:
        if isinstance(self._aws, Mapping):
            return self._aws[service]
        if service not in self._made:
            kwargs = {"endpoint_url": self._endpoint_url} if self._endpoint_url else {}
            self._made[service] = self._aws.client(service, **kwargs)
        return self._made[service]


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def create_resources(
    template: Mapping[str, Any],
    aws: SessionLike | Mapping[str, Any],
    *,
    parameters: Mapping[str, str] | None = None,
    stack_name: str = "local",
    secret_strings: Mapping[str, str] | None = None,
    endpoint_url: str | None = None,
) -> dict[str, str]:
    """Create every table, secret, queue and event bus of ``template``; return their names.

    ``aws`` is a boto3 ``Session`` (clients are made with ``endpoint_url`` when given) or a mapping
    of service name ("dynamodb", "secretsmanager", "sqs", "events") to ready clients. Names are the
    template's own (``TableName``, ``Name``, ...) when set, else ``<stack_name>-<LogicalId>``.
    Secrets get ``secret_strings[logical_id]``, defaulting to :data:`LOCAL_EPAY_CREDENTIALS`.

    The result maps each logical id to what ``Ref`` gives for it locally (table name, secret name,
    queue URL, bus name), plus ``"<LogicalId>.Arn"`` for the ARNs.
    """
    params = {**parameter_defaults(template), **(parameters or {})}
    clients = _Clients(aws, endpoint_url)
    names: dict[str, str] = {}

    _create_queues(template, clients, params, names, stack_name)

    for logical_id, resource in resources_of_type(template, "AWS::DynamoDB::Table").items():
        props = resource.get("Properties") or {}
        name = _physical_name(props.get("TableName"), logical_id, stack_name, params, names)
        names[logical_id] = name
        names[f"{logical_id}.Arn"] = _create_table(clients["dynamodb"], name, props)

    for logical_id, resource in resources_of_type(template, "AWS::SecretsManager::Secret").items():
        props = resource.get("Properties") or {}
        name = _physical_name(props.get("Name"), logical_id, stack_name, params, names)
        value = (secret_strings or {}).get(logical_id, LOCAL_EPAY_CREDENTIALS)
        names[logical_id] = name
        names[f"{logical_id}.Arn"] = _create_secret(clients["secretsmanager"], name, value)

    for logical_id, resource in resources_of_type(template, "AWS::Events::EventBus").items():
        props = resource.get("Properties") or {}
        name = _physical_name(props.get("Name"), logical_id, stack_name, params, names)
        names[logical_id] = name
        names[f"{logical_id}.Arn"] = _create_event_bus(clients["events"], name)

    return names


def _physical_name(
    declared: Any,
    logical_id: str,
    stack_name: str,
    params: Mapping[str, str],
    names: Mapping[str, str],
) -> str:
    if declared is None:
        return f"{stack_name}-{logical_id}"
    return resolve(declared, params, names)


def _create_table(dynamodb: Any, name: str, props: Mapping[str, Any]) -> str:
    request: dict[str, Any] = {"TableName": name}
    for key in _TABLE_PASSTHROUGH:
        if props.get(key):
            request[key] = props[key]
    billing = props.get("BillingMode", "PROVISIONED")
    request["BillingMode"] = billing
    if billing == "PROVISIONED":
        request["ProvisionedThroughput"] = props.get(
            "ProvisionedThroughput", {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
        )
    if props.get("GlobalSecondaryIndexes"):
        request["GlobalSecondaryIndexes"] = [
            {key: index[key] for key in _INDEX_KEYS if key in index}
            for index in props["GlobalSecondaryIndexes"]
        ]
    stream = props.get("StreamSpecification")
    if stream and stream.get("StreamViewType"):
        request["StreamSpecification"] = {
            "StreamEnabled": True,
            "StreamViewType": stream["StreamViewType"],
        }
    try:
        description = dynamodb.create_table(**request)["TableDescription"]
    except ClientError as error:
        if _error_code(error) != "ResourceInUseException":
            raise
        description = dynamodb.describe_table(TableName=name)["Table"]
    dynamodb.get_waiter("table_exists").wait(
        TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )

    ttl = props.get("TimeToLiveSpecification")
    if ttl and _truthy(ttl.get("Enabled")):
        current = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        if current.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
            dynamodb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
            )
    return str(description["TableArn"])


def _create_secret(secretsmanager: Any, name: str, value: str) -> str:
    try:
        return str(secretsmanager.create_secret(Name=name, SecretString=value)["ARN"])
    except ClientError as error:
        if _error_code(error) != "ResourceExistsException":
            raise
    return str(secretsmanager.describe_secret(SecretId=name)["ARN"])


def _create_queues(
    template: Mapping[str, Any],
    clients: _Clients,
    params: Mapping[str, str],
    names: dict[str, str],
    stack_name: str,
) -> None:
    queues = resources_of_type(template, "AWS::SQS::Queue")
    # Dead-letter queues (no RedrivePolicy) before the queues that point at them.
    ordered = sorted(
        queues.items(), key=lambda item: "RedrivePolicy" in (item[1].get("Properties") or {})
    )
    for logical_id, resource in ordered:
        props = resource.get("Properties") or {}
        fifo = _truthy(props.get("FifoQueue"))
        name = _physical_name(props.get("QueueName"), logical_id, stack_name, params, names) + (
            "" if props.get("QueueName") is not None or not fifo else ".fifo"
        )
        attributes: dict[str, str] = {}
        for key in (
            "VisibilityTimeout",
            "MessageRetentionPeriod",
            "DelaySeconds",
            "ReceiveMessageWaitTimeSeconds",
            "MaximumMessageSize",
        ):
            if key in props:
                attributes[key] = resolve(props[key], params, names)
        if fifo:
            attributes["FifoQueue"] = "true"
            if _truthy(props.get("ContentBasedDeduplication")):
                attributes["ContentBasedDeduplication"] = "true"
        redrive = props.get("RedrivePolicy")
        if isinstance(redrive, dict):
            target = redrive.get("deadLetterTargetArn")
            attributes["RedrivePolicy"] = json.dumps(
                {
                    "deadLetterTargetArn": _arn_of(target, params, names),
                    "maxReceiveCount": int(redrive.get("maxReceiveCount", 1)),
                }
            )
        sqs = clients["sqs"]
        url = str(sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
        names[logical_id] = url
        names[f"{logical_id}.Arn"] = str(arn["QueueArn"])
        names[f"{logical_id}.QueueName"] = name


def _arn_of(value: Any, params: Mapping[str, str], names: Mapping[str, str]) -> str:
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        resource, attribute = value["Fn::GetAtt"]
        return names[f"{resource}.{attribute}"]
    return resolve(value, params, names)


def _create_event_bus(events: Any, name: str) -> str:
    if name == "default":
        return str(events.describe_event_bus(Name=name)["Arn"])
    try:
        return str(events.create_event_bus(Name=name)["EventBusArn"])
    except ClientError as error:
        if _error_code(error) != "ResourceAlreadyExistsException":
            raise
    return str(events.describe_event_bus(Name=name)["Arn"])


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")
