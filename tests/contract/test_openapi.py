"""openapi.yaml, the API contract: a valid OpenAPI 3.1 document naming exactly template.yaml's
routes (and the paths of its function URL, each with its own server), with an example and the
4xx/5xx answers of every operation, and error codes that are the service's own. (That the
service's answers match it is checked in tests/integration, on every response the tier sees; the
checker itself is tested here.)"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV31SpecValidator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from local.template import api_routes, function_url_routes, load_template
from payments import errors
from payments.http import bodies
from tests.integration import openapi_check

ROOT = Path(__file__).resolve().parents[2]
SPEC_URI = "urn:openapi"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
# API Gateway's own refusals (template.yaml GatewayResponses), beside the service's codes.
GATEWAY_CODES = {
    "bad_request",
    "missing_authentication",
    "invalid_signature",
    "expired_token",
    "forbidden",
    "not_found",
    "payload_too_large",
    "rate_limited",
    "timeout",
    "internal_error",
}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return openapi_check.spec_document()


def function_url_paths() -> set[str]:
    """The paths of template.yaml's function URLs (ePay's postLink): not REST API routes."""
    return {route.resource for route in function_url_routes(load_template(ROOT / "template.yaml"))}


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                yield method.upper(), path, item[method]


def resolve(document: dict[str, Any], node: Any) -> Any:
    """Follow a local `$ref` (its sibling `description` and `summary` override, as in 3.1)."""
    while isinstance(node, dict) and "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        overrides = {k: v for k, v in node.items() if k in ("description", "summary")}
        node = {**target, **overrides} if isinstance(target, dict) else target
    return node


def error_codes(document: dict[str, Any], schema: Any) -> set[str]:
    """The `error.code` values an error schema allows (its enum), walking $ref, allOf and
    oneOf."""
    schema = resolve(document, schema)
    codes: set[str] = set()
    for part in [*schema.get("allOf", []), *schema.get("oneOf", [])]:
        codes |= error_codes(document, part)
    code = schema.get("properties", {}).get("error", {}).get("properties", {}).get("code", {})
    codes |= set(code.get("enum", []))
    return codes


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    # Given openapi.yaml / When it is validated / Then it is OpenAPI 3.1.0 without errors
    assert document["openapi"] == "3.1.0"
    validate(document, cls=OpenAPIV31SpecValidator)


def test_the_document_names_exactly_the_templates_routes(document: dict[str, Any]) -> None:
    # Given every Api event of template.yaml
    routes = api_routes(load_template(ROOT / "template.yaml"))
    template = {(route.method, route.resource) for route in routes}
    url_paths = function_url_paths()

    # When compared with the document's operations (a function URL's paths apart)
    documented = {(m, path) for m, path, _ in operations(document) if path not in url_paths}

    # Then they are the same set
    assert documented - template == set(), "documented, but not routed by template.yaml"
    assert template - documented == set(), "routed by template.yaml, but not documented"
    # And the function URL's paths (ePay's postLink) are documented, as POST only
    by_path = {path: m for m, path, _ in operations(document) if path in url_paths}
    assert set(by_path) == url_paths
    assert set(by_path.values()) == {"POST"}


# The customer's public pages: the REST API's routes (template.yaml PaymentsApi).
PAGE_PATHS = {
    "/charges/{chargeId}/3ds",
    "/charges/{chargeId}/3ds/return",
    "/card-setups/{setupId}/page",
}


def test_function_url_paths_name_their_own_server(document: dict[str, Any]) -> None:
    # Given the function URL's paths (not REST API routes)
    url_paths = function_url_paths()
    assert url_paths
    for path, item in document["paths"].items():
        if path in url_paths:
            # Then each names the function URL (and the local stack) as its servers
            urls = [server["url"] for server in item["servers"]]
            assert any(url.endswith(".lambda-url.{region}.on.aws") for url in urls), path
            assert openapi_check.HOST_URL in urls, path
            assert not any("execute-api" in url for url in urls), path
        elif path in PAGE_PATHS:
            # And the public pages name the REST API (and the local stack)
            urls = [server["url"] for server in item["servers"]]
            assert urls == [
                "https://{restApiId}.execute-api.{region}.amazonaws.com/{stage}",
                openapi_check.HOST_URL,
            ], path
        else:
            # And every other path is the merchant HTTP API's (the document's own servers)
            assert "servers" not in item, path
    assert [s["url"] for s in document["servers"]] == [
        "https://{merchantApiId}.execute-api.{region}.amazonaws.com",
        openapi_check.HOST_URL,
    ]


def test_the_page_paths_are_the_rest_api_routes() -> None:
    # Given the template's routes / Then the REST API's are exactly the public pages
    template = load_template(ROOT / "template.yaml")
    rest = {route.resource for route in api_routes(template) if not route.http_api}
    assert rest == PAGE_PATHS


def test_public_routes_are_unsigned_and_merchant_routes_signed(document: dict[str, Any]) -> None:
    # Given the template's auth per route
    template = load_template(ROOT / "template.yaml")
    auth = {(route.method, route.resource): route.auth for route in api_routes(template)}
    # A function URL's paths take any method; its AuthType is their auth
    auth |= {
        (method, route.resource): route.auth
        for route in function_url_routes(template)
        for method in ("GET", "POST")
    }
    assert document["security"] == [{"sigv4": []}]
    scheme = document["components"]["securitySchemes"]["sigv4"]
    assert scheme["x-amazon-apigateway-authtype"] == "awsSigv4"

    for method, path, operation in operations(document):
        # Then `Authorizer: NONE` routes say security: [] and the others keep SigV4
        if auth.get((method, path)) == "NONE":
            assert operation.get("security") == [], f"{method} {path} is public"
        else:
            assert "security" not in operation, f"{method} {path} is IAM-signed"


def test_every_operation_has_examples_and_documents_its_failures(
    document: dict[str, Any],
) -> None:
    url_paths = function_url_paths()
    for method, path, operation in operations(document):
        name = f"{method} {path}"
        responses = {code: resolve(document, r) for code, r in operation["responses"].items()}
        # Then a success answer carries an example
        success = [r for code, r in responses.items() if code.startswith(("2", "3"))]
        assert any(
            "example" in media or "examples" in media
            for response in success
            for media in response.get("content", {}).values()
        ), f"{name}: no example answer"
        # And a request body, when there is one, has an example too
        if "requestBody" in operation:
            content = resolve(document, operation["requestBody"])["content"]
            assert any("example" in m or "examples" in m for m in content.values()), name
        # And client and server failures are documented, each with a described body
        assert any(code.startswith("4") for code in responses), f"{name}: no 4xx"
        assert any(code.startswith("5") for code in responses), f"{name}: no 5xx"
        for code, response in responses.items():
            if code[0] in "45":
                assert response.get("description"), f"{name} {code}: no description"
                assert response.get("content"), f"{name} {code}: no body documented"
        if path in url_paths:
            # And a function URL's refusals are there: Lambda's throttle (reserved concurrency)
            # and its 502 for a crashed or timed-out function (no API Gateway, no 29 s limit)
            assert {"429", "502"} <= set(responses), f"{name}: Lambda's 429/502"
            assert "504" not in responses, f"{name}: no API Gateway timeout on a function URL"
            continue
        # And API Gateway's refusals are there: throttling and its integration timeout
        assert {"429", "504"} <= set(responses), f"{name}: API Gateway's 429/504"


def test_retry_after_is_documented_where_the_service_sends_it(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        responses = operation["responses"]
        headers = resolve(document, responses["429"]).get("headers", {})
        # (Lambda's own 429 of a function URL carries no Retry-After, nor does the merchant HTTP
        # API's throttle: only the public pages' REST API sends one)
        assert ("Retry-After" in headers) == (path in PAGE_PATHS), f"{method} {path} 429"
        if "503" in responses:
            response = resolve(document, responses["503"])
            if "application/json" in response.get("content", {}):
                assert "Retry-After" in response.get("headers", {}), f"{method} {path} 503"


# Errors that never reach a JSON body: the HTML routes answer them as a bare page of their status.
HTML_ONLY = {"md_mismatch"}  # the 3-D Secure return's MD is not the charge's: an HTML 400


def _import_the_layer() -> None:
    """Import every module of the layer, so every error class is defined (imports do no I/O)."""
    import payments

    for module in pkgutil.walk_packages(payments.__path__, "payments."):
        importlib.import_module(module.name)


def test_every_error_code_of_the_service_is_documented(document: dict[str, Any]) -> None:
    # Given every error class of the service (and the HTTP layer's own)
    _import_the_layer()
    classes: list[type[errors.PaymentsError]] = [errors.PaymentsError]
    found: set[type[errors.PaymentsError]] = set()
    while classes:
        cls = classes.pop()
        found.add(cls)
        classes.extend(cls.__subclasses__())
    found.add(bodies.UnsupportedMediaTypeError)

    # When the document's error schemas are read, status by status
    documented: dict[int, set[str]] = {}
    for _, _, operation in operations(document):
        for code, response in operation["responses"].items():
            media = resolve(document, response).get("content", {}).get("application/json")
            if media and int(code) >= 400:
                documented.setdefault(int(code), set()).update(
                    error_codes(document, media["schema"])
                )

    # Then each class's code is documented under its HTTP status
    for cls in found:
        if inspect.isabstract(cls) or cls.code in HTML_ONLY:
            continue
        assert cls.code in documented.get(cls.http_status, set()), (
            f"{cls.__name__}: {cls.http_status} {cls.code} is not in openapi.yaml"
        )
    # And every documented code is one the service or API Gateway can send
    service_codes = {cls.code for cls in found}
    everything = set().union(*documented.values())
    assert everything - service_codes - GATEWAY_CODES == set()


def test_every_example_matches_its_schema(document: dict[str, Any]) -> None:
    # Given the document as a JSON Schema resource (for its $refs)
    registry: Registry[Any] = Registry().with_resource(
        SPEC_URI, Resource.from_contents(document, default_specification=DRAFT202012)
    )

    def media_types() -> Iterator[tuple[str, dict[str, Any]]]:
        for method, path, operation in operations(document):
            bodies_ = [("request", operation.get("requestBody")), *operation["responses"].items()]
            for where, holder in bodies_:
                if holder is None:
                    continue
                for mime, media in resolve(document, holder).get("content", {}).items():
                    yield f"{method} {path} {where} {mime}", media

    checked = 0
    for name, media in media_types():
        if "schema" not in media:
            continue
        values = [media["example"]] if "example" in media else []
        values += [resolve(document, e)["value"] for e in media.get("examples", {}).values()]
        schema = media["schema"]
        if "$ref" in schema:
            schema = {"$ref": SPEC_URI + schema["$ref"]}
        validator = OAS31Validator(schema, registry=registry)
        for value in values:
            # Then each example is valid against its schema
            problems = [e.message for e in validator.iter_errors(value)]
            assert problems == [], f"{name}: {problems}"
            checked += 1
    assert checked > 30


# ------------------------------------------------------------------ the integration tier's checker


def _event(method: str, resource: str, **params: str) -> dict[str, Any]:
    return {
        "resource": resource,
        "path": resource,
        "httpMethod": method,
        "headers": {"Content-Type": "application/json"},
        "pathParameters": params or None,
        "queryStringParameters": None,
        "body": None,
        "isBase64Encoded": False,
    }


def _charge() -> dict[str, Any]:
    example = openapi_check.spec_document()["components"]["examples"]["CapturedCharge"]
    return dict(example["value"])


def _answer(status: int, body: str, **headers: str) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", "Cache-Control": "no-store", **headers},
        "body": body,
    }


def test_the_checker_passes_an_answer_the_document_allows() -> None:
    import json

    # Given GET /charges/{chargeId} answered with a well-formed charge
    event = _event("GET", "/charges/{chargeId}", chargeId=_charge()["id"])
    # When checked / Then nothing is found
    assert openapi_check.exchange_problems(event, _answer(200, json.dumps(_charge()))) == []


def test_the_checker_reads_a_function_url_event() -> None:
    import json

    # Given the canonical postLink event (a Lambda function URL event, payload 2.0)
    event = json.loads((ROOT / "events/postlink/postlink-success.json").read_text())
    assert event["version"] == "2.0"
    # When its documented answer is checked / Then nothing is found
    received = _answer(200, json.dumps({"received": True}))
    assert openapi_check.is_documented(event)
    assert openapi_check.exchange_problems(event, received) == []
    # And an answer the document does not allow is found (an undocumented status)
    assert openapi_check.exchange_problems(event, _answer(418, "{}"))


@pytest.mark.parametrize(
    ("status", "change", "expected"),
    [
        (200, {"capturedAmount": "1500.00"}, "capturedAmount"),  # money as a string
        (200, {"extra": 1}, "extra"),  # a field the document does not name
        (200, {"status": "SETTLED"}, "SETTLED"),  # a status outside the enum
        (418, {}, "418"),  # an undocumented status
    ],
)
def test_the_checker_fails_an_answer_the_document_does_not_allow(
    status: int, change: dict[str, Any], expected: str
) -> None:
    import json

    # Given an answer that breaks the contract
    event = _event("GET", "/charges/{chargeId}", chargeId=_charge()["id"])
    result = _answer(status, json.dumps({**_charge(), **change}))

    # When checked / Then it fails, naming the route, the status and what is wrong
    with pytest.raises(openapi_check.ContractViolation) as failure:
        openapi_check.check_exchange(event, result)
    message = str(failure.value)
    assert f"GET /charges/{{chargeId}} answered {status}" in message
    assert expected in message


def test_the_checker_wants_the_documented_headers_and_content_type() -> None:
    import json

    event = _event("GET", "/charges/{chargeId}", chargeId=_charge()["id"])
    # Given an answer without Cache-Control, and one that is HTML where JSON is documented
    no_cache = _answer(200, json.dumps(_charge()))
    del no_cache["headers"]["Cache-Control"]
    html = _answer(200, "<p>hi</p>", **{"Content-Type": "text/html; charset=utf-8"})
    # Then both fail
    assert any("Cache-Control" in p for p in openapi_check.exchange_problems(event, no_cache))
    assert openapi_check.exchange_problems(event, html)


def test_the_checker_refuses_an_accepted_request_the_document_would_refuse() -> None:
    import json

    # Given POST /charges accepted (201) a body with a field the document does not allow
    event = _event("POST", "/charges")
    event["headers"]["Idempotency-Key"] = "k-1"
    event["body"] = json.dumps(
        {
            "amount": 10,
            "currency": "KZT",
            "cardId": "c0000000-0000-4000-8000-000000000001",
            "accountId": "a",
            "description": "d",
            "surprise": True,
        }
    )
    result = _answer(201, json.dumps(_charge()), Location="/charges/x")
    # Then the check says the document refuses what the service accepted
    problems = openapi_check.exchange_problems(event, result)
    assert "the service accepted a request the document refuses:" in problems


def test_the_checker_leaves_other_events_alone() -> None:
    # Given an SQS event and a route the document does not name / Then nothing is checked
    assert openapi_check.exchange_problems({"Records": []}, {"batchItemFailures": []}) == []
    unknown = _event("GET", "/nowhere")
    assert openapi_check.exchange_problems(unknown, _answer(404, "{}")) == []


def test_yaml_and_json_views_agree(document: dict[str, Any]) -> None:
    # The document uses YAML anchors only inside components.examples; parsed it is plain data
    text = (ROOT / "openapi.yaml").read_text(encoding="utf-8")
    assert yaml.safe_load(text) == document


def test_each_api_documents_its_own_gateway_refusals(document: dict[str, Any]) -> None:
    # Given every operation, by the API that serves it
    url_paths = function_url_paths()
    for method, path, operation in operations(document):
        if path in url_paths:
            continue
        name = f"{method} {path}"
        refusals = {
            code: resolve(document, operation["responses"][code])["content"]["application/json"]
            for code in ("403", "429", "504")
            if code in operation["responses"]
        }
        for code, media in refusals.items():
            schema = media["schema"]["$ref"].rsplit("/", 1)[1]
            if path in PAGE_PATHS:
                # Then the public pages' REST API shapes them as the service's errors
                assert schema != "GatewayMessage", f"{name} {code}"
            else:
                # And the merchant HTTP API's come in API Gateway's own {"message": ...} (a 403
                # may also be the service's own caller_unidentified)
                allowed = resolve(document, media["schema"]).get("oneOf", [media["schema"]])
                assert {"$ref": "#/components/schemas/GatewayMessage"} in allowed, f"{name} {code}"
                assert set(media["example"]) == {"message"}, f"{name} {code}"
