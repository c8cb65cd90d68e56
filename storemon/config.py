"""Configuration layers: defaults here -> environment -> the test dict given to create_app.

Every setting, its default and its meaning is listed in README.md ("Security and limits",
"Configuration"). Numeric settings and the API tokens are checked once in :func:`validate`, so a
bad value stops the server at start-up with one clear line instead of failing the first request
that uses it. The web server's own settings (address, processes, threads, client timeouts) are
read and checked by :func:`server_settings`, for ``gunicorn.conf.py``; docs/deployment.md says
what each bounds.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import click

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Where `make run` keeps generated demo data: apart from the user's own feeds in data/.
DEFAULT_DEMO_DIR = PROJECT_ROOT / "data" / "demo"


class ConfigError(click.ClickException):
    """A setting has a value storemon cannot run with.

    A ClickException, so the ``flask`` command line prints it as one line (exit 1)."""


class Defaults:
    """Values used when neither the environment nor the caller sets them."""

    # SQLAlchemy URL. None means "a SQLite file in the instance folder" (resolved in create_app).
    DATABASE_URL: str | None = None
    # Where report job state lives. None: beside a SQLite database, in its own file (so a long
    # ingest, which holds SQLite's single write lock, never blocks a trigger or a job's progress);
    # for any other database, the database itself.
    JOBS_DATABASE_URL: str | None = None
    # Folder where finished report CSVs are written.
    REPORTS_DIR: str = str(PROJECT_ROOT / "reports")
    # Folder for uploads being received (None: the instance folder's uploads/).
    UPLOAD_DIR: str | None = None
    # Threads that compute reports in one web process.
    REPORT_WORKERS: int = 2
    # Distinct reports that may wait or run at once (all processes); more get 503 + Retry-After.
    REPORT_QUEUE_MAX: int = 8
    # Finished reports are deleted (file and database copy) after this many days ...
    REPORT_RETENTION_DAYS: float = 7.0
    # ... or when more than this many finished reports are kept (the oldest go first).
    REPORT_KEEP: int = 200
    # Largest request body accepted (bytes); larger ones get 413.
    MAX_UPLOAD_BYTES: int = 1 << 30
    # A CSV line longer than this (bytes) makes the file unreadable (it cannot be a feed row).
    MAX_LINE_BYTES: int = 1 << 20
    # A second ingest waits this long (s) for the one running; then 503 (HTTP) / exit 75 (CLI).
    INGEST_WAIT_SECONDS: float = 30.0
    # Comma-separated API tokens, each at least MIN_TOKEN_LENGTH characters. Empty: no tokens (then
    # only loopback binds are allowed, and state-changing requests from other origins are refused).
    STOREMON_API_TOKENS: str = ""
    # Host names a token-less server answers to besides loopback ones (comma-separated).
    STOREMON_ALLOWED_HOSTS: str = ""
    # "1": serve a non-loopback bind without tokens (and skip the Host check).
    STOREMON_ALLOW_OPEN: str = ""
    # SQLite waits this long (ms) for a lock before giving up with "database is locked".
    SQLITE_BUSY_TIMEOUT_MS: int = 30_000
    # Rows handed to the database per batch while ingesting polls.
    INGEST_CHUNK_ROWS: int = 250_000
    # A report is computed this many stores at a time: its memory follows this, not the store count.
    REPORT_BATCH_STORES: int = 10_000
    # A serving process keeps what its last report read (polls of the window, business
    # intervals; storemon/snapshot.py) when that is at most this many polls, and the next report
    # reads only what changed since. 0: keep nothing. About 20 bytes a poll.
    REPORT_CACHE_POLLS: int = 6_000_000
    # Testing aid: seconds a report job waits after claiming its report (0 in real use).
    REPORT_START_DELAY: float = 0.0
    SQLALCHEMY_TRACK_MODIFICATIONS: bool = False


# Settings read from the environment, with their types.
ENV_KEYS: dict[str, type] = {
    "DATABASE_URL": str,
    "JOBS_DATABASE_URL": str,
    "REPORTS_DIR": str,
    "UPLOAD_DIR": str,
    "REPORT_WORKERS": int,
    "REPORT_QUEUE_MAX": int,
    "REPORT_RETENTION_DAYS": float,
    "REPORT_KEEP": int,
    "MAX_UPLOAD_BYTES": int,
    "MAX_LINE_BYTES": int,
    "INGEST_WAIT_SECONDS": float,
    "STOREMON_API_TOKENS": str,
    "STOREMON_ALLOWED_HOSTS": str,
    "STOREMON_ALLOW_OPEN": str,
    "REPORT_START_DELAY": float,
    "REPORT_BATCH_STORES": int,
    "REPORT_CACHE_POLLS": int,
}

# Lowest accepted value of each numeric setting.
MINIMUM = {
    "REPORT_WORKERS": 1,
    "REPORT_QUEUE_MAX": 1,
    "REPORT_RETENTION_DAYS": 0,
    "REPORT_KEEP": 1,
    "MAX_UPLOAD_BYTES": 1,
    "MAX_LINE_BYTES": 1024,
    "INGEST_WAIT_SECONDS": 0,
    "REPORT_START_DELAY": 0,
    "INGEST_CHUNK_ROWS": 1,
    "REPORT_BATCH_STORES": 1,
    "REPORT_CACHE_POLLS": 0,
}


def from_environment() -> dict:
    """The settings the environment overrides (only keys that are set), as text."""
    return {key: os.environ[key] for key in ENV_KEYS if os.environ.get(key)}


def validate(config) -> None:
    """Convert numeric settings to their types and refuse values storemon cannot run with."""
    for key, minimum in MINIMUM.items():
        kind = ENV_KEYS.get(key, int)
        value = config.get(key)
        try:
            number = kind(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}={value!r} is not a number") from None
        if number < minimum:
            raise ConfigError(f"{key}={value!r}: must be at least {minimum}")
        config[key] = number
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
            raise ConfigError(f"{where} is empty or only whitespace (tokens are separated by commas; "
                              "leave the setting unset for no tokens)")
        if len(item) < MIN_TOKEN_LENGTH:
            raise ConfigError(f"{where} has {len(item)} characters; a token needs at least {MIN_TOKEN_LENGTH} "
                              "(python3 -c 'import secrets; print(secrets.token_urlsafe(24))' makes one)")
        if not item.replace(" ", "").isprintable():
            raise ConfigError(f"{where} holds a control character (it could not be sent in a header)")
    return items


# The web server's settings (gunicorn.conf.py), read from the environment: default, type, minimum.
SERVER_SETTINGS: dict[str, tuple] = {
    # Where gunicorn listens: HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N.
    "STOREMON_BIND": ("127.0.0.1:8000", str, None),
    # Worker processes. Report jobs run in a thread pool inside each; one process is the design.
    "STOREMON_WEB_WORKERS": (1, int, 1),
    # Threads per process that run requests whose head has fully arrived.
    "STOREMON_WEB_THREADS": (8, int, 1),
    # Connections one process holds open at most (idle, being read, kept alive); more wait in
    # the listen queue.
    "STOREMON_WEB_CONNECTIONS": (1000, int, 10),
    # Seconds a client has to send a whole request head, from connecting (or from its first byte
    # on a kept-alive connection); then 408 and closed.
    "STOREMON_HEADER_TIMEOUT": (10.0, float, 0.5),
    # Seconds a request thread waits for a client to send more of a body or take more of a
    # response; then the connection is closed.
    "STOREMON_CLIENT_TIMEOUT": (30.0, float, 1.0),
}


def server_settings(environ) -> dict:
    """The web server's settings: the environment's values over the defaults (unset or empty: the
    default, as for the app's settings), converted and checked; ConfigError names the first value
    that cannot be used."""
    settings = {}
    for key, (default, kind, minimum) in SERVER_SETTINGS.items():
        text = environ.get(key)
        if not text:
            settings[key] = default
            continue
        if not text.strip():
            raise ConfigError(f"{key}={text!r} is only whitespace: give a value or unset it (default {default})")
        if kind is str:
            settings[key] = text.strip()
            continue
        try:
            number = kind(text)
        except ValueError:
            raise ConfigError(f"{key}={text!r} is not a number") from None
        if kind is float and not math.isfinite(number):
            raise ConfigError(f"{key}={text!r}: must be a finite number of seconds")
        if number < minimum:
            raise ConfigError(f"{key}={text!r}: must be at least {minimum}")
        settings[key] = number
    check_bind_address(settings["STOREMON_BIND"])
    return settings


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
