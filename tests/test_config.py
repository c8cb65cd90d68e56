"""Settings (storemon/config.py): declared once, read from the environment, checked at start-up,
and documented in docs/configuration.md exactly as the table says."""

from __future__ import annotations

import re

import pytest
from helpers import ROOT

from storemon import create_app
from storemon.config import (
    BY_NAME,
    SERVER_SETTINGS,
    SETTINGS,
    ConfigError,
    default,
    document,
    from_environment,
    report_parallelism,
)

# What the code reads from app.config or the environment, wherever it is read.
READ = re.compile(r"""(?:config|environ)(?:\.get)?[\[(]\s*["']([A-Z][A-Z0-9_]+)["']""")
NOT_SETTINGS = {
    "SQLALCHEMY_DATABASE_URI",
    "SQLALCHEMY_BINDS",
    "SQLALCHEMY_ENGINE_OPTIONS",
    "SQLALCHEMY_TRACK_MODIFICATIONS",
    "TESTING",
    "CI",
}


def test_the_configuration_page_is_written_from_the_table():
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert page == document(), "docs/configuration.md is stale: run .venv/bin/python scripts/configuration_doc.py"
    for setting in SETTINGS:
        assert f"| `{setting.name}` |" in page


def test_every_setting_the_code_reads_is_in_the_table():
    sources = [*sorted((ROOT / "storemon").rglob("*.py")), ROOT / "gunicorn.conf.py", ROOT / "wsgi.py"]
    read = {name for path in sources for name in READ.findall(path.read_text(encoding="utf-8"))}
    assert read - NOT_SETTINGS <= set(BY_NAME), f"undocumented: {sorted(read - NOT_SETTINGS - set(BY_NAME))}"
    assert "REPORT_BATCH_STORES" in read and "STOREMON_API_TOKENS" in read  # the scan finds what it should


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.name not in SERVER_SETTINGS], ids=lambda s: s.name)
def test_every_app_setting_is_read_from_the_environment(setting):
    value = {str: "x", int: "123456", float: "12.5"}[setting.type]
    assert from_environment({setting.name: value}) == {setting.name: value}
    assert from_environment({setting.name: ""}) == {}  # empty: the default


# The web server's settings are checked by gunicorn.conf.py (tests/test_server_limits.py).
@pytest.mark.parametrize(
    "setting",
    [s for s in SETTINGS if s.type is not str and s.minimum and s.name not in SERVER_SETTINGS],
    ids=lambda s: s.name,
)
def test_a_number_below_its_minimum_stops_the_app_with_one_line(tmp_path, setting):
    with pytest.raises(ConfigError) as caught:
        create_app(
            {
                setting.name: setting.minimum - 1,
                "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
                "REPORTS_DIR": str(tmp_path / "r"),
            }
        )
    assert caught.value.message == f"{setting.name}={setting.minimum - 1!r}: must be at least {setting.minimum}"
    assert "\n" not in caught.value.message


def test_functions_take_their_defaults_from_the_table():
    from storemon import reports

    assert reports.BATCH_STORES == default("REPORT_BATCH_STORES") == 10_000


@pytest.mark.parametrize(
    "parallel, batch, cores, expected",
    [
        (0, 10_000, 2, (2, 5_000)),  # the cores, each thread a share of the batch
        (0, 10_000, 64, (8, 1_250)),  # at most 8 threads by default
        (16, 10_000, 2, (10, 1_000)),  # asked for: no batch below 1,000 stores
        (1, 10_000, 8, (1, 10_000)),
        (0, 1_500, 4, (1, 1_500)),  # a batch too small to share
    ],
)
def test_a_report_uses_the_cores_with_the_memory_of_one_batch(monkeypatch, parallel, batch, cores, expected):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(cores)))
    assert report_parallelism({"REPORT_PARALLEL": parallel, "REPORT_BATCH_STORES": batch}) == expected
