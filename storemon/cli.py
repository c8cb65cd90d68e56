"""``flask --app storemon ...`` commands: thin wrappers over plain functions."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from .extensions import db
from .ingest import IngestError, ingest_files


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


@click.command("ingest")
@click.argument("folder", required=False, type=click.Path(exists=True, file_okay=False))
@click.option("--status", "status", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="A store-status (polls) CSV. Repeatable.")
@click.option("--hours", "hours", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="A business-hours CSV. Repeatable.")
@click.option("--timezones", "timezones", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="A time-zones CSV. Repeatable.")
@click.option("--strict", is_flag=True, help="Refuse a whole file if any row is unreadable.")
@with_appcontext
def ingest_command(folder, status, hours, timezones, strict):
    """Load the CSV feeds in FOLDER and/or the files named by options (one transaction per file)."""
    try:
        summary = ingest_files(
            db.engine,
            folder,
            status=status,
            hours=hours,
            timezones=timezones,
            strict=strict,
            chunk_rows=current_app.config["INGEST_CHUNK_ROWS"],
            progress_factory=_progress_factory(),
        )
    except IngestError as exc:
        raise click.ClickException(str(exc)) from exc
    for file_summary in summary.files:
        click.echo(file_summary.describe())


@click.command("demo-data")
@click.option("--stores", default=14_000, show_default=True, help="Number of stores.")
@click.option("--days", default=8, show_default=True, help="Days of polls.")
@click.option("--seed", default=0, show_default=True, help="Random seed (same seed, same files).")
@click.option("--out", "out", default="data", show_default=True, type=click.Path(file_okay=False),
              help="Folder to write store_status.csv, menu_hours.csv and timezones.csv into.")
@with_appcontext
def demo_data_command(stores, days, seed, out):
    """Generate demo CSVs shaped like the real feeds."""
    from .demo import generate_demo_data

    result = generate_demo_data(out, stores=stores, days=days, seed=seed)
    click.echo(
        f"wrote {result.polls:,} polls, {result.hours_rows:,} business-hours rows and "
        f"{result.timezone_rows:,} time zones for {result.stores:,} stores to {result.out_dir}"
    )


@click.command("report")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="CSV file to write.")
@click.option("--as-of", "as_of", default=None,
              help="Report as of this UTC instant (polls after it are ignored); default: the latest poll.")
@with_appcontext
def report_command(out, as_of):
    """Compute the uptime/downtime report synchronously and write it as CSV."""
    from .reports import NoPollsError, build_report, parse_instant, write_csv

    try:
        as_of_us = parse_instant(as_of) if as_of else None
        started = time.perf_counter()
        result = build_report(db.engine, as_of_us)
    except (ValueError, NoPollsError) as exc:
        raise click.ClickException(str(exc)) from exc
    path = write_csv(result.frame, out)
    now = pd.Timestamp(result.now_us, unit="us", tz="UTC")
    click.echo(
        f"wrote {result.store_count:,} stores to {path} (now = {now.isoformat()}) "
        f"in {time.perf_counter() - started:.2f} s"
    )


@click.command("explain")
@click.argument("store_id")
@click.option("--as-of", "as_of", default=None,
              help="Explain the store as of this UTC instant (as the report would); default: the latest poll.")
@click.option("--json", "as_json", is_flag=True, help="Print the timeline JSON (as GET /stores/<id>/timeline).")
@with_appcontext
def explain_command(store_id, as_of, as_json):
    """Explain one store's report row: its hours, polls, segments, figures and notes."""
    import json

    from .explain import UnknownStoreError, load_timeline
    from .reports import NoPollsError, parse_instant

    try:
        timeline = load_timeline(db.engine, store_id, parse_instant(as_of) if as_of else None)
    except (ValueError, NoPollsError, UnknownStoreError) as exc:
        raise click.ClickException(str(exc).strip('"')) from exc
    click.echo(json.dumps(timeline.to_dict(), indent=1) if as_json else timeline.to_text())


def register(app: Flask) -> None:
    app.cli.add_command(ingest_command)
    app.cli.add_command(report_command)
    app.cli.add_command(demo_data_command)
    app.cli.add_command(explain_command)
