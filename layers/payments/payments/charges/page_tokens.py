"""The customer's 3-D Secure page token: random, bound to one charge, kept only as a digest.

token  = base64url(HMAC-SHA256(key, "<charge id>|<nonce>"))   256 bits, never stored
stored = the nonce (random, 128 bits) and SHA-256(token)

The key is not in DynamoDB (bootstrap derives it from the ePay client secret in Secrets Manager),
so a copy of the table can neither read a token nor mint one; the API recomputes the token from the
nonce to show `nextAction.url` on the create answer, its replays and GET.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable

KEY_LABEL = b"payments/3ds-page-token/v1"
TOKEN_RE = re.compile(r"\A[A-Za-z0-9_-]{43}\Z")


def derive_key(secret: str) -> bytes:
    """A key for page tokens from a server-side secret, under a fixed label (domain separation)."""
    return hmac.new(secret.encode("utf-8"), KEY_LABEL, hashlib.sha256).digest()


def token_digest(token: str) -> str:
    """What is stored of a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


class PageTokens:
    """Issues, recomputes and checks page tokens."""

    def __init__(
        self,
        key: Callable[[], bytes],
        *,
        new_nonce: Callable[[], str] = lambda: secrets.token_urlsafe(16),
    ) -> None:
        self._key = key
        self._new_nonce = new_nonce

    def token(self, charge_id: str, nonce: str) -> str:
        """The token of a charge, recomputed from its stored nonce."""
        mac = hmac.new(self._key(), f"{charge_id}|{nonce}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")

    def issue(self, charge_id: str) -> tuple[str, str]:
        """A fresh (nonce, digest) pair to store with a charge that needs 3-D Secure."""
        nonce = self._new_nonce()
        return nonce, token_digest(self.token(charge_id, nonce))

    @staticmethod
    def matches(presented: str | None, stored_digest: str | None) -> bool:
        """True when `presented` is the token whose digest is stored (constant-time)."""
        if not presented or not stored_digest or not TOKEN_RE.match(presented):
            return False
        return hmac.compare_digest(token_digest(presented), stored_digest)
