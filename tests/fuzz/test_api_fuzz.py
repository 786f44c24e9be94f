"""Every route of every API function keeps its contract under generated requests (Hypothesis):
no undocumented 5xx, errors in the documented shape, printable headers, rejections that change
nothing and call no one. Seeded and deterministic: the same examples on every run."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from local.template import Route
from tests.fuzz.harness import Api
from tests.fuzz.strategies import (
    FuzzRequest,
    Seeds,
    requests_for,
    route_name,
    takes_input,
    template_routes,
)

ROUTES = template_routes()
# Examples per route: more where a body or a query varies (2,850 in all for 15 routes).
EXAMPLES_WITH_INPUT = 250
EXAMPLES_PATH_ONLY = 100


def test_every_api_function_is_fuzzed_by_every_route() -> None:
    # Given template.yaml / Then the fuzzed routes are all its Api events, of every API function
    assert len(ROUTES) >= 15
    assert {route.function_id for route in ROUTES} == {
        "ChargesFunction",
        "ThreeDSFunction",
        "PostLinkFunction",
        "SubscriptionsFunction",
        "CardsFunction",
        "CardPagesFunction",
        "OperatorFunction",
    }


@pytest.mark.parametrize("route", ROUTES, ids=route_name)
def test_route_keeps_its_contract_under_generated_requests(
    route: Route, fuzz_api: Api, seeds: Seeds
) -> None:
    # Given real resources to aim at, and requests generated around valid ones
    @settings(
        max_examples=EXAMPLES_WITH_INPUT if takes_input(route) else EXAMPLES_PATH_ONLY,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(request=requests_for(route, seeds))
    def keeps_contract(request: FuzzRequest) -> None:
        # When each is sent through the route's real handler as an API Gateway event
        outcome = fuzz_api.send(route, request)
        # Then the answer and what it did are within the documented contract
        assert not outcome.problems, (outcome.status, outcome.problems)

    keeps_contract()
