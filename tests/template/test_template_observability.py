"""Checks on template.yaml for observability (issue 14): the dashboard's body is JSON that names
only real resources, every Payments metric it (or an alarm) shows is emitted by the code, every
alarm reaches a person and is on the dashboard, and every function has its Lambda widgets."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from cfn_yaml import REPO_ROOT, resources_of_type

ALARM_TARGET = {"Fn::If": ["CreateAlarmTopic", {"Ref": "AlarmTopic"}, {"Ref": "AlarmTopicArn"}]}
PSEUDO = {"AWS::Region", "AWS::StackName", "AWS::AccountId", "AWS::Partition", "AWS::URLSuffix"}
SUB_VARIABLE = re.compile(r"\$\{([^}!]+)\}")
SQL_METRIC = re.compile(r"\b(?:MAX|MIN|SUM|AVG|COUNT)\((\w+)\)")
SQL_NAMESPACE = re.compile(r"SCHEMA\(\s*(?:\"([^\"]+)\"|([\w/]+))")


def _dashboard(template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The dashboard body as written (inside !Sub) and parsed, variables made plain strings."""
    (dashboard,) = resources_of_type(template, "AWS::CloudWatch::Dashboard").values()
    body = dashboard["Properties"]["DashboardBody"]
    assert isinstance(body, dict), "DashboardBody is a !Sub string"
    raw = body["Fn::Sub"]
    assert isinstance(raw, str), "DashboardBody is !Sub of one string (no variable map)"
    return raw, json.loads(SUB_VARIABLE.sub(lambda m: f"SUB[{m.group(1)}]", raw))


def _widgets(body: dict[str, Any], kind: str = "metric") -> list[dict[str, Any]]:
    return [w["properties"] for w in body["widgets"] if w["type"] == kind]


def _metric_rows(widget: dict[str, Any]) -> list[list[Any]]:
    """Each metric row with "..." (repeat the row above) expanded, options dropped."""
    rows: list[list[Any]] = []
    for row in widget.get("metrics", []):
        fields = [f for f in row if not isinstance(f, dict)]
        if not fields:  # an expression row
            continue
        if fields[0] == "...":
            fields = rows[-1][:2] + fields[1:] if len(fields) > 1 else rows[-1]
        rows.append(fields)
    return rows


def _expressions(widget: dict[str, Any]) -> list[str]:
    return [
        str(f["expression"])
        for row in widget.get("metrics", [])
        for f in row
        if isinstance(f, dict) and "expression" in f
    ]


def _sql_metrics(expression: str, namespace: str) -> set[str]:
    """Metric names of a Metrics Insights query over `namespace`."""
    found = SQL_NAMESPACE.search(expression)
    if found is None or namespace not in found.groups():
        return set()
    return set(SQL_METRIC.findall(expression))


def _dashboard_payments_metrics(body: dict[str, Any]) -> set[str]:
    names = set()
    for widget in _widgets(body):
        names |= {row[1] for row in _metric_rows(widget) if row[0] == "Payments"}
        for expression in _expressions(widget):
            names |= _sql_metrics(expression, "Payments")
    return names


def _alarm_payments_metrics(alarm: dict[str, Any]) -> set[str]:
    properties = alarm["Properties"]
    names = set()
    if properties.get("Namespace") == "Payments":
        names.add(properties["MetricName"])
    for query in properties.get("Metrics", []):
        metric = query.get("MetricStat", {}).get("Metric", {})
        if metric.get("Namespace") == "Payments":
            names.add(metric["MetricName"])
        names |= _sql_metrics(str(query.get("Expression", "")), "Payments")
    return names


@cache
def _source() -> str:
    """Every deployed Python file (the layer and the functions), concatenated."""
    files = [*(REPO_ROOT / "layers").rglob("*.py"), *(REPO_ROOT / "functions").rglob("*.py")]
    return "\n".join(p.read_text(encoding="utf-8") for p in files if ".aws-sam" not in p.parts)


def _emitted(name: str) -> bool:
    """The metric name appears as a string literal in the deployed code."""
    return f'"{name}"' in _source()


# ------------------------------------------------------------------------------ dashboard


def test_the_dashboard_body_is_json_naming_only_real_things(template: dict[str, Any]) -> None:
    # Given the dashboard's body (parsing it is the first check)
    raw, body = _dashboard(template)
    assert body["widgets"]

    # Then every ${...} in it is a resource (or its attribute), a parameter or a pseudo parameter
    known = set(template["Resources"]) | set(template["Parameters"]) | PSEUDO
    for variable in SUB_VARIABLE.findall(raw):
        assert variable.split(".")[0] in known, variable
    # And every metric widget is in the stack's region
    for widget in _widgets(body):
        assert widget["region"] == "SUB[AWS::Region]", widget["title"]
    # And widgets do not overlap (CloudWatch's grid is 24 wide)
    cells: set[tuple[int, int]] = set()
    for widget in body["widgets"]:
        assert widget["x"] + widget["width"] <= 24
        area = {
            (x, y)
            for x in range(widget["x"], widget["x"] + widget["width"])
            for y in range(widget["y"], widget["y"] + widget["height"])
        }
        assert not cells & area, widget["properties"].get("title")
        cells |= area


def test_every_payments_metric_on_the_dashboard_is_emitted_by_the_code(
    template: dict[str, Any],
) -> None:
    _, body = _dashboard(template)
    shown = _dashboard_payments_metrics(body)
    # What the issue asks the dashboard to show
    assert {
        "ChargeCaptured",
        "ChargeDeclined",
        "ChargeFailed",
        "ChargeUnknown",
        "ChargeNeedsReview",
        "ChargeRequires3DS",
        "ChargeDeclinedByCategory",
        "ThreeDSCompleted",
        "PostLinkSettled",
        "PostLinkForged",
        "ReconcilerDueBacklog",
        "ReconcilerOldestDueSeconds",
        "RefundNeedsReview",
        "RenewalsEnqueued",
        "RenewalPaid",
        "RenewalDeclined",
        "EpayLatency",
    } <= shown
    missing = sorted(name for name in shown if not _emitted(name))
    assert not missing, f"shown on the dashboard but emitted nowhere: {missing}"


def test_every_payments_metric_an_alarm_watches_is_emitted_by_the_code(
    template: dict[str, Any],
) -> None:
    watched = set().union(
        *(
            _alarm_payments_metrics(a)
            for a in resources_of_type(template, "AWS::CloudWatch::Alarm").values()
        )
    )
    assert {"ChargeNeedsReview", "RefundNeedsReview", "PostLinkForged"} <= watched
    missing = sorted(name for name in watched if not _emitted(name))
    assert not missing, f"alarmed on but emitted nowhere: {missing}"


def test_the_dashboard_shows_every_alarm(template: dict[str, Any]) -> None:
    _, body = _dashboard(template)
    shown = {a for widget in _widgets(body, "alarm") for a in widget["alarms"]}
    alarms = resources_of_type(template, "AWS::CloudWatch::Alarm")
    assert shown == {f"SUB[{alarm_id}.Arn]" for alarm_id in alarms}


def test_every_function_has_errors_duration_and_throttles_on_the_dashboard(
    template: dict[str, Any], functions: dict[str, dict[str, Any]]
) -> None:
    _, body = _dashboard(template)
    shown: dict[str, set[str]] = {}
    for widget in _widgets(body):
        for row in _metric_rows(widget):
            if row[0] == "AWS/Lambda":
                assert row[2] == "FunctionName"
                shown.setdefault(row[1], set()).add(row[3])
    expected = {f"SUB[{function_id}]" for function_id in functions}
    assert shown == {"Errors": expected, "Duration": expected, "Throttles": expected}


def test_epay_latency_is_shown_for_every_operation_the_client_calls(
    template: dict[str, Any],
) -> None:
    # Given the operations the ePay client names when it calls (payments.epay.client)
    client = (REPO_ROOT / "layers/payments/payments/epay/client.py").read_text(encoding="utf-8")
    operations = set(re.findall(r"self\._(?:call|send|operation|observe)\(\s*\"(\w+)\"", client))
    assert {"token", "auth", "status", "capture", "confirm"} <= operations

    # Then the dashboard plots EpayLatency at p50 and at p99 for each of them
    _, body = _dashboard(template)
    by_stat: dict[str, set[str]] = {}
    for widget in _widgets(body):
        for row in _metric_rows(widget):
            if row[:2] == ["Payments", "EpayLatency"]:
                dimensions = dict(zip(row[2::2], row[3::2], strict=True))
                by_stat.setdefault(widget["stat"], set()).add(dimensions["Operation"])
    assert by_stat == {"p50": operations, "p99": operations}


def test_the_stack_outputs_the_dashboard(template: dict[str, Any]) -> None:
    url = template["Outputs"]["DashboardUrl"]["Value"]["Fn::Sub"]
    assert "${PaymentsDashboard}" in url


# ------------------------------------------------------------------------------ alarms


def test_every_alarm_reaches_a_person_and_says_what_to_do(template: dict[str, Any]) -> None:
    for alarm_id, alarm in resources_of_type(template, "AWS::CloudWatch::Alarm").items():
        properties = alarm["Properties"]
        assert properties.get("AlarmActions") == [ALARM_TARGET], alarm_id
        assert properties.get("OKActions") == [ALARM_TARGET], alarm_id
        description = " ".join(str(properties.get("AlarmDescription", "")).split())
        assert "First:" in description, alarm_id


def test_the_new_alarms_watch_what_the_issue_asks(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    # Refunds in NEEDS_REVIEW: the first one pages
    refund = resources["RefundNeedsReviewAlarm"]["Properties"]
    assert (refund["MetricName"], refund["Statistic"], refund["Threshold"]) == (
        "RefundNeedsReview",
        "Sum",
        1,
    )
    # A reconciler falling behind: the oldest due charge's wait, three periods in a row
    behind = resources["ReconcilerFallingBehindAlarm"]["Properties"]
    assert behind["MetricName"] == "ReconcilerOldestDueSeconds"
    assert behind["Statistic"] == "Maximum"
    assert behind["Threshold"] == {"Ref": "ReconcilerLagAlarmSeconds"}
    assert behind["EvaluationPeriods"] == behind["DatapointsToAlarm"] == 3
    assert template["Parameters"]["ReconcilerLagAlarmSeconds"]["Default"] >= 600
    # Card setups failing unusually: a share of the finished ones, and only above a floor
    setups = resources["CardSetupFailuresAlarm"]["Properties"]
    (returned,) = [m for m in setups["Metrics"] if m.get("ReturnData")]
    assert "failed, 0) >= 5" in returned["Expression"]


def test_runbook_has_an_entry_for_every_alarm(template: dict[str, Any], repo_root: Path) -> None:
    readme = (repo_root / "README.md").read_text(encoding="utf-8")
    start = readme.index("### Runbook: alarms and the dashboard")
    runbook = readme[start : readme.index("\n## ", start)]
    headings = set(re.findall(r"^#### (\w+)(?=\n)", runbook, flags=re.MULTILINE))
    headings.discard("Metrics")
    assert headings == set(resources_of_type(template, "AWS::CloudWatch::Alarm"))
