"""Settings from the environment, validated once; ePay credentials from Secrets Manager."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from payments.charges.model import CaptureMode
from payments.errors import ConfigurationError

EPAY_HOSTS = {
    "test": (
        "https://test-epay-oauth.epayment.kz/oauth2/token",
        "https://test-epay-api.epayment.kz",
    ),
    "prod": ("https://epay-oauth.homebank.kz/oauth2/token", "https://epay-api.homebank.kz"),
}
DEFAULT_SCOPE = "webapi usermanagement email_send verification statement statistics payment"
DEFAULT_CONFIRM_PATH = "/payments/cards/confirmPayment"
SECRET_MAX_AGE_SECONDS = 300
_BUS_RE = re.compile(r"(arn:aws[\w-]*:events:[a-z0-9-]+:\d{12}:event-bus/)?[/.\-_A-Za-z0-9]{1,256}")


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment."""

    epay_env: str
    oauth_url: str
    api_url: str
    scope: str
    confirm_path: str
    secret_id: str
    table_name: str
    public_base_url: str
    capture_mode: CaptureMode
    connect_timeout: float
    read_timeout: float
    # Only the local stack and tests set ALLOW_LOOPBACK_ACS=true: the simulator's ACS is plain
    # http on 127.0.0.1. Everywhere else an ACS address that is not https fails the charge safe.
    allow_loopback_acs: bool = False
    # Where domain events go (empty: nowhere) and where renewal messages are queued (only the
    # renewal dispatcher needs it).
    event_bus_name: str = ""
    renewal_queue_url: str = ""


def _url(name: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigurationError(f"{name} must be an http(s) URL")
    return value.rstrip("/")


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name) or str(default)
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{name} must be a number of seconds") from exc
    if not 0 < value <= 25:
        raise ConfigurationError(f"{name} must be between 0 and 25 seconds")
    return value


def load_settings(env: Mapping[str, str]) -> Settings:
    """Validate the environment into Settings; raises ConfigurationError naming the variable."""
    epay_env = env.get("EPAY_ENV", "test")
    if epay_env not in EPAY_HOSTS:
        raise ConfigurationError("EPAY_ENV must be test or prod")
    default_oauth, default_api = EPAY_HOSTS[epay_env]
    missing = [n for n in ("EPAY_SECRET_ID", "PAYMENTS_TABLE", "PUBLIC_BASE_URL") if not env.get(n)]
    if missing:
        raise ConfigurationError("missing environment variables: " + ", ".join(missing))
    capture = env.get("CAPTURE_MODE") or CaptureMode.AUTO.value
    if capture not in {m.value for m in CaptureMode}:
        raise ConfigurationError("CAPTURE_MODE must be auto or manual")
    confirm_path = env.get("EPAY_CONFIRM_PATH") or DEFAULT_CONFIRM_PATH
    if not confirm_path.startswith("/"):
        raise ConfigurationError("EPAY_CONFIRM_PATH must start with /")
    return Settings(
        epay_env=epay_env,
        oauth_url=_url("EPAY_OAUTH_URL", env.get("EPAY_OAUTH_URL") or default_oauth),
        api_url=_url("EPAY_API_URL", env.get("EPAY_API_URL") or default_api),
        scope=env.get("EPAY_SCOPE") or DEFAULT_SCOPE,
        confirm_path=confirm_path,
        secret_id=env["EPAY_SECRET_ID"],
        table_name=env["PAYMENTS_TABLE"],
        public_base_url=_url("PUBLIC_BASE_URL", env["PUBLIC_BASE_URL"]),
        capture_mode=CaptureMode(capture),
        connect_timeout=_seconds(env, "EPAY_CONNECT_TIMEOUT", 3.0),
        read_timeout=_seconds(env, "EPAY_READ_TIMEOUT", 10.0),
        allow_loopback_acs=_flag(env, "ALLOW_LOOPBACK_ACS"),
        event_bus_name=_bus_name(env.get("EVENT_BUS_NAME") or ""),
        renewal_queue_url=_optional_url("RENEWAL_QUEUE_URL", env.get("RENEWAL_QUEUE_URL") or ""),
    )


def _bus_name(value: str) -> str:
    """An EventBridge bus name or ARN (EventBridge's own pattern), or empty."""
    if value and not _BUS_RE.fullmatch(value):
        raise ConfigurationError("EVENT_BUS_NAME must be an EventBridge bus name or ARN")
    return value


def _optional_url(name: str, value: str) -> str:
    return _url(name, value) if value else ""


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = (env.get(name) or "false").strip().lower()
    if raw not in {"true", "false"}:
        raise ConfigurationError(f"{name} must be true or false")
    return raw == "true"


def parse_credentials(secret: Any) -> tuple[str, str, str]:
    """Check the secret's JSON shape: client_id, client_secret, terminal_id (all strings)."""
    if not isinstance(secret, dict):
        raise ConfigurationError("the ePay secret must be a JSON object")
    values = [secret.get(k) for k in ("client_id", "client_secret", "terminal_id")]
    if not all(isinstance(v, str) and v for v in values):
        raise ConfigurationError(
            "the ePay secret needs non-empty client_id, client_secret and terminal_id"
        )
    client_id, client_secret, terminal_id = (str(v) for v in values)
    return client_id, client_secret, terminal_id
