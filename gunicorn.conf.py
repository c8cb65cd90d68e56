"""gunicorn settings for `make run` (override any with GUNICORN_CMD_ARGS)."""

import os

bind = os.environ.get("STOREMON_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("STOREMON_WEB_WORKERS", "2"))
threads = 4
worker_class = "gthread"
timeout = 60
accesslog = "-"
errorlog = "-"
