"""WSGI entry point: ``gunicorn -c gunicorn.conf.py wsgi:app``.

Each serving process recovers reports left queued or running by a process that died.
"""

from storemon import create_app
from storemon.jobs import recover_reports

app = create_app()
recover_reports(app)
