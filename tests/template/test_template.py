"""Checks on template.yaml: the deployable stack keeps its promises.

Every function carries the shared layer, runs python3.13 on arm64 within API Gateway's timeout and
logs to a group with retention; IAM stays least-privilege; the table is protected; merchant routes
are IAM-signed; the code the template points at exists; and the pinned linters accept the template.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cfn_yaml import api_events, api_of, function_property, ref_target, resources_of_type

API_GATEWAY_TIMEOUT_SECONDS = 29

# (resource logical id, statement Sid) -> why AWS demands a wildcard there. Empty today: every
# statement names its resources. An entry needs a reason a reviewer can check.
WILDCARD_ALLOW_LIST: dict[tuple[str, str], str] = {}

# SAM policy templates narrow enough to use instead of an inline statement. Broad ones such as
# DynamoDBCrudPolicy (Scan, DeleteItem, BatchWriteItem) stay out on purpose.
NARROW_SAM_POLICY_TEMPLATES = frozenset(
    {
        "EventBridgePutEventsPolicy",
        "SQSSendMessagePolicy",
        "SQSPollerPolicy",
        "AWSSecretsManagerGetSecretValuePolicy",
    }
)

# Routes reachable without SigV4 (`Auth: {Authorizer: NONE}`) outside the merchant prefixes, by
# path prefix. Each must authenticate its caller another way. None today: ePay's postLink (which
# authenticates by secret_hash plus a status API check) is PostLinkFunction's function URL, not a
# REST route (tests/template/test_template_postlink.py). Add a prefix here when such a route is
# added.
PUBLIC_ROUTE_PREFIXES: tuple[str, ...] = ()

# The merchant API: every route under these prefixes is IAM-signed unless listed below.
MERCHANT_ROUTE_PREFIXES: tuple[str, ...] = (
    "/charges",
    "/refunds",
    "/subscriptions",
    "/card-setups",
    "/accounts",
)

# Public routes inside the merchant prefixes, by exact method and path (never by prefix, so that
# /charges/{chargeId} or /card-setups/{setupId} can never become public by accident), with the
# function that serves each: the customer's browser on the 3-D Secure page (single-use token) and
# its return (the charge's MD), and on the card setup page (the setup's page token).
PUBLIC_MERCHANT_PREFIX_ROUTES: dict[tuple[str, str], str] = {
    ("GET", "/charges/{chargeId}/3ds"): "ThreeDSFunction",
    ("POST", "/charges/{chargeId}/3ds/return"): "ThreeDSFunction",
    ("GET", "/card-setups/{setupId}/page"): "CardPagesFunction",
}


def _route_key(event: dict[str, Any]) -> tuple[str, str]:
    return str(event["Method"]).upper(), str(event["Path"])


EXPECTED_ENVIRONMENT = {
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_LOG_LEVEL",
    "EPAY_ENV",
    "EPAY_OAUTH_URL",
    "EPAY_API_URL",
    "EPAY_SCOPE",
    "EPAY_CONFIRM_PATH",
    "EPAY_WIDGET_URL",
    "EPAY_SECRET_ID",
    "PAYMENTS_TABLE",
    "PUBLIC_BASE_URL",
    "CAPTURE_MODE",
}


# ------------------------------------------------------------------------------------- helpers


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _iam_statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(owning resource, statement) for every inline IAM statement in the template."""
    for logical_id, resource in template.get("Resources", {}).items():
        properties = resource.get("Properties", {})
        resource_type = resource.get("Type")
        if resource_type in ("AWS::Serverless::Function", "AWS::Serverless::StateMachine"):
            for policy in _as_list(properties.get("Policies", [])):
                if isinstance(policy, dict) and "Statement" in policy:
                    for statement in _as_list(policy["Statement"]):
                        yield logical_id, statement
        elif resource_type == "AWS::IAM::Role":
            for policy in properties.get("Policies", []):
                for statement in _as_list(policy["PolicyDocument"]["Statement"]):
                    yield logical_id, statement
        elif resource_type in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            for statement in _as_list(properties["PolicyDocument"]["Statement"]):
                yield logical_id, statement


def _api_of_event(template: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    api_id = api_of(event)
    assert api_id, f"API event without RestApiId / ApiId (would create an implicit API): {event}"
    api: dict[str, Any] = template["Resources"][api_id]
    assert api["Type"] in ("AWS::Serverless::Api", "AWS::Serverless::HttpApi")
    return api


def _all_routes(
    functions: dict[str, dict[str, Any]],
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for function_id, function in functions.items():
        for event_name, event in api_events(function):
            yield function_id, event_name, event


def _repo_tool(repo_root: Path, env_var: str, relative: str) -> Path | None:
    configured = os.environ.get(env_var)
    candidate = Path(configured) if configured else repo_root / relative
    return candidate if candidate.exists() else None


# ------------------------------------------------------------------------------------- functions


def test_every_function_uses_the_payments_layer(
    template: dict[str, Any], functions: dict[str, dict[str, Any]]
) -> None:
    # Given the template's functions and its one shared layer
    layers = resources_of_type(template, "AWS::Serverless::LayerVersion")
    assert "PaymentsLayer" in layers

    for function_id, function in functions.items():
        # When we read the layers the function is given (directly or via Globals)
        attached = [ref_target(layer) for layer in function_property(template, function, "Layers")]

        # Then the payments layer is among them
        assert "PaymentsLayer" in attached, f"{function_id} lacks the PaymentsLayer"


def test_every_function_runs_python313_on_arm64(
    template: dict[str, Any], functions: dict[str, dict[str, Any]]
) -> None:
    for function_id, function in functions.items():
        # Given a function, When we resolve runtime and architecture through Globals
        runtime = function_property(template, function, "Runtime")
        architectures = function_property(template, function, "Architectures")

        # Then it is python3.13 on arm64 (the layer is built for exactly that)
        assert runtime == "python3.13", function_id
        assert architectures == ["arm64"], function_id


def test_every_function_has_a_timeout_below_api_gateway_for_api_backed_ones(
    template: dict[str, Any], functions: dict[str, dict[str, Any]]
) -> None:
    for function_id, function in functions.items():
        # Given a function and its effective timeout
        timeout = function_property(template, function, "Timeout")

        # Then it is explicit
        assert isinstance(timeout, int), f"{function_id} has no explicit Timeout"
        # And if API Gateway calls it, it ends before API Gateway gives up (29 s)
        if any(True for _ in api_events(function)):
            assert timeout < API_GATEWAY_TIMEOUT_SECONDS, f"{function_id}: Timeout {timeout}"


def test_every_function_logs_to_its_own_group_with_retention(
    template: dict[str, Any], functions: dict[str, dict[str, Any]]
) -> None:
    seen_groups: set[str] = set()
    for function_id, function in functions.items():
        # Given the function's LoggingConfig
        logging_config = function["Properties"].get("LoggingConfig", {})
        group_id = ref_target(logging_config.get("LogGroup"))

        # Then it points at a log group of this template, not shared with another function
        assert group_id, (
            f"{function_id} has no LoggingConfig.LogGroup (Ref to an AWS::Logs::LogGroup)"
        )
        group = template["Resources"].get(group_id, {})
        assert group.get("Type") == "AWS::Logs::LogGroup", f"{function_id}: {group_id}"
        assert group_id not in seen_groups, f"{group_id} is shared by several functions"
        seen_groups.add(group_id)
        # And that group has a retention
        assert "RetentionInDays" in group["Properties"], f"{group_id} keeps logs forever"


def test_every_log_group_has_retention(template: dict[str, Any]) -> None:
    # Given every log group in the stack (functions and API access logs)
    for group_id, group in resources_of_type(template, "AWS::Logs::LogGroup").items():
        # Then none keeps logs forever
        assert "RetentionInDays" in group.get("Properties", {}), group_id


def test_every_function_folder_contains_its_handler(
    template: dict[str, Any], functions: dict[str, dict[str, Any]], repo_root: Path
) -> None:
    for function_id, function in functions.items():
        # Given the CodeUri folder and the "module.function" Handler
        code_dir = repo_root / function_property(template, function, "CodeUri")
        module, _, handler_name = function_property(template, function, "Handler").rpartition(".")
        module_file = code_dir / (module.replace(".", "/") + ".py")

        # Then the folder exists, the module is a file in it
        assert code_dir.is_dir(), f"{function_id}: CodeUri {code_dir} is missing"
        assert module_file.is_file(), f"{function_id}: handler module {module_file} is missing"
        # And it defines the handler (text search: the module is not imported here)
        source = module_file.read_text(encoding="utf-8")
        assert re.search(rf"^(def\s+{handler_name}\s*\(|{handler_name}\s*=)", source, re.M), (
            f"{function_id}: {module_file} defines no {handler_name}"
        )


def test_functions_share_the_configuration_contract(template: dict[str, Any]) -> None:
    # Given the environment every function inherits from Globals
    variables = template["Globals"]["Function"]["Environment"]["Variables"]

    # Then it carries every name the layer's config reads
    assert set(variables) >= EXPECTED_ENVIRONMENT
    # And the table and secret are the stack's own resources
    assert ref_target(variables["PAYMENTS_TABLE"]) == "PaymentsTable"
    assert ref_target(variables["EPAY_SECRET_ID"]) == "EpayCredentialsSecret"


# ------------------------------------------------------------------------------------- layer


def test_layer_is_built_for_python313_arm64_from_its_folder(
    template: dict[str, Any], repo_root: Path
) -> None:
    # Given the shared layer
    layer = template["Resources"]["PaymentsLayer"]
    content_dir = repo_root / layer["Properties"]["ContentUri"]

    # Then SAM builds it with pip for python3.13 on arm64
    assert layer["Metadata"]["BuildMethod"] == "python3.13"
    assert layer["Metadata"].get("BuildArchitecture") == "arm64"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
    # And its folder holds the requirements and the importable package (lands in /opt/python)
    assert (content_dir / "requirements.txt").is_file()
    assert (content_dir / "payments" / "__init__.py").is_file()


# ------------------------------------------------------------------------------------- IAM


def test_no_iam_statement_uses_wildcard_actions_or_resources(template: dict[str, Any]) -> None:
    statements = list(_iam_statements(template))
    assert statements, "no inline IAM statements found: did the policy layout change?"

    for owner, statement in statements:
        # Given an inline statement, allow-listed with a reason or not
        key = (owner, statement.get("Sid", ""))
        if key in WILDCARD_ALLOW_LIST:
            continue

        # Then it names actions and resources positively
        assert "NotAction" not in statement, key
        assert "NotResource" not in statement, key
        # And no action is a wildcard ("*", "service:*", "service:Get*")
        for action in _as_list(statement["Action"]):
            assert "*" not in str(action), f"{key}: wildcard action {action!r}"
        # And no resource is "*"
        for resource in _as_list(statement["Resource"]):
            assert resource != "*", f"{key}: Resource '*'"


def test_functions_use_only_inline_or_narrow_policies(
    template: dict[str, Any], functions: dict[str, dict[str, Any]]
) -> None:
    for function_id, function in functions.items():
        # Given the function's Policies
        for policy in _as_list(function["Properties"].get("Policies", [])):
            # Then each is an inline statement list or a known-narrow SAM policy template,
            # never an AWS managed policy name/ARN (those are broad and invisible here)
            assert isinstance(policy, dict), f"{function_id}: managed policy {policy!r}"
            if "Statement" not in policy:
                (template_name,) = policy.keys()
                assert template_name in NARROW_SAM_POLICY_TEMPLATES, (
                    f"{function_id}: broad SAM policy template {template_name}"
                )
        # And a function that brings its own role takes it from this template, inline policies
        # only (so the statement checks above see every permission), assumable by Lambda alone
        role = function["Properties"].get("Role")
        if role is None:
            continue
        assert "Policies" not in function["Properties"], f"{function_id}: Policies beside Role"
        role_id = ref_target(role)
        assert role_id, f"{function_id}: Role {role!r} is not a role of this template"
        role_resource = template["Resources"][role_id]
        assert role_resource["Type"] == "AWS::IAM::Role", function_id
        assert "ManagedPolicyArns" not in role_resource["Properties"], role_id
        assert "PermissionsBoundary" not in role_resource["Properties"], role_id
        trust = role_resource["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert [s["Principal"] for s in trust] == [{"Service": "lambda.amazonaws.com"}], role_id
        assert [s["Action"] for s in trust] == ["sts:AssumeRole"], role_id


def test_charges_function_can_read_and_write_only_its_table_and_secret(
    template: dict[str, Any],
) -> None:
    # Given the charges function's statements
    statements = [s for owner, s in _iam_statements(template) if owner == "ChargesFunction"]
    actions = {a for s in statements for a in _as_list(s["Action"])}

    # Then it has the per-item DynamoDB actions TransactWriteItems needs, and nothing destructive
    assert {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:Query",
        "dynamodb:ConditionCheckItem",
    } <= actions
    assert not actions & {"dynamodb:Scan", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"}
    # And it reads exactly its secret; metrics go through EMF logs, not PutMetricData
    secret_statements = [s for s in statements if "secretsmanager:GetSecretValue" in s["Action"]]
    assert [ref_target(r) for s in secret_statements for r in s["Resource"]] == [
        "EpayCredentialsSecret"
    ]
    assert "cloudwatch:PutMetricData" not in actions


# ------------------------------------------------------------------------------------- data


def test_table_is_on_demand_with_pitr_ttl_encryption_and_retained(template: dict[str, Any]) -> None:
    # Given the payments table
    table = template["Resources"]["PaymentsTable"]
    properties = table["Properties"]

    # Then it bills per request and keeps point-in-time recovery
    assert properties.get("BillingMode") == "PAY_PER_REQUEST"
    pitr = properties.get("PointInTimeRecoverySpecification", {})
    assert pitr.get("PointInTimeRecoveryEnabled") is True
    # And expires items by the expiresAt attribute
    assert properties.get("TimeToLiveSpecification") == {
        "AttributeName": "expiresAt",
        "Enabled": True,
    }
    # And is encrypted at rest with the AWS managed KMS key
    assert properties.get("SSESpecification", {}).get("SSEEnabled") is True
    # And its key is the generic pk/sk pair
    assert properties["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    # And deleting or replacing the stack never deletes payment records
    assert table.get("DeletionPolicy") == "Retain"
    assert table.get("UpdateReplacePolicy") == "Retain"


def test_secret_template_commits_no_secret_value(template: dict[str, Any]) -> None:
    # Given the ePay credentials secret
    secret = template["Resources"]["EpayCredentialsSecret"]["Properties"]

    # Then its client_secret is generated (a placeholder operators replace), never written here
    assert "SecretString" not in secret
    generated = secret["GenerateSecretString"]
    assert generated["GenerateStringKey"] == "client_secret"
    assert "client_secret" not in generated["SecretStringTemplate"]


# ------------------------------------------------------------------------------------- API


def test_merchant_routes_require_iam_signatures(
    template: dict[str, Any], functions: dict[str, dict[str, Any]]
) -> None:
    merchant_routes = [
        route
        for route in _all_routes(functions)
        if route[2]["Path"].startswith(MERCHANT_ROUTE_PREFIXES)
        and _route_key(route[2]) not in PUBLIC_MERCHANT_PREFIX_ROUTES
    ]
    # Every merchant prefix has routes (a typo in the list would silently check nothing)
    for prefix in MERCHANT_ROUTE_PREFIXES:
        assert any(r[2]["Path"].startswith(prefix) for r in merchant_routes), prefix

    for function_id, event_name, event in merchant_routes:
        # Given a merchant route and its API: the merchant HTTP API
        api = _api_of_event(template, event)
        assert api_of(event) == "MerchantApi", f"{function_id}.{event_name}"
        api_auth = api["Properties"].get("Auth", {})

        # Then the API signs by default with IAM and the route does not override it
        assert api_auth.get("DefaultAuthorizer") == "AWS_IAM", f"{function_id}.{event_name}"
        assert api_auth.get("EnableIamAuthorizer") is True, f"{function_id}.{event_name}"
        assert event.get("Auth", {}).get("Authorizer", "AWS_IAM") == "AWS_IAM", (
            f"{function_id}.{event_name} overrides the IAM authorizer"
        )


def test_only_known_public_routes_skip_iam(functions: dict[str, dict[str, Any]]) -> None:
    for function_id, event_name, event in _all_routes(functions):
        # Given a route that opts out of the default IAM authorizer
        if event.get("Auth", {}).get("Authorizer", "AWS_IAM") == "AWS_IAM":
            continue

        # Then it is a declared public route (ePay/browser callbacks), never a merchant route
        path = event["Path"]
        if _route_key(event) in PUBLIC_MERCHANT_PREFIX_ROUTES:
            continue  # declared one by one, method and path
        assert not path.startswith(MERCHANT_ROUTE_PREFIXES), f"{function_id}.{event_name}"
        assert path.startswith(PUBLIC_ROUTE_PREFIXES), (
            f"{function_id}.{event_name}: {path} is public; declare it in PUBLIC_ROUTE_PREFIXES"
        )


def test_charge_routes_are_served_by_the_charges_function(
    functions: dict[str, dict[str, Any]],
) -> None:
    # Given the routes the template declares
    routes = {(e["Method"].upper(), e["Path"]): fn for fn, _, e in _all_routes(functions)}

    # Then the merchant charge API is complete
    assert routes[("POST", "/charges")] == "ChargesFunction"
    assert routes[("GET", "/charges/{chargeId}")] == "ChargesFunction"
    assert routes[("POST", "/charges/{chargeId}/capture")] == "ChargesFunction"


def test_browser_pages_are_public_and_served_by_their_functions(
    functions: dict[str, dict[str, Any]],
) -> None:
    # Given every route with its auth
    routes = {_route_key(e): (fn, e) for fn, _, e in _all_routes(functions)}

    for key, owner in PUBLIC_MERCHANT_PREFIX_ROUTES.items():
        # Then each declared browser route (3-D Secure, card setup page) exists, is public and
        # belongs to its function
        function_id, event = routes[key]
        assert function_id == owner, key
        assert event.get("Auth", {}).get("Authorizer") == "NONE", key
        # on the REST API (WAF and per-route throttles guard the public pages)
        assert api_of(event) == "PaymentsApi", key
    # And the same paths with another method are not public (the allow-list is exact)
    for (method, path), (_function_id, event) in routes.items():
        if path.startswith(MERCHANT_ROUTE_PREFIXES) and (method, path) not in (
            PUBLIC_MERCHANT_PREFIX_ROUTES
        ):
            assert event.get("Auth", {}).get("Authorizer", "AWS_IAM") == "AWS_IAM", (method, path)


def test_api_is_throttled(template: dict[str, Any]) -> None:
    # Given each API's method settings
    for api_id, api in resources_of_type(template, "AWS::Serverless::Api").items():
        settings = api["Properties"].get("MethodSettings", [])

        # Then a catch-all setting bounds the request rate
        catch_all = [s for s in settings if s["ResourcePath"] == "/*" and s["HttpMethod"] == "*"]
        assert catch_all, f"{api_id} has no /* throttling"
        assert catch_all[0]["ThrottlingBurstLimit"] > 0
        assert catch_all[0]["ThrottlingRateLimit"] > 0
    # And each HTTP API's default route settings do the same for every route
    http_apis = resources_of_type(template, "AWS::Serverless::HttpApi")
    assert http_apis
    for api_id, api in http_apis.items():
        default = api["Properties"].get("DefaultRouteSettings", {})
        assert default.get("ThrottlingBurstLimit", 0) > 0, api_id
        assert default.get("ThrottlingRateLimit", 0) > 0, api_id


def test_outputs_expose_what_operators_and_merchants_need(template: dict[str, Any]) -> None:
    # Given the stack outputs
    outputs = template["Outputs"]

    # Then they name the API URL, the table, the secret to fill and the function
    assert {
        "ApiUrl",
        "PaymentsTableName",
        "EpayCredentialsSecretArn",
        "ChargesFunctionName",
        "CardsFunctionName",
    } <= set(outputs)
    assert "execute-api" in outputs["ApiUrl"]["Value"]["Fn::Sub"]


def test_parameters_have_safe_defaults(template: dict[str, Any]) -> None:
    # Given the parameters
    parameters = template["Parameters"]

    # Then the defaults point at ePay's test environment and automatic capture
    assert parameters["EpayEnv"]["Default"] == "test"
    assert parameters["EpayEnv"]["AllowedValues"] == ["test", "prod"]
    assert parameters["CaptureMode"]["AllowedValues"] == ["auto", "manual"]
    assert parameters["EpayScope"]["Default"] == (
        "webapi usermanagement email_send verification statement statistics payment"
    )
    assert parameters["EpayConfirmPath"]["Default"] == "/payments/cards/confirmPayment"
    # And no stack is deployed without an https base URL for TermUrl/postLink (no default:
    # the stack cannot derive it from its own API without a circular dependency)
    public_base_url = parameters["PublicBaseUrl"]
    assert "Default" not in public_base_url
    pattern = re.compile(public_base_url["AllowedPattern"])
    assert pattern.fullmatch("https://abc123.execute-api.eu-central-1.amazonaws.com/v1")
    assert pattern.fullmatch("https://pay.example.com")
    for bad in ("", "http://pay.example.com", "https://pay.example.com/", "https://a b"):
        assert not pattern.fullmatch(bad), bad


# ------------------------------------------------------------------------------------- samconfig


def test_samconfig_deploys_with_iam_capability_and_a_prod_environment(repo_root: Path) -> None:
    # Given samconfig.toml
    config = tomllib.loads((repo_root / "samconfig.toml").read_text(encoding="utf-8"))

    # Then default and prod deploy with a change set to confirm and IAM capability
    for env in ("default", "prod"):
        deploy = config[env]["deploy"]["parameters"]
        assert deploy["capabilities"] == "CAPABILITY_IAM", env
        assert deploy["confirm_changeset"] is True, env
        assert deploy["resolve_s3"] is True, env
    # And prod talks to ePay's production hosts, with no placeholder public URL
    prod_overrides = config["prod"]["deploy"]["parameters"]["parameter_overrides"]
    assert "EpayEnv=prod" in prod_overrides
    assert "placeholder" not in prod_overrides


# ------------------------------------------------------------------------------------- linters


def test_pinned_cfn_lint_accepts_the_template(repo_root: Path) -> None:
    # Given the cfn-lint pinned in this venv (next to the running interpreter)
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    if not cfn_lint.exists():
        pytest.fail(f"pinned cfn-lint not found at {cfn_lint}; install requirements-dev.txt")

    # When it lints the template
    result = subprocess.run(
        [str(cfn_lint), "template.yaml"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    # Then it finds nothing (errors, warnings or informational)
    assert result.returncode == 0, result.stdout + result.stderr


def test_sam_validate_lint_accepts_the_template(repo_root: Path) -> None:
    # Given the SAM CLI venv (CI installs it; SAM_CLI overrides the location)
    sam = _repo_tool(repo_root, "SAM_CLI", ".venv-sam/bin/sam")
    if sam is None:
        # In CI the SAM CLI is part of the setup: its absence fails rather than skips.
        assert not os.environ.get("CI"), "SAM CLI missing in CI: `make test` installs .venv-sam"
        pytest.skip("SAM CLI not installed at .venv-sam/bin/sam (set SAM_CLI or `make setup`)")
    env = {
        **os.environ,
        "SAM_CLI_TELEMETRY": "0",
        # Validation is offline, but the SAM translator insists on a region.
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    }

    # When it validates the template with its linter
    result = subprocess.run(
        [str(sam), "validate", "--lint", "--template-file", "template.yaml"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )

    # Then it accepts it
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr
