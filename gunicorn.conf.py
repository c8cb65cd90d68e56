"""gunicorn settings for `make run` (override any with GUNICORN_CMD_ARGS).

The server's settings come from the environment (storemon/config.py, SERVER_SETTINGS; what each
bounds: docs/deployment.md) and are checked here, before gunicorn uses them: a value that cannot
be used stops the server with one line and exit code 78, as the app's own settings do (checked in
on_starting, before any worker starts).

One worker process by default, with threads: report jobs run in a thread pool inside it. The
worker class is gunicorn's gthread with request heads read by its event loop
(storemon/webserver.py), so clients that connect and wait, or send a head slowly, hold no
thread; a head has STOREMON_HEADER_TIMEOUT to arrive, and a thread waits STOREMON_CLIENT_TIMEOUT
at most for a client.

Without API tokens, storemon refuses to serve beyond this machine (see storemon/security.py);
each instance gets no control socket, so two instances on one host never share (and break) one.
No log line holds any part of a credential: the access log has no user field (gunicorn's
%(u)s is the HTTP Basic user name, where a client may have put a token), and warnings about
refused requests do not quote them (storemon.webserver.Logger).

Metrics (/metrics, storemon/metrics.py) add up all workers through prometheus_client's
multiprocess mode: each server gets a fresh PROMETHEUS_MULTIPROC_DIR (a temp folder named with the
master's pid, removed when it stops, or at the next start if it was killed; or the one you set,
emptied at start), and a worker that exits is marked dead there.
"""

import os
import shutil
import sys
import tempfile
from pathlib import Path

from storemon.config import ConfigError, defaults, from_environment, server_settings, validate
from storemon.security import check_bind

try:
    _server = server_settings(os.environ)
except ConfigError as exc:
    print(f"storemon: configuration error: {exc.message}", file=sys.stderr)
    sys.exit(78)  # EX_CONFIG

bind = _server["STOREMON_BIND"]
workers = _server["STOREMON_WEB_WORKERS"]
threads = _server["STOREMON_WEB_THREADS"]
worker_connections = _server["STOREMON_WEB_CONNECTIONS"]
worker_class = "storemon.webserver.HeadFirstWorker"
keepalive = 2  # seconds an idle kept-alive connection stays open
# The request head's limits (gunicorn's defaults, stated); the whole head is at most 64 KiB
# (storemon.webserver.MAX_HEAD_BYTES).
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190
timeout = 60
accesslog = "-"
errorlog = "-"
# gunicorn's default format without %(u)s (the Basic user name); the logger also logs "-" for
# it and no request text in its warnings: no part of a credential is logged.
access_log_format = '%(h)s %(l)s - %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
logger_class = "storemon.webserver.Logger"
control_socket_disable = True


def _sweep_metrics_dirs() -> None:
    """Remove the metrics folders of servers that were killed (on_exit never ran for them).
    (Nothing here may import storemon.metrics: prometheus_client must first see the folder.)"""
    for folder in Path(tempfile.gettempdir()).glob("storemon-metrics-*-*"):
        pid = folder.name.split("-")[2]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:
            pass


# Set before the workers import prometheus_client (they inherit the environment).
if _server["PROMETHEUS_MULTIPROC_DIR"]:
    _metrics_dir, _own_metrics_dir = Path(_server["PROMETHEUS_MULTIPROC_DIR"]), False
else:
    _sweep_metrics_dirs()
    _metrics_dir = Path(tempfile.mkdtemp(prefix=f"storemon-metrics-{os.getpid()}-"))
    _own_metrics_dir = True
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_metrics_dir)


def on_starting(server):
    """Check the settings and the addresses actually bound (command-line --bind included) before
    any worker starts: a bad setting stops the server with one line. (Left to the workers, each
    would refuse it, and gunicorn, reaping two failed workers at once, prints a traceback.)"""
    settings = defaults()
    settings.update(from_environment())
    try:
        validate(settings)
    except ConfigError as exc:
        print(f"storemon: configuration error: {exc.message}", file=sys.stderr)
        sys.exit(78)  # EX_CONFIG
    try:
        check_bind(server.cfg.bind, os.environ)
    except ConfigError as exc:
        print(f"storemon: {exc}", file=sys.stderr)
        sys.exit(78)  # EX_CONFIG
    _metrics_dir.mkdir(parents=True, exist_ok=True)
    for stale in _metrics_dir.glob("*.db"):  # counters of an earlier server are not this one's
        stale.unlink()


def child_exit(server, worker):
    """A worker is gone: its live gauges stop counting (its counters and histograms stay)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, str(_metrics_dir))


def on_exit(server):
    if _own_metrics_dir:
        shutil.rmtree(_metrics_dir, ignore_errors=True)
