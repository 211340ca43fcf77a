"""template.yaml as data for the local stack: routes, tables and the function environment.

Everything local that mirrors the deployment (the gateway's routes, the DynamoDB tables, the functions'
environment) is read from template.yaml through this module, so nothing is declared twice.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_PATH = ROOT / "template.yaml"

Template = dict[str, Any]

# Values of the pseudo parameters when the template is evaluated locally.
LOCAL_PSEUDO_PARAMETERS: dict[str, Any] = {
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "teams-connect-local",
    "AWS::StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/teams-connect-local/local",
    "AWS::NotificationARNs": [],
}


# --------------------------------------------------------------------------- YAML with short tags


class CfnYamlLoader(yaml.SafeLoader):
    """A safe YAML loader that turns CloudFormation short tags into their long (JSON) form."""


def _construct_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:  # pragma: no cover - yaml has no other node kinds
        raise yaml.constructor.ConstructorError(
            None, None, f"unexpected node for !{tag_suffix}", node.start_mark
        )
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        resource, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [resource, attribute]}
    return {f"Fn::{tag_suffix}": value}


CfnYamlLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: Path | str = TEMPLATE_PATH) -> Template:
    """template.yaml as plain dicts/lists/strings, short tags (`!Ref`, `!Sub`, ...) in long form."""
    with open(path, encoding="utf-8") as handle:
        data = yaml.load(handle, Loader=CfnYamlLoader)  # noqa: S506 - a SafeLoader subclass
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a CloudFormation template")
    return data


# --------------------------------------------------------------------------- functions and routes


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    function_logical_id: str
    code_uri: str
    handler: str
    timeout: int = 3
    memory_size: int = 128

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"


def _resources(template: Template) -> dict[str, Any]:
    resources = template.get("Resources") or {}
    if not isinstance(resources, dict):
        raise ValueError("template has no Resources mapping")
    return resources


def function_globals(template: Template) -> dict[str, Any]:
    return dict(((template.get("Globals") or {}).get("Function")) or {})


def function_property(template: Template, logical_id: str, name: str, default: Any = None) -> Any:
    """A property of an AWS::Serverless::Function, falling back to Globals.Function."""
    properties = _resources(template)[logical_id].get("Properties") or {}
    if name in properties:
        return properties[name]
    return function_globals(template).get(name, default)


def stream_filters(template: Template, logical_id: str) -> list[dict[str, Any]]:
    """The `FilterCriteria` patterns of a function's DynamoDB stream event (none: every record)."""
    events = (_resources(template)[logical_id].get("Properties") or {}).get("Events") or {}
    patterns: list[dict[str, Any]] = []
    for event in events.values():
        if event.get("Type") != "DynamoDB":
            continue
        criteria = (event.get("Properties") or {}).get("FilterCriteria") or {}
        patterns.extend(json.loads(f["Pattern"]) for f in criteria.get("Filters") or [])
    return patterns


def http_routes(template: Template) -> list[Route]:
    """Every `HttpApi` event of every AWS::Serverless::Function, in template order."""
    routes: list[Route] = []
    for logical_id, resource in _resources(template).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        for event in ((resource.get("Properties") or {}).get("Events") or {}).values():
            if event.get("Type") != "HttpApi":
                continue
            props = event.get("Properties") or {}
            routes.append(
                Route(
                    method=str(props["Method"]).upper(),
                    path=str(props["Path"]),
                    function_logical_id=logical_id,
                    code_uri=str(function_property(template, logical_id, "CodeUri")),
                    handler=str(function_property(template, logical_id, "Handler", "app.lambda_handler")),
                    timeout=int(function_property(template, logical_id, "Timeout", 3)),
                    memory_size=int(function_property(template, logical_id, "MemorySize", 128)),
                )
            )
    return routes


# --------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class TableDefinition:
    """One AWS::DynamoDB::Table as `create_table` keyword arguments (without TableName) + its TTL."""

    logical_id: str
    create_table_kwargs: dict[str, Any]
    ttl_attribute: str | None

    def key_schema(self) -> list[dict[str, str]]:
        return list(self.create_table_kwargs["KeySchema"])


def table_definitions(template: Template) -> dict[str, TableDefinition]:
    """The DynamoDB tables of the template, ready for `dynamodb.create_table(TableName=..., **kwargs)`."""
    tables: dict[str, TableDefinition] = {}
    for logical_id, resource in _resources(template).items():
        if resource.get("Type") != "AWS::DynamoDB::Table":
            continue
        props = resource.get("Properties") or {}
        billing = props.get("BillingMode", "PROVISIONED")
        kwargs: dict[str, Any] = {
            "KeySchema": props["KeySchema"],
            "AttributeDefinitions": props["AttributeDefinitions"],
            "BillingMode": billing,
        }
        if billing == "PROVISIONED":
            kwargs["ProvisionedThroughput"] = props["ProvisionedThroughput"]
        stream = props.get("StreamSpecification")
        if stream:
            kwargs["StreamSpecification"] = {
                "StreamEnabled": True,
                "StreamViewType": stream["StreamViewType"],
            }
        for index_kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            indexes = props.get(index_kind)
            if indexes:
                kwargs[index_kind] = [
                    {k: v for k, v in index.items() if k in ("IndexName", "KeySchema", "Projection")}
                    | (
                        {"ProvisionedThroughput": index["ProvisionedThroughput"]}
                        if "ProvisionedThroughput" in index
                        else {}
                    )
                    for index in indexes
                ]
        ttl = props.get("TimeToLiveSpecification") or {}
        ttl_attribute = ttl.get("AttributeName") if ttl.get("Enabled", False) is True else None
        tables[logical_id] = TableDefinition(logical_id, kwargs, ttl_attribute)
    return tables


# --------------------------------------------------------------------------- intrinsics, locally


class _NoValue:
    """AWS::NoValue: drops the enclosing key or list item."""


NO_VALUE = _NoValue()
_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


class TemplateEvaluator:
    """Evaluates the intrinsic functions the template uses, with local values for parameters/resources.

    `resolved` maps a resource logical id to its local `Ref` value and `"Logical.Attribute"` to its
    local `Fn::GetAtt` value. A reference to anything unresolved is an error, never a silent blank.
    """

    def __init__(
        self, template: Template, parameter_values: Mapping[str, Any], resolved: Mapping[str, Any]
    ) -> None:
        self.template = template
        self.resolved = dict(resolved)
        self.parameters: dict[str, Any] = {}
        for name, spec in (template.get("Parameters") or {}).items():
            if name in parameter_values:
                value: Any = parameter_values[name]
            elif "Default" in spec:
                value = spec["Default"]
            else:
                continue  # referencing it later raises
            allowed = spec.get("AllowedValues")
            if allowed is not None and str(value) not in [str(a) for a in allowed]:
                raise ValueError(f"parameter {name}={value!r} is not one of {allowed}")
            if spec.get("Type") == "CommaDelimitedList" and isinstance(value, str):
                value = [item.strip() for item in value.split(",")] if value else []
            self.parameters[name] = value
        unknown = set(parameter_values) - set(template.get("Parameters") or {})
        if unknown:
            raise ValueError(f"unknown template parameters: {sorted(unknown)}")
        self._conditions: dict[str, bool] = {}

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in LOCAL_PSEUDO_PARAMETERS:
            return LOCAL_PSEUDO_PARAMETERS[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.resolved:
            return self.resolved[name]
        raise KeyError(f"no local value for Ref {name}")

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = bool(self.evaluate((self.template.get("Conditions") or {})[name]))
        return self._conditions[name]

    def _sub(self, text: str, variables: Mapping[str, Any]) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                return str(self._get_att(*name.split(".", 1)))
            return str(self.ref(name))

        return _SUB_VARIABLE.sub(replace, text).replace("${!", "${")

    def _get_att(self, resource: str, attribute: str) -> Any:
        key = f"{resource}.{attribute}"
        if key not in self.resolved:
            raise KeyError(f"no local value for Fn::GetAtt {key}")
        return self.resolved[key]

    def evaluate(self, node: Any) -> Any:
        if isinstance(node, list):
            items = [self.evaluate(item) for item in node]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::If":
                name, when_true, when_false = arg
                return self.evaluate(when_true if self.condition(name) else when_false)
            if key == "Fn::Equals":
                left, right = (self.evaluate(a) for a in arg)
                return str(left) == str(right)
            if key == "Fn::Not":
                return not self.evaluate(arg[0])
            if key == "Fn::And":
                return all(self.evaluate(a) for a in arg)
            if key == "Fn::Or":
                return any(self.evaluate(a) for a in arg)
            if key == "Fn::Sub":
                if isinstance(arg, str):
                    return self._sub(arg, {})
                text, variables = arg
                return self._sub(text, {k: self.evaluate(v) for k, v in variables.items()})
            if key == "Fn::Join":
                separator, values = arg
                return str(separator).join(str(v) for v in self.evaluate(values))
            if key == "Fn::Select":
                index, values = arg
                return self.evaluate(values)[int(self.evaluate(index))]
            if key == "Fn::Split":
                separator, text = arg
                return str(self.evaluate(text)).split(separator)
            if key == "Fn::GetAtt":
                resource, attribute = arg if isinstance(arg, list) else str(arg).split(".", 1)
                return self._get_att(resource, attribute)
            if key.startswith("Fn::"):
                raise NotImplementedError(f"{key} is not evaluated locally")
        result = {k: self.evaluate(v) for k, v in node.items()}
        return {k: v for k, v in result.items() if v is not NO_VALUE}


def function_environment(
    template: Template,
    parameter_values: Mapping[str, Any],
    resolved: Mapping[str, Any],
    function_logical_id: str | None = None,
) -> dict[str, str]:
    """The environment variables of the functions (Globals, plus one function's own if given), resolved.

    `parameter_values` override the template's parameter defaults; `resolved` gives the local value of
    each referenced resource (`{"SessionsTable": "<local table name>", ...}`).
    """
    variables: dict[str, Any] = dict(
        ((function_globals(template).get("Environment") or {}).get("Variables")) or {}
    )
    if function_logical_id is not None:
        own = function_property(template, function_logical_id, "Environment") or {}
        variables.update(own.get("Variables") or {})
    evaluator = TemplateEvaluator(template, parameter_values, resolved)
    environment: dict[str, str] = {}
    for name, value in variables.items():
        evaluated = evaluator.evaluate(value)
        if evaluated is NO_VALUE:
            continue
        if isinstance(evaluated, bool):
            evaluated = "true" if evaluated else "false"
        environment[name] = str(evaluated)
    return environment
