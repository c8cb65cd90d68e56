"""gunicorn settings for `make run` (override any with GUNICORN_CMD_ARGS).

Without API tokens, storemon refuses to serve beyond this machine (see storemon/security.py);
each instance gets no control socket, so two instances on one host never share (and break) one.

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

from storemon.config import ConfigError, Defaults, from_environment, validate
from storemon.security import check_bind

bind = os.environ.get("STOREMON_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("STOREMON_WEB_WORKERS", "2"))
threads = 4
worker_class = "gthread"
timeout = 60
accesslog = "-"
errorlog = "-"
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
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _metrics_dir, _own_metrics_dir = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]), False
else:
    _sweep_metrics_dirs()
    _metrics_dir = Path(tempfile.mkdtemp(prefix=f"storemon-metrics-{os.getpid()}-"))
    _own_metrics_dir = True
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_metrics_dir)


def on_starting(server):
    """Check the settings and the addresses actually bound (command-line --bind included) before
    any worker starts: a bad setting stops the server with one line. (Left to the workers, each
    would refuse it, and gunicorn, reaping two failed workers at once, prints a traceback.)"""
    settings = {key: getattr(Defaults, key) for key in dir(Defaults) if key.isupper()}
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
