"""Helpers for the checks on template.yaml: a YAML loader for CloudFormation and lookups.

template.yaml uses CloudFormation's short-form intrinsics (``!Ref``, ``!Sub``, ``!GetAtt``, ...),
which plain PyYAML rejects. ``local.template.load_template`` maps every ``!Tag`` to its long form,
so the tests work on the same dictionaries CloudFormation would see before the SAM transform.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from local import template as local_template

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """Parse a CloudFormation/SAM template, short-form intrinsics included (the local stack's
    loader, so the checks and the local stack read the template the same way)."""
    return local_template.load_template(path)


def resources_of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    """Logical id -> resource, for every resource of the given type."""
    return {
        logical_id: resource
        for logical_id, resource in template.get("Resources", {}).items()
        if resource.get("Type") == resource_type
    }


def function_property(template: dict[str, Any], function: dict[str, Any], name: str) -> Any:
    """A function property, falling back to Globals.Function like the SAM transform does."""
    properties = function.get("Properties", {})
    if name in properties:
        return properties[name]
    return template.get("Globals", {}).get("Function", {}).get(name)


def api_events(function: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event name, event properties) for every API Gateway event of a function: REST (`Api`)
    and HTTP API (`HttpApi`)."""
    for event_name, event in function.get("Properties", {}).get("Events", {}).items():
        if event.get("Type") in ("Api", "HttpApi"):
            yield event_name, event.get("Properties", {})


def api_of(event: dict[str, Any]) -> str | None:
    """The logical id of the API an API event belongs to (RestApiId, or an HTTP API's ApiId)."""
    return ref_target(event.get("RestApiId") or event.get("ApiId"))


def ref_target(value: Any) -> str | None:
    """The logical id behind a `Ref` or `Fn::GetAtt`, or None for anything else."""
    if isinstance(value, dict):
        if "Ref" in value:
            return str(value["Ref"])
        if "Fn::GetAtt" in value:
            return str(value["Fn::GetAtt"][0])
    return None


def function_statements(template: dict[str, Any], function_id: str) -> list[dict[str, Any]]:
    """Every inline IAM statement a function runs with: its SAM `Policies`, or the inline
    policies of the template's AWS::IAM::Role it names with `Role`."""
    properties = template["Resources"][function_id].get("Properties", {})
    role_id = ref_target(properties.get("Role"))
    if role_id is not None:
        role = template["Resources"][role_id]["Properties"]
        return [s for p in role.get("Policies", []) for s in p["PolicyDocument"]["Statement"]]
    return [
        s
        for p in properties.get("Policies", [])
        if isinstance(p, dict) and "Statement" in p
        for s in p["Statement"]
    ]
