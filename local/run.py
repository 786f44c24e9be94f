"""Run the whole stack locally: ``python -m local.run`` (what ``make run`` calls).

What starts, in order (each one skipped when the environment points elsewhere):

1. AWS services: moto's server, in a process of its own (``local.moto_server``), on a
   free loopback port for Secrets Manager, SQS, EventBridge (and DynamoDB when DynamoDB Local is
   not available), unless ``AWS_ENDPOINT_URL`` is set. DynamoDB goes to DynamoDB Local
   (``local.dynamodb_local``; moto's DynamoDB is not thread-safe for concurrent conditional
   writes) when Java and the jar are present, unless ``AWS_ENDPOINT_URL`` or
   ``AWS_ENDPOINT_URL_DYNAMODB`` is set.
2. The ePay simulator on a free loopback port, unless ``EPAY_OAUTH_URL`` and ``EPAY_API_URL`` are
   both set (then those, e.g. ePay's public test environment, are used).
3. The template's table(s), secret(s), queues and buses, created from template.yaml's own
   definitions (``local.aws.create_resources``).
4. The local API Gateway (``local.apigw.LocalApiGateway``) on http://127.0.0.1:3000 serving
   template.yaml's routes (and, local only, the API document openapi.yaml next to the template
   as ``/openapi.json`` with its reference page ``/docs``) with the functions' environment: the
   template's parameter defaults,
   overridden by the simulator's URLs (``EPAY_WIDGET_URL`` too: the card setup page loads the
   simulator's widget script), the created resource names, ``PUBLIC_BASE_URL`` (the local API)
   and the AWS endpoint. The postLink function's URL (a Lambda function URL in AWS) is served on
   the same port at its paths, so ``POSTLINK_BASE_URL`` is the local API's URL + "/".
   `make run` (``--processes``, default 2) runs the handlers in worker processes
   (``local.apigw.pool``), so the functions' Python is not bound to the GIL of the process that
   serves the API and the simulator; :func:`start_stack` keeps them in-process unless given
   ``processes`` (tests read the simulator and the handlers' state in-process).
5. The template's other event sources, as threads (``local.workers``): the renewal schedule and
   queue when a renewal period is given, the reconciler's schedule and its queue of shard units
   when a reconcile period is given, and the table's stream into the charge events function
   (with worker processes, these invocations run there too).
6. Local only, not in the template: the event feed (``local.events_feed``), a rule on the
   template's bus(es) into a queue of its own that a thread drains. Every domain event that
   really went through the bus is printed as one line (``local.events`` logger) and kept (the
   last 1,000) for ``GET /_local/events[?type=...]`` on the local API. It runs when the stack
   started moto itself (not on an ``AWS_ENDPOINT_URL`` given from outside, unless asked).

An idle stack is quiet: the loops above log nothing for an empty tick or poll.

:func:`start_stack` does all of it in-process and returns a :class:`LocalStack` to ``stop()``;
tests and benchmarks use it with ``port=0``. :func:`main` only parses arguments, prints and waits
for a signal.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import textwrap
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Literal

from local.apigw import ApiDocs, LocalApiGateway
from local.apigw.pool import HandlerPool, HandlerPoolError
from local.aws import create_resources
from local.epay_sim import (
    TEST_CLIENT_ID,
    TEST_CLIENT_SECRET,
    TEST_TERMINAL2_CODE,
    TEST_TERMINAL2_ID,
    TEST_TERMINAL_ID,
)
from local.epay_sim import Terminal as SimTerminal
from local.epay_sim.models import FAULTS as SIM_FAULTS
from local.epay_sim.models import OPS as SIM_OPS
from local.events_feed import EVENTS_PATH, EventsFeed
from local.moto_server import MotoServerProcess
from local.template import (
    TemplateError,
    function_environment,
    function_url_names,
    load_template,
    parameter_defaults,
    resources_of_type,
)

__all__ = [
    "APPROVED_TEST_CARD_ID",
    "LocalStack",
    "card_setup_curl_example",
    "curl_example",
    "fault_curl_example",
    "list_cards_curl_example",
    "main",
    "merged_environment",
    "start_stack",
]

#: The simulator's second terminal in the local stack (3-D Secure on, like the first, so every
#: test card behaves the same on both; a bank usually turns it off for recurring charges).
LOCAL_SECOND_TERMINAL = SimTerminal(TEST_TERMINAL2_ID, TEST_TERMINAL2_CODE)
LOCAL_TWO_TERMINALS = json.dumps(
    {
        "client_id": TEST_CLIENT_ID,
        "client_secret": TEST_CLIENT_SECRET,
        "terminals": [
            {"id": TEST_TERMINAL_ID, "purpose": ["cit", "setup"]},
            {"id": TEST_TERMINAL2_ID, "purpose": ["mit"]},
        ],
    }
)

logger = logging.getLogger("local.run")

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
DEFAULT_PORT = 3000
#: `make run`'s handler worker processes (local.apigw.pool): the functions' Python off the GIL of
#: the process that serves the API and the ePay simulator.
DEFAULT_PROCESSES = 2
LOCAL_REGION = "us-east-1"
#: The simulator's saved card that is approved without 3-D Secure.
APPROVED_TEST_CARD_ID = "c0000000-0000-4000-8000-000000000001"
#: Where ePay serves its payment widget script, on its host (the simulator serves it there too).
WIDGET_PATH = "/payform/payment-api.js"
#: The API document, next to the template (served locally as /openapi.json and /docs).
API_DOCUMENT = "openapi.yaml"
#: The account the banner's card examples use.
EXAMPLE_ACCOUNT_ID = "acc-1"
_DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}

DynamoDBChoice = Literal["auto", "dynamodb-local", "moto"]
#: Libraries whose INFO lines `make run` hides (endpoint discovery, moto's access log: one line
#: per request, so the stack's own polling would fill an idle console).
NOISY_LOGGERS = ("botocore", "werkzeug", "urllib3")


@dataclass
class LocalStack:
    """A running local stack. ``stop()`` ends everything :func:`start_stack` started."""

    url: str
    aws_endpoint: str
    dynamodb_endpoint: str
    simulator: Any | None  # local.epay_sim.EpaySimulator, or None when a real gateway is used
    epay_oauth_url: str
    epay_api_url: str
    resource_names: dict[str, str]
    env: dict[str, str]
    gateway: LocalApiGateway
    #: The local event feed (``GET /_local/events``), or None when it is off.
    events: EventsFeed | None = None
    _stoppers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def require_simulator(self) -> Any:
        """The ePay simulator; an error when the stack talks to a real gateway instead."""
        if self.simulator is None:
            raise RuntimeError(f"no ePay simulator: the stack uses {self.epay_api_url}")
        return self.simulator

    def stop(self) -> None:
        """Stop the API, the simulator and the AWS emulators (in reverse start order)."""
        while self._stoppers:
            stopper = self._stoppers.pop()
            try:
                stopper()
            except Exception:  # keep stopping the rest; report each failure
                logger.exception("error while stopping the local stack")

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def merged_environment(
    template: Mapping[str, Any], parameters: Mapping[str, str], resource_names: Mapping[str, str]
) -> dict[str, str]:
    """The environment all functions share (os.environ is process-wide, see local.apigw).

    Functions whose own variables disagree on a name are reported; the last function wins.
    """
    merged: dict[str, str] = {}
    for logical_id in resources_of_type(template, "AWS::Serverless::Function"):
        for name, value in function_environment(
            template, logical_id, parameters, resource_names
        ).items():
            if name in merged and merged[name] != value:
                logger.warning(
                    "%s sets %s differently from another function; the local stack shares one "
                    "environment, %s's value is used",
                    logical_id,
                    name,
                    logical_id,
                )
            merged[name] = value
    return merged


def _dynamodb_local_available() -> bool:
    from local import dynamodb_local  # optional part of the stack

    if shutil.which("java") is None:
        return False
    try:
        dynamodb_local.find_jar()
    except dynamodb_local.DynamoDBLocalError:
        return False
    return True


@dataclass(frozen=True)
class _AwsEndpoints:
    """Where the functions' AWS clients go, and the environment that sends them there."""

    endpoint: str
    dynamodb_endpoint: str
    region: str
    credentials: dict[str, str]
    env: dict[str, str]


def _start_aws(
    outside: Mapping[str, str],
    host: str,
    dynamodb: DynamoDBChoice,
    stoppers: list[Callable[[], None]],
) -> _AwsEndpoints:
    """moto (unless AWS_ENDPOINT_URL is given), then DynamoDB Local when chosen and available."""
    env: dict[str, str] = {}
    endpoint = outside.get("AWS_ENDPOINT_URL", "")
    credentials: dict[str, str] = {}
    moto: MotoServerProcess | None = None
    if endpoint:
        region = outside.get("AWS_DEFAULT_REGION") or outside.get("AWS_REGION") or LOCAL_REGION
        env["AWS_DEFAULT_REGION"] = region
    else:
        # moto's server in a process of its own (its CPU off the functions' GIL), started
        # while DynamoDB Local starts.
        moto = _launch_moto(host, stoppers)
        endpoint = moto.url
        region = LOCAL_REGION
        credentials = dict(_DUMMY_CREDENTIALS)
        env.update(credentials, AWS_DEFAULT_REGION=region, AWS_REGION=region)
    env["AWS_ENDPOINT_URL"] = endpoint
    dynamodb_endpoint = outside.get("AWS_ENDPOINT_URL_DYNAMODB", "")
    if not dynamodb_endpoint and not outside.get("AWS_ENDPOINT_URL"):
        dynamodb_endpoint = _start_dynamodb_local(host, dynamodb, stoppers)
    if moto is not None:
        moto.wait_ready()
        logger.info("moto server on %s", endpoint)
    # Always set, so a stray AWS_ENDPOINT_URL_DYNAMODB in the process cannot win over ours.
    env["AWS_ENDPOINT_URL_DYNAMODB"] = dynamodb_endpoint or endpoint
    return _AwsEndpoints(endpoint, dynamodb_endpoint or endpoint, region, credentials, env)


def _launch_moto(host: str, stoppers: list[Callable[[], None]]) -> MotoServerProcess:
    moto = MotoServerProcess(host=host).launch()
    stoppers.append(moto.stop)
    return moto


def _start_dynamodb_local(
    host: str, dynamodb: DynamoDBChoice, stoppers: list[Callable[[], None]]
) -> str:
    """DynamoDB Local's URL when it is chosen (or "auto" and available), else "" (moto's)."""
    use_local = dynamodb == "dynamodb-local" or (dynamodb == "auto" and _dynamodb_local_available())
    if not use_local:
        if dynamodb == "auto":
            logger.warning(
                "DynamoDB Local is not available (needs java and `make setup`): using moto's "
                "DynamoDB, which does not isolate concurrent conditional writes"
            )
        return ""
    from local.dynamodb_local import DynamoDBLocal

    ddb = DynamoDBLocal(host=host).start()
    stoppers.append(ddb.stop)
    logger.info("DynamoDB Local on %s", ddb.url)
    return ddb.url


def _start_epay(
    outside: Mapping[str, str], host: str, stoppers: list[Callable[[], None]]
) -> tuple[Any | None, str, str]:
    """The simulator and its URLs, or no simulator and the gateway the environment names."""
    oauth_url, api_url = outside.get("EPAY_OAUTH_URL", ""), outside.get("EPAY_API_URL", "")
    if oauth_url and api_url:
        logger.info("using the ePay gateway at %s / %s", oauth_url, api_url)
        return None, oauth_url, api_url
    from local.epay_sim import EpaySimulator

    simulator = EpaySimulator(host=host, port=0, terminals=[LOCAL_SECOND_TERMINAL])
    simulator.start()
    stoppers.append(simulator.stop)
    logger.info("ePay simulator on %s", simulator.base_url)
    return simulator, str(simulator.oauth_url), str(simulator.api_url)


def _widget_url(
    simulator: Any | None, outside: Mapping[str, str], parameter_overrides: Mapping[str, str]
) -> str:
    """The EPAY_WIDGET_URL to give the functions, or "" to keep the template's.

    The EpayWidgetUrl parameter, when given, wins (the template resolves it). Otherwise the
    simulator's widget script when the simulator runs, else ``EPAY_WIDGET_URL`` from the
    environment (a real gateway; empty: the layer's default for EPAY_ENV).
    """
    if parameter_overrides.get("EpayWidgetUrl"):
        return ""
    if simulator is None:
        return outside.get("EPAY_WIDGET_URL", "")
    widget = getattr(simulator, "widget_url", None)
    return str(widget) if widget else f"{simulator.base_url}{WIDGET_PATH}"


def _environment_for(
    template: Mapping[str, Any],
    parameters: Mapping[str, str],
    parameter_overrides: Mapping[str, str],
    names: Mapping[str, str],
    overrides: Mapping[str, str],
) -> Callable[[str], dict[str, str]]:
    """The functions' environment once the API's own URL is known (it is bound to port 0)."""
    declared = template.get("Parameters") or {}

    def env_for(url: str) -> dict[str, str]:
        # The API's URL is the public base URL (TermUrl, the pages, the function URLs) unless
        # the caller overrides the PublicBaseUrl parameter.
        url_parameter = {"PublicBaseUrl": url} if "PublicBaseUrl" in declared else {}
        params = {**url_parameter, **parameters}
        if "PublicBaseUrl" not in parameter_overrides:
            params.update(url_parameter)
        public_url = params.get("PublicBaseUrl", url)
        # Function URLs (POSTLINK_BASE_URL: the postLink function's) are served on the local
        # API's port at their own paths, so each one's URL is the public base URL + "/".
        urls = function_url_names(template, public_url)
        function_env = merged_environment(template, params, {**names, **urls})
        return {
            **function_env,
            **overrides,
            "PUBLIC_BASE_URL": public_url,
        }

    return env_for


def _start_events_feed(
    template: Mapping[str, Any],
    clients: Mapping[str, Any],
    names: Mapping[str, str],
    stoppers: list[Callable[[], None]],
) -> EventsFeed | None:
    """The bus(es)' events on the console and at /_local/events (None: the template has no bus)."""
    bus_ids = resources_of_type(template, "AWS::Events::EventBus")
    buses = [names[logical_id] for logical_id in bus_ids]
    if not buses:
        return None
    feed = EventsFeed(clients["events"], clients["sqs"], buses).start()
    stoppers.append(feed.stop)
    return feed


def _start_workers(
    template: Mapping[str, Any],
    template_dir: Path,
    clients: Mapping[str, Any],
    names: Mapping[str, str],
    stoppers: list[Callable[[], None]],
    *,
    renewal_period: float | None,
    charge_events: bool,
    reconcile_period: float | None = None,
    stream_credentials: Any = None,
    pool: HandlerPool | None = None,
) -> None:
    """The schedule and event sources the template wires to functions, as local threads.

    ``stream_credentials`` (botocore's) let the stream poller send GetRecords as a plain signed
    request and pass its JSON through (``local.workers.RawGetRecords``). With a ``pool``
    (``local.apigw.pool.HandlerPool``) the invocations run in its worker processes.
    """
    from local.workers import ChargeEventWorker, Reconciliations, RenewalWorkers

    # Renewals: the dispatcher every `renewal_period` s and the worker on the queue.
    if renewal_period is not None and RenewalWorkers.available(template):
        workers = RenewalWorkers(
            template, template_dir, clients["sqs"], names, period=renewal_period, pool=pool
        ).start()
        stoppers.append(workers.stop)
    # The reconciler: its tick every `reconcile_period` s and its shard units from the queue.
    if reconcile_period is not None and Reconciliations.available(template):
        reconciliations = Reconciliations(
            template, template_dir, clients["sqs"], names, period=reconcile_period, pool=pool
        ).start()
        stoppers.append(reconciliations.stop)
    # charge.* events: the table's stream polled into ChargeEventsFunction (the outbox).
    table_ids = list(resources_of_type(template, "AWS::DynamoDB::Table"))
    if charge_events and ChargeEventWorker.available(template) and len(table_ids) == 1:
        worker = ChargeEventWorker(
            template,
            template_dir,
            clients["dynamodb"],
            clients["dynamodbstreams"],
            names[table_ids[0]],
            credentials=stream_credentials,
            pool=pool,
        ).start()
        stoppers.append(worker.stop)


def start_stack(
    port: int = 0,
    *,
    host: str = "127.0.0.1",
    template_path: str | Path = TEMPLATE_PATH,
    environ: Mapping[str, str] | None = None,
    parameter_overrides: Mapping[str, str] | None = None,
    dynamodb: DynamoDBChoice = "auto",
    integration_timeout: float | None = None,
    renewal_period: float | None = None,
    charge_events: bool = True,
    events_feed: bool | None = None,
    reconcile_period: float | None = None,
    processes: int = 0,
    worker_output: str | None = None,
) -> LocalStack:
    """Start moto/DynamoDB Local, the ePay simulator and the local API; create the resources.

    ``environ`` (default ``os.environ``) is read for ``AWS_ENDPOINT_URL``,
    ``AWS_ENDPOINT_URL_DYNAMODB``, ``EPAY_OAUTH_URL`` and ``EPAY_API_URL``. ``dynamodb`` picks
    DynamoDB Local or moto for DynamoDB when no endpoint is given ("auto": DynamoDB Local if Java
    and the jar are there). Everything is bound to ``host`` (loopback). ``renewal_period`` runs the
    renewal dispatcher and worker (None: not at all), ``reconcile_period`` the reconciler's tick
    and its shard units (None: not at all); ``charge_events`` feeds the table's stream to
    the charge events function (benchmarks turn it off to keep its polling out of their timings).
    ``events_feed`` attaches the local event feed to the bus (None: when moto was started here,
    i.e. no ``AWS_ENDPOINT_URL``; it adds a rule and a queue to the endpoint until ``stop()``).
    ``processes`` > 0 runs the API's handlers in that many worker processes
    (``local.apigw.pool``; `make run` uses 2) instead of this process's threads (the default:
    tests keep one process); ``worker_output`` is where their stdout goes (None: this process's).
    """
    import boto3  # lazily: keeps `--help` fast

    outside = dict(os.environ if environ is None else environ)
    template_path = Path(template_path).resolve()
    template = load_template(template_path)
    stoppers: list[Callable[[], None]] = []
    try:
        aws = _start_aws(outside, host, dynamodb, stoppers)
        simulator, oauth_url, api_url = _start_epay(outside, host, stoppers)

        session = boto3.session.Session(
            region_name=aws.region, **_session_credentials(aws.credentials)
        )
        clients = {
            service: session.client(service, endpoint_url=aws.endpoint)
            for service in ("secretsmanager", "sqs", "events")
        }
        for service in ("dynamodb", "dynamodbstreams"):
            clients[service] = session.client(service, endpoint_url=aws.dynamodb_endpoint)
        parameters = {**parameter_defaults(template), **(parameter_overrides or {})}
        # With the simulator, the secret lists two terminals (customer-present and card setups on
        # the first, merchant-initiated on the second), as merchants run them.
        secrets = {"EpayCredentialsSecret": LOCAL_TWO_TERMINALS} if simulator else None
        names = create_resources(template, clients, parameters=parameters, secret_strings=secrets)
        feed_on = not outside.get("AWS_ENDPOINT_URL") if events_feed is None else events_feed
        feed = _start_events_feed(template, clients, names, stoppers) if feed_on else None

        overrides = {
            "EPAY_OAUTH_URL": oauth_url,
            "EPAY_API_URL": api_url,
            # The simulator's 3-D Secure page (ACS) is plain http on loopback; only the local
            # stack allows that (payments.charges.threeds refuses any non-https ACS elsewhere).
            "ALLOW_LOOPBACK_ACS": "true",
            **_named(template, names, "AWS::DynamoDB::Table", "PAYMENTS_TABLE"),
            **_named(template, names, "AWS::SecretsManager::Secret", "EPAY_SECRET_ID"),
            **aws.env,
        }
        widget_url = _widget_url(simulator, outside, parameter_overrides or {})
        if widget_url:
            overrides["EPAY_WIDGET_URL"] = widget_url
        env_for = _environment_for(
            template, parameters, parameter_overrides or {}, names, overrides
        )
        gateway_kwargs: dict[str, Any] = {}
        if integration_timeout is not None:
            gateway_kwargs["integration_timeout"] = integration_timeout
        document = template_path.parent / API_DOCUMENT
        if document.is_file():
            gateway_kwargs["docs"] = ApiDocs(document)
        if simulator is not None:
            gateway_kwargs["simulator_url"] = str(simulator.base_url)
        if feed is not None:
            gateway_kwargs["local_endpoints"] = {EVENTS_PATH: feed.endpoint}
        if processes > 0:
            gateway_kwargs["processes"] = processes
            gateway_kwargs["worker_output"] = worker_output
        gateway = LocalApiGateway(template_path, env_for, host=host, port=port, **gateway_kwargs)
        _reset_warm_state()
        stoppers.append(_reset_warm_state)
        gateway.start()
        stoppers.append(gateway.stop)
        _start_workers(
            template,
            template_path.parent,
            clients,
            names,
            stoppers,
            renewal_period=renewal_period,
            charge_events=charge_events,
            reconcile_period=reconcile_period,
            stream_credentials=session.get_credentials(),
            pool=gateway.pool,
        )
    except BaseException:
        while stoppers:
            stoppers.pop()()
        raise

    return LocalStack(
        url=gateway.url,
        aws_endpoint=aws.endpoint,
        dynamodb_endpoint=aws.dynamodb_endpoint,
        simulator=simulator,
        epay_oauth_url=oauth_url,
        epay_api_url=api_url,
        resource_names=names,
        env=dict(gateway.env),
        gateway=gateway,
        events=feed,
        _stoppers=stoppers,
    )


def _reset_warm_state() -> None:
    """Forget what a previous stack in this process cached (a new "container" per stack).

    Handlers run in this process, so the layer's per-container singletons (settings, clients,
    credentials) would otherwise outlive a stack and point the next one at dead endpoints.
    """
    bootstrap = sys.modules.get("payments.bootstrap")
    reset = getattr(bootstrap, "reset", None)
    if callable(reset):
        reset()


def _session_credentials(credentials: Mapping[str, str]) -> dict[str, str]:
    if not credentials:
        return {}  # the caller's own credential chain (a real endpoint)
    return {
        "aws_access_key_id": credentials["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": credentials["AWS_SECRET_ACCESS_KEY"],
        "aws_session_token": credentials["AWS_SESSION_TOKEN"],
    }


def _named(
    template: Mapping[str, Any], names: Mapping[str, str], resource_type: str, variable: str
) -> dict[str, str]:
    # The variable already comes from `!Ref` in Globals; this only fills it in for templates that
    # have exactly one such resource but do not pass it through the environment.
    logical_ids = list(resources_of_type(template, resource_type))
    if len(logical_ids) != 1:
        return {}
    return {variable: names[logical_ids[0]]}


# A fresh Idempotency-Key in the shell, with nothing beyond Python (no uuidgen on Debian).
NEW_KEY = "$(python3 -c 'import uuid; print(uuid.uuid4())')"


def curl_example(url: str) -> str:
    """A ready-to-paste curl that charges the simulator's approved test card."""
    return (
        f"curl -s -X POST {url}/charges -H 'Content-Type: application/json' "
        f'-H "Idempotency-Key: {NEW_KEY}" '
        '-d \'{"amount": 1500.00, "currency": "KZT", '
        f'"cardId": "{APPROVED_TEST_CARD_ID}", "accountId": "customer-42", '
        '"description": "Order 42"}\''
    )


def card_setup_curl_example(url: str, account_id: str = EXAMPLE_ACCOUNT_ID) -> str:
    """A ready-to-paste curl that starts saving a card (a verifying card setup) for an account."""
    return (
        f"curl -s -X POST {url}/card-setups -H 'Content-Type: application/json' "
        f'-H "Idempotency-Key: {NEW_KEY}" '
        f'-d \'{{"accountId": "{account_id}", "mode": "verify", '
        '"backLink": "https://merchant.example/cards/done"}\''
    )


def list_cards_curl_example(url: str, account_id: str = EXAMPLE_ACCOUNT_ID) -> str:
    """A ready-to-paste curl that lists an account's saved cards."""
    return f"curl -s {url}/accounts/{account_id}/cards"


def fault_curl_example(simulator_url: str) -> str:
    """A ready-to-paste curl that arms a simulator fault (local.epay_sim.control): the next auth
    times out after ePay committed it, so the charge is UNKNOWN until the reconciler settles it."""
    return (
        f"curl -s -X POST {simulator_url}/_sim/faults -H 'Content-Type: application/json' "
        '-d \'{"op": "auth", "fault": "timeout_after_commit", "count": 1, "delay": 12}\''
    )


def banner(stack: LocalStack) -> str:
    """What `make run` prints once the stack is up: where everything is and how to use it."""
    simulator = stack.simulator
    lines = [
        "",
        "Local stack is up (SigV4 is not checked locally)",
        f"  API          {stack.url}",
        f"  ePay OAuth   {stack.epay_oauth_url}",
        f"  ePay API     {stack.epay_api_url}",
        f"  ePay widget  {stack.env.get('EPAY_WIDGET_URL') or '(default for EPAY_ENV)'}",
        f"  AWS endpoint {stack.aws_endpoint} (DynamoDB: {stack.dynamodb_endpoint})",
        f"  table        {stack.env.get('PAYMENTS_TABLE', '-')}",
        f"  secret       {stack.env.get('EPAY_SECRET_ID', '-')}",
    ]
    if stack.gateway.docs is not None:
        lines += [
            f"  API docs     {stack.url}/docs (Swagger UI over openapi.yaml)",
            f"  OpenAPI      {stack.url}/openapi.json (Postman/Insomnia: Import > Link, "
            "paste this URL)",
        ]
    if getattr(stack, "events", None) is not None:  # a stack without the feed: no line
        lines += [
            f"  events       {stack.url}{EVENTS_PATH} (the bus's domain events, newest last;",
            "               ?type=charge.succeeded filters; each one is also printed below)",
        ]
    lines += [
        "",
        "Charge the simulator's approved test card:",
        "",
        f"  {curl_example(stack.url)}",
        "",
        'Save a card: create a card setup, then open the answer\'s "url" in a browser and',
        "pay on the widget's page with a test card:",
        "",
        f"  {card_setup_curl_example(stack.url)}",
        "",
        "List the account's saved cards:",
        "",
        f"  {list_cards_curl_example(stack.url)}",
    ]
    if simulator is not None:
        lines += [
            "",
            f"Inject ePay faults: POST {stack.url}/_sim/faults with "
            '{"op", "fault", "count", "delay"}',
            *textwrap.wrap(
                f"(op: one of {', '.join(SIM_OPS)}; fault: one of {', '.join(SIM_FAULTS)}; "
                f"GET {stack.url}/_sim/faults lists the armed ones; the local API passes /_sim/ "
                "to the simulator.) E.g. the next "
                "auth times out after ePay took it (the charge is UNKNOWN until the reconciler "
                "asks):",
                width=96,
            ),
            "",
            f"  {fault_curl_example(stack.url)}",
        ]
    lines += ["", "Ctrl-C to stop."]
    return "\n".join(lines)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m local.run",
        description="Serve template.yaml's API locally over moto and the ePay simulator.",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="API port (default 3000)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--template", type=Path, default=TEMPLATE_PATH, help="SAM template")
    parser.add_argument(
        "--dynamodb",
        choices=["auto", "dynamodb-local", "moto"],
        default="auto",
        help="DynamoDB emulator when AWS_ENDPOINT_URL is not set (default: auto)",
    )
    parser.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a template parameter (repeatable), e.g. --parameter CaptureMode=manual",
    )
    parser.add_argument(
        "--renewal-period",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="run the renewal dispatcher this often (default 10; 0 turns renewals off)",
    )
    parser.add_argument(
        "--reconcile-period",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="run the reconciler's tick this often (default 30; 0 turns it off)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=DEFAULT_PROCESSES,
        metavar="N",
        help=(
            f"run the API's handlers in N worker processes (default {DEFAULT_PROCESSES}; "
            "0 runs them in this process)"
        ),
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Start the stack, print how to use it, run until SIGINT/SIGTERM."""
    args = _parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    )
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    overrides = dict(item.split("=", 1) for item in args.parameter if "=" in item)
    try:
        stack = start_stack(
            args.port,
            host=args.host,
            template_path=args.template,
            parameter_overrides=overrides,
            dynamodb=args.dynamodb,
            renewal_period=args.renewal_period or None,
            reconcile_period=args.reconcile_period or None,
            processes=max(0, args.processes),
        )
    except (OSError, TemplateError, HandlerPoolError) as error:
        print(f"local stack did not start: {error}", file=sys.stderr)
        return 1

    done = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        print(banner(stack), flush=True)
        done.wait()
    finally:
        print("stopping...", flush=True)
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
