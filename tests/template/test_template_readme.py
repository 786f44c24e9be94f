"""The README's deploy section tells the truth about the stack: its outputs and what survives a
deletion are template.yaml's."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _deploy_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("\n## Deploy")
    return text[start : text.index("\n## ", start + 1)]


def test_the_outputs_table_is_the_templates(template: dict[str, Any]) -> None:
    # Given the README's outputs table / Then it names exactly the template's outputs
    rows = [line for line in _deploy_section().splitlines() if line.startswith("| `")]
    named = {name for row in rows for name in re.findall(r"`(\w+)`", row.split("|")[1])}
    assert named == set(template["Outputs"])


def test_what_a_deletion_keeps_is_what_the_template_retains(template: dict[str, Any]) -> None:
    # Given the resources the template retains / Then the README names each, and only them
    retained = {
        name
        for name, resource in template["Resources"].items()
        if resource.get("DeletionPolicy") == "Retain"
    }
    section = _deploy_section()
    said = set(re.findall(r"\*\*`(\w+)`\*\*", section))
    assert said == retained
