"""HTTP plumbing: the transport port and its urllib3 adapter, SigV4 signing, exact-money JSON.

Tests hand `PaymentsClient` their own `Transport` (no sockets); the default is urllib3 with no
redirects and no retries of its own (the client decides what is retried).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

import urllib3

from epay_payments_client.errors import ApiConnectionError, ConfigurationError


@dataclass(frozen=True)
class HttpResponse:
    """An HTTP answer: status, headers (names lower-cased) and body bytes."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class Transport(Protocol):
    """Sends one HTTP request; raises ApiConnectionError when no answer arrived."""

    def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: float,
    ) -> HttpResponse:
        """Send the request once and return the answer, whatever its status."""
        ...


class Urllib3Transport:
    """The default transport: one urllib3 pool, explicit connect/read timeouts, no redirects."""

    def __init__(self, pool: urllib3.PoolManager | None = None) -> None:
        self._pool = pool or urllib3.PoolManager(retries=False)

    def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: float,
    ) -> HttpResponse:
        """Send once; connection failures and timeouts become ApiConnectionError."""
        try:
            answer = self._pool.request(
                method,
                url,
                body=body,
                headers=dict(headers),
                timeout=urllib3.Timeout(connect=timeout, read=timeout),
                retries=False,
                redirect=False,
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ApiConnectionError(
                f"no answer from the payments API ({type(exc).__name__})"
            ) from exc
        return HttpResponse(
            answer.status, {k.lower(): v for k, v in answer.headers.items()}, answer.data
        )

    def close(self) -> None:
        """Close the pool's connections."""
        self._pool.clear()


# --- SigV4 -----------------------------------------------------------------------------------

_EXECUTE_API_HOST = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")


def region_from_url(host: str) -> str | None:
    """The region in an `<api>.execute-api.<region>.amazonaws.com` host, else None."""
    match = _EXECUTE_API_HOST.search(host.lower())
    return match.group(1) if match else None


class SigV4Signer:
    """Signs requests for API Gateway (`execute-api`) with botocore's SigV4.

    Credentials come from the caller, else botocore's default chain (environment, profile, SSO,
    container or instance role), resolved on first use and refreshed by botocore when they
    expire. botocore is imported only when a request is signed.
    """

    service = "execute-api"

    def __init__(self, region: str | None, credentials: Any | None, host: str) -> None:
        self._region = region or region_from_url(host)
        self._credentials = credentials

    def _resolve(self) -> tuple[str, Any]:
        if self._credentials is None or self._region is None:
            import botocore.session

            session = botocore.session.get_session()
            if self._credentials is None:
                self._credentials = session.get_credentials()
            if self._region is None:
                self._region = session.get_config_variable("region")
        if self._credentials is None:
            raise ConfigurationError(
                "no AWS credentials found (environment, profile or role); pass credentials=, "
                "or unsigned=True for the local stack",
                code="missing_credentials",
            )
        if not self._region:
            raise ConfigurationError(
                "no AWS region: pass region= or set AWS_REGION / AWS_DEFAULT_REGION",
                code="missing_region",
            )
        return self._region, self._credentials

    def sign(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None
    ) -> dict[str, str]:
        """The headers with `Authorization`, `X-Amz-Date` (and `X-Amz-Security-Token`)."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        region, credentials = self._resolve()
        frozen = (
            credentials.get_frozen_credentials()
            if hasattr(credentials, "get_frozen_credentials")
            else credentials
        )
        request = AWSRequest(method=method, url=url, data=body or b"", headers=dict(headers))
        SigV4Auth(frozen, self.service, region).add_auth(request)
        return {str(k): str(v) for k, v in request.headers.items()}


# --- JSON ------------------------------------------------------------------------------------


def _number(value: Decimal) -> str:
    if not value.is_finite():
        raise ValueError("an amount must be a finite number")
    return format(value, "f")


def dumps(value: Any) -> str:
    """JSON with Decimals written as exact numbers; floats are refused (money is never a float)."""
    if isinstance(value, Decimal):
        return _number(value)
    if isinstance(value, Mapping):
        items = (f"{json.dumps(str(k))}:{dumps(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    if isinstance(value, float):
        raise TypeError("floats are not accepted where money may be involved: use Decimal")
    return json.dumps(value, ensure_ascii=False)


def loads(raw: bytes) -> Any:
    """Parse an answer, reading every fractional number as a Decimal."""
    return json.loads(raw.decode("utf-8"), parse_float=Decimal)
