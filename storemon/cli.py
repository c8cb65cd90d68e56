"""``flask --app storemon ...`` commands: thin wrappers over plain functions."""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from sqlalchemy.engine import make_url

from . import formats, storage
from .config import DEFAULT_DEMO_DIR, report_parallelism
from .extensions import db
from .ingest import IngestBusy, IngestReadOnly, NoSpecialDate, ingest_files, remove_special_date, special_dates
from .parse import IngestError, quote
from .times import format_clock, format_date

EX_TEMPFAIL = 75  # sysexits.h: a temporary failure, try again later (another ingest is running)


def _progress_factory():
    """A progress bar per big file when stdout is a terminal; nothing otherwise."""
    if not sys.stdout.isatty():
        return None

    def factory(kind: str, path: Path):
        size = path.stat().st_size
        if size < 5_000_000:
            return None
        bar = click.progressbar(length=size, label=f"{kind} {path.name}", show_percent=True)
        bar.__enter__()
        state = {"done": 0}

        def update(done: int, total: int) -> None:
            bar.update(done - state["done"])
            state["done"] = done
            if done >= total:
                bar.__exit__(None, None, None)

        return update

    return factory


# The ingest command's file options, one per feed: (option, what the file is). Each is
# repeatable and becomes the keyword of ingest_files named like the option.
FEED_OPTIONS = (
    ("--status", "A store-status (polls) CSV."),
    ("--hours", "A business-hours CSV."),
    ("--timezones", "A time-zones CSV."),
    ("--special", "A special-hours CSV (hours or closures of single dates)."),
)


def _feed_options(command):
    for option, text in reversed(FEED_OPTIONS):  # applied last to first: --help lists them in order
        command = click.option(
            option,
            option.lstrip("-"),
            multiple=True,
            type=click.Path(exists=True, dir_okay=False),
            help=f"{text} Repeatable.",
        )(command)
    return command


@click.command("ingest")
@click.argument("folder", required=False, type=click.Path(exists=True, file_okay=False))
@_feed_options
@click.option("--strict", is_flag=True, help="Refuse a whole file if any row is unreadable.")
@click.option(
    "--force",
    is_flag=True,
    help="Apply files again even if the ingest ledger shows their content was already ingested.",
)
@with_appcontext
def ingest_command(folder, strict, force, **files):
    """Load the CSV feeds in FOLDER and/or the files named by options (one transaction per file).

    A file whose content was already ingested is skipped (see `flask ingests`) unless --force.
    Exit status 75 when another ingest holds the database for longer than INGEST_WAIT_SECONDS.
    """
    config = current_app.config

    def report(file_summary) -> None:
        click.echo(file_summary.describe())

    try:
        ingest_files(
            db.engine,
            folder,
            **files,
            strict=strict,
            force=force,
            chunk_rows=config["INGEST_CHUNK_ROWS"],
            progress_factory=_progress_factory(),
            max_line_bytes=config["MAX_LINE_BYTES"],
            wait_seconds=config["INGEST_WAIT_SECONDS"],
            on_file=report,
        )
    except IngestBusy as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EX_TEMPFAIL)
    except (IngestError, IngestReadOnly) as exc:
        raise click.ClickException(str(exc)) from exc


@click.command("ingests")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000), help="Rows to show.")
@with_appcontext
def ingests_command(limit):
    """List the ingest ledger, newest first: every file offered, and what came of it."""
    from .times import format_datetime

    with db.engine.connect() as conn:
        rows = storage.ledger_list(conn, limit=limit)
    if not rows:
        click.echo("no ingests yet")
        return
    for row in rows:
        when = format_datetime(row["finished_at"])
        line = (
            f"#{row['id']:<5} {when}  {row['source']:4} {row['kind']:9} {row['outcome']:9} "
            f"{row['file_name']}  {row['size']:,} B  {row['rows_read']:,} read, {row['rows_stored']:,} stored, "
            f"{row['rows_skipped']:,} skipped  sha256 {row['sha256'][:12]}"
        )
        click.echo(line)
        if row["message"]:
            click.echo(f"       {row['message']}")


@click.command("special-hours")
@click.argument("store_id")
@click.argument("date", required=False)
@click.option("--remove", is_flag=True, help="Remove the store's special hours on DATE: its weekly hours apply again.")
@with_appcontext
def special_hours_command(store_id, date, remove):
    """List STORE_ID's special dates (hours or closed, and the file each came from); with
    --remove, remove its special hours on DATE (YYYY-MM-DD), recorded in the ingest ledger."""

    def hours(start_s: int, end_s: int) -> str:
        return "closed" if start_s < 0 else f"{format_clock(start_s)}-{format_clock(end_s)}"

    if not remove:
        if date is not None:
            raise click.UsageError("DATE is only given with --remove (the list shows every date)")
        rows = special_dates(db.engine, store_id)
        if not len(rows):
            click.echo(f"store {quote(store_id)!r} has no special hours: its weekly hours apply every date")
            return
        click.echo(f"store {quote(store_id)!r}: {rows['date'].nunique():,} special date(s)")
        for row in rows.itertuples(index=False):
            click.echo(f"{format_date(row.date)}  {hours(row.start_s, row.end_s):17}  {quote(row.source)}")
        return
    if date is None:
        raise click.UsageError("--remove needs the DATE to remove (YYYY-MM-DD)")
    try:
        done = remove_special_date(
            db.engine, store_id, date, source="cli", wait_seconds=current_app.config["INGEST_WAIT_SECONDS"]
        )
    except IngestBusy as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EX_TEMPFAIL)
    except ValueError as exc:
        raise click.ClickException(f"date: {exc}") from exc
    except (NoSpecialDate, IngestReadOnly) as exc:
        raise click.ClickException(str(exc)) from exc
    what = ", ".join(f"{hours(r.start_s, r.end_s)} ({quote(r.source)})" for r in done.removed.itertuples(index=False))
    click.echo(
        f"removed the special hours of store {quote(store_id)!r} on {done.date}: {what}; its weekly hours apply "
        f"again (ledger #{done.ledger_id})"
    )


@click.command("demo-data")
@click.option("--stores", default=14_000, show_default=True, type=click.IntRange(min=1), help="Number of stores.")
@click.option("--days", default=8, show_default=True, type=click.IntRange(min=1), help="Days of polls.")
@click.option("--seed", default=0, show_default=True, help="Random seed (same seed, same files).")
@click.option(
    "--out",
    "out",
    default=str(DEFAULT_DEMO_DIR),
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder to write store_status.csv, menu_hours.csv and timezones.csv into.",
)
@click.option(
    "--if-changed",
    is_flag=True,
    help="Keep OUT when it already holds demo data made with these parameters. When they differ, "
    "regenerate it and empty the database it was made for, so two demos never mix.",
)
@with_appcontext
def demo_data_command(stores, days, seed, out, if_changed):
    """Generate demo CSVs shaped like the real feeds (and record their parameters in demo.json)."""
    from .demo import generate_demo_data, is_complete, read_stamp, write_stamp

    wanted = {"stores": stores, "days": days, "seed": seed}
    # The database this demo is made for (password hidden): the one `make run` then loads it into.
    database = make_url(current_app.config["DATABASE_URL"]).render_as_string(hide_password=True)
    old = read_stamp(out)
    if if_changed and old is not None:
        if {key: old.get(key) for key in wanted} == wanted and is_complete(out):
            click.echo(f"demo data in {out} is up to date ({stores} stores x {days} days, seed {seed})")
            return
        if old.get("database") == database:
            storage.empty_database()
            click.echo(
                f"demo parameters changed ({old.get('stores')} stores x {old.get('days')} days -> "
                f"{stores} x {days}): emptied the database {database}, which held the previous demo"
            )
    result = generate_demo_data(out, stores=stores, days=days, seed=seed)
    write_stamp(out, {**wanted, "database": database})
    click.echo(
        f"wrote {result.polls:,} polls, {result.hours_rows:,} business-hours rows and "
        f"{result.timezone_rows:,} time zones for {result.stores:,} stores to {result.out_dir}"
    )


@click.command("reset")
@click.option(
    "--demo-dir",
    default=str(DEFAULT_DEMO_DIR),
    show_default=True,
    type=click.Path(file_okay=False),
    help="The demo data folder to remove (only if `demo-data` made it: it holds demo.json).",
)
@click.confirmation_option(prompt="Remove the database, the report files and the demo data?")
@with_appcontext
def reset_command(demo_dir):
    """Start over: remove the database, the report files in REPORTS_DIR and the demo data.

    A SQLite database file is deleted; any other database has storemon's tables dropped. Your
    own feeds (the CSV files in data/) are never touched. Stop the server first.
    """
    from .demo import STAMP_NAME

    click.echo(f"removed the database: {storage.remove_database()}")
    reports = sorted(
        path
        for path in Path(current_app.config["REPORTS_DIR"]).glob("report_*.*")
        if path.suffix.lstrip(".") in formats.FORMATS
    )
    for path in reports:
        path.unlink()
    click.echo(f"removed {len(reports)} report file(s) from {current_app.config['REPORTS_DIR']}")
    demo = Path(demo_dir)
    if (demo / STAMP_NAME).is_file():
        shutil.rmtree(demo)
        click.echo(f"removed {demo}")
    elif demo.exists():
        click.echo(f"left {demo}: it has no {STAMP_NAME}, so it is not demo data made by `demo-data`")


PERIODS_HELP = "Extra periods, e.g. 30d,2h: two more columns each (hours), after the standard seven."


@click.command("report")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(dir_okay=False),
    help="File to write; its extension picks the format (.csv, .xlsx, .json, .parquet; else CSV).",
)
@click.option(
    "--format",
    "fmt",
    default=None,
    type=click.Choice(list(formats.FORMATS), case_sensitive=False),
    help="The format, whatever the file's extension.",
)
@click.option(
    "--as-of",
    "as_of",
    default=None,
    help="Report as of this UTC instant (polls after it are ignored); default: the latest poll.",
)
@click.option("--periods", default=None, help=PERIODS_HELP)
@with_appcontext
def report_command(out, fmt, as_of, periods):
    """Compute the uptime/downtime report synchronously and write it (CSV unless asked otherwise)."""
    from .compute import report_windows
    from .reports import NoPollsError, build_report, write_csv
    from .times import format_instant, parse_instant

    chosen = formats.FORMATS[fmt.lower()] if fmt else formats.from_extension(out)
    try:
        as_of_us = parse_instant(as_of) if as_of else None
        windows = report_windows(periods)
        started = time.perf_counter()
        threads, batch_stores = report_parallelism(current_app.config)
        result = build_report(db.engine, as_of_us, batch_stores=batch_stores, windows=windows, parallel=threads)
    except (ValueError, NoPollsError) as exc:
        raise click.ClickException(str(exc)) from exc
    if chosen is formats.CSV:
        path = write_csv(result.frame, out)
    else:
        with tempfile.TemporaryDirectory(dir=Path(out).resolve().parent) as folder:
            about = formats.About(
                report_id=None,
                now=format_instant(result.now_us),
                rows=result.store_count,
                as_of=format_instant(as_of_us) if as_of_us is not None else None,
                periods=", ".join(w.name for w in windows),
                data_version=result.data_version,
                generated_at=format_instant(time.time_ns() // 1000),
            )
            path = formats.convert(write_csv(result.frame, Path(folder) / "report.csv"), chosen, out, about)
    click.echo(
        f"wrote {result.store_count:,} stores to {path}{'' if chosen is formats.CSV else ' as ' + chosen.name} "
        f"(now = {format_instant(result.now_us)}) "
        f"in {time.perf_counter() - started:.2f} s"
    )
    if result.warning:
        click.echo(f"warning: {result.warning}")


@click.command("explain")
@click.argument("store_id")
@click.option(
    "--as-of",
    "as_of",
    default=None,
    help="Explain the store as of this UTC instant (as the report would); default: the latest poll.",
)
@click.option("--periods", default=None, help=PERIODS_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the timeline JSON (as GET /stores/<id>/timeline).")
@with_appcontext
def explain_command(store_id, as_of, periods, as_json):
    """Explain one store's report row: its hours, polls, segments, figures and notes."""
    import json

    from .explain import UnknownStoreError, load_timeline
    from .reports import NoPollsError
    from .times import parse_instant

    try:
        timeline = load_timeline(db.engine, store_id, parse_instant(as_of) if as_of else None, periods)
    except (ValueError, NoPollsError, UnknownStoreError) as exc:
        raise click.ClickException(str(exc).strip('"')) from exc
    click.echo(json.dumps(timeline.to_dict(), indent=1) if as_json else timeline.to_text())


def register(app: Flask) -> None:
    app.cli.add_command(ingest_command)
    app.cli.add_command(ingests_command)
    app.cli.add_command(special_hours_command)
    app.cli.add_command(report_command)
    app.cli.add_command(demo_data_command)
    app.cli.add_command(reset_command)
    app.cli.add_command(explain_command)
