"""Read a SAM template the way the local stack needs it: routes, function settings, environment.

template.yaml uses CloudFormation's short-form intrinsics (``!Ref``, ``!Sub``, ``!GetAtt``, ...),
which plain PyYAML rejects. :class:`TemplateLoader` maps each to its long form, so the rest of the
local stack works on the same dictionaries CloudFormation sees before the SAM transform.

Only what the local stack uses is resolved: ``Ref`` to parameters, resources and a few pseudo
parameters, ``Fn::Sub`` over those, and ``Fn::GetAtt`` of what the caller names (e.g. a function
URL's ``FunctionUrl``). Anything else (``Fn::If``, ...) in a function's environment is an error,
so a template the local stack cannot honour fails loudly.

A function with ``FunctionUrlConfig`` gets a Lambda function URL. The local stack serves it on the
local API's port at the paths its ``Metadata.FunctionUrlPaths`` lists (:func:`function_url_routes`;
a real function URL takes every path, a shared port cannot), with function URL (payload 2.0)
events.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "PSEUDO_PARAMETERS",
    "Route",
    "TemplateError",
    "TemplateLoader",
    "api_routes",
    "function_environment",
    "function_url_names",
    "function_url_routes",
    "load_template",
    "parameter_defaults",
    "resolve",
    "resources_of_type",
]

#: Values the local stack gives CloudFormation's pseudo parameters (moto's default account).
PSEUDO_PARAMETERS: dict[str, str] = {
    "AWS::AccountId": "000000000000",
    "AWS::Region": "us-east-1",
    "AWS::Partition": "aws",
    "AWS::StackName": "local",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::NoValue": "",
}

_DEFAULT_TIMEOUT = 3  # seconds, Lambda's default
_DEFAULT_MEMORY = 128  # MB, Lambda's default
_SUB_VARIABLE = re.compile(r"\$\{([^}]+)\}")
#: The attribute of a function URL resource (``<Function>Url``, SAM's name) that holds its URL.
FUNCTION_URL_ATTRIBUTE = "FunctionUrl"


class TemplateError(ValueError):
    """The template lacks something the local stack needs, or uses what it cannot resolve."""


class TemplateLoader(yaml.SafeLoader):
    """A safe YAML loader that understands CloudFormation short-form intrinsic functions."""


def _construct_intrinsic(
    loader: TemplateLoader, tag_suffix: str, node: yaml.Node
) -> dict[str, Any]:
    # `!Ref X` -> {"Ref": X}; `!Condition X` -> {"Condition": X}; `!Foo X` -> {"Fn::Foo": X}.
    key = tag_suffix if tag_suffix in ("Ref", "Condition") else f"Fn::{tag_suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            # `!GetAtt Resource.Attribute` is the short form of ["Resource", "Attribute"].
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:  # pragma: no cover - PyYAML has no other node kinds
        raise TemplateError(f"unexpected YAML node for !{tag_suffix}: {node!r}")
    return {key: value}


TemplateLoader.add_multi_constructor("!", _construct_intrinsic)


def load_template(path: str | Path) -> dict[str, Any]:
    """Parse a CloudFormation/SAM template, short-form intrinsics included."""
    with Path(path).open(encoding="utf-8") as handle:
        loaded = yaml.load(handle, Loader=TemplateLoader)  # a SafeLoader subclass
    if not isinstance(loaded, dict):
        raise TemplateError(f"{path} is not a YAML mapping")
    return loaded


@dataclass(frozen=True, slots=True)
class Route:
    """One API Gateway REST route (an ``Api`` event of a function), or one path of a function's
    Lambda function URL (``function_url``), and how to run its function."""

    function_id: str
    event_name: str
    method: str  # upper case, or "ANY"
    resource: str  # resource path as in the template, e.g. "/charges/{chargeId}"
    code_uri: str  # as in the template, relative to the template's folder
    handler: str  # "module.function"
    timeout: int  # seconds
    memory: int  # MB
    auth: str  # "AWS_IAM", "NONE", or the name of another authorizer
    # ContentUri of each of the function's AWS::Serverless::LayerVersion layers
    layers: tuple[str, ...] = ()
    # A path of the function's URL (payload 2.0 events, no API Gateway), not a REST route.
    function_url: bool = False
    # An HTTP API route (``Type: HttpApi`` event; payload 2.0 events), not a REST route.
    http_api: bool = False

    @property
    def segments(self) -> tuple[str, ...]:
        """The resource path split on "/" (no empty segments)."""
        return tuple(part for part in self.resource.split("/") if part)

    def match(self, path: str) -> dict[str, str] | None:
        """Path parameters if ``path`` (percent-decoded segments, "/"-separated) fits this route."""
        return self.match_parts([part for part in path.split("/") if part])

    def match_parts(self, parts: list[str]) -> dict[str, str] | None:
        """Path parameters if the request's path segments fit this resource, else None.

        Follows API Gateway: ``{name}`` takes exactly one segment, a final ``{name+}`` takes the
        rest of the path (at least one segment); literals match case-sensitively.
        """
        params: dict[str, str] = {}
        segments = self.segments
        for index, segment in enumerate(segments):
            if segment.startswith("{") and segment.endswith("+}"):
                if index != len(segments) - 1 or index >= len(parts):
                    return None
                params[segment[1:-2]] = "/".join(parts[index:])
                return params
            if index >= len(parts):
                return None
            if segment.startswith("{") and segment.endswith("}"):
                params[segment[1:-1]] = parts[index]
            elif segment != parts[index]:
                return None
        return params if len(parts) == len(segments) else None

    @property
    def specificity(self) -> tuple[int, int, int]:
        """Sort key: API Gateway prefers literal segments, then plain parameters, then greedy."""
        literals = sum(1 for s in self.segments if not s.startswith("{"))
        greedy = sum(1 for s in self.segments if s.endswith("+}"))
        return (literals, len(self.segments) - greedy, -greedy)


def resources_of_type(template: Mapping[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    """Logical id -> resource, for every resource of the given type."""
    return {
        logical_id: resource
        for logical_id, resource in template.get("Resources", {}).items()
        if isinstance(resource, dict) and resource.get("Type") == resource_type
    }


def parameter_defaults(template: Mapping[str, Any]) -> dict[str, str]:
    """Parameter name -> its Default as a string (parameters without one are left out)."""
    defaults: dict[str, str] = {}
    for name, spec in (template.get("Parameters") or {}).items():
        if isinstance(spec, dict) and "Default" in spec:
            defaults[name] = _stringify(spec["Default"])
    return defaults


def _function_property(template: Mapping[str, Any], function: Mapping[str, Any], name: str) -> Any:
    properties = function.get("Properties") or {}
    if name in properties:
        return properties[name]
    return ((template.get("Globals") or {}).get("Function") or {}).get(name)


def _api_default_authorizer(template: Mapping[str, Any], rest_api: Any, kind: str = "Api") -> str:
    api_id = rest_api.get("Ref") if isinstance(rest_api, dict) else None
    api = (template.get("Resources") or {}).get(api_id) if isinstance(api_id, str) else None
    if api is None:
        # An implicit API (no RestApiId / ApiId) takes its Auth from Globals.Api / Globals.HttpApi.
        auth = ((template.get("Globals") or {}).get(kind) or {}).get("Auth") or {}
    else:
        auth = (api.get("Properties") or {}).get("Auth") or {}
    default = auth.get("DefaultAuthorizer")
    return str(default) if isinstance(default, str) else "NONE"


def _layer_paths(template: Mapping[str, Any], function: Mapping[str, Any]) -> tuple[str, ...]:
    layers = _function_property(template, function, "Layers") or []
    layer_resources = resources_of_type(template, "AWS::Serverless::LayerVersion")
    paths: list[str] = []
    for layer in layers:
        target = layer.get("Ref") if isinstance(layer, dict) else None
        if isinstance(target, str) and target in layer_resources:
            content = (layer_resources[target].get("Properties") or {}).get("ContentUri")
            if isinstance(content, str):
                paths.append(content)
        # Layers given as ARNs (published elsewhere) cannot be served locally; they are skipped.
    return tuple(paths)


def api_routes(template: Mapping[str, Any]) -> list[Route]:
    """Every REST API route (``Type: Api`` event) and HTTP API route (``Type: HttpApi`` event)
    of every ``AWS::Serverless::Function`` (all served on one port: their paths must not clash).

    The list is ordered the way API Gateway picks among matching resources: most specific first.
    """
    routes: list[Route] = []
    functions = resources_of_type(template, "AWS::Serverless::Function")
    for function_id, function in functions.items():
        properties = function.get("Properties") or {}
        for event_name, event in (properties.get("Events") or {}).items():
            if not isinstance(event, dict) or event.get("Type") not in ("Api", "HttpApi"):
                continue
            http_api = event["Type"] == "HttpApi"
            event_props = event.get("Properties") or {}
            path, method = event_props.get("Path"), event_props.get("Method")
            if not isinstance(path, str) or not isinstance(method, str):
                raise TemplateError(f"{function_id}.{event_name}: Api event needs Path and Method")
            code_uri = _function_property(template, function, "CodeUri")
            handler = _function_property(template, function, "Handler")
            if not isinstance(code_uri, str) or not isinstance(handler, str):
                raise TemplateError(f"{function_id}: CodeUri and Handler must be plain strings")
            auth = (event_props.get("Auth") or {}).get("Authorizer")
            if not isinstance(auth, str):
                auth = _api_default_authorizer(
                    template,
                    event_props.get("ApiId" if http_api else "RestApiId"),
                    "HttpApi" if http_api else "Api",
                )
            method = method.upper()
            routes.append(
                Route(
                    function_id=function_id,
                    event_name=event_name,
                    method="ANY" if method in ("ANY", "X-AMAZON-APIGATEWAY-ANY-METHOD") else method,
                    resource=path,
                    code_uri=code_uri,
                    handler=handler,
                    timeout=int(
                        _function_property(template, function, "Timeout") or _DEFAULT_TIMEOUT
                    ),
                    memory=int(
                        _function_property(template, function, "MemorySize") or _DEFAULT_MEMORY
                    ),
                    auth=auth,
                    layers=_layer_paths(template, function),
                    http_api=http_api,
                )
            )
    routes.sort(key=lambda route: route.specificity, reverse=True)
    return routes


def function_url_routes(template: Mapping[str, Any]) -> list[Route]:
    """One route per path of every function URL (``FunctionUrlConfig`` of a function).

    The paths come from the function's ``Metadata.FunctionUrlPaths``: a function URL without them
    cannot be served locally, and is an error. Method ``ANY`` (a function URL takes every
    method; the function answers the ones it does not serve); ``auth`` is the URL's AuthType.
    """
    routes: list[Route] = []
    functions = resources_of_type(template, "AWS::Serverless::Function")
    for function_id, function in functions.items():
        config = _function_property(template, function, "FunctionUrlConfig")
        if not isinstance(config, dict):
            continue
        paths = (function.get("Metadata") or {}).get("FunctionUrlPaths")
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths) or not paths:
            raise TemplateError(
                f"{function_id}: a function URL needs Metadata.FunctionUrlPaths (the paths the "
                "local stack serves)"
            )
        code_uri = _function_property(template, function, "CodeUri")
        handler = _function_property(template, function, "Handler")
        if not isinstance(code_uri, str) or not isinstance(handler, str):
            raise TemplateError(f"{function_id}: CodeUri and Handler must be plain strings")
        auth = config.get("AuthType")
        routes.extend(
            Route(
                function_id=function_id,
                event_name="FunctionUrl",
                method="ANY",
                resource=path,
                code_uri=code_uri,
                handler=handler,
                timeout=int(_function_property(template, function, "Timeout") or _DEFAULT_TIMEOUT),
                memory=int(_function_property(template, function, "MemorySize") or _DEFAULT_MEMORY),
                auth=auth if isinstance(auth, str) else "NONE",
                layers=_layer_paths(template, function),
                function_url=True,
            )
            for path in paths
        )
    return routes


def function_url_names(template: Mapping[str, Any], base_url: str) -> dict[str, str]:
    """``"<Function>Url.FunctionUrl"`` -> ``base_url`` with a trailing "/" (a function URL's
    form), for every function URL: the local stack serves them all on the local API's port."""
    url = base_url.rstrip("/") + "/"
    return {
        f"{function_id}Url.{FUNCTION_URL_ATTRIBUTE}": url
        for function_id, function in resources_of_type(
            template, "AWS::Serverless::Function"
        ).items()
        if isinstance(_function_property(template, function, "FunctionUrlConfig"), dict)
    }


def _stringify(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_stringify(item) for item in value)  # CommaDelimitedList
    return str(value)


def resolve(value: Any, parameters: Mapping[str, str], resource_names: Mapping[str, str]) -> str:
    """Resolve a scalar, ``Ref`` or simple ``Fn::Sub`` to a string.

    ``Ref`` looks in ``parameters`` (the template's Parameters, already defaulted/overridden), then
    ``resource_names`` (logical id -> physical name/ARN), then the pseudo parameters. ``Fn::Sub``
    accepts the string form and the ``[string, {variables}]`` form with ``${Name}`` and
    ``${Resource.Attribute}`` (looked up as "Resource.Attribute" in ``resource_names``), and
    ``Fn::GetAtt`` is looked up the same way.
    """
    if isinstance(value, str | int | float | bool):
        return _stringify(value)
    if isinstance(value, dict) and len(value) == 1:
        ((key, argument),) = value.items()
        if key == "Ref":
            return _lookup(str(argument), parameters, resource_names)
        if key == "Fn::Sub":
            return _substitute(argument, parameters, resource_names)
        if key == "Fn::GetAtt" and isinstance(argument, list) and len(argument) == 2:
            name = f"{argument[0]}.{argument[1]}"
            if name in resource_names:
                return resource_names[name]
    raise TemplateError(f"the local stack cannot resolve {value!r}")


def _lookup(name: str, parameters: Mapping[str, str], resource_names: Mapping[str, str]) -> str:
    for source in (parameters, resource_names, PSEUDO_PARAMETERS):
        if name in source:
            return source[name]
    raise TemplateError(
        f"unresolved reference {name!r}: not a parameter with a value (parameters without a "
        "Default must be given), a created resource or a pseudo parameter"
    )


def _substitute(
    argument: Any, parameters: Mapping[str, str], resource_names: Mapping[str, str]
) -> str:
    if isinstance(argument, str):
        text, variables = argument, {}
    elif isinstance(argument, list) and len(argument) == 2 and isinstance(argument[1], dict):
        text, variables = str(argument[0]), argument[1]
    else:
        raise TemplateError(f"malformed Fn::Sub {argument!r}")

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith("!"):  # ${!Literal} is an escaped "${Literal}"
            return "${" + name[1:] + "}"
        if name in variables:
            return resolve(variables[name], parameters, resource_names)
        return _lookup(name, parameters, resource_names)

    return _SUB_VARIABLE.sub(replace, text)


def function_environment(
    template: Mapping[str, Any],
    logical_id: str,
    parameters: Mapping[str, str],
    resource_names: Mapping[str, str],
) -> dict[str, str]:
    """A function's environment variables: Globals.Function's, overridden by the function's own.

    ``parameters`` are used as given; pass :func:`parameter_defaults` merged with any overrides.
    A variable that is a function URL (``!GetAtt <Function>Url.FunctionUrl``) not named in
    ``resource_names`` (:func:`function_url_names`) is left out: no URL is known, and the layer
    then builds that link under PUBLIC_BASE_URL, where the local API serves the URL's paths.
    """
    functions = resources_of_type(template, "AWS::Serverless::Function")
    if logical_id not in functions:
        raise TemplateError(f"no AWS::Serverless::Function named {logical_id!r}")
    global_vars = (
        ((template.get("Globals") or {}).get("Function") or {}).get("Environment") or {}
    ).get("Variables") or {}
    own_vars = ((functions[logical_id].get("Properties") or {}).get("Environment") or {}).get(
        "Variables"
    ) or {}
    merged = {**global_vars, **own_vars}
    return {
        name: resolve(value, parameters, resource_names)
        for name, value in merged.items()
        if not _unknown_function_url(template, value, resource_names)
    }


def _unknown_function_url(
    template: Mapping[str, Any], value: Any, resource_names: Mapping[str, str]
) -> bool:
    argument = value.get("Fn::GetAtt") if isinstance(value, dict) and len(value) == 1 else None
    if not (isinstance(argument, list) and len(argument) == 2):
        return False
    resource, attribute = str(argument[0]), str(argument[1])
    if attribute != FUNCTION_URL_ATTRIBUTE or f"{resource}.{attribute}" in resource_names:
        return False
    function = resources_of_type(template, "AWS::Serverless::Function").get(
        resource.removesuffix("Url")
    )
    return (
        resource.endswith("Url")
        and function is not None
        and isinstance(_function_property(template, function, "FunctionUrlConfig"), dict)
    )
