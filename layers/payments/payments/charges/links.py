"""The public URLs ePay and the customer's browser are sent to: their paths are owned here.

template.yaml declares the same routes (the postLink paths on the postLink function's URL, the
rest on the REST API); a template test holds the two together.
"""

from __future__ import annotations

from urllib.parse import urlsplit

POSTLINK_PATH = "/epay/postlink"
FAILURE_POSTLINK_PATH = "/epay/postlink/failure"
THREEDS_PAGE_PATH = "/charges/{chargeId}/3ds"
THREEDS_RETURN_PATH = "/charges/{chargeId}/3ds/return"
CARD_SETUP_PAGE_PATH = "/card-setups/{setupId}/page"


class PublicLinks:
    """Absolute URLs under PUBLIC_BASE_URL (the API's stage URL, or the local API).

    The postLinks go under `postlink_base_url` instead when one is given (POSTLINK_BASE_URL: the
    postLink function's Lambda function URL, which ends with "/"); else under PUBLIC_BASE_URL.
    """

    def __init__(self, public_base_url: str, postlink_base_url: str | None = None) -> None:
        self._base = public_base_url.rstrip("/")
        self._postlink_base = (postlink_base_url or public_base_url).rstrip("/")

    @property
    def base_origin(self) -> str:
        """scheme://host[:port] of the base URL."""
        parts = urlsplit(self._base)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def post_link(self) -> str:
        """Where ePay posts notifications of success."""
        return self._postlink_base + POSTLINK_PATH

    @property
    def failure_post_link(self) -> str:
        """Where ePay posts notifications of failure."""
        return self._postlink_base + FAILURE_POSTLINK_PATH

    def term_url(self, charge_id: str) -> str:
        """Where the issuer's ACS posts PaRes/MD for a charge."""
        return self._base + THREEDS_RETURN_PATH.format(chargeId=charge_id)

    def page_url(self, charge_id: str, token: str) -> str:
        """The customer's 3-D Secure page of a charge, with its single-use token."""
        return self._base + THREEDS_PAGE_PATH.format(chargeId=charge_id) + f"?token={token}"

    def setup_page_url(self, setup_id: str, token: str) -> str:
        """The customer's card setup page (ePay's payment widget), with its single-use token."""
        return self._base + CARD_SETUP_PAGE_PATH.format(setupId=setup_id) + f"?token={token}"
