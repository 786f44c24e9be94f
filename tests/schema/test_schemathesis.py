"""Every operation of openapi.yaml, fuzzed by schemathesis over HTTP against the local stack."""

from __future__ import annotations

from typing import Any

from schemathesis import Case

from local.run import LocalStack
from tests.schema.config import TALLY, load_schema

schema = load_schema()


@schema.parametrize()
def test_operation_keeps_the_document(case: Case[Any], schema_stack: LocalStack) -> None:
    # Given a request generated from the document (its examples, boundary values, positive and
    # negative data) / When it is sent to the stack / Then the answer is as documented
    response = case.call(base_url=schema_stack.url)
    TALLY[f"per-operation {case.operation.label}"] += 1
    case.validate_response(response)
