"""Fixtures for the checks on template.yaml (helpers live in cfn_yaml.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cfn_yaml import REPO_ROOT, load_template, resources_of_type


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="session")
def functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = resources_of_type(template, "AWS::Serverless::Function")
    assert found, "template.yaml defines no AWS::Serverless::Function"
    return found
