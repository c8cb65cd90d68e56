"""The web dashboard: an overview, a page per report, a page per store, and the timeline JSON.

A blueprint of its own; its templates are in ``templates/`` and its CSS and JavaScript in
``static/`` (shipped in the package: no CDN, no build step, it works offline). Views gather data
through the functions the API and the CLI use -- :func:`storemon.explain.load_timeline` for a
store, the finished report CSV (as ``GET /get_report`` hands it out) for a report -- and the
templates only place what the views computed.

Routes
------
* ``GET /`` -- counts, recent reports, a "Run report" control (``static/dashboard.js`` calls
  ``POST /trigger_report`` and polls ``GET /get_report/<id>``, same origin).
* ``GET /reports/<id>`` -- a finished report: summary, uptime-share histogram, and the stores
  table -- the columns of the report's CSV, extra periods included -- sorted (``sort``,
  ``order``), filtered (``q``) and paginated (``page``) on the server.
* ``GET /store?store_id=<id>`` -- the store's week as a chart (special days marked), its figures
  (``as_of``, ``periods``), notes and special days.
* ``GET /store/timeline?store_id=<id>`` -- the same, as JSON (:meth:`Timeline.to_dict`).
* ``GET /stores/<store_id>`` and ``GET /stores/<store_id>/timeline`` -- the same two with the id
  in the path (a ``path`` converter).

Store ids are opaque: any characters the ingest accepts, ``/``, ``..``, ``?``, ``#``, ``\\``
included. In a path, a browser resolves ``.``/``..`` segments (also percent-encoded) and a
backslash, werkzeug decodes ``%2F`` and merges ``//``, and an id ending in ``/timeline`` reads as
the timeline URL -- so a link built from the id as a path can lead to another store or page. The
dashboard's links therefore carry the id as the ``store_id`` query parameter, where none of
that applies; the path forms stay for the ids they can reach.
"""

from __future__ import annotations

import io
import math
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import pandas as pd
from flask import Blueprint, current_app, jsonify, render_template, request
from sqlalchemy import func, select
from werkzeug.exceptions import BadRequest, NotFound

from . import jobs, storage
from .chart import histogram_chart, week_chart
from .compute import REPORT_COLUMNS
from .explain import Timeline, UnknownStoreError, load_timeline
from .extensions import db
from .models import BusinessHours, Poll, RecentPoll, Report, Store, StoreTimezone
from .openapi import describe, json_response, query
from .reports import NoPollsError
from .schemas import AS_OF, PERIODS
from .times import format_datetime, format_instant_us, parse_instant

bp = Blueprint("dashboard", __name__, template_folder="templates")

PAGE_SIZE = 50
RECENT_REPORTS = 15
HISTOGRAM_BINS = 10  # uptime share of the week, in steps of 10 %
SHARE = "uptime_share_week"  # derived column: uptime / (uptime + downtime) in the week, 0..1
TABLE_COLUMNS = [*REPORT_COLUMNS, SHARE]
COLUMN_TITLES = {
    "store_id": "store id",
    "uptime_last_hour": "up, hour (min)",
    "uptime_last_day": "up, day (h)",
    "uptime_last_week": "up, week (h)",
    "downtime_last_hour": "down, hour (min)",
    "downtime_last_day": "down, day (h)",
    "downtime_last_week": "down, week (h)",
    SHARE: "up share, week",
}
PERIOD_COLUMN = re.compile(r"(uptime|downtime)_last_(\d+[hd])")  # an extra period's column
# The store page's figures table: a line per window; an extra period's reads "last 30d (h)".
STANDARD_WINDOWS = {"hour": "last hour (min)", "day": "last day (h)", "week": "last week (h)"}


@dataclass
class Column:
    """A column of the report page's stores table: its name in the CSV, its header, and whether
    it is the uptime share (a fraction shown as a percentage) rather than a figure."""

    name: str
    title: str

    @property
    def share(self) -> bool:
        return self.name == SHARE


def column_title(name: str) -> str:
    """A column's header: the standard ones from :data:`COLUMN_TITLES`, an extra period's as
    ``up, last 30d (h)``."""
    if name in COLUMN_TITLES:
        return COLUMN_TITLES[name]
    kind, period = PERIOD_COLUMN.fullmatch(name).groups()
    return f"{'up' if kind == 'uptime' else 'down'}, last {period} (h)"


def table_columns(frame: pd.DataFrame) -> list[str]:
    """A report frame's table columns: the standard seven, the week's uptime share, then the
    columns of any extra periods in the report's order."""
    return [*TABLE_COLUMNS, *(c for c in frame.columns if PERIOD_COLUMN.fullmatch(c))]


# --- formatting: the templates' filters, registered with the app once (with the blueprint) ---


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


@bp.app_template_filter("thousands")
def thousands(value: int | None) -> str:
    """``12345`` -> ``12,345``; nothing -> ``—``."""
    return "—" if _missing(value) else f"{value:,}"


@bp.app_template_filter("two_decimals")
def two_decimals(value: float | None) -> str:
    """``1234.5`` -> ``1,234.50`` (a figure: hours or minutes); nothing -> ``—``."""
    return "—" if _missing(value) else f"{value:,.2f}"


@bp.app_template_filter("three_decimals")
def three_decimals(value: float | None) -> str:
    """``0.0125`` -> ``0.013`` (a segment's hours: a few minutes still show); nothing -> ``—``."""
    return "—" if _missing(value) else f"{value:,.3f}"


@bp.app_template_filter("percent")
def percent(value: float | None) -> str:
    """A fraction, ``0.98501`` -> ``98.5 %``; nothing (no business time observed) -> ``—``."""
    return "—" if _missing(value) else f"{100 * value:.1f} %"


# --- overview --------------------------------------------------------------------------------


@bp.get("/")
def overview():
    """Counts, the latest poll, recent ingests and reports, and the "Run report" control."""
    return render_template("overview.html", counts=_counts(), ingests=recent_ingests(), reports=recent_reports())


def _counts() -> dict:
    count = lambda model: db.session.execute(select(func.count()).select_from(model)).scalar_one()  # noqa: E731
    latest = db.session.execute(select(func.max(Store.last_poll_us))).scalar()
    return {
        "stores": count(Store),
        "polls": count(Poll) + count(RecentPoll),
        "business_hours_rows": count(BusinessHours),
        "timezones": count(StoreTimezone),
        "latest_poll": format_instant_us(latest) if latest is not None else None,
    }


def recent_ingests(limit: int = 10) -> list[dict]:
    """The last ingests from the ingest ledger, newest first (the same rows as ``GET /ingests``)."""
    with db.engine.connect() as conn:
        rows = storage.ledger_list(conn, limit=limit)
    return [
        {
            "at": format_datetime(r["finished_at"]),
            "kind": r["kind"],
            "file": r["file_name"],
            "source": r["source"],
            "rows": r["rows_read"],
            "stored": r["rows_stored"],
            "outcome": r["outcome"],
        }
        for r in rows
    ]


@dataclass
class ReportLine:
    """One row of the recent-reports table."""

    id: str
    created: str
    now: str | None
    status: str
    stage: str | None
    seconds: float | None  # how long it computed
    rows: int | None


def recent_reports(limit: int = RECENT_REPORTS) -> list[ReportLine]:
    reports = db.session.execute(select(Report).order_by(Report.created_at.desc()).limit(limit)).scalars().all()
    lines = []
    for r in reports:
        seconds = None
        if r.started_at is not None and r.finished_at is not None:
            seconds = (r.finished_at - r.started_at).total_seconds()
        lines.append(
            ReportLine(
                id=r.id,
                created=format_datetime(r.created_at, seconds=True),
                now=format_instant_us(r.now_us) if r.now_us is not None else None,
                status=r.status,
                stage=r.stage,
                seconds=seconds,
                rows=r.store_count,
            )
        )
    return lines


# --- a report --------------------------------------------------------------------------------


class ReportFrames:
    """Parsed report CSVs by report id, the few most recently used (a finished report never
    changes, so an entry never goes stale; the CSV stays the truth and a miss re-reads it)."""

    def __init__(self, size: int = 4):
        self.size = size
        self.frames: OrderedDict[str, pd.DataFrame] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, report_id: str, load) -> pd.DataFrame:
        with self.lock:
            if report_id in self.frames:
                self.frames.move_to_end(report_id)
                return self.frames[report_id]
        frame = load()
        with self.lock:
            self.frames[report_id] = frame
            self.frames.move_to_end(report_id)
            while len(self.frames) > self.size:
                self.frames.popitem(last=False)
        return frame


report_frames = ReportFrames()


def report_table(csv: bytes) -> pd.DataFrame:
    """A report CSV -> its frame plus the week's uptime share (NaN without business time)."""
    frame = pd.read_csv(io.BytesIO(csv), dtype={"store_id": str}, keep_default_na=False)
    business = frame["uptime_last_week"] + frame["downtime_last_week"]
    frame[SHARE] = np.where(business > 0, frame["uptime_last_week"] / business.where(business > 0, 1), np.nan)
    return frame


class ReportCsvMissing(Exception):
    """A complete report whose CSV is neither in ``REPORTS_DIR`` nor in the database."""


def _report_csv(report: Report) -> bytes:
    """The finished CSV: the file in ``REPORTS_DIR``, else the database copy (``csv_gz``, there
    when another host wrote the file)."""
    path = jobs.report_path(current_app, report.id)
    if path.is_file():
        return path.read_bytes()
    data = jobs.csv_bytes(report)  # csv_gz is deferred: read only here
    if data is None:
        raise ReportCsvMissing(f"report {report.id} is complete but its CSV is missing")
    return data


@dataclass
class ReportSummary:
    stores: int
    business_hours: float  # the week's business time observed, all stores, hours
    uptime_hours: float
    downtime_hours: float
    uptime_share: float | None  # of the business time observed
    unobserved: int  # stores with no business time observed in the week (no counted poll, ...)
    histogram: list[dict]  # {"label", "count", "height"} per bin; height 0..100 (% of the largest)


def summarise(frame: pd.DataFrame) -> ReportSummary:
    up, down = frame["uptime_last_week"].sum(), frame["downtime_last_week"].sum()
    share = frame[SHARE].dropna().to_numpy()
    counts, _edges = np.histogram(share, bins=HISTOGRAM_BINS, range=(0.0, 1.0))
    top = max(int(counts.max()), 1) if len(counts) else 1
    step = 100 // HISTOGRAM_BINS
    histogram = [
        {"label": f"{k * step}–{(k + 1) * step} %", "count": int(c), "height": round(100 * int(c) / top, 1)}
        for k, c in enumerate(counts)
    ]
    return ReportSummary(
        stores=len(frame),
        business_hours=round(float(up + down), 2),
        uptime_hours=round(float(up), 2),
        downtime_hours=round(float(down), 2),
        uptime_share=round(float(up / (up + down)), 4) if up + down else None,
        unobserved=int(frame[SHARE].isna().sum()),
        histogram=histogram,
    )


@dataclass
class TablePage:
    rows: list[dict]
    page: int
    pages: int
    matching: int
    sort: str
    order: str
    q: str

    @property
    def prev(self) -> int | None:
        return self.page - 1 if self.page > 1 else None

    @property
    def next(self) -> int | None:
        return self.page + 1 if self.page < self.pages else None


def table_page(frame: pd.DataFrame, sort: str, order: str, q: str, page: int, size: int = PAGE_SIZE) -> TablePage:
    """Filter by id (substring, any case), sort (ties by store id; no share last), one page."""
    columns = table_columns(frame)
    if sort not in columns:
        raise BadRequest(f"sort must be one of {', '.join(columns)}")
    if order not in ("asc", "desc"):
        raise BadRequest("order must be asc or desc")
    view = frame[frame["store_id"].str.contains(q, case=False, regex=False)] if q else frame
    if sort == "store_id":
        view = view.sort_values("store_id", ascending=order == "asc", kind="stable")
    else:
        view = view.sort_values([sort, "store_id"], ascending=[order == "asc", True], kind="stable", na_position="last")
    pages = max(math.ceil(len(view) / size), 1)
    page = min(max(page, 1), pages)
    rows = view.iloc[(page - 1) * size : page * size]
    records = rows.astype(object).where(rows.notna(), None).to_dict("records")  # no share: None
    return TablePage(rows=records, page=page, pages=pages, matching=len(view), sort=sort, order=order, q=q)


@bp.get("/reports/<report_id>")
def report_page(report_id: str):
    if not jobs.is_report_id(report_id):
        raise BadRequest(f"malformed report id: expected {jobs.ID_HEX_CHARS} lowercase hex characters")
    asked = db.session.get(Report, report_id)
    if asked is None:
        return render_template("error.html", title="Not found", what=f"No report with id {report_id}."), 404
    report = jobs.resolve(asked)  # a reused report shows the one that computed it
    if report is None or jobs.EXPIRED in (asked.status, report.status):
        return _expired(report_id)
    if report.status != jobs.COMPLETE:
        return render_template("report_pending.html", report_id=report_id, report=report)
    try:
        frame = report_frames.get(report.id, lambda: report_table(_report_csv(report)))
    except ReportCsvMissing as exc:
        return render_template("error.html", title="Not found", what=str(exc)), 404
    try:
        page = int(request.args.get("page", "1"))
    except ValueError as exc:
        raise BadRequest("page must be a number") from exc
    table = table_page(
        frame,
        request.args.get("sort", "store_id"),
        request.args.get("order", "asc"),
        request.args.get("q", "").strip(),
        page,
    )
    summary = summarise(frame)
    return render_template(
        "report.html",
        report_id=report_id,
        report=report,
        now=format_instant_us(report.now_us),
        summary=summary,
        histogram=histogram_chart(summary.histogram),
        table=table,
        columns=[Column(c, column_title(c)) for c in table_columns(frame)],
    )


def _expired(report_id: str):
    config = current_app.config
    return render_template(
        "error.html",
        title="Not found",
        what=(
            f"Report {report_id} has expired and was deleted (reports are kept {config['REPORT_RETENTION_DAYS']:g} "
            f"days, at most {config['REPORT_KEEP']} of them); run a new one from the overview."
        ),
    ), 410


# --- a store ---------------------------------------------------------------------------------


def _timeline(store_id: str) -> Timeline:
    """The store's timeline at ``?as_of=`` with ``?periods=`` (a ``BadRequest`` naming an
    unreadable one)."""
    as_of, periods = request.args.get("as_of"), request.args.get("periods")
    try:
        as_of_us = parse_instant(as_of) if as_of else None
    except ValueError as exc:
        raise BadRequest(f"as_of: {exc}") from exc
    try:
        return load_timeline(db.engine, store_id, as_of_us, periods)
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc


TIMELINE = dict(
    summary="One store's week, explained",
    tags=("stores",),
    errors=(400, 404),
    responses={
        200: json_response("Timeline", "Business intervals, polls, the segments each poll speaks for, the six figures")
    },
)
AS_OF_PARAM = query("as_of", AS_OF, "the report's `now`")
PERIODS_PARAM = query("periods", PERIODS, "extra periods: their figures join the row's")


def _store_id_arg() -> str:
    store_id = request.args.get("store_id")
    if not store_id:
        raise BadRequest("store_id is required (?store_id=...)")
    return store_id


def _timeline_json(store_id: str):
    try:
        timeline = _timeline(store_id)
    except (UnknownStoreError, NoPollsError) as exc:
        raise NotFound(str(exc)) from exc
    return jsonify(timeline.to_dict())


@bp.get("/store/timeline")
@describe(
    **TIMELINE,
    params=(
        query("store_id", {"type": "string", "example": "007"}, "the opaque store id, any characters", required=True),
        AS_OF_PARAM,
        PERIODS_PARAM,
    ),
)
def store_timeline_by_query():
    """The store's timeline as JSON (404 JSON for a store the report has no row for). The id is a
    query parameter, so every id is reachable; the dashboard's links use this form."""
    return _timeline_json(_store_id_arg())


@bp.get("/stores/<path:store_id>/timeline")
@describe(
    **TIMELINE,
    params=(AS_OF_PARAM, PERIODS_PARAM),
    path_schemas={
        "store_id": {
            "type": "string",
            "example": "007",
            "description": "the opaque store id (percent-encoded; it may hold `/`)",
        }
    },
)
def store_timeline(store_id: str):
    """The store's timeline as JSON (404 JSON for a store the report has no row for). An id in
    the path cannot start with `/`, end in `/timeline` or be a `.`/`..` segment: for any id,
    use `GET /store/timeline?store_id=...`."""
    return _timeline_json(store_id)


@bp.get("/store")
def store_page():
    """The store page; the id is the ``store_id`` query parameter (the form every link uses)."""
    return _store_page(_store_id_arg())


@bp.get("/stores/<path:store_id>")
def store_page_by_path(store_id: str):
    """The store page with the id in the path (for ids without dot segments or a leading ``/``)."""
    return _store_page(store_id)


def _store_page(store_id: str):
    try:
        timeline = _timeline(store_id)
    except BadRequest as exc:
        return render_template("error.html", title="Bad request", what=exc.description), 400
    except (UnknownStoreError, NoPollsError) as exc:
        return render_template("error.html", title="Not found", what=str(exc)), 404
    extra = [name for name in timeline.windows if name not in STANDARD_WINDOWS]
    return render_template(
        "store.html",
        t=timeline,
        data=timeline.to_dict(),
        chart=week_chart(timeline),
        as_of=request.args.get("as_of") or None,
        periods=",".join(extra) or None,
        figures=figure_rows(timeline),
        special_days=special_day_rows(timeline),
    )


@dataclass
class FigureRow:
    """A line of the store page's figures table: a window and its two columns."""

    label: str  # "last hour (min)", "last 30d (h)"
    up: str  # the column names, as in the report
    down: str


def figure_rows(t: Timeline) -> list[FigureRow]:
    """The figures table: hour, day, week, then each extra period, as the report's columns."""
    return [
        FigureRow(STANDARD_WINDOWS.get(name, f"last {name} (h)"), f"uptime_last_{name}", f"downtime_last_{name}")
        for name in t.windows
    ]


@dataclass
class SpecialDayRow:
    """A line of the store page's special-days table."""

    date: str  # the store's local calendar date, YYYY-MM-DD
    hours: str  # "closed", or the intervals as stored: "10:00:00–14:00:00, 18:00:00–02:00:00"
    source: str  # the file that gave it


def special_day_rows(t: Timeline) -> list[SpecialDayRow]:
    """Every special date of the store, by date."""
    return [SpecialDayRow(d.date, d.hours_text("–"), d.source) for d in sorted(t.special_days, key=lambda d: d.date)]
