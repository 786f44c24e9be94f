"""Settings from the environment, validated once; ePay credentials from Secrets Manager."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from payments.charges.model import CaptureMode
from payments.charges.terminals import Purpose, Terminal
from payments.errors import ConfigurationError

EPAY_HOSTS = {
    "test": (
        "https://test-epay-oauth.epayment.kz/oauth2/token",
        "https://test-epay-api.epayment.kz",
    ),
    "prod": ("https://epay-oauth.homebank.kz/oauth2/token", "https://epay-api.homebank.kz"),
}
# ePay's payment widget script (epay-api.md section 9), by EPAY_ENV.
EPAY_WIDGET_URLS = {
    "test": "https://test-epay.epayment.kz/payform/payment-api.js",
    "prod": "https://epay.homebank.kz/payform/payment-api.js",
}
DEFAULT_SCOPE = "webapi usermanagement email_send verification statement statistics payment"
DEFAULT_CONFIRM_PATH = "/payments/cards/confirmPayment"
SECRET_MAX_AGE_SECONDS = 300
DEFAULT_INVOICE_WINDOW_DAYS = 400
MAX_TERMINAL_WEIGHT = 1000
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
    # How long an invoice id's last six digits stay reserved on its terminal (charges.invoices).
    invoice_window: timedelta = timedelta(days=DEFAULT_INVOICE_WINDOW_DAYS)
    # ePay's payment widget script the card setup page loads (EPAY_WIDGET_URL).
    widget_url: str = EPAY_WIDGET_URLS["test"]
    # Where ePay's postLinks go (POSTLINK_BASE_URL, no trailing slash): the postLink function's
    # Lambda function URL in AWS. Empty: under public_base_url, like every other public link.
    postlink_base_url: str = ""


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
        invoice_window=_window(env.get("INVOICE_SUFFIX_WINDOW_DAYS") or ""),
        widget_url=_url(
            "EPAY_WIDGET_URL", env.get("EPAY_WIDGET_URL") or EPAY_WIDGET_URLS[epay_env]
        ),
        postlink_base_url=_optional_url("POSTLINK_BASE_URL", env.get("POSTLINK_BASE_URL") or ""),
    )


def _window(raw: str) -> timedelta:
    """INVOICE_SUFFIX_WINDOW_DAYS: whole days, 1 to 3650 (default 400)."""
    if not raw:
        return timedelta(days=DEFAULT_INVOICE_WINDOW_DAYS)
    if not raw.isdigit() or not 1 <= int(raw) <= 3650:
        raise ConfigurationError("INVOICE_SUFFIX_WINDOW_DAYS must be whole days from 1 to 3650")
    return timedelta(days=int(raw))


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


def parse_credentials(secret: Any) -> tuple[str, str, tuple[Terminal, ...]]:
    """Check the secret's JSON shape: `client_id`, `client_secret` and either one
    `terminal_id` (it serves every purpose) or `terminals: [{id, purpose: [...], weight?}]`, where
    some terminal serves `cit` and some `mit`. Returns (client_id, client_secret, terminals)."""
    if not isinstance(secret, dict):
        raise ConfigurationError("the ePay secret must be a JSON object")
    client_id, client_secret = secret.get("client_id"), secret.get("client_secret")
    if not all(isinstance(v, str) and v for v in (client_id, client_secret)):
        raise ConfigurationError("the ePay secret needs non-empty client_id and client_secret")
    listed, single = secret.get("terminals"), secret.get("terminal_id")
    if listed is not None and single is not None:
        raise ConfigurationError("the ePay secret has terminal_id or terminals, not both")
    if listed is None:
        if not (isinstance(single, str) and single):
            raise ConfigurationError("the ePay secret needs terminal_id or terminals")
        return str(client_id), str(client_secret), (Terminal(single, frozenset(Purpose)),)
    return str(client_id), str(client_secret), _terminals(listed)


def _terminals(listed: Any) -> tuple[Terminal, ...]:
    if not isinstance(listed, list) or not listed:
        raise ConfigurationError("the ePay secret's terminals must be a non-empty list")
    terminals = tuple(_terminal(entry, index) for index, entry in enumerate(listed))
    ids = [t.id.strip().lower() for t in terminals]
    if len(set(ids)) != len(ids):
        raise ConfigurationError("the ePay secret lists a terminal twice")
    for needed in (Purpose.CIT, Purpose.MIT):
        if not any(needed in t.purposes for t in terminals):
            raise ConfigurationError(f"no terminal in the ePay secret serves {needed.value}")
    return terminals


def _terminal(entry: Any, index: int) -> Terminal:
    where = f"terminals[{index}]"
    if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or not entry["id"]:
        raise ConfigurationError(f"{where} needs an id")
    purposes = entry.get("purpose")
    known = {p.value for p in Purpose}
    if not isinstance(purposes, list) or not purposes or not set(purposes) <= known:
        raise ConfigurationError(f"{where}.purpose must list some of {sorted(known)}")
    weight = entry.get("weight", 1)
    if type(weight) is not int or not 1 <= weight <= MAX_TERMINAL_WEIGHT:
        raise ConfigurationError(f"{where}.weight must be a whole number 1-{MAX_TERMINAL_WEIGHT}")
    return Terminal(entry["id"], frozenset(Purpose(p) for p in purposes), weight)
