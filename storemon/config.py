"""Settings, declared once: :data:`SETTINGS` holds each one's name, default, type, minimum and
meaning; docs/configuration.md is written from it (:func:`document`).

Layers: the defaults -> the environment -> the dictionary given to ``create_app`` (tests). The
app's settings are checked once in :func:`validate`, the web server's (address, processes,
threads, client timeouts; for ``gunicorn.conf.py``) in :func:`server_settings`, so a bad value
stops the server at start-up with one clear line instead of failing the first request that uses
it. Functions that take a setting as an argument take its default from here (:func:`default`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import click

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Where `make run` keeps generated demo data: apart from the user's own feeds in data/.
DEFAULT_DEMO_DIR = PROJECT_ROOT / "data" / "demo"


class ConfigError(click.ClickException):
    """A setting has a value storemon cannot run with.

    A ClickException, so the ``flask`` command line prints it as one line (exit 1)."""


@dataclass(frozen=True)
class Setting:
    """One setting: its name (the environment variable and the ``app.config`` key), default,
    type, lowest accepted value (numbers), meaning, and the group it is listed under in
    docs/configuration.md. ``shown`` is the default as the documentation writes it, when the
    value itself is computed (a path on this machine) or None (resolved in ``create_app``)."""

    name: str
    default: object
    type: type
    help: str
    group: str
    minimum: float | None = None
    shown: str | None = None

    @property
    def shown_default(self) -> str:
        if self.shown is not None:
            return self.shown
        if self.default in (None, ""):
            return "unset"
        if self.type is float and float(self.default).is_integer():
            return f"{int(self.default)}"
        return f"{self.default:_}".replace("_", ",") if self.type is int else str(self.default)


GROUPS = {
    "data": "Where the data lives",
    "security": "Who may call storemon",
    "limits": "Limits of one request",
    "ingest": "Ingest",
    "reports": "Reports",
    "server": "The web server (gunicorn.conf.py)",
    "testing": "Testing aids",
}

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "DATABASE_URL",
        None,
        str,
        "SQLAlchemy URL of the data: SQLite or `postgresql+psycopg://user:password@host:5432/db`",
        "data",
        shown="`sqlite:///instance/storemon.db`",
    ),
    Setting(
        "JOBS_DATABASE_URL",
        None,
        str,
        "where report job state lives: on SQLite a file of its own beside the "
        "data (a long ingest, which holds SQLite's write lock, never blocks a trigger); else the data's database",
        "data",
        shown="`storemon.jobs.db` beside a SQLite database; else `DATABASE_URL`",
    ),
    Setting(
        "REPORTS_DIR",
        str(PROJECT_ROOT / "reports"),
        str,
        "folder of finished reports (every format)",
        "data",
        shown="`reports/`",
    ),
    Setting("UPLOAD_DIR", None, str, "folder of uploads being received", "data", shown="`instance/uploads/`"),
    Setting(
        "STOREMON_API_TOKENS",
        "",
        str,
        "comma-separated API tokens, each at least 16 characters; unset: no "
        "tokens, and then only loopback addresses are served",
        "security",
    ),
    Setting(
        "STOREMON_ALLOWED_HOSTS",
        "",
        str,
        "host names a server without tokens answers to besides loopback ones (comma-separated)",
        "security",
    ),
    Setting("STOREMON_ALLOW_OPEN", "", str, "`1`: serve a non-loopback address without tokens, any `Host`", "security"),
    Setting(
        "MAX_UPLOAD_BYTES",
        1 << 30,
        int,
        "largest request body (bytes); larger ones get `413`",
        "limits",
        minimum=1,
        shown="1,073,741,824 (1 GiB)",
    ),
    Setting(
        "MAX_LINE_BYTES",
        1 << 20,
        int,
        "longest CSV record (bytes; a quoted field over several lines is one "
        "record); a longer one makes the file unreadable",
        "limits",
        minimum=1024,
        shown="1,048,576 (1 MiB)",
    ),
    Setting(
        "INGEST_WAIT_SECONDS",
        30.0,
        float,
        "an ingest waits this long for the one before it; then `503` (HTTP) or exit 75 (command line)",
        "ingest",
        minimum=0,
    ),
    Setting(
        "INGEST_CHUNK_ROWS",
        250_000,
        int,
        "rows the CSV reader parses at a time (an ingest's memory follows it)",
        "ingest",
        minimum=1,
    ),
    Setting(
        "SQLITE_BUSY_TIMEOUT_MS",
        30_000,
        int,
        'SQLite waits this long (ms) for a lock before "database is locked"',
        "ingest",
        minimum=0,
    ),
    Setting("REPORT_WORKERS", 2, int, "threads that compute reports in one serving process", "reports", minimum=1),
    Setting(
        "REPORT_QUEUE_MAX",
        8,
        int,
        "distinct reports waiting or running at once (all processes); then `503`",
        "reports",
        minimum=1,
    ),
    Setting(
        "REPORT_RETENTION_DAYS",
        7.0,
        float,
        "finished reports are deleted after this many days (then `410`)",
        "reports",
        minimum=0,
    ),
    Setting("REPORT_KEEP", 200, int, "... and beyond this many (the oldest first)", "reports", minimum=1),
    Setting(
        "REPORT_BATCH_STORES",
        10_000,
        int,
        "a report is computed this many stores at a time: its memory follows this, not the number of stores",
        "reports",
        minimum=1,
    ),
    Setting(
        "REPORT_PARALLEL",
        0,
        int,
        "threads that compute one report's batches at once, each batch of at most `REPORT_BATCH_STORES` / "
        "threads stores (memory stays that of one batch) and never fewer than 1,000 (fewer threads then); "
        "`0`: the cores this process may use, at most 8; `1`: one",
        "reports",
        minimum=0,
        shown="0 (the cores, at most 8)",
    ),
    Setting(
        "REPORT_CACHE_POLLS",
        6_000_000,
        int,
        "a serving process keeps what its last report read when that "
        "is at most this many polls (about 20 bytes each), and the next report reads only what changed; "
        "`0`: keep nothing",
        "reports",
        minimum=0,
    ),
    Setting(
        "STOREMON_BIND",
        "127.0.0.1:8000",
        str,
        "where gunicorn listens: HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N",
        "server",
    ),
    Setting(
        "STOREMON_WEB_WORKERS",
        1,
        int,
        "serving processes; report jobs run in a thread pool inside each "
        "(one process is the design: its report cache is whole)",
        "server",
        minimum=1,
    ),
    Setting(
        "STOREMON_WEB_THREADS",
        8,
        int,
        "threads per process that run requests whose head has arrived",
        "server",
        minimum=1,
    ),
    Setting(
        "STOREMON_WEB_CONNECTIONS",
        1000,
        int,
        "connections one process holds open at most; more wait in the listen queue",
        "server",
        minimum=10,
    ),
    Setting(
        "STOREMON_HEADER_TIMEOUT",
        10.0,
        float,
        "seconds a client has to send a whole request head; then `408` and closed",
        "server",
        minimum=0.5,
    ),
    Setting(
        "STOREMON_CLIENT_TIMEOUT",
        30.0,
        float,
        "seconds a request thread waits for a client that stalls "
        "in a body or a response; then the connection is closed",
        "server",
        minimum=1.0,
    ),
    Setting(
        "PROMETHEUS_MULTIPROC_DIR",
        None,
        str,
        "where the serving processes keep the `/metrics` counters (emptied at start)",
        "server",
        shown="a fresh temporary folder per server",
    ),
    Setting(
        "REPORT_START_DELAY",
        0.0,
        float,
        "seconds a report job waits after claiming its report, so a test can see it running (0 in real use)",
        "testing",
        minimum=0,
    ),
)
BY_NAME = {setting.name: setting for setting in SETTINGS}
SERVER_SETTINGS = tuple(s.name for s in SETTINGS if s.group == "server")


def default(name: str):
    """A setting's default (what functions use when no app passes them one)."""
    return BY_NAME[name].default


def defaults() -> dict:
    """Every app setting (all but the web server's) at its default, for ``app.config``."""
    return {s.name: s.default for s in SETTINGS if s.group != "server"}


# Threads a report uses when REPORT_PARALLEL is 0 (the cores), at most; and a thread's batch
# holds at least this many stores.
MAX_REPORT_THREADS = 8
MIN_THREAD_BATCH_STORES = 1_000


def report_parallelism(config) -> tuple[int, int]:
    """``(threads, stores per batch)`` for one report: REPORT_PARALLEL threads (0: the cores this
    process may use, at most :data:`MAX_REPORT_THREADS`), each computing batches of
    REPORT_BATCH_STORES / threads stores, so the batches in flight hold as many stores as one
    batch did -- and never fewer than :data:`MIN_THREAD_BATCH_STORES` a batch (fewer threads
    then)."""
    batch = int(config["REPORT_BATCH_STORES"])
    threads = int(config["REPORT_PARALLEL"]) or min(len(os.sched_getaffinity(0)), MAX_REPORT_THREADS)
    threads = max(1, min(threads, batch // MIN_THREAD_BATCH_STORES))
    return threads, max(1, batch // threads)


def pool_overflow(config) -> int:
    """Connections the data's engine may open beyond the 5 it keeps: SQLAlchemy's default 10 (the
    request threads'), plus what the report jobs may hold at once -- each its snapshot and its
    batch threads' (and 1 to spare). With 8 report threads two jobs hold 18: a pool of 15 would
    make batches wait for each other's connections, and requests for theirs. (The jobs' engine,
    written by requests and each job's progress, keeps SQLAlchemy's default.)"""
    threads, _ = report_parallelism(config)
    return 10 + int(config["REPORT_WORKERS"]) * (threads + 2)


def from_environment(environ=None) -> dict:
    """The app settings the environment sets (unset or empty: not here), as text."""
    environ = os.environ if environ is None else environ
    return {s.name: environ[s.name] for s in SETTINGS if s.group != "server" and environ.get(s.name)}


def _convert(setting: Setting, value):
    """``value`` as the setting's type, checked against its minimum (ConfigError if it cannot be)."""
    if setting.type is str or value is None:
        return value
    try:
        number = setting.type(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{setting.name}={value!r} is not a number") from None
    if setting.type is float and not math.isfinite(number):
        raise ConfigError(f"{setting.name}={value!r}: must be a finite number")
    if setting.minimum is not None and number < setting.minimum:
        raise ConfigError(f"{setting.name}={value!r}: must be at least {setting.minimum}")
    return number


def validate(config) -> None:
    """Convert the app's numeric settings to their types and refuse values storemon cannot run with."""
    for setting in SETTINGS:
        if setting.group != "server" and setting.name in config:
            config[setting.name] = _convert(setting, config[setting.name])
    if config.get("STOREMON_ALLOW_OPEN") not in ("", None, "0", "1"):
        raise ConfigError(f"STOREMON_ALLOW_OPEN={config['STOREMON_ALLOW_OPEN']!r}: use 1 or leave it unset")
    tokens(config)


# Shortest API token accepted (characters).
MIN_TOKEN_LENGTH = 16


def tokens(config) -> list[str]:
    """The API tokens configured (empty list: none, when the setting is empty or unset).

    A setting that is not empty must consist of usable tokens only: an empty or whitespace-only
    item, a token shorter than MIN_TOKEN_LENGTH characters or one holding a control character
    raises ConfigError -- a list such as ``" "`` or ``"\\n"`` would otherwise leave the server
    without any token. The message names the item by position and never quotes it.
    """
    text = str(config.get("STOREMON_API_TOKENS") or "")
    if not text:
        return []
    items = [item.strip() for item in text.split(",")]
    for number, item in enumerate(items, 1):
        where = f"STOREMON_API_TOKENS: item {number} of {len(items)}"
        if not item:
            raise ConfigError(
                f"{where} is empty or only whitespace (tokens are separated by commas; "
                "leave the setting unset for no tokens)"
            )
        if len(item) < MIN_TOKEN_LENGTH:
            raise ConfigError(
                f"{where} has {len(item)} characters; a token needs at least {MIN_TOKEN_LENGTH} "
                "(python3 -c 'import secrets; print(secrets.token_urlsafe(24))' makes one)"
            )
        if not item.replace(" ", "").isprintable():
            raise ConfigError(f"{where} holds a control character (it could not be sent in a header)")
    return items


def server_settings(environ) -> dict:
    """The web server's settings: the environment's values over the defaults (unset or empty: the
    default, as for the app's settings), converted and checked; ConfigError names the first value
    that cannot be used."""
    settings = {}
    for name in SERVER_SETTINGS:
        setting, text = BY_NAME[name], environ.get(name)
        if not text:
            settings[name] = setting.default
        elif not text.strip():
            raise ConfigError(
                f"{name}={text!r} is only whitespace: give a value or unset it (default {setting.shown_default})"
            )
        else:
            settings[name] = text.strip() if setting.type is str else _convert(setting, text)
    check_bind_address(settings["STOREMON_BIND"])
    return settings


def document() -> str:
    """docs/configuration.md: every setting, by group, with its default and meaning."""
    lines = [
        "# Configuration",
        "",
        "Every setting is an environment variable (the same name is the key in `app.config` and in the",
        "dictionary tests give `create_app`). Unset or empty means the default. A value storemon cannot run",
        "with stops the server, or the command, at start-up with one line naming it (exit 78 for the",
        "server). What the security settings defend against is in [security.md](security.md); the web",
        "server's settings and the reverse proxy in [deployment.md](deployment.md).",
        "",
        "This page is written from `storemon/config.py` (`SETTINGS`) by",
        "`.venv/bin/python scripts/configuration_doc.py`; a test fails when it is stale.",
    ]
    for group, title in GROUPS.items():
        lines += ["", f"## {title}", "", "| setting | default | meaning |", "|---|---|---|"]
        for s in (s for s in SETTINGS if s.group == group):
            shown = (
                s.shown_default
                if s.shown_default.startswith("`") or s.shown_default == "unset"
                else f"`{s.shown_default}`"
                if s.shown is None
                else s.shown_default
            )
            at_least = f" (at least {s.minimum:g})" if s.minimum not in (None, 0, 1) else ""
            lines.append(f"| `{s.name}` | {shown} | {s.help}{at_least} |")
    return "\n".join(lines) + "\n"


def check_bind_address(bind: str) -> None:
    """Refuse a gunicorn address that is not HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N."""
    problem = None
    if bind.startswith("unix:"):
        problem = None if bind[5:] else "no path after unix:"
    elif bind.startswith("fd://"):
        problem = None if bind[5:].isdigit() else "fd:// needs a file descriptor number"
    elif any(ch.isspace() for ch in bind) or "," in bind:
        problem = "one address, without spaces or commas"
    else:
        host, colon, port = bind.rpartition(":")
        if not colon or (bind.startswith("[") and not host.endswith("]")):
            problem = "no port (write HOST:PORT, e.g. 127.0.0.1:8000)"
        elif not host or host == "[]":
            problem = "no host (write HOST:PORT, e.g. 127.0.0.1:8000)"
        elif not (port.isdigit() and 1 <= int(port) <= 65535):
            problem = "the port must be a number from 1 to 65535"
        elif host.startswith("[") != host.endswith("]"):
            problem = "an IPv6 address goes in brackets: [::1]:8000"
        elif ":" in host and not host.startswith("["):
            problem = "an IPv6 address goes in brackets: [::1]:8000"
    if problem:
        raise ConfigError(f"STOREMON_BIND={bind!r}: {problem}")
