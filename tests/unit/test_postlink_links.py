"""Where ePay's postLinks point: the postLink function's URL (POSTLINK_BASE_URL) when it is set,
else under PUBLIC_BASE_URL like every other public link (the local stack, older deployments)."""

from __future__ import annotations

import pytest

from payments.charges.links import FAILURE_POSTLINK_PATH, POSTLINK_PATH, PublicLinks
from payments.config import load_settings
from payments.errors import ConfigurationError

ENV = {"EPAY_SECRET_ID": "s", "PAYMENTS_TABLE": "t", "PUBLIC_BASE_URL": "https://pay.example/v1"}
FUNCTION_URL = "https://p4stl1nk.lambda-url.eu-central-1.on.aws/"


def test_postlinks_go_to_the_function_url_and_the_pages_stay_on_the_api() -> None:
    # Given a function URL as CloudFormation gives it (with a trailing "/")
    links = PublicLinks("https://pay.example/v1", FUNCTION_URL)
    # Then the postLinks are under it, with no doubled slash
    assert links.post_link == "https://p4stl1nk.lambda-url.eu-central-1.on.aws" + POSTLINK_PATH
    assert links.failure_post_link == (
        "https://p4stl1nk.lambda-url.eu-central-1.on.aws" + FAILURE_POSTLINK_PATH
    )
    # And TermUrl and the customer pages stay under the public base URL
    assert links.term_url("ch_1") == "https://pay.example/v1/charges/ch_1/3ds/return"
    assert links.setup_page_url("cs_1", "t").startswith("https://pay.example/v1/card-setups/")
    assert links.base_origin == "https://pay.example"


@pytest.mark.parametrize("postlink_base", [None, ""])
def test_without_a_function_url_postlinks_stay_under_the_public_base(
    postlink_base: str | None,
) -> None:
    links = PublicLinks("https://pay.example/v1/", postlink_base)
    assert links.post_link == "https://pay.example/v1/epay/postlink"
    assert links.failure_post_link == "https://pay.example/v1/epay/postlink/failure"


def test_postlink_base_url_is_read_once_and_optional() -> None:
    # Given no POSTLINK_BASE_URL / Then none (the links fall back to PUBLIC_BASE_URL)
    assert load_settings(ENV).postlink_base_url == ""
    # Given the function URL / Then it is kept without its trailing slash
    settings = load_settings({**ENV, "POSTLINK_BASE_URL": FUNCTION_URL})
    assert settings.postlink_base_url == FUNCTION_URL.rstrip("/")


@pytest.mark.parametrize("value", ["not a url", "ftp://x.example/", "https://"])
def test_a_postlink_base_url_that_is_not_http_is_refused_naming_it(value: str) -> None:
    with pytest.raises(ConfigurationError, match="POSTLINK_BASE_URL"):
        load_settings({**ENV, "POSTLINK_BASE_URL": value})
