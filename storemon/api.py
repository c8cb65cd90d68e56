"""HTTP API (docs/interfaces.md): one blueprint, JSON errors everywhere."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict, deque

from flask import Blueprint, Response, current_app, jsonify, request, send_file
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import BadRequest, HTTPException, InternalServerError, MethodNotAllowed, NotFound
from werkzeug.http import HTTP_STATUS_CODES

from . import formats, jobs, metrics, storage
from .compute import REPORT_COLUMNS
from .extensions import db
from .ingest import IngestBusy, IngestReadOnly, NoSpecialDate, ingest_file, remove_special_date, special_dates
from .models import BusinessHours, Poll, RecentPoll, Report, Store, StoreTimezone
from .openapi import describe, json_response, query, ref
from .parse import KINDS, IngestError
from .schemas import AS_OF, FEED_KIND, PERIODS, REPORT_ID, SPECIAL_DATE, STORE_ID
from .security import CHALLENGES
from .times import format_clock, format_date, format_datetime, format_instant, parse_instant, parse_periods
from .uploads import UploadError, receive_csv

log = logging.getLogger(__name__)
bp = Blueprint("api", __name__)


class ApiError(HTTPException):
    """A domain error that carries its HTTP status code (and, for 503, a Retry-After)."""

    def __init__(self, code: int, message: str, retry_after: int | None = None):
        super().__init__(description=message)
        self.code = code
        self.retry_after = retry_after


# --- errors ----------------------------------------------------------------------------------


@bp.app_errorhandler(HTTPException)
def http_error(exc: HTTPException):
    response = jsonify(error=_reason(exc.code or 500), message=exc.description)
    response.status_code = exc.code or 500
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    if response.status_code == 401:
        for challenge in CHALLENGES:
            response.headers.add("WWW-Authenticate", challenge)
    if getattr(exc, "retry_after", None):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


@bp.app_errorhandler(Exception)
def unexpected_error(exc: Exception):
    if isinstance(exc, HTTPException):
        return http_error(exc)
    if isinstance(exc, storage.DatabaseReadOnly) or (
        isinstance(exc, SQLAlchemyError) and storage.is_read_only_error(exc)
    ):
        log.error("write refused: the database is read-only (%s)", str(exc).splitlines()[0])
        return http_error(ApiError(503, "the database is read-only: nothing can be stored; see /health", 60))
    if isinstance(exc, SQLAlchemyError) and storage.is_locked_error(exc):
        log.warning("database busy: %s", str(exc).splitlines()[0])
        return http_error(ApiError(503, "the database is busy (an ingest is writing); try again shortly", 10))
    log.exception("unhandled error")
    return http_error(InternalServerError("internal error; see the server log"))


@bp.errorhandler(IngestBusy)
def ingest_busy(exc: IngestBusy):
    """Another ingest holds the write lock longer than INGEST_WAIT_SECONDS: try again later."""
    return http_error(ApiError(503, str(exc), exc.retry_after))


@bp.errorhandler(IngestReadOnly)
def ingest_read_only(exc: IngestReadOnly):
    return http_error(ApiError(503, str(exc), 60))


def _reason(code: int) -> str:
    return HTTP_STATUS_CODES.get(code, "Error")


# --- reports ---------------------------------------------------------------------------------


AS_OF_QUERY = query("as_of", AS_OF, "the report's `now` (instead of the JSON body's `as_of`)")
PERIODS_QUERY = query("periods", PERIODS, "extra periods (instead of the JSON body's `periods`)")
_TO_REPORT = {
    "GetReport": {
        "operationId": "get_report",
        "parameters": {"path.report_id": "$response.body#/report_id"},
        "description": "Poll the report until its CSV arrives",
    },
    "GetReportByQuery": {
        "operationId": "get_report_by_query",
        "parameters": {"query.report_id": "$response.body#/report_id"},
        "description": "The same, with the id in the query",
    },
}


@bp.route("/trigger_report", methods=["POST", "GET"])
@describe(
    summary="Start a report",
    errors=(400, 429, 503),
    params=(AS_OF_QUERY, PERIODS_QUERY),
    body={
        "required": False,
        "content": {
            "application/json": {
                "schema": ref("TriggerBody"),
                "example": {"as_of": "2023-02-01T00:00:00Z", "periods": "31d"},
            },
            "application/x-www-form-urlencoded": {"schema": ref("TriggerBody")},
        },
    },
    responses={200: json_response("ReportId", "The new report's id: poll it with get_report", links=_TO_REPORT)},
)
def trigger_report():
    """Start a report; optional ``as_of`` and ``periods`` (JSON body, form or query). Answers
    ``{"report_id"}``.

    ``HEAD`` answers like ``GET`` would, without creating a report.
    """
    if request.method == "HEAD":
        return Response(status=200, mimetype="application/json")
    body = request.get_json(silent=True) if request.is_json else None
    if request.is_json and body is None and request.get_data():
        raise BadRequest("the request body is not valid JSON")
    if body is not None and not isinstance(body, dict):
        raise BadRequest('the JSON body must be an object, e.g. {"as_of": "2023-01-25T12:00:00Z"}')
    as_of, periods = _trigger_field(body, "as_of", "2023-01-25T12:00:00Z"), _trigger_field(body, "periods", "30d,2h")
    as_of_us = None
    if as_of:
        try:
            as_of_us = parse_instant(str(as_of))
        except ValueError as exc:
            raise BadRequest(f"as_of: {exc}") from exc
    try:
        parse_periods(periods)
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc
    app = current_app._get_current_object()
    if jobs.queue_full(app) and not _trigger_limiter().allow(_client()):
        raise ApiError(
            429,
            f"too many triggers: the report queue is full and this client sent "
            f"{TRIGGER_BURST} in the last {TRIGGER_WINDOW_S:g} s; try again later",
            int(TRIGGER_WINDOW_S),
        )
    try:
        report_id = jobs.submit_report(app, as_of_us, periods)
    except jobs.QueueFull as exc:
        raise ApiError(503, str(exc), exc.retry_after) from exc
    except storage.DatabaseBusy as exc:
        raise ApiError(503, f"the report queue is busy: {exc}", 5) from exc
    return jsonify(report_id=report_id)


def _trigger_field(body: dict | None, name: str, example: str) -> str | None:
    """A trigger's optional text field: from the JSON body, else the form or the query."""
    value = (body or {}).get(name)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"{name} must be a string, e.g. {example}")
    return value or request.values.get(name)


# While the report queue is full, one client may trigger this many reports per window (beyond:
# 429); its triggers are not counted otherwise.
TRIGGER_BURST = 10
TRIGGER_WINDOW_S = 10.0


class TriggerLimiter:
    """Triggers per client in a sliding window, for the clients seen in the last window only
    (at most ``max_clients`` of them: the least recent are forgotten first)."""

    def __init__(self, burst: int = TRIGGER_BURST, window_s: float = TRIGGER_WINDOW_S, max_clients: int = 10_000):
        self.burst, self.window_s, self.max_clients = burst, window_s, max_clients
        self.hits: OrderedDict[str, deque] = OrderedDict()
        self.lock = threading.Lock()

    def allow(self, client: str, now: float | None = None) -> bool:
        """Record a trigger of ``client``; False when it is over its burst in the window."""
        now = time.monotonic() if now is None else now
        with self.lock:
            hits = self.hits.pop(client, None) or deque()
            while hits and hits[0] <= now - self.window_s:
                hits.popleft()
            allowed = len(hits) < self.burst
            if allowed:
                hits.append(now)
            self.hits[client] = hits  # most recent last
            while len(self.hits) > self.max_clients:
                self.hits.popitem(last=False)
            return allowed


def _trigger_limiter() -> TriggerLimiter:
    """This app's limiter (one per app, so each app counts only its own clients' triggers)."""
    return current_app.extensions.setdefault("storemon.trigger_limiter", TriggerLimiter())


def _client() -> str:
    """Who is triggering: the token presented (hashed), else the peer's address."""
    credential = request.headers.get("Authorization")
    if credential:
        return "token:" + hashlib.sha256(credential.encode("utf-8", "surrogateescape")).hexdigest()
    return f"addr:{request.remote_addr}"


_CSV_HEADER = ",".join(REPORT_COLUMNS)
FORMAT = {"type": "string", "enum": list(formats.FORMATS), "example": "xlsx"}


@bp.get("/get_report")
@bp.get("/get_report/<report_id>")
@describe(
    summary="A report: progress, its rows (CSV, Excel, JSON or Parquet), or why it failed",
    errors=(400, 404, 406, 410),
    params=(
        query("report_id", REPORT_ID, "the id trigger_report gave", required=True),
        query("format", FORMAT, "the complete report's format (wins over `Accept`)"),
    ),
    path_schemas={"report_id": REPORT_ID},
    operation_ids={("/get_report", "GET"): "get_report_by_query"},
    responses={
        200: {
            "description": "Complete: the report as an attachment (`X-Report-Status: Complete`), in the format "
            "`?format=` names, else the best one `Accept` takes, else CSV. Still queued or computing: "
            '`{"status": "Running", ...}`; failed: `{"status": "Failed", ...}`.',
            "headers": {
                "X-Report-Status": {
                    "schema": {"type": "string", "enum": ["Complete"]},
                    "description": "`Complete` on the report (absent on the Running and Failed answers)",
                },
                "X-Report-Now": {"schema": {"type": "string"}, "description": "the report's `now` (on the report)"},
                "X-Report-Warning": {
                    "schema": {"type": "string"},
                    "description": "on the report when `now` is over a day after the latest poll",
                },
                "Content-Disposition": {
                    "schema": {"type": "string"},
                    "description": "on the report: `attachment; filename=report_<id>.<format>`",
                },
            },
            "content": {
                "text/csv": {
                    "schema": {"type": "string"},
                    "example": _CSV_HEADER + "\n00017c6a-7a77-4a95-bb2d-40647868aff6,60.0,20.5,120.25,0.0,3.5,11.75\n",
                },
                "application/json": {
                    "schema": {"oneOf": [ref("ReportRunning"), ref("ReportFailed"), ref("ReportRows")]}
                },
                formats.XLSX.media_type: {"schema": {"type": "string", "format": "binary"}},
                formats.PARQUET.media_type: {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)
def get_report(report_id: str | None = None):
    """``Running`` with progress, the CSV when complete, or ``Failed`` with the error."""
    report_id = report_id if report_id is not None else request.args.get("report_id")
    if not report_id:
        raise BadRequest("report_id is required (?report_id=... or /get_report/<id>)")
    if not jobs.is_report_id(report_id):
        raise BadRequest(f"malformed report_id: expected {jobs.ID_HEX_CHARS} lowercase hex characters")
    try:
        fmt = formats.choose(request.args.get("format"), request.accept_mimetypes)
    except formats.FormatError as exc:
        raise ApiError(exc.code, str(exc)) from exc
    asked = db.session.get(Report, report_id)
    if asked is None:
        raise NotFound(f"no report with id {report_id}")
    report = jobs.resolve(asked)  # a reused report answers with the one that computed it
    if report is None or report.status == jobs.EXPIRED or asked.status == jobs.EXPIRED:
        raise ApiError(
            410,
            f"report {report_id} has expired and was deleted (reports are kept "
            f"{current_app.config['REPORT_RETENTION_DAYS']:g} days, at most "
            f"{current_app.config['REPORT_KEEP']} of them); trigger a new one",
        )
    app = current_app._get_current_object()
    if report.status in (jobs.QUEUED, jobs.RUNNING):
        jobs.reap_if_orphaned(app, report)
        db.session.expire_all()
        report = db.session.get(Report, report.id)
    if report.status == jobs.COMPLETE:
        name = f"report_{report_id}.{fmt.extension}"
        if fmt is formats.CSV and not jobs.report_path(app, report.id).is_file():
            data = jobs.csv_bytes(report)  # another host wrote it: the database copy
            if data is None:
                raise ApiError(500, f"report {report_id} is complete but its CSV is missing")
            response = Response(data, mimetype=fmt.media_type)
            response.headers["Content-Disposition"] = f"attachment; filename={name}"
        else:
            try:
                path = jobs.report_file(app, report, fmt)
            except FileNotFoundError as exc:
                raise ApiError(500, str(exc)) from exc
            response = send_file(path, mimetype=fmt.media_type, as_attachment=True, download_name=name, max_age=0)
        response.headers["Vary"] = "Accept"
        response.headers["X-Report-Status"] = "Complete"
        if report.now_us is not None:
            response.headers["X-Report-Now"] = format_instant(report.now_us)
        if report.warning:
            response.headers["X-Report-Warning"] = report.warning
        return response
    if report.status == jobs.FAILED:
        return jsonify(status="Failed", report_id=report_id, error=report.error, **_now_used(report))
    return jsonify(
        status="Running",
        report_id=report_id,
        state=report.status,  # queued or running
        stage=report.stage,
        progress=report.progress,
        created_at=format_datetime(report.created_at),
        started_at=format_datetime(report.started_at),
        **_now_used(report),
    )


def _now_used(report: Report) -> dict:
    """``now`` (the as_of asked for until the job has fixed it; null if neither yet) and the
    warning when it is more than a day after the latest poll."""
    now_us = report.now_us if report.now_us is not None else report.as_of_us
    fields = {"now": format_instant(now_us) if now_us is not None else None}
    if report.periods:
        fields["periods"] = report.periods
    if report.warning:
        fields["warning"] = report.warning
    return fields


# --- ingestion over HTTP ---------------------------------------------------------------------


def _flag(name: str) -> bool:
    return request.args.get(name, "").lower() in ("1", "true", "yes")


_FLAG = {"type": "string", "example": "1"}
_CSV_BODY = {"type": "string", "format": "binary"}


@bp.post("/ingest/<kind>")
@describe(
    summary="Upload one feed file",
    tags=("ingest",),
    errors=(400, 404, 413, 503),
    path_schemas={"kind": FEED_KIND},
    params=(
        query("strict", _FLAG, "`1`, `true` or `yes`: refuse the file if any row is unreadable"),
        query("force", _FLAG, "`1`, `true` or `yes`: apply content the ledger says was already stored"),
    ),
    body={
        "required": True,
        "description": "The CSV, as a multipart upload in a field named `file` or as the "
        "request body; streamed to disk, at most `MAX_UPLOAD_BYTES` (1 GiB)",
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "required": ["file"], "properties": {"file": _CSV_BODY}}
            },
            "text/csv": {
                "schema": _CSV_BODY,
                "example": "store_id,status,timestamp_utc\n8419537941919820732,active,2023-01-22 12:09:39.388884 UTC\n",
            },
        },
    },
    responses={200: json_response("FileSummary", "What came of the file (outcome `stored` or `unchanged`)")},
)
def ingest(kind: str):
    """Load one CSV (multipart field ``file``, or a ``text/csv`` body); answers the ingest summary.

    The body is streamed to disk and checked complete before anything is parsed; ``?strict=1``
    refuses a file with any bad row; ``?force=1`` applies content already ingested again.
    """
    if kind not in KINDS:
        raise NotFound(f"unknown feed {kind!r}; use one of {', '.join(KINDS)}")
    config = current_app.config
    try:
        upload = receive_csv(request, config["UPLOAD_DIR"], config["MAX_UPLOAD_BYTES"], config["MAX_LINE_BYTES"])
    except UploadError as exc:
        raise ApiError(exc.code, str(exc)) from exc
    try:
        summary = ingest_file(
            db.engine,
            kind,
            upload.path,
            strict=_flag("strict"),
            force=_flag("force"),
            chunk_rows=config["INGEST_CHUNK_ROWS"],
            source="http",
            name=upload.name,
            scan=upload.scan,
            max_line_bytes=config["MAX_LINE_BYTES"],
            wait_seconds=config["INGEST_WAIT_SECONDS"],
        )
    except IngestError as exc:
        raise BadRequest(str(exc)) from exc
    finally:
        upload.remove()
    answer = summary.to_dict()
    metrics.ingested(answer)
    return jsonify(answer)


# --- special hours: one store's special dates, listed and removed --------------------------------


STORE_ID_QUERY = query("store_id", STORE_ID, "the store (its id exactly as in the feeds)", required=True)


@bp.get("/special_hours")
@describe(
    summary="A store's special dates: hours or closed, and the file each came from",
    tags=("ingest",),
    errors=(400,),
    params=(STORE_ID_QUERY,),
    responses={200: json_response("SpecialHours", "The store's special-hours rows by date (none: an empty list)")},
)
def special_hours():
    """One store's special dates (``?store_id=``), by date and start: each row's local hours, or
    ``closed``, and the file that gave it. A store without any has an empty list: its weekly
    hours apply every date."""
    store_id = _required_arg("store_id")
    rows = special_dates(db.engine, store_id)
    return jsonify(store_id=store_id, special_hours=_special_rows(rows))


@bp.delete("/special_hours")
@describe(
    summary="Remove a store's special hours on one date (its weekly hours apply again)",
    tags=("ingest",),
    errors=(400, 404, 503),
    params=(STORE_ID_QUERY, query("date", SPECIAL_DATE, "the local date whose special hours go", required=True)),
    responses={200: json_response("SpecialRemoved", "What was removed, and its line in the ingest ledger")},
)
def remove_special_hours():
    """Remove the special hours of store ``store_id`` on ``date`` (``YYYY-MM-DD``), recorded in
    the ingest ledger (kind ``special_hours``, file name ``remove <store> <date>``). A date the
    store has no special hours on is ``404``; a date that is none, ``400``."""
    store_id, date = _required_arg("store_id"), _required_arg("date")
    try:
        done = remove_special_date(
            db.engine, store_id, date, source="http", wait_seconds=current_app.config["INGEST_WAIT_SECONDS"]
        )
    except ValueError as exc:
        raise BadRequest(f"date: {exc}") from exc
    except NoSpecialDate as exc:
        raise NotFound(str(exc)) from exc
    return jsonify(
        store_id=store_id,
        date=done.date,
        rows_removed=done.rows_removed,
        removed=_special_rows(done.removed),
        ledger_id=done.ledger_id,
    )


def _special_rows(rows) -> list[dict]:
    """Special-hours rows (date, start_s, end_s, source) as the API shows them."""
    return [
        {
            "date": format_date(row.date),
            "closed": bool(row.start_s < 0),
            "start_time_local": None if row.start_s < 0 else format_clock(row.start_s),
            "end_time_local": None if row.start_s < 0 else format_clock(row.end_s),
            "source": row.source,
        }
        for row in rows.itertuples(index=False)
    ]


def _required_arg(name: str) -> str:
    value = request.args.get(name)
    if not value:
        raise BadRequest(f"{name} is required (?{name}=...)")
    return value


MAX_OFFSET = 2**63 - 1  # the largest offset the databases take


@bp.get("/ingests")
@describe(
    summary="The ingest ledger, newest first",
    tags=("ingest",),
    errors=(400,),
    params=(
        query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}),
        query("offset", {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "default": 0}),
    ),
    responses={200: json_response("Ledger", "Every file offered over HTTP or the command line, and what came of it")},
)
def ingests():
    """The ingest ledger, newest first (``?limit=`` up to 1000, default 100; ``?offset=``)."""
    limit = _int_arg("limit", 100, 1, 1000)
    offset = _int_arg("offset", 0, 0, MAX_OFFSET)
    with db.engine.connect() as conn:
        rows = storage.ledger_list(conn, limit=limit, offset=offset)
    for row in rows:
        row["started_at"], row["finished_at"] = format_datetime(row["started_at"]), format_datetime(row["finished_at"])
    return jsonify(ingests=rows, limit=limit, offset=offset)


def _int_arg(name: str, default: int, low: int, high: int | None) -> int:
    text = request.args.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number") from None
    if value < low or (high is not None and value > high):
        raise BadRequest(f"{name} must be between {low} and {high}" if high else f"{name} must be at least {low}")
    return value


# --- health ----------------------------------------------------------------------------------


@bp.get("/health")
@describe(
    summary="Is the database reachable and writable; what it holds",
    tags=("operations",),
    security=[],
    responses={
        200: json_response("Health", "`ok`, or `degraded` (read-only: writes answer 503)"),
        503: json_response("Health", "`error`: the database cannot be reached"),
    },
)
def health():
    """Database reachable and writable, and how much it holds: stores with polls / business
    hours / a time zone (three different sets), polls and report jobs.

    ``ok``: reads and writes work. ``degraded`` (still 200): reads work but writes cannot
    (the reason is given; uploads and triggers answer 503). ``error`` (503): unreachable.
    """
    queries = {
        "stores_with_polls": select(func.count()).select_from(Store),
        "stores_with_hours": select(func.count(func.distinct(BusinessHours.store_id))),
        "stores_with_timezone": select(func.count()).select_from(StoreTimezone),
        "polls": select(
            select(func.count()).select_from(Poll).scalar_subquery()
            + select(func.count()).select_from(RecentPoll).scalar_subquery()
        ),
        "reports": select(func.count()).select_from(Report),
    }
    try:
        counts = {name: db.session.execute(query).scalar_one() for name, query in queries.items()}
        problems = [
            reason for engine in db.engines.values() if (reason := storage.read_only_reason(engine)) is not None
        ]
    except SQLAlchemyError as exc:
        log.error("health check failed: %s", str(exc).splitlines()[0])
        response = jsonify(status="error", database="unreachable", message=str(exc).splitlines()[0])
        response.status_code = 503
        return response
    if problems:
        return jsonify(status="degraded", database="read-only", message="; ".join(problems), **counts)
    return jsonify(status="ok", database="reachable", **counts)
