"""HTTP API (docs/interfaces.md): one blueprint, JSON errors everywhere."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from flask import Blueprint, Response, current_app, jsonify, request, send_file
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import BadRequest, HTTPException, InternalServerError, MethodNotAllowed, NotFound
from werkzeug.http import HTTP_STATUS_CODES

from . import jobs
from .extensions import db
from .ingest import KINDS, IngestError, ingest_file
from .models import BusinessHours, Poll, Report, Store, StoreTimezone
from .reports import format_datetime, format_instant, parse_instant

log = logging.getLogger(__name__)
bp = Blueprint("api", __name__)


class ApiError(HTTPException):
    """A domain error that carries its HTTP status code."""

    def __init__(self, code: int, message: str):
        super().__init__(description=message)
        self.code = code


@bp.after_app_request
def served_by(response):
    """Which process answered (host:pid): handy when several workers share the database."""
    response.headers["X-Storemon-Worker"] = jobs.worker_name()
    return response


# --- errors ----------------------------------------------------------------------------------


@bp.app_errorhandler(HTTPException)
def http_error(exc: HTTPException):
    response = jsonify(error=_reason(exc.code or 500), message=exc.description)
    response.status_code = exc.code or 500
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response


@bp.app_errorhandler(Exception)
def unexpected_error(exc: Exception):
    if isinstance(exc, HTTPException):
        return http_error(exc)
    log.exception("unhandled error")
    return http_error(InternalServerError("internal error; see the server log"))


def _reason(code: int) -> str:
    return HTTP_STATUS_CODES.get(code, "Error")


# --- reports ---------------------------------------------------------------------------------


@bp.route("/trigger_report", methods=["POST", "GET"])
def trigger_report():
    """Start a report; optional ``as_of`` (JSON body, form or query). Answers ``{"report_id"}``."""
    body = request.get_json(silent=True) if request.is_json else None
    if request.is_json and body is None and request.get_data():
        raise BadRequest("the request body is not valid JSON")
    as_of = (body or {}).get("as_of") if isinstance(body, dict) else None
    as_of = as_of or request.values.get("as_of")
    as_of_us = None
    if as_of:
        try:
            as_of_us = parse_instant(str(as_of))
        except ValueError as exc:
            raise BadRequest(f"as_of: {exc}") from exc
    report_id = jobs.submit_report(current_app._get_current_object(), as_of_us)
    return jsonify(report_id=report_id)


@bp.get("/get_report")
@bp.get("/get_report/<report_id>")
def get_report(report_id: str | None = None):
    """``Running`` with progress, the CSV when complete, or ``Failed`` with the error."""
    report_id = report_id if report_id is not None else request.args.get("report_id")
    if not report_id:
        raise BadRequest("report_id is required (?report_id=... or /get_report/<id>)")
    if not jobs.is_report_id(report_id):
        raise BadRequest(f"malformed report_id: expected {jobs.ID_HEX_CHARS} lowercase hex characters")
    report = db.session.get(Report, report_id)
    if report is None:
        raise NotFound(f"no report with id {report_id}")
    app = current_app._get_current_object()
    if report.status in (jobs.QUEUED, jobs.RUNNING):
        jobs.reap_if_orphaned(app, report)
        db.session.expire_all()
        report = db.session.get(Report, report_id)
    if report.status == jobs.COMPLETE:
        path = jobs.report_path(app, report_id)
        if path.is_file():
            response = send_file(path, mimetype="text/csv", as_attachment=True,
                                 download_name=f"report_{report_id}.csv", max_age=0)
        elif report.csv is not None:  # written on another host: the copy kept in the database
            response = Response(report.csv, mimetype="text/csv")
            response.headers["Content-Disposition"] = f"attachment; filename=report_{report_id}.csv"
        else:
            raise ApiError(500, f"report {report_id} is complete but its CSV is missing")
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
        created_at=_iso(report.created_at),
        started_at=_iso(report.started_at),
        **_now_used(report),
    )


def _iso(value) -> str | None:
    """Timestamps in JSON: ISO 8601, UTC, ending in ``Z``."""
    return format_datetime(value)


def _now_used(report: Report) -> dict:
    """``now`` (the as_of asked for until the job has fixed it; null if neither yet) and the
    warning when it is more than a day after the latest poll."""
    now_us = report.now_us if report.now_us is not None else report.as_of_us
    fields = {"now": format_instant(now_us) if now_us is not None else None}
    if report.warning:
        fields["warning"] = report.warning
    return fields


# --- ingestion over HTTP ---------------------------------------------------------------------


@bp.post("/ingest/<kind>")
def ingest(kind: str):
    """Load one CSV (multipart upload or a ``text/csv`` body); answers the ingest summary."""
    if kind not in KINDS:
        raise NotFound(f"unknown feed {kind!r}; use one of {', '.join(KINDS)}")
    strict = request.args.get("strict", "").lower() in ("1", "true", "yes")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "upload.csv"
        if request.files:
            upload = next(iter(request.files.values()))
            upload.save(path)
            name = upload.filename or "upload.csv"
        elif request.content_type and request.content_type.split(";")[0].strip() in ("text/csv", "text/plain", "application/csv"):
            path.write_bytes(request.get_data())
            name = "upload.csv"
        else:
            raise BadRequest("send the CSV as a multipart file upload or as a text/csv body")
        try:
            summary = ingest_file(db.engine, kind, path, strict=strict,
                                  chunk_rows=current_app.config["INGEST_CHUNK_ROWS"])
        except IngestError as exc:
            raise BadRequest(str(exc).replace(str(path), name)) from exc
    result = summary.to_dict()
    result["file"] = name
    return jsonify(result)


# --- health ----------------------------------------------------------------------------------


@bp.get("/health")
def health():
    """Database reachable, and how much it holds: stores with polls / business hours / a time
    zone (three different sets), polls and report jobs."""
    queries = {
        "stores_with_polls": select(func.count()).select_from(Store),
        "stores_with_hours": select(func.count(func.distinct(BusinessHours.store_id))),
        "stores_with_timezone": select(func.count()).select_from(StoreTimezone),
        "polls": select(func.count()).select_from(Poll),
        "reports": select(func.count()).select_from(Report),
    }
    try:
        counts = {name: db.session.execute(query).scalar_one() for name, query in queries.items()}
    except SQLAlchemyError as exc:
        log.exception("health check failed")
        response = jsonify(status="error", database="unreachable", message=str(exc).splitlines()[0])
        response.status_code = 503
        return response
    return jsonify(status="ok", database="reachable", **counts)
