"""WSGI entry point: ``gunicorn -c gunicorn.conf.py wsgi:app``.

Each serving process recovers reports left queued or running by a process that died. A setting
storemon cannot run with stops the server with one line (no traceback).
"""

import sys

from storemon import create_app
from storemon.config import ConfigError
from storemon.jobs import recover_reports

try:
    app = create_app()
except ConfigError as exc:
    print(f"storemon: configuration error: {exc.message}", file=sys.stderr, flush=True)
    sys.exit(3)  # gunicorn's "worker failed to boot": the arbiter stops instead of retrying

recover_reports(app)
