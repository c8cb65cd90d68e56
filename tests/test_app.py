"""The app factory (storemon/__init__.py ``create_app``): settings that cannot work stop it at
start-up; the data's connection pool has room for every thread that may hold a connection."""

from __future__ import annotations

import pytest

from storemon import create_app
from storemon.config import ConfigError


@pytest.mark.parametrize(
    "key, value",
    [("REPORT_WORKERS", 0), ("REPORT_WORKERS", "two"), ("MAX_UPLOAD_BYTES", -1)],
    ids=["REPORT_WORKERS=0", "REPORT_WORKERS=two", "MAX_UPLOAD_BYTES=-1"],
)
def test_settings_that_cannot_work_are_refused_at_start_up(tmp_path, key, value):
    with pytest.raises(ConfigError, match=key):
        create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "REPORTS_DIR": str(tmp_path), key: value})


def test_the_data_engine_holds_every_thread_that_may_hold_a_connection_at_once(database_url, tmp_path):
    """8 request threads and two report jobs on 8 threads (each job: its snapshot and one per
    batch thread) hold 26 connections of the data's engine at once: none waits for another to be
    returned."""
    from contextlib import ExitStack

    from storemon.config import report_parallelism
    from storemon.extensions import db

    app = create_app(
        {"DATABASE_URL": database_url, "REPORTS_DIR": str(tmp_path / "r"), "REPORT_WORKERS": 2, "REPORT_PARALLEL": 8}
    )
    assert report_parallelism(app.config)[0] == 8
    with app.app_context(), ExitStack() as held:
        held.callback(lambda: [engine.dispose() for engine in db.engines.values()])  # last
        connections = [held.enter_context(db.engine.connect()) for _ in range(8 + 2 * (1 + 8))]
        assert all(c.exec_driver_sql("SELECT 1").scalar() == 1 for c in connections)
