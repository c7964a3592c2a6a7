"""The OpenAPI document (/openapi.json), true to the server: every status an operation can
answer, with its body and headers, and every constraint the server enforces.

Routes declare their own answers with `problems(...)`. `App.openapi` then fixes, for every
operation at once, what FastAPI gets wrong or leaves out:

- an error body is a `Problem`, sent as `application/problem+json` (FastAPI files it under
  `application/json`, and documents a list-shaped 422 that api.errors never sends);
- 413 (api.limits.LimitBody, before routing) and 500 (api.errors) can answer any request;
  408 and 503 (api.limits) any with a body, and 401 and 503 (api.door) any that takes a key;
- an optional parameter or form field is absent or a value, never `null` (FastAPI documents
  `anyOf: [X, null]`, which a query string, a header or a form cannot say);
- a form takes only its own fields (api.deps.declared_fields_only refuses others), and its
  file parts are images in the accepted formats;
- POST /jobs and POST /predict take a JSON body too, for features models: its route is a
  hidden api.features.JsonBodyRoute, whose body is added to the visible operation here;
- `webhook_url` and `webhook_events` are documented only where webhooks are on (API keys,
  or WEBHOOK_SECRET with AUTH_DISABLED); elsewhere api.deps.submit_options refuses them;
- every operation takes an optional `X-Request-ID` and every answer carries one
  (api.access_log).
"""

from collections.abc import Iterator, Mapping
from typing import Any

from fastapi import FastAPI

from api.access_log import HEADER as REQUEST_ID
from api.access_log import REQUEST_ID_PATTERN
from api.errors import PROBLEM_JSON
from api.features import JsonBodyRoute, documented
from api.raw import RawBodyRoute, documented_body
from shared.registry import Registry
from shared.schemas import Problem

# What api.decoding accepts (Pillow sniffs the bytes; a part's declared type is not used).
IMAGE_TYPES = "image/png, image/jpeg, image/webp, image/bmp, image/gif, image/tiff"
ZIP_TYPE = "application/zip"  # a file part whose description starts "A ZIP" (api/routes/training.py)
WEBHOOK_FIELDS = ("webhook_url", "webhook_events", "batch_webhook_url")
_REF = "#/components/schemas/"
_JSON = "application/json"
_BINARY = "application/octet-stream"  # how OpenAPI 3.1 says a form field is a file

_DESCRIPTIONS = {
    400: "Malformed multipart body, or more parts (files or fields) than the route takes",
    401: "No API key, or an unknown or revoked one (`Authorization: Bearer <key>`)",
    403: "The key may not do this (an admin key is needed)",
    404: "Not found",
    408: "The request body stalled (no bytes for BODY_TIMEOUT_SECONDS), or was still arriving "
         "BODY_DEADLINE_SECONDS after the request began",
    409: "Conflict",
    413: "Body over its limit (MAX_UPLOAD_BYTES; MAX_BATCH_BYTES on /…/batch), checked before routing",
    415: "Not an image in an accepted format (PNG, JPEG, WebP, BMP, GIF, TIFF)",
    422: "A field failed validation (`errors` names each), or the image is empty, truncated or corrupt",
    429: "Over the key's submissions per minute (the batch's files count each), its queued + running jobs, or "
         "its record budget (the records Redis holds for it: a batch must fit whole): nothing was recorded; or "
         "over its job reads per minute, or its long-polls at once; retry after Retry-After",
    500: "Unexpected server error (logged)",
    503: "Redis unreachable, or full (a write); or more request bodies arriving at once than MAX_BODIES "
         "(MAX_BODIES_PER_CLIENT from one address); retry after Retry-After",
    504: "No result in time; the job goes on at Location",
}
LOCATION = {"Location": {"description": "The job: /jobs/{id}", "schema": {"type": "string"}}}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}}
# The IETF RateLimit header fields: on a submission's answers, and its 429.
RATE_LIMIT = {name: {"description": description, "schema": {"type": "integer"}} for name, description in (
    ("RateLimit-Limit", "The key's limit: submissions per minute (on a quota's 429: its queued + running jobs)"),
    ("RateLimit-Remaining", "Submissions left now"),
    ("RateLimit-Reset", "Seconds until the full limit is available again"))}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}},
    429: {**_RETRY_AFTER, **RATE_LIMIT},
    503: _RETRY_AFTER,
    504: LOCATION,
}
# A submission's 503s: nothing was recorded.
BUSY = ("Redis unreachable or full, the queue full (MAX_QUEUED_JOBS), or the decoder busy: nothing was recorded; "
        "retry after Retry-After")
# Where a submission's job id leads (OpenAPI links, followed by clients and test generators).
JOB_LINKS = {
    name: {"operationRef": f"#/paths/~1jobs~1%7Bjob_id%7D{suffix}", "parameters": {"job_id": "$response.body#/id"}}
    for name, suffix in (("GetJob", "/get"), ("CancelJob", "/delete"), ("CancelJobByPost", "~1cancel/post"))
}
# Any request may get these, whatever its route: the body limit is checked before routing.
_ANY_OPERATION = (413, 500)
# A request with a body may get these before routing too (api.limits): its deadline, the bound on
# bodies at once; and one with a key 401, or 503 when Redis cannot say whose it is (api.door).
_WITH_BODY = (408, 503)
_WITH_KEY = (401, 503)
_REQUEST_ID_PARAMETER = {
    "name": REQUEST_ID, "in": "header", "required": False, "schema": {"type": "string"},
    "description": "Your id for this request, echoed in the answer and logged with it; one that is not "
                   "1 to 64 characters of A-Za-z0-9._- is replaced by a new one",
}
_REQUEST_ID_HEADER = {
    "description": "The request's id: the X-Request-ID sent, or a new one; the access log's line names it",
    "required": True, "schema": {"type": "string", "pattern": REQUEST_ID_PATTERN},
}


def problems(*statuses: int, described: Mapping[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status answered with a Problem (see App.openapi)."""
    described = described or {}
    return {status: {"model": Problem, "description": described.get(status, _DESCRIPTIONS[status]),
                     **({"headers": _HEADERS[status]} if status in _HEADERS else {})}
            for status in statuses}


class App(FastAPI):
    """FastAPI whose OpenAPI document says what the server does (see the module's docstring)."""

    def __init__(self, *args: Any, takes_webhooks: bool, registry: Registry, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.takes_webhooks = takes_webhooks
        self.registry = registry  # the models: what a JSON body's `model` can name

    def forget_document(self) -> None:
        """The models changed (api.versions): build the document again when next asked."""
        self.openapi_schema = None

    def openapi(self) -> dict[str, Any]:
        if not self.openapi_schema:  # built once (again after forget_document), then FastAPI's cache
            hidden = () if self.takes_webhooks else WEBHOOK_FIELDS
            document = super().openapi()
            _add_json_bodies(document, self.routes, hidden, self.registry)
            _add_raw_bodies(document, self.routes)
            _make_true(document, hidden)
        return super().openapi()


def _add_json_bodies(document: dict[str, Any], routes: list[Any], hidden: tuple[str, ...],
                     registry: Registry) -> None:
    """Each hidden JSON route's body, as `application/json` content of the visible operation
    of its path and method (whose form stays `multipart/form-data`): one schema per features
    model served (api.features.documented), so that a valid body is one the server takes."""
    for route in routes:
        if not isinstance(route, JsonBodyRoute):
            continue
        definitions = route.json_body.json_schema(ref_template=_REF + "{model}").get("$defs", {})
        for definition in definitions.values():
            for field in hidden:
                definition.get("properties", {}).pop(field, None)
        variants = documented(definitions, registry)
        if not variants:
            continue
        for method in route.methods or ():
            operation = document["paths"][route.path_format][method.lower()]
            operation["requestBody"]["content"][_JSON] = {"schema": {"anyOf": variants}}


RAW_BODY = ("The image itself (api.raw): PNG, JPEG, WebP, BMP, GIF (first frame) or TIFF, whatever the "
            "Content-Type names (any image/* or application/octet-stream). The form's fields go in the query: "
            "`?model=digits&priority=high` (model, webhook_url, webhook_events, expires_in, priority; any other: 422)")


def _add_raw_bodies(document: dict[str, Any], routes: list[Any]) -> None:
    """Each hidden raw-body route's content types (api.raw), on the visible operation."""
    for route in routes:
        if isinstance(route, RawBodyRoute):
            for method in route.methods or ():
                operation = document["paths"][route.path_format][method.lower()]
                operation["requestBody"]["content"].update(documented_body(RAW_BODY))


def _make_true(document: dict[str, Any], hidden: tuple[str, ...]) -> None:
    schemas = document["components"]["schemas"]
    for operation in _operations(document):
        responses = operation["responses"]
        for status in (*_ANY_OPERATION, *(_WITH_BODY if "requestBody" in operation else ()),
                       *(_WITH_KEY if operation.get("security") else ())):
            responses.setdefault(str(status), {"description": _DESCRIPTIONS[status], "content": problem_content(),
                                               **({"headers": _HEADERS[status]} if status in _HEADERS else {})})
        if _schema(responses.get("422", {}), _JSON) == _REF + "HTTPValidationError":  # FastAPI's, for any parameter
            responses["422"] = {"description": _DESCRIPTIONS[422], "content": problem_content()}
        for status, response in responses.items():
            if int(status) >= 400 and _schema(response, _JSON) == _REF + "Problem":
                response["content"][PROBLEM_JSON] = response["content"].pop(_JSON)
        for response in responses.values():
            response.setdefault("headers", {})[REQUEST_ID] = _REQUEST_ID_HEADER
        operation["responses"] = dict(sorted(responses.items()))
        for parameter in operation.get("parameters", []):
            parameter["schema"] = _not_null(parameter["schema"])
        operation.setdefault("parameters", []).append(_REQUEST_ID_PARAMETER)
        form = operation.get("requestBody", {}).get("content", {}).get("multipart/form-data")
        if form:
            form["encoding"] = _form_fields(schemas[form["schema"]["$ref"].removeprefix(_REF)], hidden)
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)


def _schema(response: dict[str, Any], media_type: str) -> str | None:
    """The schema a response's `media_type` content refers to, if any."""
    ref: str | None = response.get("content", {}).get(media_type, {}).get("schema", {}).get("$ref")
    return ref


def _operations(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for path in document["paths"].values():
        yield from path.values()


def problem_content() -> dict[str, Any]:
    """A response's `content`: a Problem."""
    return {PROBLEM_JSON: {"schema": {"$ref": _REF + "Problem"}}}


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """`anyOf: [X, {type: null}]` (FastAPI's `X | None`) as X, keeping title and description."""
    branches = [branch for branch in schema.get("anyOf", []) if branch != {"type": "null"}]
    if "anyOf" not in schema or len(branches) != 1:
        return schema
    return {**{key: value for key, value in schema.items() if key != "anyOf"}, **branches[0]}


def _form_fields(schema: dict[str, Any], hidden: tuple[str, ...]) -> dict[str, Any]:
    """Fix a multipart body's schema in place; its `encoding`: files are images (a ZIP where
    the part's description says so)."""
    schema["additionalProperties"] = False
    properties = schema["properties"]
    for name in hidden:
        properties.pop(name, None)
    encoding = {}
    for name, field in properties.items():
        properties[name] = field = _not_null(field)
        if _BINARY in (field.get("contentMediaType"), field.get("items", {}).get("contentMediaType")):
            encoding[name] = {"contentType": ZIP_TYPE if field.get("description", "").startswith("A ZIP")
                              else IMAGE_TYPES}
    return encoding
