"""Prometheus metrics: ``GET /metrics`` in the text exposition format.

* ``storemon_http_requests_total{endpoint,status}`` and
  ``storemon_http_request_duration_seconds{endpoint}`` (histogram) -- every request, labelled by
  the Flask endpoint name (``api.get_report``, not the path: ids do not multiply the series;
  ``unmatched`` for a URL no route serves);
* ``storemon_polls_ingested_total{kind,outcome}`` -- rows of the files uploaded to this server
  (``/ingest/<kind>``), by feed and outcome ``stored`` / ``skipped`` (the command line is another
  process: its ingests are in the ledger, ``GET /ingests``);
* ``storemon_report_duration_seconds{outcome}`` (histogram) -- report jobs, from claim to CSV
  (``complete``) or to failure (``failed``);
* ``storemon_report_batches_total{how}`` -- the batches of stores those jobs computed, by how
  they were got: ``built`` (read from the database), ``refreshed`` or ``reused`` (kept by this
  process from its last report; see :mod:`storemon.snapshot`);
* ``storemon_reports{state}`` -- reports by state, read from the jobs table at scrape time.

Several gunicorn workers: counters and histograms live in ``prometheus_client``'s multiprocess
mode when ``PROMETHEUS_MULTIPROC_DIR`` is set before this module is imported -- gunicorn.conf.py
gives every server its own fresh folder and marks dead workers -- so a scrape answered by any
worker adds up all of them. Without it (the test client, ``flask run``) one process's registry
is used.
"""

from __future__ import annotations

import os
import time

from flask import Blueprint, Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

from .extensions import db
from .models import Report
from .openapi import describe

bp = Blueprint("metrics", __name__)

HTTP_REQUESTS = Counter(
    "storemon_http_requests_total", "HTTP requests answered, by Flask endpoint and status", ["endpoint", "status"]
)
HTTP_LATENCY = Histogram(
    "storemon_http_request_duration_seconds", "Time to answer a request, by Flask endpoint", ["endpoint"]
)
POLLS_INGESTED = Counter(
    "storemon_polls_ingested_total",
    "Rows of files uploaded over HTTP, by feed (status/hours/timezones) and outcome (stored/skipped)",
    ["kind", "outcome"],
)
REPORT_DURATION = Histogram(
    "storemon_report_duration_seconds",
    "Report jobs, from claim to outcome",
    ["outcome"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, float("inf")),
)
REPORT_BATCHES = Counter(
    "storemon_report_batches_total",
    "Batches of stores of the reports computed here, by how they were got: built (read from the database), "
    "refreshed (kept from the last report and brought up to date) or reused (kept, unchanged)",
    ["how"],
)
REPORT_STATES = ("queued", "running", "complete", "failed", "expired")


def init_app(app: Flask) -> None:
    """Time every request (registered before the security check, so refusals count too)."""
    app.before_request(_start)
    app.after_request(_record)
    app.register_blueprint(bp)


def _start() -> None:
    g.storemon_started = time.perf_counter()


def _record(response: Response) -> Response:
    endpoint = request.endpoint or "unmatched"
    started = g.get("storemon_started")
    HTTP_REQUESTS.labels(endpoint, str(response.status_code)).inc()
    if started is not None:
        HTTP_LATENCY.labels(endpoint).observe(time.perf_counter() - started)
    return response


def ingested(summary: dict) -> None:
    """Count one uploaded file's rows (a summary as ``/ingest/<kind>`` answers it)."""
    POLLS_INGESTED.labels(summary["kind"], "stored").inc(summary["rows_stored"])
    POLLS_INGESTED.labels(summary["kind"], "skipped").inc(summary["rows_skipped"])


def report_finished(outcome: str, seconds: float, batches: dict[str, int] | None = None) -> None:
    REPORT_DURATION.labels(outcome).observe(seconds)
    for how, count in (batches or {}).items():
        REPORT_BATCHES.labels(how).inc(count)


class _ReportsByState:
    """``storemon_reports{state}``: a gauge read from the jobs table when scraped."""

    def __init__(self, counts: dict[str, int]):
        self.counts = counts

    def collect(self):
        family = GaugeMetricFamily("storemon_reports", "Report jobs recorded, by state", labels=["state"])
        for state in REPORT_STATES:
            family.add_metric([state], self.counts.get(state, 0))
        yield family


def exposition() -> bytes:
    """All metrics, in the text format (every worker's, in multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY as registry
    counts = dict(db.session.execute(select(Report.status, func.count()).group_by(Report.status)).all())
    db.session.rollback()
    states = CollectorRegistry(auto_describe=False)
    states.register(_ReportsByState(counts))
    return generate_latest(registry) + generate_latest(states)


@bp.get("/metrics")
@describe(
    summary="Prometheus metrics",
    tags=("operations",),
    responses={
        200: {
            "description": "Metrics in the Prometheus text format: HTTP requests "
            "by endpoint and status with latency, rows ingested by feed and outcome, "
            "report durations, reports by state",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
def metrics():
    """Prometheus metrics of this server (all its workers)."""
    return Response(exposition(), content_type=CONTENT_TYPE_LATEST)
