"""The benchmark's phases. One run = one fresh process::

    python -m bench.phase NAME ARGS...

prints one line ``BENCH_RESULT {json}`` on stdout (logging goes to stderr). Measured phases
time only the call they measure, and report ``peak_mb``: this process's peak resident set size
(``ru_maxrss``), so set-up in the same process (imports, the app) is included, as it would be in
a real ``flask ingest`` or report job, but nothing of other runs.

Preparation phases (not measured): ``generate``, ``append-csv``.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import random
import resource
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench import APPEND_ROWS, HOURS_AHEAD, RESULT_PREFIX, ROOT

US = 1_000_000


def peak_mb() -> float:
    """Peak RSS of this process so far (Linux: ru_maxrss is in KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def is_url(db: str) -> bool:
    """A database is given as a SQLite file path or as a URL (PostgreSQL)."""
    return "://" in db


def make_app(db: str, reports_dir: str, **settings):
    """storemon's app on the given SQLite file or database URL (the schema is created if missing)."""
    from storemon import create_app

    url = db if is_url(db) else f"sqlite:///{db}"
    return create_app({"DATABASE_URL": url, "REPORTS_DIR": reports_dir, **settings})


def checkpoint(db_path: str) -> None:
    """Fold the WAL into the database file, so the file alone can be copied."""
    if is_url(db_path):
        return
    with sqlite3.connect(db_path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


# ---------------------------------------------------------------------------------------------
# Preparation


def generate(out_dir: str, stores: str, days: str, seed: str) -> dict:
    """The project's own generator: three CSVs in out_dir."""
    from storemon.demo import generate_demo_data

    started = time.perf_counter()
    summary = generate_demo_data(out_dir, stores=int(stores), days=int(days), seed=int(seed))
    return {
        "seconds": time.perf_counter() - started,
        "polls": summary.polls,
        "hours_rows": summary.hours_rows,
        "timezone_rows": summary.timezone_rows,
        "first_poll": summary.start.isoformat(),
        "last_poll": summary.end.isoformat(),
    }


def stores_and_last_poll(db_path: str) -> tuple[list[str], int]:
    """A SQLite database's store ids (store_key order) and its latest poll, read only."""
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
        store_ids = [row[0] for row in conn.execute("SELECT store_id FROM stores ORDER BY store_key")]
        last_us = conn.execute("SELECT max(last_poll_us) FROM stores").fetchone()[0]
    conn.close()
    return store_ids, last_us


def append_csv(db_path: str, out_csv: str, seed: str) -> dict:
    """APPEND_ROWS new polls in the real feed's format, one each for as many existing stores,
    an hour (plus up to 5 minutes) after the database's last poll, in time order."""
    store_ids, last_us = stores_and_last_poll(db_path)
    rng = random.Random(int(seed))
    chosen = rng.sample(store_ids, APPEND_ROWS)
    stamps = sorted(last_us + 3600 * US + rng.randrange(300 * US) for _ in chosen)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    with open(out_csv, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["store_id", "status", "timestamp_utc"])
        for store_id, ts in zip(chosen, stamps):
            when = (epoch + timedelta(microseconds=ts)).strftime("%Y-%m-%d %H:%M:%S.%f UTC")
            writer.writerow([store_id, "active" if rng.random() < 0.9 else "inactive", when])
    return {"rows": APPEND_ROWS, "first": stamps[0], "last": stamps[-1], "db_last_poll_us": last_us}


def hour_csvs(db_path: str, out_pattern: str, seed: str) -> dict:
    """HOURS_AHEAD files ``out_pattern.format(i)``: one poll per store, hour ``i + 1`` after the
    database's last poll (plus up to 5 minutes), in time order -- the hourly feed of the loop."""
    store_ids, last_us = stores_and_last_poll(db_path)
    rng = random.Random(int(seed))
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for i in range(HOURS_AHEAD):
        stamps = sorted((last_us + (i + 1) * 3600 * US + rng.randrange(300 * US), s) for s in store_ids)
        with open(out_pattern.format(i), "w", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["store_id", "status", "timestamp_utc"])
            for ts, store_id in stamps:
                when = (epoch + timedelta(microseconds=ts)).strftime("%Y-%m-%d %H:%M:%S.%f UTC")
                writer.writerow([store_id, "active" if rng.random() < 0.9 else "inactive", when])
    return {"rows": len(store_ids), "files": HOURS_AHEAD, "db_last_poll_us": last_us}


# ---------------------------------------------------------------------------------------------
# Measured phases


def _pandas():
    """pandas with Python-backed strings, as storemon runs it (storemon/__init__.py): with pyarrow
    installed pandas would read text into Arrow strings, several times faster, and the yardstick
    would no longer measure what it always measured."""
    import pandas as pd

    pd.set_option("mode.string_storage", "python")
    return pd


def yardstick(status_csv: str) -> dict:
    """A plain pandas.read_csv of the 1x polls file: how fast is this machine?"""
    pd = _pandas()
    started = time.perf_counter()
    frame = pd.read_csv(status_csv)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": len(frame), "peak_mb": peak_mb()}


def read_text(status_csv: str) -> dict:
    """What every ingest does first: the polls file read as text, 250,000 rows at a time (the
    parsing and the database left out) -- how the reading alone grows with the file."""
    pd = _pandas()

    started = time.perf_counter()
    rows = 0
    with pd.read_csv(status_csv, dtype=str, keep_default_na=False, na_filter=False, chunksize=250_000) as reader:
        for chunk in reader:
            rows += len(chunk)
    return {"seconds": time.perf_counter() - started, "rows": rows, "peak_mb": peak_mb()}


def ingest(data_dir: str, db_path: str, reports_dir: str) -> dict:
    """storemon.ingest.ingest_files: the three feeds into an empty database."""
    from storemon.extensions import db
    from storemon.ingest import ingest_files

    if not is_url(db_path) and Path(db_path).exists():
        raise SystemExit(f"{db_path} exists; ingest needs an empty database")
    app = make_app(db_path, reports_dir)
    with app.app_context():
        engine = db.engine
        started = time.perf_counter()
        summary = ingest_files(engine, data_dir)
        seconds = time.perf_counter() - started
        engine.dispose()
    checkpoint(db_path)
    files = {f.kind: f for f in summary.files}
    status = files["status"]
    return {
        "seconds": seconds,
        "rows": sum(f.rows_read for f in summary.files),
        "poll_rows": status.rows_read,
        "poll_seconds": status.seconds,
        "poll_rows_per_s": status.rows_per_second,
        "skipped": sum(f.rows_skipped for f in summary.files),
        "files": {k: {"rows": f.rows_read, "seconds": round(f.seconds, 3)} for k, f in files.items()},
        "peak_mb": peak_mb(),
    }


def append(db_path: str, new_polls_csv: str, reports_dir: str) -> dict:
    """storemon.ingest.ingest_file of a small hourly feed into a big existing database."""
    from storemon.extensions import db
    from storemon.ingest import ingest_file

    app = make_app(db_path, reports_dir)
    with app.app_context():
        engine = db.engine
        started = time.perf_counter()
        summary = ingest_file(engine, "status", new_polls_csv)
        seconds = time.perf_counter() - started
        engine.dispose()
    if summary.rows_changed != APPEND_ROWS:
        raise SystemExit(f"expected {APPEND_ROWS} new polls, got {summary.to_dict()}")
    return {"seconds": seconds, "rows": summary.rows_read, "peak_mb": peak_mb()}


def report(db_path: str, reports_dir: str, periods: str = "", parallel: str = "") -> dict:
    """storemon.reports.build_report on a cached database (read only), as a serving process's
    first report: batches of REPORT_BATCH_STORES stores, kept if they fit REPORT_CACHE_POLLS, on
    REPORT_PARALLEL threads (``parallel``; default: the setting's); with extra ``periods`` (e.g.
    ``30d``) when given."""
    from storemon.compute import report_windows
    from storemon.config import report_parallelism
    from storemon.extensions import db
    from storemon.jobs import report_cache
    from storemon.reports import build_report

    app = make_app(db_path, reports_dir, **({"REPORT_PARALLEL": int(parallel)} if parallel else {}))
    with app.app_context():
        engine = db.engine
        started = time.perf_counter()
        threads, batch_stores = report_parallelism(app.config)
        result = build_report(
            engine,
            cache=report_cache(app),
            batch_stores=batch_stores,
            windows=report_windows(periods),
            parallel=threads,
        )
        seconds = time.perf_counter() - started
        engine.dispose()
    return {"seconds": seconds, "stores": result.store_count, "peak_mb": peak_mb()}


def report_csv(db_path: str, reports_dir: str, out_csv: str) -> dict:
    """The report of a cached database written as CSV (the input of :func:`convert`)."""
    from storemon.extensions import db
    from storemon.reports import build_report, write_csv

    app = make_app(db_path, reports_dir)
    with app.app_context():
        result = build_report(db.engine, batch_stores=app.config["REPORT_BATCH_STORES"])
        write_csv(result.frame, out_csv)
        db.engine.dispose()
    return {"seconds": 0.0, "stores": result.store_count, "peak_mb": peak_mb()}


def convert(csv_path: str, fmt: str, out_dir: str) -> dict:
    """A report CSV made into ``fmt`` (storemon.formats.convert), as a first ``?format=`` request does."""
    from storemon import formats

    about = formats.About(report_id="0" * 32, now="2023-01-25T18:13:22Z", data_version=1)
    started = time.perf_counter()
    out = formats.convert(csv_path, formats.FORMATS[fmt], Path(out_dir) / f"report.{fmt}", about)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "bytes": out.stat().st_size, "peak_mb": peak_mb()}


# ---------------------------------------------------------------------------------------------
# HTTP: real gunicorn


class Gunicorn:
    """``gunicorn -c gunicorn.conf.py wsgi:app`` on a free port, in its own process group
    (as tests/test_server.py starts it); :meth:`stop` kills the whole group."""

    def __init__(self, db_path: str, reports_dir: str, log_path: str, workers: int = 1, **settings: str):
        # The schema first (data and jobs databases), here: two workers booting on a fresh jobs
        # file can race to create its tables, and one then fails to boot ("database is locked").
        from storemon.storage import dispose_all

        with make_app(db_path, reports_dir).app_context():
            dispose_all()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "DATABASE_URL": db_path if is_url(db_path) else f"sqlite:///{db_path}",
            "REPORTS_DIR": reports_dir,
            "STOREMON_BIND": f"127.0.0.1:{port}",
            "STOREMON_WEB_WORKERS": str(workers),
        }
        for key in (
            "REPORT_WORKERS",
            "REPORT_START_DELAY",
            "GUNICORN_CMD_ARGS",
            "MAX_UPLOAD_BYTES",
            "REPORT_QUEUE_MAX",
            "STOREMON_API_TOKENS",
        ):
            env.pop(key, None)  # measure the shipped configuration ...
        env.update(settings)  # ... unless the phase says otherwise
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if self.request("GET", "/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gunicorn did not start; see {log_path}")

    def request(self, method: str, path: str, data=None, headers=None, timeout: float = 30) -> tuple[int, dict, bytes]:
        req = urllib.request.Request(self.base + path, method=method, data=data, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()

    def trigger(self, as_of: str | None = None) -> str:
        query = f"?as_of={urllib.parse.quote(as_of)}" if as_of else ""
        status, _, body = self.request("POST", "/trigger_report" + query)
        if status != 200:
            raise RuntimeError(f"POST /trigger_report: {status} {body[:300]!r}")
        return json.loads(body)["report_id"]

    def poll(self, report_id: str) -> bool:
        """One GET /get_report; True once the report is Complete."""
        status, headers, body = self.request("GET", f"/get_report?report_id={report_id}")
        if status != 200:
            raise RuntimeError(f"GET /get_report: {status} {body[:300]!r}")
        if headers.get("X-Report-Status") == "Complete":
            return True
        state = json.loads(body)
        if state.get("status") != "Running":
            raise RuntimeError(f"report {report_id}: {state}")
        return False

    def worker_peak_mb(self) -> list[float]:
        """VmHWM (peak RSS) of each worker process, read before stopping."""
        peaks = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) != self.process.pid:  # fields[1] is the parent pid
                    continue
                for line in (stat.parent / "status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peaks.append(int(line.split()[1]) / 1024)
            except (OSError, IndexError, ValueError):
                continue
        return peaks

    def stop(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})  # finish this
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        self.log.close()


def http(db_path: str, reports_dir: str, runs: str, min_samples: str, min_reports: str) -> dict:
    """(a) POST /trigger_report -> GET /get_report every 20 ms until Complete, ``runs`` times
    (the first computes; identical ones after it reuse its result);
    (b) reports triggered back to back (each as of a different minute), each polled in a tight
    sequential loop while it runs: the latency of every "Running" answer, until ``min_samples``
    over ``min_reports`` reports."""
    server = Gunicorn(db_path, reports_dir, str(Path(reports_dir).parent / "gunicorn.log"))
    try:
        complete_s = []
        for _ in range(int(runs)):
            started = time.perf_counter()
            report_id = server.trigger()
            while not server.poll(report_id):
                if time.perf_counter() - started > 300:
                    raise RuntimeError(f"report {report_id} not complete after 300 s")
                time.sleep(0.02)
            complete_s.append(time.perf_counter() - started)

        # Identical reports are computed once: each of these asks as of a different instant
        # (a minute earlier each time), so each is computed and answers "Running" a while.
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
            last_us = conn.execute("SELECT max(last_poll_us) FROM stores").fetchone()[0]
        conn.close()
        latencies_ms: list[float] = []
        reports = 0
        while len(latencies_ms) < int(min_samples) or reports < int(min_reports):
            if reports >= 50:
                raise RuntimeError(f"only {len(latencies_ms)} samples after {reports} reports")
            as_of = datetime.fromtimestamp((last_us - (reports + 1) * 60 * US) / US, tz=UTC)
            report_id = server.trigger(as_of.strftime("%Y-%m-%dT%H:%M:%SZ"))
            reports += 1
            while True:
                started = time.perf_counter()
                done = server.poll(report_id)
                if done:
                    break
                latencies_ms.append((time.perf_counter() - started) * 1000)
        worker_peaks = server.worker_peak_mb()
    finally:
        server.stop()
    quantiles = statistics.quantiles(latencies_ms, n=100, method="inclusive")
    return {
        "complete_s": complete_s,
        "latency_p50_ms": statistics.median(latencies_ms),
        "latency_p95_ms": quantiles[94],
        "latency_max_ms": max(latencies_ms),
        "samples": len(latencies_ms),
        "latency_reports": reports,
        "worker_peak_mb": worker_peaks,
        "peak_mb": peak_mb(),
    }


def warm(db_path: str, reports_dir: str, hour_pattern: str) -> dict:
    """The hourly loop on one serving process (gunicorn, 1 worker): a first report (cold), then
    HOURS_AHEAD times: an hour of polls (one per store) appended by another process (this one,
    ``ingest_file``; timed), and a report triggered over HTTP, timed until Complete (warm: the
    worker reads only what changed since its last report)."""
    from storemon.extensions import db
    from storemon.ingest import ingest_file

    server = Gunicorn(db_path, reports_dir, str(Path(reports_dir).parent / "gunicorn.log"))
    app = make_app(db_path, reports_dir)
    try:
        started = time.perf_counter()
        wait_complete(server, server.trigger(), poll_s=0.02)
        cold_s = time.perf_counter() - started
        append_s, warm_s = [], []
        with app.app_context():
            engine = db.engine
            for i in range(HOURS_AHEAD):
                started = time.perf_counter()
                summary = ingest_file(engine, "status", hour_pattern.format(i))
                append_s.append(time.perf_counter() - started)
                if summary.rows_changed != summary.rows_read:
                    raise RuntimeError(f"hour {i}: expected only new polls, got {summary.to_dict()}")
                started = time.perf_counter()
                wait_complete(server, server.trigger(), poll_s=0.02)
                warm_s.append(time.perf_counter() - started)
            engine.dispose()
        worker_mb = max(server.worker_peak_mb())
    finally:
        server.stop()
    return {
        "seconds": statistics.median(warm_s),
        "cold_s": cold_s,
        "warm_s": warm_s,
        "append_s": append_s,
        "rows": summary.rows_read,
        "worker_peak_mb": worker_mb,
        "peak_mb": peak_mb(),
    }


def wait_complete(server: Gunicorn, report_id: str, limit_s: float = 600, poll_s: float = 0.05) -> None:
    started = time.perf_counter()
    while not server.poll(report_id):
        if time.perf_counter() - started > limit_s:
            raise RuntimeError(f"report {report_id} not complete after {limit_s:.0f} s")
        time.sleep(poll_s)


def triggers(db_path: str, reports_dir: str, count: str) -> dict:
    """One report timed alone, then ``count`` identical triggers at once (one thread each, as
    ``count`` users pressing the button): the time until every one answers Complete."""
    import threading

    server = Gunicorn(db_path, reports_dir, str(Path(reports_dir).parent / "gunicorn.log"))
    try:
        started = time.perf_counter()
        wait_complete(server, server.trigger())
        one_s = time.perf_counter() - started
        # An hour before the latest poll: a report not computed yet, the same for every trigger.
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
            last_us = conn.execute("SELECT max(last_poll_us) FROM stores").fetchone()[0]
        conn.close()
        as_of = datetime.fromtimestamp((last_us - 3600 * US) / US, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        ids: list[str] = []
        errors: list[str] = []
        barrier = threading.Barrier(int(count))

        def press() -> None:
            try:
                barrier.wait()
                ids.append(server.trigger(as_of))
            except Exception as exc:  # noqa: BLE001
                errors.append(repr(exc))

        started = time.perf_counter()
        threads = [threading.Thread(target=press) for _ in range(int(count))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise RuntimeError(f"{len(errors)} triggers failed: {errors[:3]}")
        for report_id in ids:
            wait_complete(server, report_id)
        all_s = time.perf_counter() - started
        with sqlite3.connect(
            f"file:{Path(db_path).with_name(Path(db_path).stem + '.jobs' + Path(db_path).suffix)}?mode=ro", uri=True
        ) as conn:
            computed = conn.execute(  # the 50 asked with as_of; the first report had none
                "SELECT count(*) FROM reports WHERE reuse_of IS NULL AND as_of_us IS NOT NULL"
            ).fetchone()[0]
        conn.close()
    finally:
        server.stop()
    return {
        "seconds": all_s,
        "one_s": one_s,
        "ratio": all_s / one_s,
        "computed": computed,
        "triggers": len(ids),
        "peak_mb": peak_mb(),
    }


def upload(db_path: str, reports_dir: str, status_csv: str, size_mb: str) -> dict:
    """A ``size_mb`` MB text/csv upload of polls (the 1x polls repeated) to a one-worker gunicorn
    on an empty database: the worker's peak RSS, and the time to the summary."""
    body_path = Path(reports_dir).parent / "upload.csv"
    source = Path(status_csv).read_bytes()
    header, rows = source.split(b"\n", 1)
    target = int(size_mb) * 1024 * 1024
    with open(body_path, "wb") as out:
        out.write(header + b"\n")
        written = len(header) + 1
        while written + len(rows) <= target:
            out.write(rows)
            written += len(rows)
        tail = rows[: target - written]
        out.write(tail[: tail.rfind(b"\n") + 1])
    size = body_path.stat().st_size
    server = Gunicorn(db_path, reports_dir, str(Path(reports_dir).parent / "gunicorn.log"))
    try:
        started = time.perf_counter()
        with open(body_path, "rb") as handle:
            status, _, answer = server.request(
                "POST",
                "/ingest/status",
                data=handle,
                headers={"Content-Type": "text/csv", "Content-Length": str(size)},
                timeout=3600,
            )
        seconds = time.perf_counter() - started
        if status != 200:
            raise RuntimeError(f"upload: {status} {answer[:300]!r}")
        summary = json.loads(answer)
        worker_mb = max(server.worker_peak_mb())
    finally:
        server.stop()
        body_path.unlink(missing_ok=True)
    return {
        "seconds": seconds,
        "bytes": size,
        "rows_read": summary["rows_read"],
        "rows_stored": summary["rows_stored"],
        "worker_peak_mb": worker_mb,
        "peak_mb": peak_mb(),
    }


def dashboard(db_path: str, reports_dir: str, stores: str) -> dict:
    """The dashboard on real gunicorn (the default settings: one worker process):
    ``GET /stores/<id>/timeline`` and the store page for ``stores`` random stores, one request at
    a time; then a report, and its report page (14,000 rows): the first two requests (each worker
    parses the CSV once), then pages sorted, filtered and paged differently (parsed frame cached)."""
    from urllib.parse import quote

    with sqlite3.connect(db_path) as conn:
        ids = [row[0] for row in conn.execute("SELECT store_id FROM stores ORDER BY store_key")]
    conn.close()
    picked = random.Random(0).sample(ids, min(int(stores), len(ids)))
    server = Gunicorn(db_path, reports_dir, str(Path(reports_dir).parent / "gunicorn.log"))

    def timed(path: str) -> float:
        started = time.perf_counter()
        status, _, body = server.request("GET", path)
        seconds = time.perf_counter() - started
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {body[:300]!r}")
        return seconds * 1000

    try:
        for _ in range(4):  # both workers: imports, first connection
            timed(f"/stores/{quote(picked[0], safe='')}/timeline")
        timeline_ms = [timed(f"/stores/{quote(s, safe='')}/timeline") for s in picked]
        page_ms = [timed(f"/stores/{quote(s, safe='')}") for s in picked]
        report_id = server.trigger()
        while not server.poll(report_id):
            time.sleep(0.05)
        first_ms = [timed(f"/reports/{report_id}") for _ in range(2)]
        columns = ["store_id", "uptime_last_week", "downtime_last_day", "uptime_share_week", "downtime_last_hour"]
        report_ms = [
            timed(
                f"/reports/{report_id}?sort={columns[k % 5]}&order={'desc' if k % 2 else 'asc'}"
                f"&page={1 + 37 * k % 280}" + ("&q=12" if k % 3 == 0 else "")
            )
            for k in range(30)
        ]
    finally:
        server.stop()

    def p95(values: list[float]) -> float:
        return statistics.quantiles(values, n=100, method="inclusive")[94]

    return {
        "seconds": statistics.median(timeline_ms) / 1000,
        "timeline_p50_ms": statistics.median(timeline_ms),
        "timeline_p95_ms": p95(timeline_ms),
        "timeline_max_ms": max(timeline_ms),
        "store_page_p50_ms": statistics.median(page_ms),
        "store_page_p95_ms": p95(page_ms),
        "report_page_first_ms": max(first_ms),
        "report_page_p50_ms": statistics.median(report_ms),
        "report_page_p95_ms": p95(report_ms),
        "stores": len(picked),
        "peak_mb": peak_mb(),
    }


# ---------------------------------------------------------------------------------------------


def pg_admin(action: str, server_url: str, name: str) -> dict:
    """Create or drop database ``name`` on the PostgreSQL server of ``server_url``."""
    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(server_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        if action == "create":
            conn.execute(f'CREATE DATABASE "{name}"')
        else:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    return {"url": url, "seconds": 0.0, "peak_mb": peak_mb()}


PHASES = {
    "generate": generate,
    "append-csv": append_csv,
    "hour-csvs": hour_csvs,
    "yardstick": yardstick,
    "read-text": read_text,
    "ingest": ingest,
    "append": append,
    "report": report,
    "report-csv": report_csv,
    "convert": convert,
    "http": http,
    "warm": warm,
    "triggers": triggers,
    "upload": upload,
    "dashboard": dashboard,
    "pg-admin": pg_admin,
}


def _terminate(signum, _frame):
    raise SystemExit(128 + signum)  # unwind, so `finally` blocks stop gunicorn


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in PHASES:
        print(f"usage: python -m bench.phase {{{','.join(PHASES)}}} ARGS...", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    # Logs to stderr (create_app keeps a configured root logger), stdout is for the result.
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    result = PHASES[argv[0]](*argv[1:])
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
