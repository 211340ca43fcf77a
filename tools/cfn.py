"""CloudFormation as a deployment sees it, offline: parameter sets, Conditions, `Fn::If` and values.

`make deploy-check` and the least-privilege gate (tools/static_gates.py) look at the template the way
CloudFormation evaluates it for one parameter set in one region: every `Condition` decided, every
`Fn::If` replaced by its branch, `AWS::NoValue` dropped, resources and outputs whose condition is
false removed. `Ref`s to parameters and resources are kept as they are (the policies name them), and
`resolve_value` turns an expression into the string a deployed function would see (environment
variables), with made-up physical names for the stack's own resources.

A parameter set is a CloudFormation CLI parameter file, `[{"ParameterKey": …, "ParameterValue": …}]`
(what `aws cloudformation create-stack --parameters file://…` takes); deploy/parameters/ holds the
ones `make deploy-check` rehearses.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PARAMETER_SETS_DIR = ROOT / "deploy" / "parameters"
ACCOUNT_ID = "123456789012"
STACK_NAME = "teams-connect"
NO_VALUE = {"Ref": "AWS::NoValue"}


class TemplateError(Exception):
    """The template (or a parameter set) cannot be evaluated: the message says where."""


@dataclass(frozen=True)
class ParameterSet:
    name: str  # the file's stem
    values: dict[str, str]  # as given in the file (ParameterValue strings)
    path: Path | None = None
    region: str = "us-east-1"

    def in_region(self, region: str) -> ParameterSet:
        return ParameterSet(self.name, self.values, self.path, region)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.region})"


def load_parameter_set(path: Path) -> ParameterSet:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, list) or not all(
        isinstance(item, dict) and set(item) == {"ParameterKey", "ParameterValue"} for item in data
    ):
        raise TemplateError(
            f'{path.name}: a parameter set is a list of {{"ParameterKey", "ParameterValue"}} objects'
        )
    values = {str(item["ParameterKey"]): str(item["ParameterValue"]) for item in data}
    if len(values) != len(data):
        raise TemplateError(f"{path.name}: a parameter is given twice")
    return ParameterSet(path.stem, values, path)


def parameter_sets(directory: Path = PARAMETER_SETS_DIR) -> list[ParameterSet]:
    return [load_parameter_set(path) for path in sorted(directory.glob("*.json"))]


@dataclass
class Evaluation:
    """One parameter set in one region against one template."""

    template: dict[str, Any]
    parameters: ParameterSet
    values: dict[str, Any] = field(default_factory=dict)  # every parameter, defaults applied
    conditions: dict[str, bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        declared: dict[str, Any] = self.template.get("Parameters") or {}
        for name, spec in declared.items():
            if name in self.parameters.values:
                raw: Any = self.parameters.values[name]
            elif "Default" in spec:
                raw = spec["Default"]
            else:
                raise TemplateError(f"{self.parameters.name}: parameter {name} has no default and no value")
            if spec.get("Type") == "CommaDelimitedList":
                raw = raw if isinstance(raw, list) else [part.strip() for part in str(raw).split(",")]
            self.values[name] = raw
        for name in self.template.get("Conditions") or {}:
            self.condition(name)

    # ------------------------------------------------------------------ conditions

    def condition(self, name: str, _stack: tuple[str, ...] = ()) -> bool:
        if name in self.conditions:
            return self.conditions[name]
        if name in _stack:
            raise TemplateError(f"Condition {name} refers to itself ({' -> '.join((*_stack, name))})")
        definitions = self.template.get("Conditions") or {}
        if name not in definitions:
            raise TemplateError(f"Condition {name} is used but not defined")
        value = self._truth(definitions[name], (*_stack, name))
        self.conditions[name] = value
        return value

    def _truth(self, node: Any, stack: tuple[str, ...]) -> bool:
        if not isinstance(node, dict) or len(node) != 1:
            raise TemplateError(f"Condition {stack[-1]}: cannot evaluate {json.dumps(node)}")
        ((function, argument),) = node.items()
        if function == "Condition":
            return self.condition(str(argument), stack)
        if function == "Fn::Equals":
            left, right = (self._scalar(self.value(side)) for side in argument)
            return left == right
        if function == "Fn::Not":
            return not self._truth(argument[0], stack)
        if function == "Fn::And":
            return all(self._truth(item, stack) for item in argument)
        if function == "Fn::Or":
            return any(self._truth(item, stack) for item in argument)
        raise TemplateError(f"Condition {stack[-1]}: unsupported function {function}")

    @staticmethod
    def _scalar(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, list):
            return ",".join(map(str, value))
        return str(value)

    # ------------------------------------------------------------------ values

    def pseudo(self, name: str) -> str:
        region = self.parameters.region
        return {
            "AWS::Region": region,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::StackName": STACK_NAME,
            "AWS::StackId": f"arn:aws:cloudformation:{region}:{ACCOUNT_ID}:stack/{STACK_NAME}/"
            "00000000-0000-4000-8000-000000000000",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NotificationARNs": "",
        }[name]

    def physical(self, logical_id: str, attribute: str | None = None) -> str:
        """A made-up but well-formed value of `Ref`/`Fn::GetAtt` on one of the stack's resources."""
        resource = (self.template.get("Resources") or {}).get(logical_id)
        if resource is None:
            raise TemplateError(f"Ref/GetAtt to {logical_id}, which is not a resource of the template")
        kind = str(resource.get("Type", ""))
        region, name = self.parameters.region, f"{STACK_NAME}-{logical_id}-ABC123DEF456"
        service = kind.split("::")[1].lower() if kind.count("::") == 2 else "unknown"
        if attribute in (None, "Name") and kind == "AWS::SecretsManager::Secret":
            return f"arn:aws:secretsmanager:{region}:{ACCOUNT_ID}:secret:{name}-AbCdEf"
        if attribute is None and kind == "AWS::SQS::Queue":
            return f"https://sqs.{region}.amazonaws.com/{ACCOUNT_ID}/{name}"
        if attribute is None and kind in ("AWS::SNS::Topic", "AWS::Lambda::LayerVersion"):
            return f"arn:aws:{service}:{region}:{ACCOUNT_ID}:{name}"
        if attribute is None and kind == "AWS::KMS::Key":
            return "1234abcd-0000-4000-8000-0123456789ab"
        if attribute is None and kind == "AWS::ApiGatewayV2::Api":
            return "abcde12345"
        if attribute is None:
            return name
        if attribute == "Arn":
            return f"arn:aws:{service}:{region}:{ACCOUNT_ID}:{name}"
        if attribute == "StreamArn":
            return f"arn:aws:dynamodb:{region}:{ACCOUNT_ID}:table/{name}/stream/2026-01-01T00:00:00.000"
        return f"{name}-{attribute}"

    def value(self, node: Any) -> Any:
        """The value of an expression for this parameter set (strings, lists; NO_VALUE stays)."""
        if isinstance(node, list):
            return [self.value(item) for item in node if item != NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) != 1:
            return {key: self.value(item) for key, item in node.items()}
        ((function, argument),) = node.items()
        if function == "Ref":
            name = str(argument)
            if name == "AWS::NoValue":
                return NO_VALUE
            if name.startswith("AWS::"):
                return self.pseudo(name)
            if name in self.values:
                return self.values[name]
            return self.physical(name)
        if function == "Fn::GetAtt":
            target = argument if isinstance(argument, list) else str(argument).split(".", 1)
            return self.physical(str(target[0]), str(target[1]))
        if function == "Fn::If":
            name, when_true, when_false = argument
            return self.value(when_true if self.condition(str(name)) else when_false)
        if function == "Fn::Sub":
            text, variables = (argument, {}) if isinstance(argument, str) else argument
            return self._sub(str(text), {k: self.value(v) for k, v in variables.items()})
        if function == "Fn::Join":
            separator, items = argument
            resolved = self.value(items)
            return str(separator).join(self._scalar(item) for item in resolved)
        if function == "Fn::Select":
            index, items = argument
            return self.value(items)[int(self.value(index))]
        if function == "Fn::Split":
            separator, text = argument
            return str(self.value(text)).split(str(separator))
        if function == "Fn::GetAZs":
            return [f"{self.parameters.region}a", f"{self.parameters.region}b"]
        if function.startswith("Fn::") or function == "Condition":
            raise TemplateError(f"cannot evaluate {function} offline")
        return {function: self.value(argument)}

    def _sub(self, text: str, variables: dict[str, Any]) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return self._scalar(variables[name])
            if "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                return self.physical(logical_id, attribute)
            return self._scalar(self.value({"Ref": name}))

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    # ------------------------------------------------------------------ the resolved template

    def resolved(self) -> dict[str, Any]:
        """The template with every condition decided: conditional resources/outputs dropped, every
        `Fn::If` replaced by its branch, `AWS::NoValue` removed; other intrinsics kept as written."""
        template = copy.deepcopy(self.template)
        for section in ("Resources", "Outputs"):
            entries: dict[str, Any] = template.get(section) or {}
            for logical_id in list(entries):
                condition = entries[logical_id].get("Condition")
                if isinstance(condition, str) and not self.condition(condition):
                    del entries[logical_id]
        return self._decide(template)  # type: ignore[no-any-return]

    def _decide(self, node: Any) -> Any:
        if isinstance(node, list):
            items = [self._decide(item) for item in node]
            return [item for item in items if item != NO_VALUE]
        if isinstance(node, dict):
            if set(node) == {"Fn::If"}:
                name, when_true, when_false = node["Fn::If"]
                return self._decide(when_true if self.condition(str(name)) else when_false)
            decided = {key: self._decide(value) for key, value in node.items()}
            return {key: value for key, value in decided.items() if value != NO_VALUE}
        return node


def condition_coverage(evaluations: list[Evaluation]) -> dict[str, set[bool]]:
    """Each Condition of the template → the truth values it took across `evaluations`."""
    seen: dict[str, set[bool]] = {}
    for evaluation in evaluations:
        for name in evaluation.template.get("Conditions") or {}:
            seen.setdefault(name, set()).add(evaluation.condition(name))
    return seen


def validate_parameters(template: dict[str, Any], parameters: ParameterSet) -> list[str]:
    """What CloudFormation would refuse in a parameter set: unknown names, missing values, values
    outside AllowedValues / AllowedPattern / MinValue / MaxValue."""
    problems: list[str] = []
    declared: dict[str, Any] = template.get("Parameters") or {}
    for name in sorted(set(parameters.values) - set(declared)):
        problems.append(f"parameter {name} is not a parameter of template.yaml (remove it from the set)")
    for name, spec in declared.items():
        if name not in parameters.values:
            if "Default" not in spec:
                problems.append(f"parameter {name} has no default: the set must give it")
            continue
        value = parameters.values[name]
        items = value.split(",") if spec.get("Type") == "CommaDelimitedList" else [value]
        allowed = spec.get("AllowedValues")
        if allowed is not None and value not in [str(a) for a in allowed]:
            problems.append(f"parameter {name}={value!r} is not one of {allowed}")
        pattern = spec.get("AllowedPattern")
        if pattern is not None:
            for item in items:
                if not re.fullmatch(str(pattern), item):
                    problems.append(f"parameter {name}={item!r} does not match AllowedPattern {pattern}")
        if spec.get("Type") == "Number":
            try:
                number = float(value)
            except ValueError:
                problems.append(f"parameter {name}={value!r} is not a number")
                continue
            if "MinValue" in spec and number < float(spec["MinValue"]):
                problems.append(f"parameter {name}={value} is below MinValue {spec['MinValue']}")
            if "MaxValue" in spec and number > float(spec["MaxValue"]):
                problems.append(f"parameter {name}={value} is above MaxValue {spec['MaxValue']}")
    return problems
