"""Storage (storemon/storage/): polls in ``polls_recent`` folded into ``polls``, polls packed for
SQLite and for PostgreSQL's binary COPY, distinct keys counted, the schema created by processes
starting at once and upgraded at start-up, PostgreSQL's own indexes and table settings and its
``poll_chunks`` equal to ``polls`` packed after every kind of write; special
hours written, read by store key and by store, and removed (both databases); SQLite's memory
statistics off when storemon is imported before any SQLite connection, and left alone after.

New polls land in ``polls_recent`` and are folded into ``polls`` (on both databases, each test
runs on both). Whatever the mix of
files -- an hour of new polls, overwrites of keys in either table, a key repeated across the
chunks of one file, a file too big for ``polls_recent`` -- the database must hold exactly what a
plain "the later row for a key wins" dictionary holds, each key in one table only, and every
reader (polls_between, polls_of_stores, latest_poll_at_or_before) must see both.
"""

from __future__ import annotations

import sqlite3
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest
from helpers import ROOT, SPECIAL_HEADER, STATUS_HEADER, polls, special, wait_for, write_csv
from sqlalchemy import inspect as sa_inspect

from storemon import create_app, storage
from storemon.extensions import db
from storemon.ingest import ingest_file
from storemon.storage.packing import parse_marked

HOUR_US = 3_600_000_000
T0 = 1_674_000_000_000_000  # 2023-01-18


def write_feed(path, rows) -> str:
    """rows: (store_id, ts_us, active) -> a status CSV in the real feed's format."""
    stamps = pd.to_datetime([t for _, t, _ in rows], unit="us", utc=True).strftime("%Y-%m-%d %H:%M:%S.%f UTC")
    frame = pd.DataFrame(
        {
            "store_id": [s for s, _, _ in rows],
            "status": ["active" if a else "inactive" for *_, a in rows],
            "timestamp_utc": stamps,
        }
    )
    frame.to_csv(path, index=False)
    return str(path)


def stored(engine) -> dict:
    """Every stored poll as {(store_id, ts_us): active}, checking no key is in both tables."""
    with engine.connect() as conn:
        main = conn.exec_driver_sql("SELECT store_key, ts_us FROM polls").all()
        recent = conn.exec_driver_sql("SELECT store_key, ts_us FROM polls_recent").all()
        assert not set(main) & set(recent), "a key is in polls and in polls_recent"
        rows = conn.exec_driver_sql(
            f"SELECT s.store_id, p.ts_us, p.active FROM {storage.ALL_POLLS} p JOIN stores s USING (store_key)"
        ).all()
    return {(s, t): bool(a) for s, t, a in rows}


def chunks_stored(engine) -> dict:
    """PostgreSQL's poll_chunks as {(store_key, chunk): packed bytes}."""
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT store_key, chunk, packed FROM poll_chunks").all()
    return {(key, chunk): bytes(packed) for key, chunk, packed in rows}


def chunks_expected(engine) -> dict:
    """poll_chunks as docs/internals.md says it is, computed here from polls: each store's polls
    with the same floor(ts_us / 2^36), in time order, as big-endian int8 ``ts_us * 2 + active``."""
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT store_key, ts_us, active FROM polls ORDER BY store_key, ts_us").all()
    packed: dict = {}
    for key, ts, active in rows:
        packed.setdefault((key, ts // 2**36), bytearray()).extend(struct.pack(">q", ts * 2 + int(active)))
    return {chunk: bytes(value) for chunk, value in packed.items()}


def table_sizes(engine) -> tuple[int, int]:
    with engine.connect() as conn:
        return (
            conn.exec_driver_sql("SELECT count(*) FROM polls").scalar(),
            conn.exec_driver_sql("SELECT count(*) FROM polls_recent").scalar(),
        )


def test_an_hour_of_polls_lands_in_polls_recent_and_a_fold_moves_it(engine, tmp_path, monkeypatch):
    monkeypatch.setattr(storage.polls, "RECENT_POLLS_MIN", 0)
    monkeypatch.setattr(storage.polls, "RECENT_POLLS_PER_STORE", 3)  # 30 polls for 10 stores
    stores = [f"{i:03d}" for i in range(10)]
    first = [(s, T0 + h * HOUR_US + i, True) for h in range(5) for i, s in enumerate(stores)]
    ingest_file(engine, "status", write_feed(tmp_path / "first.csv", first))
    assert table_sizes(engine) == (50, 0)  # 50 polls: more than polls_recent takes, so polls
    sizes = []
    for h in range(5, 10):
        hour = [(s, T0 + h * HOUR_US + i, h % 2 == 0) for i, s in enumerate(stores)]
        summary = ingest_file(engine, "status", write_feed(tmp_path / f"h{h}.csv", hour))
        assert summary.rows_changed == summary.rows_stored == 10
        sizes.append(table_sizes(engine))
    # 10 a file: the fourth file would pass 30, so it first moves the 30 held into polls.
    assert sizes == [(50, 10), (50, 20), (50, 30), (80, 10), (80, 20)]
    expected = {(s, t): a for s, t, a in first}
    for h in range(5, 10):
        expected.update({(s, T0 + h * HOUR_US + i): h % 2 == 0 for i, s in enumerate(stores)})
    assert stored(engine) == expected

    with engine.connect() as conn:
        frame = storage.polls_between(conn, T0, T0 + 20 * HOUR_US)
        assert len(frame) == 100
        keys, ts = frame["store_key"].to_numpy(), frame["ts_us"].to_numpy()
        assert np.all((np.diff(keys) > 0) | ((np.diff(keys) == 0) & (np.diff(ts) > 0)))  # sorted, no repeats
        key = int(keys[0])
        one = storage.polls_of_stores(conn, np.array([key]), T0, T0 + 20 * HOUR_US)
        assert len(one) == 10 and one["ts_us"].is_monotonic_increasing  # 5 in polls, 5 in polls_recent
        assert storage.latest_poll_at_or_before(conn, T0 + 20 * HOUR_US) == T0 + 9 * HOUR_US + 9
        assert storage.latest_poll_at_or_before(conn, T0 + 9 * HOUR_US - 1) == T0 + 8 * HOUR_US + 9


def test_overwrites_find_their_key_in_either_table_and_count_only_changes(engine, tmp_path):
    old = [("a", T0, True), ("a", T0 + HOUR_US, True), ("b", T0, False)]
    ingest_file(engine, "status", write_feed(tmp_path / "1.csv", old), force=True)
    storage_fold(engine)  # these three are now in polls
    new = [("a", T0 + 2 * HOUR_US, True), ("b", T0 + 2 * HOUR_US, True)]
    ingest_file(engine, "status", write_feed(tmp_path / "2.csv", new))
    assert table_sizes(engine) == (3, 2)
    # One key of each table flipped, one of each repeated as it is, one new key between old ones.
    mixed = [
        ("a", T0, False),
        ("b", T0 + 2 * HOUR_US, False),
        ("a", T0 + HOUR_US, True),
        ("a", T0 + 2 * HOUR_US, True),
        ("b", T0 + HOUR_US, True),
    ]
    summary = ingest_file(engine, "status", write_feed(tmp_path / "3.csv", mixed))
    assert summary.rows_changed == 3
    assert stored(engine) == {
        ("a", T0): False,
        ("a", T0 + HOUR_US): True,
        ("a", T0 + 2 * HOUR_US): True,
        ("b", T0): False,
        ("b", T0 + HOUR_US): True,
        ("b", T0 + 2 * HOUR_US): False,
    }
    assert table_sizes(engine) == (4, 2)  # the new old key went to polls


def storage_fold(engine) -> None:
    with storage.write_transaction(engine, 5) as conn:
        storage.fold_recent_polls(conn)


@pytest.mark.parametrize("seed", range(6))
def test_random_files_store_what_later_rows_win_says(engine, tmp_path, monkeypatch, seed):
    """Random files (new hours, back-fills, repeats within a file across its chunks, big files)
    with a small polls_recent and small write batches: the database always equals the model."""
    rng = np.random.default_rng(seed)
    monkeypatch.setattr(storage.polls, "RECENT_POLLS_MIN", int(rng.integers(0, 40)))
    monkeypatch.setattr(storage.polls, "RECENT_POLLS_PER_STORE", int(rng.integers(1, 4)))
    monkeypatch.setattr(storage.writers, "FLUSH_ROWS", int(rng.integers(3, 30)))
    stores = [f"s{i:02d}" for i in range(int(rng.integers(2, 12)))]
    model: dict = {}
    latest = T0
    for step in range(14):
        kind = str(rng.choice(["hour", "backfill", "repeats", "flips", "big"]))
        if kind == "hour":  # one poll per store, later than everything
            rows = [(s, latest + HOUR_US + int(rng.integers(0, 1000)), bool(rng.random() < 0.7)) for s in stores]
        elif kind == "backfill":  # instants already stored (some flipped) and new ones among them
            known = list(model)
            picks = [known[i] for i in rng.choice(len(known), min(8, len(known)), replace=False)]
            rows = [(s, t, bool(rng.random() < 0.5)) for s, t in picks]
            rows += [(str(rng.choice(stores)), int(rng.integers(T0, latest + 1)), True) for _ in range(5)]
        elif kind in ("repeats", "flips"):  # new instants, given up to three times in one file
            base = [(str(rng.choice(stores)), latest + int(rng.integers(1, HOUR_US))) for _ in range(12)]
            same = {key: bool(rng.random() < 0.5) for key in base}  # "repeats": each copy says the same
            rows = [
                (s, t, same[(s, t)] if kind == "repeats" else bool(rng.random() < 0.5))
                for s, t in base
                for _ in range(int(rng.integers(1, 4)))
            ]
            rng.shuffle(rows)
        else:  # bigger than polls_recent may hold
            rows = [
                (s, latest + h * 600_000_000 + i, bool(rng.random() < 0.8))
                for h in range(1, 12)
                for i, s in enumerate(stores)
            ]
        rows = [tuple(r) for r in rows]
        before = dict(model)
        for s, t, a in rows:
            model[(s, t)] = a
        changed = sum(1 for k in set((s, t) for s, t, _ in rows) if before.get(k) != model[k])
        summary = ingest_file(
            engine,
            "status",
            write_feed(tmp_path / f"{step}.csv", rows),
            force=True,
            chunk_rows=int(rng.integers(2, 20)),
        )
        if kind == "flips":  # a key given again in a later chunk with another status counts again
            assert summary.rows_changed >= changed, (step, kind)
        else:
            assert summary.rows_changed == changed, (step, kind)
        assert summary.rows_stored == len({(s, t) for s, t, _ in rows}), (step, kind)
        assert stored(engine) == model, (step, kind)
        spans: dict = {}
        for s, t in model:
            spans[s] = (min(t, spans.get(s, (t, t))[0]), max(t, spans.get(s, (t, t))[1]))
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT store_id, first_poll_us, last_poll_us FROM stores").all()
        assert {s: (first, last) for s, first, last in rows} == spans, (step, kind)  # each store's span
        if engine.dialect.name == "postgresql":
            assert chunks_stored(engine) == chunks_expected(engine), (step, kind)
        latest = max(t for _, t in model)
    with engine.connect() as conn:
        frame = storage.polls_between(conn, T0, latest)
        ids = dict(conn.exec_driver_sql("SELECT store_key, store_id FROM stores").all())
        assert {(ids[k], t): a for k, t, a in frame.itertuples(index=False)} == model
        assert storage.latest_poll_at_or_before(conn, latest) == latest
        keys, key_of = sorted(ids), {store: key for key, store in ids.items()}
        ranges = [(T0 - HOUR_US, latest + HOUR_US), (latest - 2**36 + 1, latest), (latest - 2**36, latest)]
        for i in range(20):  # any range of instants and of store keys (on PostgreSQL shorter than
            # a chunk or not): the polls in both tables
            a, b = ranges[i] if i < len(ranges) else sorted(int(x) for x in rng.integers(*ranges[0], 2))
            lo, hi = sorted(int(x) for x in rng.integers(keys[0], keys[-1] + 2, 2))
            frame = storage.polls_between(conn, a, b, keys=(lo, hi))
            want = {(s, t): v for (s, t), v in model.items() if lo <= key_of[s] < hi and a <= t <= b}
            assert {(ids[k], t): v for k, t, v in frame.itertuples(index=False)} == want, (a, b, lo, hi)


def test_a_file_bigger_than_one_write_goes_to_polls(engine, tmp_path, monkeypatch):
    """polls_recent would take 40 polls; a 25-poll file written 10 at a time goes to polls all the
    same (a big first load is not written twice), a 5-poll file to polls_recent."""
    monkeypatch.setattr(storage.polls, "RECENT_POLLS_MIN", 40)
    monkeypatch.setattr(storage.writers, "FLUSH_ROWS", 10)
    rows = [(f"s{i % 5}", T0 + i * HOUR_US, True) for i in range(25)]
    ingest_file(engine, "status", write_feed(tmp_path / "big.csv", rows), chunk_rows=10)
    assert table_sizes(engine) == (25, 0)
    more = [(f"s{i}", T0 + 30 * HOUR_US, False) for i in range(5)]
    ingest_file(engine, "status", write_feed(tmp_path / "hour.csv", more), chunk_rows=10)
    assert table_sizes(engine) == (25, 5)


@pytest.mark.parametrize("key_bits, span_us", [(4, 10**6), (20, 2**45), (31, 2**50)])
def test_polls_packed_for_sqlite_come_back_exactly(key_bits, span_us):
    """insert_polls packs (key, instant, status) into one integer; where the keys' bits and the
    time span do not fit in 62 bits together it splits the rows by time. Every row must come
    back as given, whatever the split."""
    import sqlite3

    rng = np.random.default_rng(key_bits)
    keys = rng.integers(1, 2**key_bits, 2000)
    ts = rng.integers(T0 - span_us, T0 + 1, 2000)
    active = rng.random(2000) < 0.5
    parts = list(storage.packed_polls(keys, ts, active))
    assert (len(parts) > 1) == (key_bits + (2 * span_us).bit_length() > 62)

    class Conn:  # the one call insert_polls makes, on a plain sqlite3 connection
        def __init__(self):
            self.db = sqlite3.connect(":memory:")
            self.db.execute("CREATE TABLE polls (store_key INTEGER, ts_us INTEGER, active INTEGER)")

        def exec_driver_sql(self, sql, params):
            return self.db.execute(sql, params)

    conn = Conn()
    assert storage.insert_polls(conn, keys, ts, active, "") == 2000
    got = sorted(conn.db.execute("SELECT store_key, ts_us, active FROM polls").fetchall())
    assert got == sorted(zip(keys.tolist(), ts.tolist(), active.astype(int).tolist()))


def test_distinct_keys_are_exact_then_bounded(monkeypatch):
    from storemon.storage import DistinctKeys

    t0 = 1_700_000_000_000_000
    keys = DistinctKeys()
    for start in (0, 3, 3, 10):  # overlapping chunks: 0-5, 3-8 twice, 10-15
        keys.add(np.full(5, 7), np.arange(start, start + 5) * 1_000_000 + t0)
    assert keys.count() == 13 and keys.exact
    far = DistinctKeys()  # timestamps too far apart to pack: the exact complex fallback
    far.add(np.array([1]), np.array([1_000_000_000_000_000]))
    far.add(np.array([1, 2]), np.array([1_000_000_000_000_000, 1_700_000_000_000_000]))
    assert far.count() == 2 and not far.packed
    monkeypatch.setattr(DistinctKeys, "EXACT_UP_TO", 6)
    ordered = DistinctKeys()  # chunks in time order: no key kept is needed, the count stays exact
    for start in (0, 10, 20):
        ordered.add(np.full(5, 7), np.arange(start, start + 5) * 1_000_000 + t0, overlaps=False)
    assert ordered.exact and ordered.count() == 15 and ordered.dropped
    bounded = DistinctKeys()
    for start in (0, 10, 0):
        bounded.add(np.full(5, 7), np.arange(start, start + 5) * 1_000_000 + t0)
    assert not bounded.exact and bounded.count() == 15  # the last chunk counted again, memory freed
    assert len(bounded.seen) == 0


# --- the schema ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_processes_starting_at_once_on_a_new_database_all_start(tmp_path):
    """gunicorn's workers create the schema at the same moment: none may die of 'database is locked'."""
    for trial in range(3):
        folder = tmp_path / f"t{trial}"
        settings = {
            "DATABASE_URL": f"sqlite:///{folder / 's.db'}",
            "REPORTS_DIR": str(folder / "r"),
            "UPLOAD_DIR": str(folder / "u"),
        }
        code = f"from storemon import create_app; create_app({settings!r})"
        starts = [
            subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stderr=subprocess.PIPE, text=True)
            for _ in range(4)
        ]
        for process in starts:
            _, err = process.communicate(timeout=120)
            assert process.returncode == 0, err[-2000:]


def test_an_older_reports_table_gains_the_new_columns(app, client, loaded, database_url):
    """A jobs database whose reports table lacks `latest_poll_us` and `warning` gains them at start-up."""
    with app.app_context():
        with db.engines["jobs"].begin() as conn:
            conn.exec_driver_sql("ALTER TABLE reports DROP COLUMN warning")
            conn.exec_driver_sql("ALTER TABLE reports DROP COLUMN latest_poll_us")
        storage.dispose_all()
    again = create_app({"TESTING": True, "DATABASE_URL": database_url, "REPORTS_DIR": app.config["REPORTS_DIR"]})
    again.config["REPORT_START_DELAY"] = 0
    try:
        with again.app_context():
            columns = {c["name"] for c in sa_inspect(db.engines["jobs"]).get_columns("reports")}
            assert {"latest_poll_us", "warning"} <= columns
        test_client = again.test_client()
        report_id = test_client.post("/trigger_report", json={"as_of": "2023-03-01T00:00:00Z"}).get_json()["report_id"]
        assert "X-Report-Warning" in wait_for(test_client, report_id).headers
    finally:
        with again.app_context():
            db.session.remove()
            storage.dispose_all()


# --- special hours (storemon/storage/special.py) --------------------------------------------------


def test_a_special_hours_file_replaces_each_store_and_date_it_names_and_keeps_the_others(engine, tmp_path):
    first = SPECIAL_HEADER + "007,2023-01-23,,\n007,2023-01-24,09:00,13:00\n008,2023-01-24,10:00,12:00\n"
    ingest_file(engine, "special_hours", write_csv(tmp_path / "holidays.csv", first))
    later = SPECIAL_HEADER + "007,2023-01-24,15:00,18:00\n007,2023-01-25,,\n"
    summary = ingest_file(engine, "special_hours", write_csv(tmp_path / "special_hours_feb.csv", later))
    assert (summary.rows_stored, summary.stores, summary.rows_changed) == (2, 1, None)
    assert special(engine) == [
        ("007", "2023-01-23", None, None, "holidays.csv"),  # another date: kept
        ("007", "2023-01-24", 54000, 64800, "special_hours_feb.csv"),  # replaced, 09:00-13:00 gone
        ("007", "2023-01-25", None, None, "special_hours_feb.csv"),
        ("008", "2023-01-24", 36000, 43200, "holidays.csv"),  # another store: kept
    ]


def test_special_hours_by_store_key_are_those_of_stores_with_polls_closed_dates_as_minus_one(engine, tmp_path):
    polls = STATUS_HEADER + "".join(f"{s},active,2023-01-23 12:00:00 UTC\n" for s in ("a", "b", "c"))
    ingest_file(engine, "status", write_csv(tmp_path / "s.csv", polls))
    rows = (
        "b,2023-01-24,22:00,02:00\nb,2023-01-23,00:00,24:00:00\nb,2023-01-24,09:00,09:00\na,2023-01-23,,\n"
        "c,2000-01-01,08:00,23:59:59\nno-polls,2023-01-23,,\n"
    )
    ingest_file(engine, "special_hours", write_csv(tmp_path / "sp.csv", SPECIAL_HEADER + rows))
    with engine.connect() as conn:
        keys = dict(conn.exec_driver_sql("SELECT store_id, store_key FROM stores").all())
        everything = storage.special_by_key(conn)
        only_b = storage.special_by_key(conn, (keys["b"], keys["b"] + 1))
    assert everything.dtypes.tolist() == [np.int64] * 4
    assert everything.values.tolist() == [
        [keys["a"], 19380, -1, -1],
        [keys["b"], 19380, 0, 86400],
        [keys["b"], 19381, 32400, 32400],
        [keys["b"], 19381, 79200, 7200],
        [keys["c"], 10957, 28800, 86399],
    ]  # by store key, date and start; the store without polls is not read
    assert only_b.values.tolist() == everything.values.tolist()[1:4]


def test_one_stores_special_hours_come_by_date_then_start_with_their_source(engine, tmp_path):
    rows = "s,2023-01-24,17:00,22:00\ns,2023-01-24,10:00,14:00\ns,2023-01-23,,\nt,2023-01-23,09:00,10:00\n"
    ingest_file(engine, "special_hours", write_csv(tmp_path / "closures 2023.csv", SPECIAL_HEADER + rows))
    with engine.connect() as conn:
        found = storage.special_of_store(conn, "s")
        none = storage.special_of_store(conn, "nobody")
    assert found.values.tolist() == [
        [19380, -1, -1, "closures 2023.csv"],
        [19381, 36000, 50400, "closures 2023.csv"],
        [19381, 61200, 79200, "closures 2023.csv"],
    ]
    assert list(none.columns) == ["date", "start_s", "end_s", "source"] and none.empty


def test_removing_a_stores_special_date_removes_only_that_date_and_says_how_many_rows(engine, tmp_path):
    rows = "s,2023-01-24,17:00,22:00\ns,2023-01-24,10:00,14:00\ns,2023-01-23,,\nt,2023-01-24,09:00,10:00\n"
    ingest_file(engine, "special_hours", write_csv(tmp_path / "sp.csv", SPECIAL_HEADER + rows))
    with engine.begin() as conn:
        assert storage.remove_special(conn, "s", 19381) == 2
        assert storage.remove_special(conn, "s", 19381) == 0
    assert [(r[0], r[1]) for r in special(engine)] == [("s", "2023-01-23"), ("t", "2023-01-24")]


def test_a_database_made_before_special_hours_gains_the_table_at_start_up_and_keeps_its_data(app, loaded, database_url):
    with app.app_context():
        with db.engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE special_hours")
        storage.dispose_all()
    again = create_app({"TESTING": True, "DATABASE_URL": database_url, "REPORTS_DIR": app.config["REPORTS_DIR"]})
    try:
        with again.app_context():
            assert "special_hours" in sa_inspect(db.engine).get_table_names()
            assert len(polls(db.engine)) == 3
        answer = again.test_client().get("/special_hours?store_id=007")
        assert answer.status_code == 200 and answer.get_json()["special_hours"] == []
    finally:
        with again.app_context():
            db.session.remove()
            storage.dispose_all()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_binary_copy_of_polls_comes_back_exactly(engine):
    """binary_polls builds PostgreSQL's COPY format with numpy: every key, instant and status
    must come back as given, extremes included."""
    keys = np.array([1, 2, 2**31 - 1, 7, 7])
    ts = np.array([T0, -(2**62), 2**62, 0, 1])
    active = np.array([True, False, True, False, True])
    with storage.write_transaction(engine, 5) as conn:
        with storage.sql.dbapi_cursor(conn) as cursor:
            cursor.execute("CREATE TEMP TABLE copied (store_key integer, ts_us bigint, active boolean) ON COMMIT DROP")
            with cursor.copy("COPY copied FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(storage.polls.binary_polls(keys, ts, active))
            cursor.execute("SELECT store_key, ts_us, active FROM copied")
            assert cursor.fetchall() == list(zip(keys.tolist(), ts.tolist(), active.tolist()))


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_postgresql_schema_has_its_time_index_and_room_for_hot_updates(engine, tmp_path, monkeypatch):
    """tune_postgresql adds the BRIN index on polls.ts_us and stores' fillfactor once (a second
    start adds nothing); a first load leaves every page range of polls summarised and the
    planner's statistics gathered, and an hour's file goes to polls_recent."""
    assert storage.engine.tune_postgresql(engine) == []  # create_app added them
    monkeypatch.setattr(storage.writers, "FLUSH_ROWS", 1000)  # a file of several writes: to polls
    rows = [(f"s{i % 40}", T0 + i * 60_000_000, i % 3 > 0) for i in range(4000)]
    ingest_file(engine, "status", write_feed(tmp_path / "first.csv", rows), chunk_rows=500)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT brin_summarize_new_values('polls_ts_brin')").scalar() == 0
        assert conn.exec_driver_sql(
            "SELECT count(*) FROM pg_stats WHERE tablename = 'polls' AND attname = 'ts_us'"
        ).scalar()
    hour = [(f"s{i}", T0 + 5000 * 60_000_000 + i, True) for i in range(40)]
    ingest_file(engine, "status", write_feed(tmp_path / "hour.csv", hour))
    assert table_sizes(engine) == (4000, 40)
    with engine.connect() as conn:
        conn.exec_driver_sql("DROP INDEX polls_ts_brin")  # a database without it still ingests ...
        conn.commit()
    ingest_file(engine, "status", write_feed(tmp_path / "again.csv", rows[:2000]), force=True, chunk_rows=500)
    assert storage.engine.tune_postgresql(engine) == ["polls_ts_brin"]  # ... and gets it at the next start


def test_marked_numbers_parse_to_each_stores_key_in_store_order():
    assert [a.tolist() for a in parse_marked("-8,5,6,-3,0,4,-11,1")] == [[2, 2, 7, 7, 10], [0, 4, 5, 6, 1]]
    assert [a.tolist() for a in parse_marked("-1,9,-2")] == [[0], [9]]  # a mark with no numbers
    assert [a.tolist() for a in parse_marked(None)] == [[], []]
    for broken in ("5,-1,2", "-1,2,x,3", "-1,,2"):
        with pytest.raises(RuntimeError, match="did not parse"):
            parse_marked(broken)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_batch_too_long_for_one_sqlite_text_is_read_in_parts(engine, tmp_path, monkeypatch):
    """SQLite gives a batch's polls (and hours) as one text; past its length limit (set low
    here) the key range is read in halves, and the result is the same."""
    monkeypatch.setattr(storage.polls, "RECENT_POLLS_MIN", 0)
    monkeypatch.setattr(storage.polls, "RECENT_POLLS_PER_STORE", 0)  # every poll in polls
    stores = [f"{i:03d}" for i in range(40)]
    rows = [(s, T0 + h * HOUR_US + i, (h + i) % 3 > 0) for h in range(6) for i, s in enumerate(stores)]
    ingest_file(engine, "status", write_feed(tmp_path / "polls.csv", rows))
    hours = "store_id,dayOfWeek,start_time_local,end_time_local\n" + "".join(
        f"{s},{d},09:00,17:00\n" for s in stores for d in range(3)
    )
    ingest_file(engine, "hours", write_csv(tmp_path / "hours.csv", hours))
    with engine.connect() as conn:
        whole = storage.polls_between(conn, T0, T0 + 10 * HOUR_US)
        whole_hours = storage.hours_by_key(conn)
        driver = conn.connection.dbapi_connection
        driver.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 300)  # a few stores a text
        with pytest.raises(sqlite3.DataError):  # the text of all the stores no longer fits
            driver.execute("SELECT group_concat(store_id || store_id || store_id) FROM stores").fetchone()
        parts = storage.polls_between(conn, T0, T0 + 10 * HOUR_US)
        parts_hours = storage.hours_by_key(conn)
    assert len(whole) == 240 and len(whole_hours) == 120
    pd.testing.assert_frame_equal(parts, whole)
    pd.testing.assert_frame_equal(parts_hours, whole_hours)


def test_time_zones_by_store_key_come_by_key_with_the_names_as_given(engine, tmp_path):
    polls = STATUS_HEADER + "".join(f"{s},active,2023-01-23 12:00:00 UTC\n" for s in ("a", "b", "c", "d"))
    ingest_file(engine, "status", write_csv(tmp_path / "s.csv", polls))
    zones = "store_id,timezone_str\nc,Asia/Kolkata\na,Asia/Kolkata\nb,Not/AZone\nno-polls,Europe/Berlin\n"
    ingest_file(engine, "timezones", write_csv(tmp_path / "z.csv", zones))
    with engine.connect() as conn:
        keys = dict(conn.exec_driver_sql("SELECT store_id, store_key FROM stores").all())
        everything = storage.zones_by_key(conn)
        only_c = storage.zones_by_key(conn, (keys["c"], keys["c"] + 1))
    expected = sorted([[keys["a"], "Asia/Kolkata"], [keys["b"], "Not/AZone"], [keys["c"], "Asia/Kolkata"]])
    assert everything.values.tolist() == expected  # d has no zone; the store without polls is not read
    assert only_c.values.tolist() == [[keys["c"], "Asia/Kolkata"]]


def run_python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True).stdout


SQLITE_MEMORY = (
    "import ctypes, _sqlite3, sqlite3\n"
    "memory = ctypes.CDLL(_sqlite3.__file__).sqlite3_memory_used\n"
    "memory.restype = ctypes.c_int64\n"
)


def test_sqlite_counts_no_memory_once_storemon_is_imported_first():
    """No process-wide allocation counting (its mutex made threads' reads wait on each other)."""
    out = run_python(
        SQLITE_MEMORY + "import storemon.storage.engine as engine\n"
        "c = sqlite3.connect(':memory:'); c.execute('CREATE TABLE t (x)'); c.execute('INSERT INTO t VALUES (1)')\n"
        "print(engine.sqlite_without_memory_statistics(), memory(), c.execute('SELECT x FROM t').fetchone()[0])\n"
    )
    assert out.split() == ["True", "0", "1"]


def test_sqlite_is_left_as_it_is_when_a_connection_was_open_before_storemon():
    out = run_python(
        SQLITE_MEMORY + "c = sqlite3.connect(':memory:'); c.execute('CREATE TABLE t (x)')\n"
        "import storemon.storage.engine as engine\n"
        "c.execute('INSERT INTO t VALUES (1)')\n"
        "print(engine.sqlite_without_memory_statistics(), memory() > 0, c.execute('SELECT x FROM t').fetchone()[0])\n"
    )
    assert out.split() == ["False", "True", "1"]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_poll_chunks_follow_every_write_to_polls(engine, tmp_path, monkeypatch):
    """poll_chunks (PostgreSQL) equals polls packed after a first load, an upsert, a fold, a status
    changed in polls, and statements run by hand on polls: a key moved, rows deleted, TRUNCATE."""
    monkeypatch.setattr(storage.writers, "FLUSH_ROWS", 1000)  # the first load in several writes
    rows = [(f"s{i % 30}", T0 + i * 97_000_000, i % 4 > 0) for i in range(6000)]  # 6.7 days
    ingest_file(engine, "status", write_feed(tmp_path / "first.csv", rows), chunk_rows=700)
    chunks = chunks_stored(engine)
    assert len(chunks) > 30 * 8 and chunks == chunks_expected(engine)
    back = [(s, t, not a) for s, t, a in rows[::7]] + [(f"s{i}", T0 + i, True) for i in range(40)]  # new stores too
    ingest_file(engine, "status", write_feed(tmp_path / "back.csv", back), force=True)
    assert chunks_stored(engine) == chunks_expected(engine)
    later = rows[-1][1]
    hour = [(f"s{i}", later + HOUR_US + i, False) for i in range(30)]
    ingest_file(engine, "status", write_feed(tmp_path / "hour.csv", hour))
    storage_fold(engine)
    assert table_sizes(engine)[1] == 0 and chunks_stored(engine) == chunks_expected(engine)
    by_hand = [
        "UPDATE polls SET active = NOT active WHERE mod(ts_us, 5) = 0",
        f"UPDATE polls SET ts_us = ts_us + {2**36} WHERE store_key = 3",  # to other chunks
        "DELETE FROM polls WHERE store_key = 4",  # its chunks go
        f"DELETE FROM polls WHERE store_key = 5 AND ts_us < {T0 + 2**37}",
    ]
    for statement in by_hand:
        with engine.begin() as conn:
            conn.exec_driver_sql(statement)
        assert chunks_stored(engine) == chunks_expected(engine), statement
    with engine.begin() as conn:
        conn.exec_driver_sql("TRUNCATE polls")
    assert chunks_stored(engine) == {}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_database_without_poll_chunks_gains_them_at_start_up_and_the_reader_sorts_a_chunk_out_of_order(
    engine, tmp_path, monkeypatch
):
    """PostgreSQL: while a trigger of poll_chunks is disabled, the report reads polls; a database
    whose polls have no chunks (made before them, or its triggers dropped), or chunks packed
    another way, gets them at the next start, equal to polls packed; and a chunk packed out of
    time order still reads back sorted."""
    monkeypatch.setattr(storage.writers, "FLUSH_ROWS", 1000)  # to polls, not polls_recent
    rows = [(f"s{i % 20}", T0 + i * 150_000_000, i % 3 > 0) for i in range(3000)]
    ingest_file(engine, "status", write_feed(tmp_path / "first.csv", rows))
    assert table_sizes(engine) == (3000, 0)
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE polls DISABLE TRIGGER polls_chunks_insert")
        conn.exec_driver_sql(f"INSERT INTO polls VALUES (1, {T0 - 2}, true)")  # not in poll_chunks ...
    with engine.connect() as conn:  # ... so the report reads polls
        assert storage.polls_between(conn, T0 - HOUR_US, T0 + 3000 * 150_000_000)["ts_us"].iloc[0] == T0 - 2
    with engine.begin() as conn:
        storage.chunks.drop_poll_chunks(conn)
    ingest_file(engine, "status", write_feed(tmp_path / "more.csv", [("s1", T0 - 1, True)]))  # still ingests
    assert storage.engine.tune_postgresql(engine) == ["poll_chunks"]
    assert storage.engine.tune_postgresql(engine) == []
    assert chunks_stored(engine) == chunks_expected(engine)
    with engine.begin() as conn:  # chunks packed another way (another version's) are made again
        conn.exec_driver_sql("COMMENT ON TABLE poll_chunks IS 'storemon poll_chunks 0'")
        conn.exec_driver_sql("UPDATE poll_chunks SET packed = ''")
    assert storage.engine.tune_postgresql(engine) == ["poll_chunks"]
    assert chunks_stored(engine) == chunks_expected(engine)
    with engine.connect() as conn:
        whole = storage.polls_between(conn, T0 - HOUR_US, T0 + 3000 * 150_000_000)
        # One chunk rewritten with its polls reversed (the triggers are on polls, not here).
        conn.exec_driver_sql(
            "UPDATE poll_chunks SET packed = (SELECT string_agg(substr(packed, 8 * i + 1, 8), '' ORDER BY i DESC) "
            "FROM generate_series(0, length(packed) / 8 - 1) AS i) WHERE (store_key, chunk) = "
            "(SELECT store_key, chunk FROM poll_chunks WHERE length(packed) > 16 ORDER BY store_key, chunk LIMIT 1)"
        )
        assert storage.polls_between(conn, T0 - HOUR_US, T0 + 3000 * 150_000_000).equals(whole)
        conn.rollback()
    assert len(whole) == 3002 and whole.equals(whole.sort_values(["store_key", "ts_us"], ignore_index=True))


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_starting_over_empties_poll_chunks_and_removing_the_database_drops_them(app, engine, tmp_path, monkeypatch):
    """PostgreSQL: start-over leaves poll_chunks empty and kept (the next load is packed), and
    removing the database takes poll_chunks and its trigger function with storemon's tables."""
    monkeypatch.setattr(storage.writers, "FLUSH_ROWS", 100)  # to polls, not polls_recent
    rows = [(f"s{i % 10}", T0 + i * 600_000_000, True) for i in range(500)]
    ingest_file(engine, "status", write_feed(tmp_path / "old.csv", rows))
    assert chunks_stored(engine)
    with app.app_context():
        storage.empty_database()
    assert chunks_stored(engine) == {}
    rows = [(f"t{i % 7}", T0 + i * 900_000_000, i % 2 > 0) for i in range(400)]
    ingest_file(engine, "status", write_feed(tmp_path / "new.csv", rows))
    assert table_sizes(engine) == (400, 0) and chunks_stored(engine) == chunks_expected(engine)
    with app.app_context():
        storage.remove_database()
    with engine.connect() as conn:
        left = conn.exec_driver_sql(
            "SELECT to_regclass('poll_chunks'), to_regprocedure('storemon_repack_poll_chunks()')"
        ).one()
    assert left == (None, None)


def wait_for_a_lock_wait(engine, timeout: float = 30) -> None:
    """Return once a session of this (the test's own) database waits for a lock: an event, not
    a time window."""
    deadline = time.monotonic() + timeout
    waiting = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    with engine.connect() as conn:
        while not conn.exec_driver_sql(waiting).scalar():
            conn.rollback()
            assert time.monotonic() < deadline, "no session waited for a lock"
            time.sleep(0.01)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_poll_chunks_made_at_start_up_hold_the_polls_an_ingest_was_writing_meanwhile(engine, tmp_path, monkeypatch):
    """PostgreSQL: chunks made at start-up (by another process) while a writer has written polls
    and not committed wait for it, and hold its polls."""
    monkeypatch.setattr(storage.writers, "FLUSH_ROWS", 100)  # to polls, not polls_recent
    rows = [(f"s{i % 10}", T0 + i * 600_000_000, True) for i in range(500)]
    ingest_file(engine, "status", write_feed(tmp_path / "first.csv", rows))
    with engine.begin() as conn:
        storage.chunks.drop_poll_chunks(conn)
    writer = engine.connect()
    writer.exec_driver_sql(f"INSERT INTO polls SELECT store_key, ts_us + {HOUR_US}, NOT active FROM polls")
    start_up = threading.Thread(target=storage.engine.tune_postgresql, args=(engine,))
    start_up.start()
    try:
        wait_for_a_lock_wait(engine)  # the start-up waits for the writer
    finally:
        writer.commit()
        writer.close()
        start_up.join()
    assert table_sizes(engine) == (1000, 0) and chunks_stored(engine) == chunks_expected(engine)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_writers_of_one_chunk_leave_it_with_both_their_changes(engine, tmp_path, monkeypatch):
    """PostgreSQL: a poll added and not yet committed, and meanwhile another poll of the same
    chunk deleted by hand in another session: once both commit the chunk holds both changes."""
    monkeypatch.setattr(storage.writers, "FLUSH_ROWS", 100)  # to polls, not polls_recent
    rows = [(f"s{i % 10}", T0 + i * 600_000_000, True) for i in range(500)]
    ingest_file(engine, "status", write_feed(tmp_path / "first.csv", rows))
    with engine.connect() as conn:
        key, ts = conn.exec_driver_sql("SELECT store_key, min(ts_us) FROM polls GROUP BY 1 ORDER BY 1 LIMIT 1").one()
    first = engine.connect()
    first.exec_driver_sql(f"INSERT INTO polls VALUES ({key}, {ts + 1}, false)")  # same chunk
    second = threading.Thread(
        target=lambda: _run(engine, f"DELETE FROM polls WHERE store_key = {key} AND ts_us = {ts}")
    )
    second.start()
    try:
        wait_for_a_lock_wait(engine)  # the delete's repack waits for the insert's transaction
    finally:
        first.commit()
        first.close()
        second.join()
    assert chunks_stored(engine) == chunks_expected(engine)


def _run(engine, statement: str) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(statement)
