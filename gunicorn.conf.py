"""gunicorn settings for `make run` (override any with GUNICORN_CMD_ARGS).

Without API tokens, storemon refuses to serve beyond this machine (see storemon/security.py);
each instance gets no control socket, so two instances on one host never share (and break) one.
"""

import os
import sys

from storemon.config import ConfigError
from storemon.security import check_bind

bind = os.environ.get("STOREMON_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("STOREMON_WEB_WORKERS", "2"))
threads = 4
worker_class = "gthread"
timeout = 60
accesslog = "-"
errorlog = "-"
control_socket_disable = True


def on_starting(server):
    """Check the addresses actually bound (command-line --bind included) before serving."""
    try:
        check_bind(server.cfg.bind, os.environ)
    except ConfigError as exc:
        print(f"storemon: {exc}", file=sys.stderr)
        sys.exit(78)  # EX_CONFIG
