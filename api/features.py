"""JSON bodies for feature-vector models (a manifest's `"input": {"kind": "features", ...}`).

POST /jobs and POST /predict take, besides their multipart form, `application/json`:
`{"model": "iris", "features": [5.1, 3.5, 1.4, 0.2]}` (one number per feature, in the
model's order) or `{"model": "iris", "inputs": {"sepal_length": 5.1, ...}}` (by name),
with the form's options as JSON fields. A `JsonBodyRoute` (hidden, registered before the
form's route of the same path) takes the JSON requests; api.openapi documents its body on
the visible operation. Everything is checked here, before the queue: a 422 names each
missing, unknown or bad feature.
"""

import copy
from typing import Annotated, Any, TypeVar

import numpy as np
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_core import from_json
from starlette.routing import Match
from starlette.types import Scope

from api.deps import EVENTS_PATTERN, MAX_EXPIRES_IN, PRIORITY_DESCRIPTION
from api.uploads import takes
from shared.registry import Manifest, Registry
from shared.schemas import Priority

V = TypeVar("V", bound=BaseModel)
N = TypeVar("N", bound=BaseModel)
F32_MAX = float(np.finfo(np.float32).max)  # the model computes in float32: larger is not finite
MAX_FEATURES = 4096
MODEL_REF = r"^[a-z0-9][a-z0-9_-]*(:[A-Za-z0-9._-]+)?$"  # a manifest's name[:version] (shared.registry)
Feature = Annotated[float, Field(allow_inf_nan=False, ge=-F32_MAX, le=F32_MAX)]
_MODEL = ("'name' or 'name:version' of a model of kind `features` (GET /models: its `feature_names`); "
          "unknown: 404; a model that takes images: 415")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field(max_length=255, pattern=MODEL_REF, description=_MODEL)


class _Vector(_Body):
    features: list[Feature] = Field(min_length=1, max_length=MAX_FEATURES, description=(
        "One number per feature, in the order of the model's `feature_names`"))


class _Named(_Body):
    inputs: dict[str, Feature] = Field(min_length=1, max_length=MAX_FEATURES, description=(
        "Each of the model's `feature_names` with its number, and no other"))


class _Lane(BaseModel):
    """The `priority` form field, as a JSON field (the same rules: see the form)."""

    priority: Priority = Field(Priority.normal, description=PRIORITY_DESCRIPTION)


class _JobOptions(_Lane):
    """The options of POST /jobs' form, as JSON fields (the same rules: see the form)."""

    webhook_url: str | None = Field(None, description=(
        "POSTed the signed job record; the same rules as the form's webhook_url"))
    webhook_events: str | None = Field(None, pattern=EVENTS_PATTERN, description=(
        "Comma-separated: completed (default), running"))
    expires_in: float | None = Field(None, gt=0, le=MAX_EXPIRES_IN, allow_inf_nan=False, description=(
        "Seconds (at most JOB_TTL_SECONDS); a job still queued then fails with code `expired`"))


class FeaturesPrediction(_Lane, _Vector):
    """POST /predict: a features model's answer for a vector of numbers."""


class NamedFeaturesPrediction(_Lane, _Named):
    """POST /predict: a features model's answer for numbers by feature name."""


class FeaturesJob(_JobOptions, _Vector):
    """POST /jobs: a job for a vector of numbers."""


class NamedFeaturesJob(_JobOptions, _Named):
    """POST /jobs: a job for numbers by feature name."""


PredictBody = FeaturesPrediction | NamedFeaturesPrediction
JobBody = FeaturesJob | NamedFeaturesJob


def _is_json(scope: Scope) -> bool:
    """`application/json`, or any `application/*+json` (as FastAPI reads JSON bodies)."""
    content_type = dict(scope.get("headers") or []).get(b"content-type", b"")
    media_type = content_type.split(b";", 1)[0].strip().lower()
    return media_type == b"application/json" or (media_type.startswith(b"application/")
                                                 and media_type.endswith(b"+json"))


class JsonBodyRoute(APIRoute):
    """A route that matches only requests with a JSON body. Registered before the form
    route of the same path and method, it takes those requests; any other goes on to the
    form route, as before. Hidden from the document (`include_in_schema=False`): api.openapi
    adds `json_body`'s schema to the visible operation's requestBody."""

    json_body: TypeAdapter[Any]

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or not _is_json(scope):
            return Match.NONE, {}
        return super().matches(scope)


def json_route(body: Any) -> type[JsonBodyRoute]:
    """The JsonBodyRoute class for a body type (a union of models)."""
    return type("JsonBodyRoute", (JsonBodyRoute,), {"json_body": TypeAdapter(body)})


def _invalid(errors: list[tuple[tuple[str | int, ...], str]]) -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": ("body", *loc), "msg": msg} for loc, msg in errors])


def parse(raw: bytes, vector: type[V], named: type[N]) -> V | N:
    """The body as `vector` (`features`) or `named` (`inputs`); 422 naming each bad field."""
    try:
        # pydantic's parser, not json.loads: it stops at a nesting depth of a few hundred
        # (a ValueError) where json.loads recurses into a RecursionError, a 500. Our bodies
        # nest two levels; nothing deeper is read any further.
        data = from_json(raw)
    except ValueError as exc:
        why = "nested too deeply" if "recursion limit" in str(exc) else "not JSON"
        raise _invalid([((), f"the body is {why} ({exc})")]) from exc
    if isinstance(data, dict) and "features" in data and "inputs" in data:
        raise _invalid([(("inputs",), "send `features` (a list) or `inputs` (by name), not both")])
    kind: type[V] | type[N] = named if isinstance(data, dict) and "inputs" in data else vector
    try:
        return kind.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError([{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]) from exc


def feature_vector(body: _Vector | _Named, manifest: Manifest) -> np.ndarray:
    """The body's numbers in the model's order, float32; 415 for an image model, 422 naming
    the missing or unknown features, or a count that does not fit."""
    takes(manifest, "features")
    names = manifest.input.names or []
    expected = f"{manifest.key} takes {len(names)}: {', '.join(names)}"
    if isinstance(body, _Vector):
        if len(body.features) != len(names):
            raise _invalid([(("features",), f"{len(body.features)} numbers, but {expected} (in this order)")])
        return np.asarray(body.features, dtype=np.float32)
    errors: list[tuple[tuple[str | int, ...], str]] = [
        (("inputs", name), f"missing feature; {expected}") for name in names if name not in body.inputs]
    errors += [(("inputs", name), f"unknown feature; {expected}") for name in body.inputs if name not in names]
    if errors:
        raise _invalid(errors)
    return np.asarray([body.inputs[name] for name in names], dtype=np.float32)


def documented(definitions: dict[str, dict[str, Any]], registry: Registry) -> list[dict[str, Any]]:
    """The JSON body's schema per features model of `registry`: each of `definitions` (a
    body's schemas: by position, by name) with `model` one of that model's references, and
    exactly its features (their count; by name, each of them and no other). No model of kind
    features: none (the operation then documents no JSON body)."""
    newest = {m.key for m in registry.latest}
    variants = []
    # The bodies; not the enums they refer to (Priority: a component of the document already).
    bodies = [definition for definition in definitions.values() if "model" in definition.get("properties", {})]
    for manifest in registry.manifests.values():
        if manifest.input.kind != "features":
            continue
        names = manifest.input.names or []
        refs = [manifest.key, *([manifest.name] if manifest.key in newest else [])]
        for definition in bodies:
            variant = copy.deepcopy(definition)
            variant["title"] = f"{definition['title']} ({manifest.key})"
            properties = variant["properties"]
            properties["model"] = {"description": properties["model"]["description"], "enum": refs}
            if "features" in properties:
                properties["features"].update(minItems=len(names), maxItems=len(names),
                                              description=f"{len(names)} numbers: {', '.join(names)}")
            if "inputs" in properties:
                number = properties["inputs"]["additionalProperties"]
                properties["inputs"] = {"description": properties["inputs"]["description"], "type": "object",
                                        "properties": {name: number for name in names}, "required": names,
                                        "additionalProperties": False}
            variants.append(variant)
    return variants
