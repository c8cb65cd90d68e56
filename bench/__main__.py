"""``make bench``: measure storemon at full scale on this machine, against its targets.

1. Prepare (cached in bench/cache/, reused while the generator / storage code is unchanged): demo
   data for 1x, 2x, 5x, 10x and four weeks, each ingested into a SQLite database, the 10,000-poll
   "append" file and the hours of the hourly loop.
2. Measure: every run of every phase is a fresh ``python -m bench.phase ...`` process, so its
   peak memory is its own; each figure is the median of ``BENCH_RUNS`` runs (default 3).
3. Print the table and write it, with a description of the machine, to bench/RESULTS.md.

This process stays small on purpose (stdlib only, no pandas): on Linux a child started by
fork/exec inherits its parent's peak RSS as the floor of its own ``ru_maxrss``.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from bench import (
    CACHE,
    DATA_CODE,
    DATASETS,
    DB_CODE,
    HOURS_AHEAD,
    RESULT_PREFIX,
    RESULTS_MD,
    ROOT,
    SCRATCH,
    SEED,
    Dataset,
    code_fingerprint,
    read_meta,
)

RUNS = int(os.environ.get("BENCH_RUNS", "3"))
RUNS_5X = 1  # one 5x report run keeps `make bench` within minutes on 2 cores
CORE_PAIRS_1X, CORE_PAIRS_10X = 5, 3  # reports on all cores and on one, alternating (Bench.cores)
PG_REPORT_PAIRS = 5  # SQLite and PostgreSQL 1x reports, alternating (the ratio's spread is wide)
HTTP_SAMPLES = 200  # at least this many latency samples ...
HTTP_REPORTS = 3  # ... over at least this many reports
DASHBOARD_STORES = 50  # timeline and store-page requests, one per random store
APPEND_CSV = CACHE / f"append-{SEED}.csv"
HOUR_CSV = str(CACHE / f"hour-{SEED}-{{}}.csv")  # HOURS_AHEAD files of the hourly loop (1x)
TRIGGERS = 50  # identical reports asked for at once
UPLOAD_MB = 1023  # a body just under the default 1 GiB upload limit
CORES = min(len(os.sched_getaffinity(0)), 8)  # a report's threads by default (REPORT_PARALLEL=0: the cores, at most 8)


def say(text: str) -> None:
    print(text, flush=True)


class PhaseError(RuntimeError):
    pass


def run_phase(name: str, *args, timeout: float = 1800) -> dict:
    """Run ``python -m bench.phase NAME ARGS`` and return its JSON result."""
    command = [sys.executable, "-m", "bench.phase", name, *map(str, args)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.terminate()  # SIGTERM: the phase unwinds and stops its gunicorn, if any
        try:
            out, err = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        raise PhaseError(f"{name}: no result after {timeout:.0f} s\n{err[-3000:]}") from None
    except BaseException:  # Ctrl-C (which reaches the phase too) or SIGTERM: let it clean up
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.terminate()
            process.wait(timeout=60)
        raise
    lines = [line for line in out.splitlines() if line.startswith(RESULT_PREFIX)]
    if process.returncode != 0 or not lines:
        raise PhaseError(f"{' '.join(command[1:])} failed (exit {process.returncode}):\n{err[-3000:]}")
    return json.loads(lines[-1][len(RESULT_PREFIX) :])


# ---------------------------------------------------------------------------------------------
# Cached inputs


def remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal", ".json"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


@contextmanager
def scratch_copy(source: Path | None = None):
    """A private folder with a copy of ``source`` (a database the run may modify) or no
    database yet; yields (database path, reports folder); removed afterwards."""
    folder = SCRATCH / uuid.uuid4().hex[:12]
    (folder / "reports").mkdir(parents=True)
    db = folder / "storemon.sqlite"
    try:
        if source is not None:
            shutil.copyfile(source, db)
        yield db, folder / "reports"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def data_ready(ds: Dataset) -> bool:
    meta = read_meta(ds.data_dir / "meta.json")
    return bool(meta) and meta.get("code") == code_fingerprint(DATA_CODE)


def ensure_data(ds: Dataset, quiet: bool = False) -> None:
    if data_ready(ds):
        if not quiet:
            say(f"  data {ds.label}: cached ({ds.data_dir.relative_to(ROOT)})")
        return
    shutil.rmtree(ds.data_dir, ignore_errors=True)
    partial = ds.data_dir.with_name(ds.data_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    result = run_phase("generate", partial, ds.stores, ds.days, ds.seed)
    meta = {"stores": ds.stores, "days": ds.days, "seed": ds.seed, "code": code_fingerprint(DATA_CODE), **result}
    (partial / "meta.json").write_text(json.dumps(meta, indent=1))
    partial.rename(ds.data_dir)
    say(f"  data {ds.label}: generated {result['polls']:,} polls in {result['seconds']:.1f} s")


def db_ready(ds: Dataset) -> bool:
    meta = read_meta(Path(f"{ds.db_path}.json"))
    return bool(meta) and ds.db_path.is_file() and meta.get("code") == code_fingerprint(DB_CODE)


def install_db(ds: Dataset, built: Path, result: dict) -> None:
    """Keep an ingested database as the cached one for ``ds``."""
    remove_db(ds.db_path)
    shutil.move(built, ds.db_path)
    meta = {
        "stores": ds.stores,
        "days": ds.days,
        "seed": ds.seed,
        "code": code_fingerprint(DB_CODE),
        "rows": result["rows"],
        "ingest_seconds": result["seconds"],
    }
    Path(f"{ds.db_path}.json").write_text(json.dumps(meta, indent=1))


def ensure_db(ds: Dataset) -> None:
    if db_ready(ds):
        say(f"  database {ds.label}: cached ({ds.db_path.relative_to(ROOT)})")
        return
    ensure_data(ds, quiet=True)
    with scratch_copy() as (db, reports):
        result = run_phase("ingest", ds.data_dir, db, reports)
        install_db(ds, db, result)
    say(f"  database {ds.label}: ingested {result['rows']:,} rows in {result['seconds']:.1f} s")


def ensure_hour_csvs() -> None:
    one = DATASETS["1x"]
    meta_path = CACHE / f"hour-{SEED}.json"
    meta = read_meta(meta_path)
    db_meta = read_meta(Path(f"{one.db_path}.json"))
    if meta and meta.get("db") == db_meta and all(Path(HOUR_CSV.format(i)).is_file() for i in range(HOURS_AHEAD)):
        return
    result = run_phase("hour-csvs", one.db_path, HOUR_CSV, SEED)
    meta_path.write_text(json.dumps({"db": db_meta, **result}, indent=1))


def ensure_append_csv() -> None:
    four_weeks = DATASETS["4w"]
    meta = read_meta(APPEND_CSV.with_suffix(".json"))
    db_meta = read_meta(Path(f"{four_weeks.db_path}.json"))
    if APPEND_CSV.is_file() and meta and meta.get("db") == db_meta:
        return
    result = run_phase("append-csv", four_weeks.db_path, APPEND_CSV, SEED)
    APPEND_CSV.with_suffix(".json").write_text(json.dumps({"db": db_meta, **result}, indent=1))


# ---------------------------------------------------------------------------------------------
# Figures


@dataclass
class Figure:
    name: str
    values: list[float]  # one per run (the figure is their median)
    unit: str  # "s", "ms", "MB", "rows/s", "x"
    target: float | None = None
    strict: bool = False  # target is "<" rather than "<="
    ratio_target: float | None = None  # target for the time / yardstick ratio instead

    @property
    def value(self) -> float:
        return statistics.median(self.values)

    @property
    def seconds(self) -> float | None:
        return {"s": self.value, "ms": self.value / 1000}.get(self.unit)

    def meets(self, yardstick: float | None = None) -> bool | None:
        if self.ratio_target is not None:
            return None if not yardstick else self.seconds / yardstick <= self.ratio_target
        if self.target is None:
            return None
        return self.value < self.target if self.strict else self.value <= self.target

    def show(self, v: float) -> str:
        return {
            "s": f"{v:.2f} s",
            "ms": f"{v:.1f} ms",
            "MB": f"{v:,.0f} MB",
            "rows/s": f"{v:,.0f} rows/s",
            "x": f"{v:.2f}",
        }[self.unit]

    def show_target(self) -> str:
        if self.ratio_target is not None:
            return f"≤ {self.ratio_target:g}x yardstick"
        if self.target is None:
            return "—"
        unit = "" if self.unit == "x" else f" {self.unit}"
        return f"{'<' if self.strict else '≤'} {self.target:g}{unit}"


@dataclass
class Bench:
    runs: int
    figures: list[Figure] = field(default_factory=list)

    def add(self, *args, **kwargs) -> Figure:
        figure = Figure(*args, **kwargs)
        self.figures.append(figure)
        return figure

    def repeat(self, label: str, n: int, run) -> list[dict]:
        results = []
        for i in range(n):
            result = run(i)
            results.append(result)
            say(f"  {label} run {i + 1}/{n}: {result['seconds']:.2f} s, peak {result['peak_mb']:,.0f} MB")
        return results

    # --- phases ----------------------------------------------------------------------------

    def yardstick(self) -> Figure:
        one = DATASETS["1x"]
        runs = self.repeat("yardstick", self.runs, lambda i: run_phase("yardstick", one.status_csv))
        return self.add("yardstick: pandas.read_csv(1x store_status.csv)", [r["seconds"] for r in runs], "s")

    def ingest(self) -> None:
        one = DATASETS["1x"]

        def run(i: int) -> dict:
            with scratch_copy() as (db, reports):
                result = run_phase("ingest", one.data_dir, db, reports)
                if not db_ready(one):  # the first run's database becomes the cached one
                    install_db(one, db, result)
            return result

        runs = self.repeat("ingest 1x", self.runs, run)
        one_x = self.add("ingest 1x, 3 files into an empty db: time", [r["seconds"] for r in runs], "s", ratio_target=6)
        self.add(
            "ingest 1x: polls rows/s (status file rows / its time)", [r["poll_rows_per_s"] for r in runs], "rows/s"
        )
        self.add("ingest 1x: peak RSS", [r["peak_mb"] for r in runs], "MB", 600)

        five = DATASETS["5x"]
        with scratch_copy() as (db, reports):
            result = run_phase("ingest", five.data_dir, db, reports, timeout=3600)
            if not db_ready(five):
                install_db(five, db, result)
        say(f"  ingest 5x run 1/1: {result['seconds']:.2f} s, peak {result['peak_mb']:,.0f} MB")
        self.add("ingest 5x, 3 files into an empty db: time (1 run)", [result["seconds"]], "s")
        self.add("ingest 5x: polls rows/s", [result["poll_rows_per_s"]], "rows/s")
        self.add("ingest 5x: peak RSS (1 run)", [result["peak_mb"]], "MB", 600)
        self.add("ingest 5x / 1x (time)", [result["seconds"] / one_x.value], "x", 5.5)
        # For reference: the reading alone (pandas' CSV reader, the status file as text in chunks).
        read = {}
        for label in ("1x", "5x"):
            status_csv = DATASETS[label].data_dir / "store_status.csv"
            read[label] = statistics.median(run_phase("read-text", status_csv)["seconds"] for _ in range(self.runs))
        self.add("reading the status file as text in chunks (part of ingest): 1x", [read["1x"]], "s")
        self.add("reading the status file as text in chunks: 5x / 1x (time)", [read["5x"] / read["1x"]], "x")

    def append(self) -> None:
        def run(i: int) -> dict:
            with scratch_copy(DATASETS["4w"].db_path) as (db, reports):
                return run_phase("append", db, APPEND_CSV, reports)

        runs = self.repeat("append", self.runs, run)
        self.add("append 10,000 polls to the four-week db: time", [r["seconds"] for r in runs], "s", 1)

    def report(
        self, label: str, n: int, time_target=None, mb_target=None, ratio_target=None, periods="", parallel=""
    ) -> Figure:
        ds = DATASETS[label]
        with scratch_copy() as (_, reports):  # read only: runs on the cached database itself
            runs = self.repeat(
                f"report {label}", n, lambda i: run_phase("report", ds.db_path, reports, periods, parallel)
            )
        return self.report_rows(label, runs, time_target, mb_target, ratio_target, periods, parallel)

    def report_rows(
        self, label: str, runs: list[dict], time_target=None, mb_target=None, ratio_target=None, periods="", parallel=""
    ) -> Figure:
        """The time and peak RSS rows of a report's runs."""
        name = (
            {"1x": "report 1x", "4w": "report four weeks", "2x": "report 2x", "5x": "report 5x", "10x": "report 10x"}[
                label
            ]
            + (f" with periods={periods}" if periods else "")
            + (" on one core" if parallel == "1" else "")
        )
        once = " (1 run)" if len(runs) == 1 else ""
        figure = self.add(
            f"{name}: time{once}", [r["seconds"] for r in runs], "s", time_target, ratio_target=ratio_target
        )
        self.add(f"{name}: peak RSS{once}", [r["peak_mb"] for r in runs], "MB", mb_target)
        return figure

    def cores(self, label: str, pairs: int, target: float, **targets) -> tuple[Figure, Figure]:
        """The report on its default threads and on one core, the runs alternating so that load
        from elsewhere on the machine falls on both, and the time ratio taken pair by pair: the
        row shows the median and the spread (lowest-highest) of the pairs' ratios."""
        ds = DATASETS[label]
        both: dict[str, list[dict]] = {"": [], "1": []}
        with scratch_copy() as (_, reports):
            for i in range(pairs):
                for parallel, runs in both.items():
                    runs.append(run_phase("report", ds.db_path, reports, "", parallel))
                    say(
                        f"  report {label} {'on one core' if parallel else f'on {CORES} cores'} run {i + 1}/{pairs}: "
                        f"{runs[-1]['seconds']:.2f} s, peak {runs[-1]['peak_mb']:,.0f} MB"
                    )
        threads = self.report_rows(label, both[""], **targets)
        single = self.report_rows(label, both["1"], parallel="1")
        ratios = [a["seconds"] / b["seconds"] for a, b in zip(both[""], both["1"])]
        spread = f"{min(ratios):.2f}-{max(ratios):.2f}"
        self.add(f"report {label}: {CORES} cores / one core (time; {pairs} pairs, {spread})", ratios, "x", target)
        return threads, single

    def formats(self) -> None:
        """Each report format made from the stored CSV at 1x and 10x: time and peak RSS."""
        for label in ("1x", "10x"):
            ds = DATASETS[label]
            with scratch_copy() as (_, reports):
                csv_path = Path(reports) / "report.csv"
                stores = run_phase("report-csv", ds.db_path, reports, csv_path)["stores"]
                for fmt in ("xlsx", "json", "parquet"):
                    runs = self.repeat(
                        f"{fmt} {label}",
                        1 if label == "10x" else self.runs,
                        lambda i, fmt=fmt, csv_path=csv_path: run_phase("convert", csv_path, fmt, reports),
                    )
                    self.add(f"report {label} ({stores:,} rows) as {fmt}: time", [r["seconds"] for r in runs], "s")
                    self.add(f"report {label} as {fmt}: peak RSS", [r["peak_mb"] for r in runs], "MB", 600)

    def http(self) -> None:
        with scratch_copy(DATASETS["1x"].db_path) as (db, reports):
            say(
                f"  http: gunicorn, default settings (1 worker); {self.runs} timed reports, "
                f"then >= {HTTP_SAMPLES} polls over >= {HTTP_REPORTS} reports"
            )
            result = run_phase("http", db, reports, self.runs, HTTP_SAMPLES, HTTP_REPORTS, timeout=1200)
        say(
            f"  http: trigger -> Complete {', '.join(f'{s:.2f} s' for s in result['complete_s'])}; "
            f"{result['samples']} polls over {result['latency_reports']} reports"
        )
        self.add("http: POST /trigger_report -> Complete (1x)", result["complete_s"], "s", 4)
        n = result["samples"]
        self.add(f"http: GET /get_report while running, p50 (n={n})", [result["latency_p50_ms"]], "ms")
        self.add(
            f"http: GET /get_report while running, p95 (n={n})", [result["latency_p95_ms"]], "ms", 100, strict=True
        )
        if result["worker_peak_mb"]:
            self.add("http: peak RSS of the largest gunicorn worker", [max(result["worker_peak_mb"])], "MB")

    def warm(self) -> None:
        """The hourly loop: append an hour of polls, then a report from a warm serving process."""
        with scratch_copy(DATASETS["1x"].db_path) as (db, reports):
            say(f"  warm: gunicorn, 1 worker; a first report, then {HOURS_AHEAD} x (append an hour, report)")
            result = run_phase("warm", db, reports, HOUR_CSV, timeout=1200)
        say(
            f"  warm: first report {result['cold_s']:.2f} s; "
            f"appends {', '.join(f'{s:.2f} s' for s in result['append_s'])}; "
            f"warm reports {', '.join(f'{s:.2f} s' for s in result['warm_s'])}"
        )
        self.add(
            f"append one hour ({result['rows']:,} polls) to the 1x db: time", result["append_s"], "s", ratio_target=0.1
        )
        self.add(
            "http: warm report after that append, trigger -> Complete (1x, 1 worker)",
            result["warm_s"],
            "s",
            ratio_target=0.5,
        )
        self.add(
            "http: first report of a fresh process, trigger -> Complete (1x, 1 worker)",
            [result["cold_s"]],
            "s",
            ratio_target=1.5,
        )
        self.add("http: warm loop, gunicorn worker peak RSS", [result["worker_peak_mb"]], "MB")

    def triggers(self) -> None:
        """50 identical triggers at once: computed once, so all Complete in about one report's time."""
        with scratch_copy(DATASETS["1x"].db_path) as (db, reports):
            result = run_phase("triggers", db, reports, TRIGGERS, timeout=1200)
        say(
            f"  triggers: one report {result['one_s']:.2f} s; {result['triggers']} identical at once "
            f"{result['seconds']:.2f} s ({result['computed']} computed)"
        )
        self.add(
            f"http: {TRIGGERS} identical concurrent triggers -> all Complete, / one report", [result["ratio"]], "x", 2
        )

    def upload(self) -> None:
        """A 1 GiB upload over HTTP: streamed to disk and parsed in chunks, never held whole."""
        with scratch_copy() as (db, reports):
            result = run_phase("upload", db, reports, DATASETS["1x"].status_csv, UPLOAD_MB, timeout=3600)
        say(
            f"  upload: {result['bytes'] / 2**20:,.0f} MiB, {result['rows_read']:,} rows in {result['seconds']:.1f} s; "
            f"worker peak {result['worker_peak_mb']:,.0f} MB"
        )
        self.add(f"http: {UPLOAD_MB:,} MiB text/csv upload to /ingest/status: time", [result["seconds"]], "s")
        self.add(f"http: {UPLOAD_MB:,} MiB upload: gunicorn worker peak RSS", [result["worker_peak_mb"]], "MB", 400)

    def dashboard(self) -> None:
        """Timeline JSON, store page and report page over HTTP on the 1x database (run once)."""
        with scratch_copy(DATASETS["1x"].db_path) as (db, reports):
            result = run_phase("dashboard", db, reports, DASHBOARD_STORES, timeout=1200)
        say(
            f"  dashboard: timeline p50 {result['timeline_p50_ms']:.1f} ms over {result['stores']} stores; "
            f"report page p50 {result['report_page_p50_ms']:.1f} ms"
        )
        n = result["stores"]
        self.add(f"dashboard: GET /stores/<id>/timeline (1x), p50 (n={n})", [result["timeline_p50_ms"]], "ms")
        self.add(
            f"dashboard: GET /stores/<id>/timeline (1x), p95 (n={n})",
            [result["timeline_p95_ms"]],
            "ms",
            200,
            strict=True,
        )
        self.add(f"dashboard: store page (1x), p95 (n={n})", [result["store_page_p95_ms"]], "ms")
        self.add(
            "dashboard: report page, first request (parses the 14,000-row CSV)",
            [result["report_page_first_ms"]],
            "ms",
            500,
            strict=True,
        )
        self.add(
            "dashboard: report page sorted / filtered / paged, p95 (n=30)",
            [result["report_page_p95_ms"]],
            "ms",
            500,
            strict=True,
        )

    def postgresql(self) -> None:
        """PostgreSQL beside SQLite, in the same run on the same data: ingest 1x, report 1x, the
        hourly loop (append an hour, warm report) and the 10,000-poll append. SQLite and
        PostgreSQL runs alternate, and each ratio is taken run by run (PostgreSQL's time over
        the SQLite run next to it), so load from elsewhere on the machine falls on both."""
        server = os.environ.get("STOREMON_BENCH_POSTGRES_URL") or os.environ.get("STOREMON_TEST_POSTGRES_URL")
        if not server:
            say("  postgresql: skipped (no server; `make bench` starts one via scripts/with-postgres.sh)")
            return
        one = DATASETS["1x"]
        names = [f"storemon_bench_{uuid.uuid4().hex[:8]}" for _ in range(self.runs)]
        urls = [run_phase("pg-admin", "create", server, name)["url"] for name in names]

        def side_by_side(label: str, sqlite_run, pg_run, pairs: int = self.runs) -> tuple[list[dict], list[dict]]:
            lite, pg = [], []
            for i in range(pairs):
                for side, run, out in (("SQLite", sqlite_run, lite), ("PostgreSQL", pg_run, pg)):
                    out.append(run(i))
                    say(
                        f"  {label} {side} run {i + 1}/{pairs}: {out[-1]['seconds']:.2f} s, "
                        f"peak {out[-1]['peak_mb']:,.0f} MB"
                    )
            return lite, pg

        def rows(name: str, lite: list[float], pg: list[float], ratio: float, pg_target: float | None = None) -> None:
            self.add(f"PostgreSQL vs SQLite, {name}: SQLite", lite, "s")
            self.add(f"PostgreSQL vs SQLite, {name}: PostgreSQL", pg, "s", pg_target)
            ratios = [p / s for p, s in zip(pg, lite)]
            spread = f"{len(ratios)} pairs, {min(ratios):.2f}-{max(ratios):.2f}"
            self.add(f"PostgreSQL vs SQLite, {name}: PostgreSQL / SQLite ({spread})", ratios, "x", ratio)

        def ingest_sqlite(i: int) -> dict:
            with scratch_copy() as (db, reports):
                return run_phase("ingest", one.data_dir, db, reports)

        try:
            with scratch_copy() as (_, reports):
                lite, pg = side_by_side(
                    "ingest 1x", ingest_sqlite, lambda i: run_phase("ingest", one.data_dir, urls[i], reports)
                )
                seconds = [r["seconds"] for r in lite], [r["seconds"] for r in pg]
                rows("ingest 1x, 3 files into an empty db", *seconds, 1.5)
                self.add("PostgreSQL: ingest 1x: peak RSS", [r["peak_mb"] for r in pg], "MB", 600)
                # The first report on a database just loaded (the server's cache cold) is timed
                # on its own, then the reports side by side on that database, as SQLite's on its
                # cached one.
                first = run_phase("report", urls[0], reports)
                say(f"  report 1x PostgreSQL, first read after the load: {first['seconds']:.2f} s")
                self.add("PostgreSQL: report 1x, first read after the load: time", [first["seconds"]], "s")
                lite, pg = side_by_side(
                    "report 1x",
                    lambda i: run_phase("report", one.db_path, reports),
                    lambda i: run_phase("report", urls[0], reports),
                    pairs=PG_REPORT_PAIRS,
                )
                rows("report 1x", [r["seconds"] for r in lite], [r["seconds"] for r in pg], 1.25)
                self.add("PostgreSQL: report 1x: peak RSS", [r["peak_mb"] for r in pg], "MB", 500)

            def warm_sqlite(i: int) -> dict:
                with scratch_copy(one.db_path) as (db, reports):
                    return run_phase("warm", db, reports, HOUR_CSV, timeout=1200)

            def warm_pg(i: int) -> dict:
                with scratch_copy() as (_, reports):
                    return run_phase("warm", urls[i], reports, HOUR_CSV, timeout=1200)

            lite, pg = side_by_side("hourly loop (warm report)", warm_sqlite, warm_pg)
            # Each run appends HOURS_AHEAD hours: pair them hour by hour.
            rows(
                f"append one hour ({lite[0]['rows']:,} polls) to the 1x db",
                [s for r in lite for s in r["append_s"]],
                [s for r in pg for s in r["append_s"]],
                2,
            )
            rows(
                "warm report after that append (http, 1 worker)",
                [s for r in lite for s in r["warm_s"]],
                [s for r in pg for s in r["warm_s"]],
                1.5,
            )
            with scratch_copy() as (_, reports):
                runs = self.repeat(
                    "postgresql append", self.runs, lambda i: run_phase("append", urls[i], APPEND_CSV, reports)
                )
            seconds = [r["seconds"] for r in runs]
            self.add("PostgreSQL: append 10,000 polls to the 1x db (after the hours): time", seconds, "s", 1)
        finally:
            for name in names:
                run_phase("pg-admin", "drop", server, name)


# ---------------------------------------------------------------------------------------------
# Output


def table(figures: list[Figure], yardstick: Figure) -> str:
    rows = [("figure", "measured", "ratio to yardstick", "target", "meets")]
    for f in figures:
        ratio = "—" if f.seconds is None else f.seconds / yardstick.value
        ratio = ratio if ratio == "—" else f"{ratio:.2f}" if ratio >= 0.1 else f"{ratio:.2g}"
        meets = {True: "yes", False: "no", None: "—"}[f.meets(yardstick.value)]
        rows.append((f.name, f.show(f.value), ratio, f.show_target(), meets))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = []
    for k, row in enumerate(rows):
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("| " + " | ".join(cells) + " |")
        if k == 0:
            lines.append("|" + "|".join("-" * (w + 1) + ("-" if i == 0 else ":") for i, w in enumerate(widths)) + "|")
    return "\n".join(lines)


def machine() -> list[tuple[str, str]]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
        platform.processor() or "unknown",
    )
    meminfo = Path("/proc/meminfo").read_text()
    mem_kb = int(next(line.split()[1] for line in meminfo.splitlines() if line.startswith("MemTotal:")))
    os_name = platform.platform()
    release = Path("/etc/os-release")
    if release.is_file():
        pretty = [
            line.split("=", 1)[1].strip('"')
            for line in release.read_text().splitlines()
            if line.startswith("PRETTY_NAME=")
        ]
        os_name = f"{pretty[0]}, Linux {platform.release()}" if pretty else os_name
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    versions = ", ".join(f"{p} {metadata.version(p)}" for p in ("pandas", "numpy", "SQLAlchemy", "Flask", "gunicorn"))
    return [
        ("CPU", f"{model} — {os.cpu_count()} logical cores ({usable} usable)"),
        ("Memory", f"{mem_kb / 1024 / 1024:.1f} GiB"),
        ("OS", os_name),
        ("Python", f"{platform.python_version()} ({sys.executable})"),
        ("Libraries", f"{versions}, SQLite {sqlite3.sqlite_version}"),
        ("Date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
    ]


def all_runs(bench: Bench) -> str:
    """Every run of each figure measured more than once, one line per figure."""
    return "\n".join(
        f"- {f.name}: " + ", ".join(f.show(v) for v in f.values) for f in bench.figures if len(f.values) > 1
    )


def write_results(bench: Bench, text: str, elapsed: float) -> None:
    info = "\n".join(f"- **{k}:** {v}" for k, v in machine())
    details = all_runs(bench)
    RESULTS_MD.write_text(f"""# storemon benchmark results

Written by `make bench` (`python -m bench`); this run took {elapsed / 60:.1f} min in all.

## Machine

{info}

## Results

{text}

- Each figure is the median of {bench.runs} runs (`BENCH_RUNS`), each run a fresh Python process;
  the 5x report is run once. Peak RSS is that process's `ru_maxrss` (imports included).
- "ratio to yardstick": the time divided by the yardstick, a plain `pandas.read_csv` of the 1x
  `store_status.csv` (1.85M rows) measured in the same run, to compare machines.
- Data: `storemon.demo.generate_demo_data(seed={SEED})`; 1x = 14,000 stores x 8 days, 2x = 28,000 x 8,
  5x = 70,000 x 8, 10x = 140,000 x 8, four weeks = 14,000 x 29 (same end instant as 1x).
- Targets marked "x yardstick" apply to the time / yardstick ratio of the same run.
- ingest: `ingest_files` of the three 1x (and, once, 5x) files into an empty SQLite database;
  rows/s is the status file's rows over the status file's own time. "reading ... as text":
  `pandas.read_csv` of the status file, all text, 250,000 rows at a time -- the first step of an
  ingest and nothing else, to show how much of the ingest's growth from 1x to 5x is the reading's.
- append: `ingest_file(engine, "status", ...)` of 10,000 polls (existing stores, an hour after
  the last poll) into a copy of the four-week database.
- report: `build_report(engine, cache=...)` on the cached databases, as a serving process's first
  report (batches of `REPORT_BATCH_STORES`, kept when they fit `REPORT_CACHE_POLLS`: at 1x and 2x,
  not at 5x or 10x); CSV writing not included. 5x and 10x run once each.
- warm: gunicorn with 1 worker on a copy of the 1x database: a first report (trigger -> Complete,
  polled every 20 ms), then {HOURS_AHEAD} times: an hour of polls (one per store, 14,000) appended by
  `ingest_file` from another process (timed: "append one hour"), and a report triggered and polled
  until Complete (timed: "warm report"; the worker reads only what changed since its last report).
- http: gunicorn (`gunicorn.conf.py`, its default settings: 1 worker process, 8 threads) on a
  copy of the 1x database; time from POST /trigger_report until a GET /get_report (polled every
  20 ms) answers Complete (the first run computes, the next two reuse it: nothing was ingested
  between); then reports
  triggered back to back, each as of a different minute (so each is computed), each polled in a
  tight sequential loop while it runs: latency of the "Running" answers.
- triggers: on a copy of the 1x database, one report timed alone, then 50 threads each POST the
  same /trigger_report (an `as_of` an hour before the last poll) at once; time until all 50 ids
  answer Complete, divided by the one report's time. Identical reports are computed once.
- upload: a 1,023 MiB text/csv body (the 1x polls file repeated, so most rows repeat a key)
  POSTed to /ingest/status of a one-worker gunicorn on an empty database; the worker's VmHWM.
- dashboard: the same gunicorn on a copy of the 1x database, one request at a time:
  `GET /stores/<id>/timeline` and the store page for {DASHBOARD_STORES} random stores, then one report and its
  report page -- the first two requests (each worker parses the CSV) and 30 pages sorted,
  filtered and paged differently.

## All runs

{details}
""")


def _terminate(signum, _frame):
    raise SystemExit(128 + signum)  # unwind: stop the running phase, remove scratch copies


def main(argv: list[str]) -> int:
    phases = ["ingest", "append", "report", "formats", "warm", "http", "dashboard", "triggers", "upload", "postgresql"]
    chosen = [p for p in phases if p in argv] if argv else phases
    unknown = set(argv) - set(phases)
    if unknown or RUNS < 1:
        say(f"usage: python -m bench [{' '.join(phases)}]  (default: all; BENCH_RUNS >= 1)")
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    started = time.perf_counter()
    shutil.rmtree(SCRATCH, ignore_errors=True)
    SCRATCH.mkdir(parents=True)
    bench = Bench(RUNS)
    try:
        say("preparing data (cached in bench/cache/)")
        needed = {"1x"}  # the yardstick reads the 1x polls file
        needed |= {"4w"} if {"append", "postgresql"} & set(chosen) else set()
        needed |= {"5x"} if "ingest" in chosen else set()
        needed |= set(DATASETS) if "report" in chosen else set()
        needed |= {"10x"} if "formats" in chosen else set()
        for label in DATASETS:
            if label in needed:
                ensure_data(DATASETS[label])
        say("measuring")
        yardstick = bench.yardstick()
        if "ingest" in chosen:
            bench.ingest()
        prepare = ["4w"] if "append" in chosen else []
        prepare += ["1x", "4w", "2x", "5x", "10x"] if "report" in chosen else []
        prepare += ["1x"] if {"http", "warm", "dashboard", "triggers"} & set(chosen) else []
        prepare += ["1x", "10x"] if "formats" in chosen else []
        if prepare:
            say("preparing databases")
            for label in dict.fromkeys(prepare):
                ensure_db(DATASETS[label])
        if "append" in chosen:
            ensure_append_csv()
            bench.append()
        if "report" in chosen:
            one, _ = bench.cores("1x", CORE_PAIRS_1X, 0.7, mb_target=500, ratio_target=1.5)
            four = bench.report("4w", RUNS)
            bench.add("report four weeks / one week (1x)", [four.value / one.value], "x", 1.2)
            month = bench.report("4w", RUNS, mb_target=600, periods="30d")
            bench.add("report four weeks: periods=30d / without (time)", [month.value / four.value], "x", 4)
            bench.report("2x", RUNS)
            five = bench.report("5x", RUNS_5X, mb_target=600)
            bench.add("report 5x / 1x (time)", [five.value / one.value], "x", 5.5)
            ten, _ = bench.cores("10x", CORE_PAIRS_10X, 0.6, mb_target=600)
            bench.add("report 10x / 1x (time)", [ten.value / one.value], "x", 11)
        if "formats" in chosen:
            bench.formats()
        if "warm" in chosen:
            ensure_hour_csvs()
            bench.warm()
        if "http" in chosen:
            bench.http()
        if "dashboard" in chosen:
            bench.dashboard()
        if "triggers" in chosen:
            bench.triggers()
        if "upload" in chosen:
            bench.upload()
        if "postgresql" in chosen:
            ensure_db(DATASETS["1x"])  # SQLite's side, and the hour files are drawn from it
            ensure_db(DATASETS["4w"])  # the append file is drawn from it
            ensure_hour_csvs()
            ensure_append_csv()
            bench.postgresql()
    except PhaseError as err:
        say(f"\nFAILED: {err}")
        return 1
    except KeyboardInterrupt:
        say("\ninterrupted")
        return 130
    finally:
        shutil.rmtree(SCRATCH, ignore_errors=True)
    elapsed = time.perf_counter() - started
    text = table(bench.figures, yardstick)
    missed = [f.name for f in bench.figures if f.meets(yardstick.value) is False]
    say("\n" + text + "\n")
    written = ""
    if chosen == phases:  # a partial run does not replace the full results
        write_results(bench, text, elapsed)
        written = f" Written to {RESULTS_MD.relative_to(ROOT)}."
    else:  # ... it shows every run instead
        say("All runs:\n" + all_runs(bench) + "\n")
    say(
        f"{len(missed)} target(s) missed"
        + (": " + "; ".join(missed) if missed else "")
        + f". Total {elapsed / 60:.1f} min.{written}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
