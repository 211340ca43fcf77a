"""Validate emulator responses against the official Nylas v3 OpenAPI document shipped with the emulator."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_PATH = Path(__file__).resolve().parents[2] / "local" / "nylas_emulator" / "nylas-v3-openapi.yml"
BASE = "urn:nylas-v3-openapi"


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


@cache
def spec() -> dict[str, Any]:
    loaded = yaml.safe_load(SPEC_PATH.read_text())
    assert isinstance(loaded, dict)
    patched = copy.deepcopy(loaded)
    # Inconsistency in the OpenAPI document: `event_conferencing_response` is a `oneOf` whose branches
    # (Auto-conferencing, Google Meet, Zoom, Teams, WebEx, GoToMeeting) require nothing, so every object
    # matches all of them and `oneOf` can never pass. We validate it as `anyOf` (same branches).
    conf = patched["components"]["schemas"]["event_conferencing_response"]
    conf["anyOf"] = conf.pop("oneOf")
    # Inconsistency: the events list response is `allOf[common_response_with_cursor, {data: array}]` but
    # `common_response_with_cursor` declares `data: {type: object}`, so no list can pass. Drop that `data`.
    patched["components"]["schemas"]["common_response_with_cursor"]["properties"].pop("data")
    # Inconsistency: `event_participants` has `minItems: 1`, but an event without participants is
    # answered with `participants: []` (the official SDK v6's `Event` requires the field).
    patched["components"]["schemas"]["event_participants"].pop("minItems", None)
    return patched


@cache
def _registry() -> Registry[Any]:
    resource: Resource[Any] = Resource.from_contents(spec(), default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(BASE, resource)
    return registry


def _pointer(path: str, method: str, status: int) -> str:
    responses = spec()["paths"][path][method.lower()]["responses"]
    response = responses[str(status)]
    if "$ref" in response:
        return str(response["$ref"]).lstrip("#") + "/content/application~1json/schema"
    return f"/paths/{_escape(path)}/{method.lower()}/responses/{status}/content/application~1json/schema"


def validator(path: str, method: str, status: int) -> Draft202012Validator:
    schema = {"$ref": f"{BASE}#{_pointer(path, method, status)}"}
    return Draft202012Validator(schema, registry=_registry())


def assert_matches(path: str, method: str, status: int, body: Any) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``body`` fits the OpenAPI response schema."""
    validator(path, method, status).validate(body)


def component_validator(name: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"{BASE}#/components/schemas/{_escape(name)}"}, registry=_registry())
