"""The API described from the code: ``GET /openapi.json`` (OpenAPI 3.0) and ``GET /docs`` (Swagger UI).

Each documented view carries its description beside it (:func:`describe`); :func:`build_spec`
walks the app's URL map, so paths, methods and path parameters are the routes themselves, and
the JSON shapes are the marshmallow schemas of :mod:`storemon.schemas` (turned into JSON Schema by
apispec). A route that is neither described nor listed in :data:`UNDOCUMENTED` fails
``tests/test_openapi.py``: the document cannot silently miss one.

Nothing here touches a request body: uploads stay streamed by :mod:`storemon.uploads`.

``/docs`` is Swagger UI served from the files of the ``swagger-ui-bundle`` package (no CDN; it
works offline; only the three files the page loads, :data:`SWAGGER_UI_FILES`), started by
``static/docs.js`` (a file, so the Content-Security-Policy needs no inline script). Both go
through :mod:`storemon.security` like every other route.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Flask, current_app, jsonify, make_response, render_template, send_from_directory
from swagger_ui_bundle import swagger_ui_path
from werkzeug.exceptions import NotFound

from . import schemas, security

bp = Blueprint("docs", __name__, template_folder="templates")

# The files of the swagger-ui-bundle package that /docs loads, and no other: the package also
# holds a demo index.html that loads petstore.swagger.io, and an initializer for it.
SWAGGER_UI_FILES = frozenset({"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"})

# Routes deliberately left out of the document: the dashboard's HTML pages (for a browser, not
# an API client) and static files.
UNDOCUMENTED = {
    "dashboard.overview",
    "dashboard.report_page",
    "dashboard.store_page",
    "dashboard.store_page_by_path",
    "static",
    "dashboard.static",
    "docs.static",
}

# Error answers, one JSON shape for all (components/responses).
ERRORS = {
    400: (
        "BadRequest",
        "Bad input: missing or malformed parameter, unreadable as_of, a refused file, an incomplete upload.",
    ),
    401: ("Unauthorized", "No or wrong API token (only when the server has `STOREMON_API_TOKENS`)."),
    403: ("Forbidden", "A cross-site write (any mode), or, without API tokens, a `Host` that is not this machine."),
    404: ("NotFound", "Unknown report, feed, store, special date or route."),
    410: ("Gone", "The report expired and was deleted; trigger a new one."),
    406: ("NotAcceptable", "The `Accept` header takes none of the report's formats."),
    413: ("PayloadTooLarge", "The upload is larger than `MAX_UPLOAD_BYTES`."),
    429: (
        "TooManyRequests",
        "The report queue is full and this client triggered too often; try again after `Retry-After` seconds.",
    ),
    500: ("InternalError", "A bug: the details are in the server log, not in the answer."),
    503: (
        "ServiceUnavailable",
        "Busy (another ingest holds the database, the report queue is full) or read-only; "
        "try again after `Retry-After` seconds.",
    ),
}
TAGS = {  # in the order /docs shows them
    "reports": "Trigger a report, then poll it until its CSV arrives",
    "ingest": "Upload the feeds (streamed; one file, one transaction), see the ingest ledger, list and remove a "
    "store's special dates",
    "stores": "One store, explained",
    "operations": "Health and Prometheus metrics",
    "documentation": "This document and its interactive page",
}
SECURITY_NOTE = (
    "Required only when the server is started with `STOREMON_API_TOKENS` (comma-separated tokens); "
    "otherwise every call is open to this machine only."
)


def describe(
    *,
    summary: str,
    responses: dict,
    errors: tuple[int, ...] = (),
    params: tuple[dict, ...] = (),
    path_schemas: dict | None = None,
    body: dict | None = None,
    security: list | None = None,
    operation_ids: dict | None = None,
    tags: tuple[str, ...] = ("reports",),
    description: str | None = None,
) -> Callable:
    """Attach an OpenAPI operation to a view (for every method and rule it serves).

    ``responses``: status -> response object (schemas as component names via :func:`json_response`);
    ``errors``: the error statuses this operation can answer besides 401/403/500, which every
    operation can; ``params``: query parameters (path parameters come from the rule, typed by
    ``path_schemas``; a query parameter named like a rule's path argument is left out there);
    ``operation_ids``: ``{(rule, method): id}`` where the default (the view's name, with the
    method appended for a second method) does not fit.
    """

    # The arguments above, as the document builder reads them (the description comes from the view).
    operation = {key: value for key, value in locals().items() if key != "description"}
    operation.update(path_schemas=path_schemas or {}, operation_ids=operation_ids or {})

    def wrap(view):
        text = description or inspect.cleandoc(view.__doc__ or "").replace("``", "`")  # reST -> Markdown
        view.__openapi__ = {**operation, "description": text}
        return view

    return wrap


def json_response(schema: str, description: str, **extra) -> dict:
    """A JSON response whose body is the named component schema."""
    return {"description": description, "content": {"application/json": {"schema": ref(schema)}}, **extra}


def ref(schema: str) -> dict:
    return {"$ref": f"#/components/schemas/{schema}"}


def query(name: str, schema: dict, description: str = "", required: bool = False) -> dict:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description}


COMPONENT_SCHEMAS = {
    "Error": schemas.ErrorSchema,
    "TriggerBody": schemas.TriggerBodySchema,
    "ReportId": schemas.ReportIdSchema,
    "ReportRunning": schemas.ReportRunningSchema,
    "ReportFailed": schemas.ReportFailedSchema,
    "ReportRows": schemas.ReportRowsSchema,
    "FileSummary": schemas.FileSummarySchema,
    "SpecialHours": schemas.SpecialHoursSchema,
    "SpecialRemoved": schemas.SpecialRemovedSchema,
    "Ledger": schemas.LedgerSchema,
    "Health": schemas.HealthSchema,
    "Timeline": schemas.TimelineSchema,
}
_RULE_ARG = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def build_spec(app: Flask) -> dict:
    """The OpenAPI document of ``app``'s routes (built once per app)."""
    spec = APISpec(
        title="storemon",
        version="1",
        openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()],
        info={
            "description": (
                "How often were restaurant stores offline while they should have been open? Ingest the feeds "
                "(`/ingest/...`), trigger a report, poll it until its CSV arrives. Every call and rule is explained "
                "in docs/interfaces.md and docs/report-rules.md of the repository.\n\n"
                "Authentication: " + SECURITY_NOTE
            )
        },
    )
    for name, schema in COMPONENT_SCHEMAS.items():
        spec.components.schema(name, schema=schema)
    for code, (name, text) in ERRORS.items():
        response = json_response("Error", text)
        if code == 401:
            response["headers"] = {
                "WWW-Authenticate": {
                    "schema": {"type": "string"},
                    "required": True,
                    "description": "`Bearer` and `Basic` challenges",
                }
            }
        if code in (429, 503):
            response["headers"] = {
                "Retry-After": {"schema": {"type": "string"}, "description": "seconds to wait before trying again"}
            }
        spec.components.response(name, response)
    spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer", "description": SECURITY_NOTE})
    spec.components.security_scheme(
        "basicAuth",
        {
            "type": "http",
            "scheme": "basic",
            "description": "The API token as the password (any user name). " + SECURITY_NOTE,
        },
    )
    spec.options["security"] = [{"bearerAuth": []}, {"basicAuth": []}]
    for name, text in TAGS.items():
        spec.tag({"name": name, "description": text})

    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        op = getattr(app.view_functions[rule.endpoint], "__openapi__", None)
        if op is None:
            continue
        path = _RULE_ARG.sub(r"{\1}", rule.rule)
        methods = [m for m in ("POST", "GET", "DELETE") if m in rule.methods]  # the first is the view's name
        operations = {m.lower(): _operation(op, rule, m, first=(i == 0)) for i, m in enumerate(methods)}
        spec.path(path=path, operations=operations)
    return spec.to_dict()


def _operation(op: dict, rule, method: str, first: bool) -> dict:
    name = rule.endpoint.rsplit(".", 1)[-1]
    operation_id = op["operation_ids"].get((rule.rule, method), name if first else f"{name}_{method.lower()}")
    params = [
        {"name": arg, "in": "path", "required": True, "schema": op["path_schemas"].get(arg, {"type": "string"})}
        for arg in sorted(rule.arguments)
    ]
    params += [p for p in op["params"] if p["name"] not in rule.arguments]
    responses = {str(code): response for code, response in op["responses"].items()}
    codes = set(op["errors"]) | {403, 500} | (set() if op["security"] == [] else {401})
    for code in sorted(codes):
        responses[str(code)] = {"$ref": f"#/components/responses/{ERRORS[code][0]}"}
    operation = {
        "operationId": operation_id,
        "summary": op["summary"],
        "description": op["description"],
        "tags": list(op["tags"]),
        "parameters": params,
        "responses": dict(sorted(responses.items())),
    }
    if op["body"] is not None and method != "GET":
        operation["requestBody"] = op["body"]
    if op["security"] is not None:
        operation["security"] = op["security"]
    return operation


def spec_for(app: Flask) -> dict:
    cached = app.extensions.get("storemon.openapi")
    if cached is None:
        cached = app.extensions["storemon.openapi"] = build_spec(app)
    return cached


@bp.get("/openapi.json")
@describe(
    summary="This document (OpenAPI 3.0)",
    tags=("documentation",),
    responses={
        200: {"description": "The OpenAPI document", "content": {"application/json": {"schema": {"type": "object"}}}}
    },
)
def openapi_json():
    """The OpenAPI document of this API, generated from the code."""
    return jsonify(spec_for(current_app._get_current_object()))


@bp.get("/docs/static/<filename>", endpoint="static")
def swagger_ui_file(filename: str):
    """One of :data:`SWAGGER_UI_FILES` from the package (404 for anything else in it)."""
    if filename not in SWAGGER_UI_FILES:
        raise NotFound(f"no file {filename!r} here")
    return send_from_directory(swagger_ui_path, filename)


@bp.get("/docs")
@describe(
    summary="Interactive documentation (Swagger UI)",
    tags=("documentation",),
    responses={200: {"description": "An HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}},
)
def docs():
    """Swagger UI for this document: try every call from the browser (served locally, no CDN)."""
    response = make_response(render_template("docs.html"))
    # Swagger UI's stylesheet draws its icons as data: images; the rest is the site's policy.
    response.headers["Content-Security-Policy"] = security.content_security_policy(img_src="'self' data:")
    return response
