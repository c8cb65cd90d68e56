"""The shapes of the HTTP API's JSON, as marshmallow schemas: what /openapi.json describes.

They document what the views answer (the views build their JSON themselves; nothing here
parses a request). :mod:`storemon.openapi` turns them into the document's ``components``; the
schemathesis test (``tests/test_openapi.py``) checks every answer of a live server against them.
Timestamps are ISO 8601 strings in UTC ending in ``Z``.
"""

from __future__ import annotations

from marshmallow import INCLUDE, Schema, fields, validate

from .parse import KINDS

REPORT_ID = {
    "type": "string",
    "pattern": "^[0-9a-f]{32}$",
    "example": "4f0c2b9d6a1e43b2a7c5d8e9f0a1b2c3",
    "description": "32 lowercase hex characters (128 random bits), from `trigger_report`",
}
AS_OF = {
    "type": "string",
    "example": "2023-01-25T12:00:00Z",
    "description": "The report's `now` (polls after it are ignored): ISO 8601 or the feed's "
    "`2023-01-25 12:09:39.388884 UTC`, from 2000-01-01 to one day after the current time. "
    "Absent: the latest poll.",
}
PERIODS = {
    "type": "string",
    "example": "30d,2h",
    "description": "Extra periods, each adding `uptime_last_<p>` and `downtime_last_<p>` (hours) after the seven "
    "standard columns, in the order given: comma-separated `Nh` or `Nd`, at most 6, each at most `92d`. "
    "Absent or empty: none.",
}


FEED_KIND = {
    "type": "string",
    "enum": list(KINDS),
    "description": "the feed: polls, business hours, time zones or special hours (single dates)",
}
STORE_ID = {"type": "string", "minLength": 1, "example": "007", "description": "a store id, exactly as in the feeds"}
SPECIAL_DATE = {
    "type": "string",
    "pattern": r"^\d{4}-\d{2}-\d{2}$",
    "example": "2023-01-23",
    "description": "a local calendar date, `YYYY-MM-DD`, from 2000-01-01 to one year after today",
}


def _ts(description: str, **kw) -> fields.String:
    return fields.String(metadata={"description": description, "example": "2023-01-25T18:13:22Z"}, **kw)


class ErrorSchema(Schema):
    """Every error answer: the HTTP reason phrase and what went wrong."""

    error = fields.String(required=True, metadata={"description": "the HTTP reason, e.g. `Bad Request`"})
    message = fields.String(required=True, metadata={"description": "what went wrong, for a person"})


class TriggerBodySchema(Schema):
    """Optional JSON body (or form) of ``trigger_report``; ``as_of`` may be in the query instead.
    Other fields are ignored."""

    class Meta:
        unknown = INCLUDE  # -> additionalProperties: true

    as_of = fields.String(allow_none=True, metadata=AS_OF)
    periods = fields.String(allow_none=True, metadata=PERIODS)


class ReportIdSchema(Schema):
    report_id = fields.String(required=True, metadata=REPORT_ID)


class _ReportState(Schema):
    report_id = fields.String(required=True, metadata=REPORT_ID)
    now = _ts(
        "the report's `now` (null until the job has fixed it, when no as_of was given)", required=True, allow_none=True
    )
    warning = fields.String(metadata={"description": "present when `now` is over a day after the latest poll"})
    periods = fields.String(metadata={**PERIODS, "description": "the extra periods asked for, if any"})


class ReportRunningSchema(_ReportState):
    """A report queued or being computed: poll again."""

    status = fields.String(required=True, validate=validate.OneOf(["Running"]))
    state = fields.String(required=True, validate=validate.OneOf(["queued", "running"]))
    stage = fields.String(
        required=True,
        allow_none=True,
        metadata={
            "description": "`queued`, `starting`, `read`, `business hours`, `look-back`, `interpolation` "
            "or `formatting`"
        },
    )
    progress = fields.Float(required=True, allow_none=True, metadata={"description": "0..1"})
    created_at = _ts("when it was triggered", required=True, allow_none=True)
    started_at = _ts("when a job claimed it (null while queued)", required=True, allow_none=True)


class ReportFailedSchema(_ReportState):
    """A report that could not be computed, with the reason."""

    status = fields.String(required=True, validate=validate.OneOf(["Failed"]))
    error = fields.String(
        required=True, allow_none=True, metadata={"example": "NoPollsError: no polls in the database yet"}
    )


class ReportRowsSchema(Schema):
    """A complete report as JSON (``?format=json`` or ``Accept: application/json``)."""

    report_id = fields.String(required=True, metadata={**REPORT_ID, "description": "the report that computed the rows"})
    now = _ts("the report's `now`", required=True)
    columns = fields.List(
        fields.String(),
        required=True,
        metadata={"description": "`store_id`, the six figures and those of any extra periods, in the CSV's order"},
    )
    rows = fields.List(
        fields.Dict(keys=fields.String()),
        required=True,
        metadata={
            "description": "one object per store: `store_id` a string, figures numbers",
            "example": [
                {
                    "store_id": "007",
                    "uptime_last_hour": 60.0,
                    "uptime_last_day": 20.5,
                    "uptime_last_week": 120.25,
                    "downtime_last_hour": 0.0,
                    "downtime_last_day": 3.5,
                    "downtime_last_week": 11.75,
                }
            ],
        },
    )


class SkippedRowSchema(Schema):
    line = fields.Integer(required=True)
    reason = fields.String(required=True)
    text = fields.String(required=True)


class FileSummarySchema(Schema):
    """What came of one uploaded file (``rows_changed`` is null for business hours and special hours)."""

    kind = fields.String(required=True, validate=validate.OneOf(list(KINDS)))
    file = fields.String(required=True)
    rows_read = fields.Integer(required=True)
    rows_stored = fields.Integer(required=True, metadata={"description": "distinct keys stored"})
    rows_changed = fields.Integer(required=True, allow_none=True)
    rows_skipped = fields.Integer(required=True)
    stores = fields.Integer(required=True)
    skipped = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        required=True,
        metadata={"description": "rows skipped, by reason"},
    )
    examples = fields.List(fields.Nested(SkippedRowSchema), required=True)
    warnings = fields.List(fields.String(), required=True)
    seconds = fields.Float(required=True)
    rows_per_second = fields.Integer(required=True)
    outcome = fields.String(required=True, validate=validate.OneOf(["stored", "unchanged", "refused", "failed"]))
    message = fields.String(required=True, allow_none=True)
    size = fields.Integer(required=True, metadata={"description": "bytes"})
    sha256 = fields.String(required=True)
    ledger_id = fields.Integer(required=True, allow_none=True)


class LedgerRowSchema(Schema):
    id = fields.Integer(required=True)
    kind = fields.String(required=True)
    file_name = fields.String(required=True)
    size = fields.Integer(required=True)
    sha256 = fields.String(required=True)
    rows_read = fields.Integer(required=True)
    rows_stored = fields.Integer(required=True)
    rows_skipped = fields.Integer(required=True)
    outcome = fields.String(required=True, validate=validate.OneOf(["stored", "unchanged", "refused", "failed"]))
    message = fields.String(required=True, allow_none=True)
    source = fields.String(required=True, validate=validate.OneOf(["cli", "http"]))
    polls_from_us = fields.Integer(
        required=True,
        allow_none=True,
        metadata={"description": "a stored status file: its earliest poll instant (UTC microseconds); else null"},
    )
    polls_to_us = fields.Integer(
        required=True,
        allow_none=True,
        metadata={"description": "a stored status file: its latest poll instant (UTC microseconds); else null"},
    )
    started_at = _ts("", required=True, allow_none=True)
    finished_at = _ts("", required=True, allow_none=True)


class LedgerSchema(Schema):
    """The ingest ledger, newest first."""

    ingests = fields.List(fields.Nested(LedgerRowSchema), required=True)
    limit = fields.Integer(required=True)
    offset = fields.Integer(required=True)


class SpecialHoursRow(Schema):
    """One special-hours row: the store's local hours on that date, or closed."""

    date = fields.String(required=True, metadata={"example": "2023-01-23", "description": "`YYYY-MM-DD`, local"})
    closed = fields.Boolean(required=True, metadata={"description": "the store is closed that date"})
    start_time_local = fields.String(
        required=True, allow_none=True, metadata={"example": "09:00:00", "description": "null when closed"}
    )
    end_time_local = fields.String(
        required=True, allow_none=True, metadata={"example": "13:00:00", "description": "null when closed"}
    )
    source = fields.String(
        required=True, metadata={"example": "holidays.csv", "description": "the file that gave the row"}
    )


class SpecialHoursSchema(Schema):
    """One store's special dates, by date and start (docs/data-formats.md)."""

    store_id = fields.String(required=True)
    special_hours = fields.List(fields.Nested(SpecialHoursRow), required=True)


class SpecialRemovedSchema(Schema):
    """A store's special hours on one date, removed: its weekly hours apply to it again."""

    store_id = fields.String(required=True)
    date = fields.String(required=True, metadata={"example": "2023-01-23"})
    rows_removed = fields.Integer(required=True)
    removed = fields.List(fields.Nested(SpecialHoursRow), required=True)
    ledger_id = fields.Integer(required=True, metadata={"description": "the removal's row in the ingest ledger"})


class HealthSchema(Schema):
    """``ok``/``degraded`` (200) or ``error`` (503: the counts are then absent)."""

    status = fields.String(required=True, validate=validate.OneOf(["ok", "degraded", "error"]))
    database = fields.String(required=True, validate=validate.OneOf(["reachable", "read-only", "unreachable"]))
    message = fields.String(metadata={"description": "why, when degraded or error"})
    stores_with_polls = fields.Integer()
    stores_with_hours = fields.Integer()
    stores_with_timezone = fields.Integer()
    polls = fields.Integer()
    reports = fields.Integer(metadata={"description": "report jobs recorded"})


class Interval(Schema):
    start = _ts("", required=True)
    end = _ts("", required=True)


class HoursRow(Schema):
    day = fields.Integer(required=True, metadata={"description": "0 = Monday ... 6 = Sunday"})
    day_name = fields.String(required=True)
    start_time_local = fields.String(required=True)
    end_time_local = fields.String(required=True)


class BusinessInterval(Interval):
    local_start = fields.String(required=True)
    local_end = fields.String(required=True)
    special_date = fields.String(
        required=True,
        allow_none=True,
        metadata={"example": "2023-01-24", "description": "the special date it starts on; null: weekly hours"},
    )


class LocalHours(Schema):
    start_time_local = fields.String(required=True, metadata={"example": "10:00:00"})
    end_time_local = fields.String(required=True, metadata={"example": "14:00:00"})


class TimelineSpecialDay(Interval):
    """A special date of the store; ``start``/``end``: its local date's span in UTC."""

    date = fields.String(required=True, metadata={"example": "2023-01-23", "description": "`YYYY-MM-DD`, local"})
    closed = fields.Boolean(required=True)
    hours = fields.List(fields.Nested(LocalHours), required=True, metadata={"description": "empty when closed"})
    source = fields.String(required=True, metadata={"example": "holidays.csv"})


class TimelinePoll(Schema):
    timestamp = _ts("", required=True)
    status = fields.String(required=True, validate=validate.OneOf(["active", "inactive"]))
    counted = fields.Boolean(required=True, metadata={"description": "inside business hours"})
    reason = fields.String(required=True, allow_none=True)
    in_week = fields.Boolean(required=True)


class Segment(Interval):
    active = fields.Boolean(required=True)
    status = fields.String(required=True, validate=validate.OneOf(["active", "inactive"]))
    poll = _ts("the poll that speaks for the segment", required=True)
    seconds = fields.Float(required=True)


class TimelineSchema(Schema):
    """One store's week: the report's steps applied to one store (docs/interfaces.md)."""

    store_id = fields.String(required=True)
    now = _ts("", required=True)
    windows = fields.Dict(
        keys=fields.String(),
        values=fields.Nested(Interval),
        required=True,
        metadata={"description": "`hour`, `day`, `week` and any extra period"},
    )
    timezone = fields.String(required=True)
    timezone_source = fields.String(required=True)
    timezone_given = fields.String(required=True, allow_none=True)
    business_hours = fields.List(fields.Nested(HoursRow), required=True)
    business_intervals = fields.List(fields.Nested(BusinessInterval), required=True)
    polls = fields.List(fields.Nested(TimelinePoll), required=True)
    segments = fields.List(fields.Nested(Segment), required=True)
    special_days = fields.List(fields.Nested(TimelineSpecialDay), required=True)
    figures = fields.Dict(
        keys=fields.String(),
        values=fields.Float(),
        required=True,
        metadata={"description": "the report row's figures (six, and two per extra period), by column"},
    )
    notes = fields.List(fields.String(), required=True)
