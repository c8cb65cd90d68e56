"""The report (storemon/reports.py): read from the database and equal to the one computed in
memory and to the brute force (tests/bruteforce.py), on SQLite and PostgreSQL; `flask report`;
the CSV it writes; and reports of feeds uploaded over HTTP, against the brute force and figures
worked out by hand."""

from __future__ import annotations

import csv
import threading

import numpy as np
import pandas as pd
import pytest
from bruteforce import brute_force_report, report_csv
from helpers import REAL_SAMPLE, fetch_report, postgres_database, random_stores, upload, write_csv

from storemon import storage
from storemon.compute import REPORT_COLUMNS, report_from_frames
from storemon.extensions import db
from storemon.ingest import ingest_file, ingest_files
from storemon.reports import _even_batches, build_report
from storemon.reports import write_csv as write_report
from storemon.times import to_us

HEADER = ",".join(REPORT_COLUMNS)


def load(engine, tmp_path, polls, hours, zones):
    folder = tmp_path / "feeds"
    folder.mkdir(exist_ok=True)
    polls = polls.assign(timestamp_utc=pd.to_datetime(polls["timestamp_utc"]).dt.strftime("%Y-%m-%d %H:%M:%S.%f UTC"))
    polls.to_csv(folder / "store_status.csv", index=False)
    hours.to_csv(folder / "menu_hours.csv", index=False)
    zones.to_csv(folder / "timezones.csv", index=False)
    ingest_files(engine, folder)


@pytest.mark.parametrize("seed", [11, 12])
def test_database_report_equals_the_in_memory_one_with_long_history(engine, tmp_path, seed):
    """The loader reads the week plus a day and looks further back only where needed; the
    result must equal the computation over the whole history in memory."""
    now = "2023-03-13 05:00:00Z"
    rng = np.random.default_rng(seed)
    polls, hours, zones = random_stores(rng, 60, now)
    polls = polls.drop_duplicates(["store_id", "timestamp_utc"], keep="last")
    # Some stores only polled long ago, some only inside far-back business hours.
    old = pd.DataFrame(
        {
            "store_id": ["old1", "old2"],
            "status": ["inactive", "active"],
            "timestamp_utc": [pd.Timestamp("2023-01-02 12:00"), pd.Timestamp("2022-11-20 03:00")],
        }
    )
    polls = pd.concat([polls, old], ignore_index=True)
    load(engine, tmp_path, polls, hours, zones)
    expected = report_from_frames(polls, hours, zones, now=now)
    got = build_report(engine, to_us(now)).frame
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected.reset_index(drop=True))
    assert {"old1", "old2"} <= set(got["store_id"])


def test_cli_report_writes_the_csv(runner, engine, tmp_path):
    write_csv(
        tmp_path / "store_status.csv",
        "store_id,status,timestamp_utc\n"
        "007,active,2023-01-23 10:14:00 UTC\n"
        "007,inactive,2023-01-23 11:15:00 UTC\n"
        "9204962793113048005,active,2023-01-23 12:00:00 UTC\n",
    )
    write_csv(tmp_path / "menu_hours.csv", "store_id,day,start_time_local,end_time_local\n007,0,09:00,12:00\n")
    write_csv(tmp_path / "timezones.csv", "store_id,timezone_str\n007,UTC\n")
    assert runner.invoke(args=["ingest", str(tmp_path)]).exit_code == 0
    out = tmp_path / "out" / "report.csv"
    result = runner.invoke(args=["report", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "wrote 2 stores" in result.output and "(now = 2023-01-23T12:00:00Z)" in result.output
    assert "warning" not in result.output
    assert out.read_text() == (
        f"{HEADER}\n007,0.00,1.74,1.74,60.00,1.26,1.26\n9204962793113048005,60.00,24.00,168.00,0.00,0.00,0.00\n"
    )
    # --as-of: polls after it are ignored; 11:00 is before the inactive poll and the other store.
    result = runner.invoke(args=["report", "--out", str(out), "--as-of", "2023-01-23 11:00:00 UTC"])
    assert result.exit_code == 0, result.output
    # Week window from Mon 16th 11:00: that Monday 11-12 plus today 09-11 = 3 h.
    assert out.read_text() == f"{HEADER}\n007,60.00,2.00,3.00,0.00,0.00,0.00\n"


def test_cli_report_errors_are_clear(runner, tmp_path):
    out = tmp_path / "r.csv"
    result = runner.invoke(args=["report", "--out", str(out)])
    assert result.exit_code != 0 and "no polls in the database yet" in result.output
    result = runner.invoke(args=["report", "--out", str(out), "--as-of", "next tuesday"])
    assert result.exit_code != 0 and "cannot read 'next tuesday'" in result.output
    result = runner.invoke(args=["report", "--out", str(out), "--as-of", "2030-01-01T00:00:00Z"])
    assert result.exit_code != 0 and "outside the accepted range" in result.output
    assert "cannot read" not in result.output
    assert not out.exists()


def test_cli_report_warns_when_now_is_long_after_the_latest_poll(runner, engine, tmp_path):
    write_csv(tmp_path / "store_status.csv", "store_id,status,timestamp_utc\n1,active,2023-01-23 12:00:00 UTC\n")
    assert runner.invoke(args=["ingest", str(tmp_path)]).exit_code == 0
    out = tmp_path / "r.csv"
    result = runner.invoke(args=["report", "--out", str(out), "--as-of", "2023-01-25T12:00:00Z"])
    assert result.exit_code == 0, result.output
    assert "(now = 2023-01-25T12:00:00Z)" in result.output
    assert (
        "warning: now (2023-01-25T12:00:00Z) is 2.0 days after the latest poll (2023-01-23T12:00:00Z)" in result.output
    )
    result = runner.invoke(args=["report", "--out", str(out), "--as-of", "2023-01-01T00:00:00Z"])
    assert result.exit_code != 0
    assert "no poll at or before 2023-01-01T00:00:00Z; the earliest poll is at 2023-01-23T12:00:00Z" in result.output


def real_sample_stores() -> list[str]:
    """Stores of the real sample to check one by one: 40 drawn at random, and the ones with the
    most polls, without business hours, without a time zone, and in the rarer zones."""
    polls = pd.read_csv(REAL_SAMPLE / "store_status_sample.csv", dtype=str)
    hours = pd.read_csv(REAL_SAMPLE / "menu_hours.csv", dtype=str)
    zones = pd.read_csv(REAL_SAMPLE / "timezones.csv", dtype=str)
    ids = np.array(sorted(set(polls["store_id"])))
    rng = np.random.default_rng(2023)
    chosen = set(rng.choice(ids, 40, replace=False))
    chosen |= set(polls["store_id"].value_counts().index[:5])
    chosen |= set(rng.choice(sorted(set(ids) - set(hours["store_id"])), 5, replace=False))
    chosen |= set(rng.choice(sorted(set(ids) - set(zones["store_id"])), 5, replace=False))
    rare = zones[
        zones["store_id"].isin(ids)
        & ~zones["timezone_str"].isin(["America/New_York", "America/Los_Angeles", "America/Chicago"])
    ]
    chosen |= set(rare["store_id"].iloc[:10])
    return sorted(chosen)


def test_real_sample_report(runner, engine, tmp_path):
    ingest_files(engine, REAL_SAMPLE)
    out = tmp_path / "real.csv"
    assert runner.invoke(args=["report", "--out", str(out)]).exit_code == 0
    report = pd.read_csv(out, dtype={"store_id": str})
    assert list(report.columns) == REPORT_COLUMNS
    assert len(report) == report["store_id"].nunique() == 3_966
    assert report["store_id"].is_monotonic_increasing
    assert (report.iloc[:, 1:] >= 0).all().all()
    assert (report["uptime_last_hour"] + report["downtime_last_hour"] <= 60.0 + 1e-9).all()
    assert (report["uptime_last_week"] + report["downtime_last_week"] <= 168.0 + 0.01).all()


def test_real_sample_figures_are_the_brute_force_ones(runner, engine, tmp_path):
    """Chosen stores of the real sample: each figure of the report CSV is the brute force's
    seconds in minutes / hours, rounded to 2 decimals.

    The report is asked for as of the second of the latest poll, so that the brute force's
    samples (one a second, on the grid of now) meet every window and business-hours edge
    exactly. Only a midpoint of two polls of different status may fall between two samples,
    each making the brute force up to one second off: where a figure rounds alike at both ends
    of that margin, it must be exactly that text (the sample's polls are all active: margin 0)."""
    ingest_files(engine, REAL_SAMPLE)
    polls = pd.read_csv(REAL_SAMPLE / "store_status_sample.csv", dtype=str)
    latest = pd.to_datetime(polls["timestamp_utc"].str.removesuffix(" UTC"), utc=True).max()
    now = latest.floor("s").to_pydatetime()
    assert now.isoformat() == "2023-01-25T18:11:39+00:00"
    out = tmp_path / "real.csv"
    result = runner.invoke(args=["report", "--out", str(out), "--as-of", "2023-01-25T18:11:39Z"])
    assert result.exit_code == 0, result.output
    lines = dict(line.split(",", 1) for line in out.read_text().splitlines()[1:])
    chosen = real_sample_stores()
    hours = pd.read_csv(REAL_SAMPLE / "menu_hours.csv", dtype={"store_id": str})
    zones = pd.read_csv(REAL_SAMPLE / "timezones.csv", dtype=str)
    polls, hours, zones = (frame[frame["store_id"].isin(chosen)] for frame in (polls, hours, zones))
    brute = brute_force_report(polls, hours, zones, now).set_index("store_id")
    assert sorted(brute.index) == chosen
    exact = 0
    for store_id in chosen:
        mine = polls[polls["store_id"] == store_id].sort_values("timestamp_utc")["status"].tolist()
        margin = sum(a != b for a, b in zip(mine, mine[1:]))  # seconds
        for text, column in zip(lines[store_id].split(","), REPORT_COLUMNS[1:]):
            unit = 60 if column.endswith("_hour") else 3600
            seconds = brute.loc[store_id, column]
            low = np.round(max(seconds - margin, 0) / unit, 2)
            high = np.round((seconds + margin) / unit, 2)
            if low == high:
                assert (store_id, column, text) == (store_id, column, f"{low:.2f}")
                exact += 1
            else:
                assert low <= float(text) <= high, (store_id, column, text, seconds)
    assert exact == 6 * len(chosen)  # every figure decided
    # Not all figures are alike: open and closed hours, whole and partial windows.
    figures = brute[REPORT_COLUMNS[1:4]]
    assert [n >= least for n, least in zip(figures.nunique(), [3, 10, 10])] == [True] * 3
    assert (figures == 0).any().all()


def test_sqlite_and_postgresql_produce_identical_reports(tmp_path):
    """The same feeds in both databases give byte-identical CSVs (and the same ingest counts)."""
    from storemon import create_app, storage
    from storemon.demo import generate_demo_data
    from storemon.extensions import db
    from storemon.reports import write_csv

    generate_demo_data(tmp_path / "feeds", stores=300, days=10, seed=5)
    outputs = {}
    with postgres_database() as postgres_url:
        for name, url in (("sqlite", f"sqlite:///{tmp_path / 'a.db'}"), ("postgresql", postgres_url)):
            app = create_app({"DATABASE_URL": url, "REPORTS_DIR": str(tmp_path / name)})
            with app.app_context():
                summary = ingest_files(db.engine, tmp_path / "feeds")
                counts = [(f.kind, f.rows_stored, f.rows_changed, f.stores) for f in summary.files]
                as_of = build_report(db.engine).now_us - 3 * 86_400_000_000  # and one with history after it
                paths = [
                    write_csv(build_report(db.engine, t).frame, tmp_path / name / f"{i}.csv")
                    for i, t in enumerate([None, as_of])
                ]
                outputs[name] = (counts, [p.read_bytes() for p in paths])
                storage.dispose_all()
    assert outputs["sqlite"] == outputs["postgresql"]


def test_report_figures_are_written_as_pandas_writes_them(tmp_path):
    """write_csv formats each row's figures itself (faster); the text must be what pandas'
    to_csv(float_format="%.2f") gives, also for -0.0, halves and big numbers, and for a frame
    with an empty cell (left to pandas)."""
    from storemon.reports import write_csv as write_report

    rng = np.random.default_rng(3)
    figures = np.round(rng.uniform(-1, 200, size=(500, 6)), 2)
    figures[:5] = [[-0.0, 0.005, 0.125, 1e9, 59.995, 168.0]] * 5
    ids = pd.Series([f"{i:03d}" for i in range(500)], dtype=object)
    with_gap = figures.copy()
    with_gap[7, 2] = np.nan
    for values in (figures, with_gap):
        frame = pd.DataFrame(values, columns=REPORT_COLUMNS[1:]).assign(store_id=ids)[REPORT_COLUMNS]
        written = write_report(frame, tmp_path / "r.csv").read_text().splitlines()[1:]
        expected = frame.iloc[:, 1:].to_csv(header=False, index=False, float_format="%.2f", lineterminator="\n")
        assert [line.split(",", 1)[1] for line in written] == expected.splitlines()


# --- the CSV written ------------------------------------------------------------------------------


def test_a_report_reads_one_snapshot_while_an_ingest_commits(app, loaded, tmp_path, monkeypatch):
    """An ingest commits between the report's reads: no lock error, and the report is the one
    of the database before the ingest."""
    before = build_report(loaded).frame
    newer = write_csv(
        tmp_path / "later.csv",
        "store_id,status,timestamp_utc\n007,active,2023-01-23 11:50:00 UTC\nnew,active,2023-01-23 11:00:00 UTC\n",
    )
    real_hours = storage.hours_by_key
    ingested = {}

    def hours_with_an_ingest_in_between(conn, keys=None):
        def other_writer():
            with app.app_context():
                ingested["summary"] = ingest_file(db.engine, "status", newer)

        thread = threading.Thread(target=other_writer)
        thread.start()
        thread.join(timeout=60)
        return real_hours(conn, keys)

    monkeypatch.setattr(storage, "hours_by_key", hours_with_an_ingest_in_between)
    during = build_report(loaded).frame
    assert ingested["summary"].rows_changed == 2  # the ingest did commit, while the report read
    pd.testing.assert_frame_equal(during, before)
    monkeypatch.undo()
    after = build_report(loaded).frame
    assert "new" in after["store_id"].tolist() and not after.equals(before)


@pytest.mark.parametrize(
    "stores, batch_stores, parallel, size",
    [
        (14_000, 5_000, 2, 3_500),  # four batches, two rounds, not 5,000 + 5,000 then 4,000 alone
        (14_000, 10_000, 1, 7_000),  # two even batches on one thread
        (140_000, 5_000, 2, 5_000),  # 28 batches already share evenly
        (4_000, 5_000, 2, 4_000),  # one batch stays one
        (5_001, 5_000, 4, 1_251),  # two batches become four, one a thread
    ],
)
def test_batches_are_even_and_shared_evenly_by_the_threads(stores, batch_stores, parallel, size):
    assert _even_batches(stores, batch_stores, parallel) == size


def test_a_parallel_report_reads_one_snapshot_while_an_ingest_commits(app, loaded, tmp_path, monkeypatch):
    """Batches computed by threads, each in its own read snapshot: an ingest commits as the first
    thread begins; a batch whose snapshot sees the new data is computed again in the report's
    own, and the report is the one of the database before the ingest."""
    before = build_report(loaded, batch_stores=1).frame
    newer = write_csv(tmp_path / "later.csv", "store_id,status,timestamp_utc\n007,active,2023-01-23 11:50:00 UTC\n")
    real_version, ingested, readers, first = storage.data_version, {}, [], threading.Lock()

    def version_after_an_ingest(conn):
        readers.append(threading.current_thread().name)
        with first:  # the first batch thread to get here ingests; the others go on
            ingesting = readers[-1].startswith("report-batch") and not ingested
            if ingesting:
                ingested["by"] = readers[-1]
        if ingesting:
            with app.app_context():
                ingested["summary"] = ingest_file(db.engine, "status", newer)
        return real_version(conn)

    monkeypatch.setattr(storage, "data_version", version_after_an_ingest)
    during = build_report(loaded, batch_stores=1, parallel=2).frame
    assert ingested["summary"].rows_stored == 1
    assert readers[0] == "MainThread" and any(r.startswith("report-batch") for r in readers), readers
    pd.testing.assert_frame_equal(during, before)
    monkeypatch.undo()
    assert not build_report(loaded).frame.equals(before)


def test_report_files_are_written_atomically(tmp_path):
    frame = pd.DataFrame({"store_id": ["1"], "uptime_last_hour": [1.0]})
    path = write_report(frame, tmp_path / "r.csv")
    assert path.read_text() == "store_id,uptime_last_hour\n1,1.00\n"
    assert [p.name for p in tmp_path.iterdir()] == ["r.csv"]


def test_every_store_id_round_trips_through_the_report_csv(tmp_path):
    ids = [
        "plain",
        "with,comma",
        'with "quotes"',
        "cr\rinside",
        "lf\ninside",
        "crlf\r\nboth",
        " lead",
        "trail ",
        "007",
        "ünï",
    ]
    frame = pd.DataFrame({"store_id": ids, **{c: [1.5] * len(ids) for c in REPORT_COLUMNS[1:]}})
    path = write_report(frame, tmp_path / "r.csv")
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert [r[0] for r in rows[1:]] == ids and all(r[1:] == ["1.50"] * 6 for r in rows[1:])
    back = pd.read_csv(path, dtype={"store_id": str}, keep_default_na=False)
    assert back["store_id"].tolist() == ids


# --- over HTTP: feeds uploaded, a report triggered and fetched ------------------------------------


def feed_texts(polls: pd.DataFrame, hours: pd.DataFrame, zones: pd.DataFrame) -> dict[str, str]:
    """The three feeds as CSV text, shaped like the real ones."""
    stamped = polls.assign(timestamp_utc=pd.to_datetime(polls["timestamp_utc"]).dt.strftime("%Y-%m-%d %H:%M:%S UTC"))
    return {
        "timezones": zones.to_csv(index=False),
        "hours": hours.rename(columns={"day": "dayOfWeek"}).to_csv(index=False),
        "status": stamped.to_csv(index=False),
    }


@pytest.mark.parametrize(
    "seed,now",
    [
        (21, "2023-03-13 05:00:00Z"),  # the week holds the US spring change
        (22, "2023-11-06 09:30:00Z"),  # the US autumn change
    ],
)
def test_uploaded_feeds_give_the_brute_force_report(client, runner, tmp_path, seed, now):
    polls, hours, zones = random_stores(np.random.default_rng(seed), 40, now)
    polls = polls.drop_duplicates(["store_id", "timestamp_utc"], keep="last")
    for kind, text in feed_texts(polls, hours, zones).items():
        answer = client.post(f"/ingest/{kind}", data=text, content_type="text/csv")
        assert answer.status_code == 200 and answer.get_json()["rows_skipped"] == 0, answer.get_json()
    expected = report_csv(brute_force_report(polls, hours, zones, pd.Timestamp(now).to_pydatetime()))
    assert len(expected.splitlines()) > 25  # stores with a poll at or before now, and the header
    as_of = pd.Timestamp(now).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert fetch_report(client, as_of) == expected
    out = tmp_path / "report.csv"
    result = runner.invoke(args=["report", "--out", str(out), "--as-of", as_of])
    assert result.exit_code == 0, result.output
    assert out.read_text() == expected


def test_a_rounding_tie_goes_to_the_even_digit(client):
    """docs/report-rules.md: every figure is rounded to 2 decimals, numpy.round: a tie goes to
    the even digit. Open 24x7, now = 12:00:00 (the latest poll)."""
    upload(
        client,
        "status",
        """store_id,status,timestamp_utc
a,active,2023-01-23 11:59:50 UTC
a,inactive,2023-01-23 11:59:55 UTC
b,active,2023-01-23 11:59:00 UTC
b,inactive,2023-01-23 11:59:45 UTC
c,active,2023-01-23 11:45:00 UTC
c,inactive,2023-01-23 12:00:00 UTC
""",
    )
    assert fetch_report(client).splitlines() == [
        HEADER,
        # Midpoint 11:59:52.5: down 7.5 s = 0.125 min -> 0.12 (not 0.13); up 59.875 min -> 59.88.
        "a,59.88,24.00,168.00,0.12,0.00,0.00",
        # Midpoint 11:59:22.5: down 37.5 s = 0.625 min -> 0.62 (not 0.63); up 59.375 min -> 59.38;
        # the day: 37.5 s = 0.0104 h -> 0.01, 86362.5 s = 23.9896 h -> 23.99 (167.99 the week).
        "b,59.38,23.99,167.99,0.62,0.01,0.01",
        # Midpoint 11:52:30: down 7.5 min = 0.125 h -> 0.12 in the day and the week; up
        # 23.875 h -> 23.88 and 167.875 h -> 167.88; the hour: 52.50 up, 7.50 down.
        "c,52.50,23.88,167.88,7.50,0.12,0.12",
    ]
