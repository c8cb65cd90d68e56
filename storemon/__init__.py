"""storemon: how often were stores offline while they should have been open.

Layers, one module each:

* :mod:`storemon.compute` -- the report's arithmetic (pure: arrays in, frame out)
* :mod:`storemon.ingest`  -- CSV feeds -> rows in the database
* :mod:`storemon.storage` -- engine set-up and queries
* :mod:`storemon.models`  -- the schema
* :mod:`storemon.cli`     -- ``flask --app storemon ...`` commands
* :mod:`storemon.demo`    -- the demo / benchmark data generator
* :mod:`storemon.explain` -- one store's timeline (the report's steps applied to one store)
* :mod:`storemon.dashboard` -- the web dashboard (templates/, static/, chart layout in chart.py)
"""

from __future__ import annotations

import logging.config
from pathlib import Path

from flask import Flask

from .config import Defaults, from_environment
from .extensions import db


def _configure_logging() -> None:
    if logging.getLogger().handlers:
        return
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
            "handlers": {
                "stdout": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout", "formatter": "plain"}
            },
            "root": {"level": "INFO", "handlers": ["stdout"]},
        }
    )


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app: config (defaults -> environment -> test_config), database, CLI, routes."""
    _configure_logging()
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_object(Defaults)
    app.config.update(from_environment())
    if test_config:
        app.config.update(test_config)

    url = app.config["DATABASE_URL"]
    if not url:
        Path(app.instance_path).mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{Path(app.instance_path) / 'storemon.db'}"
    app.config["DATABASE_URL"] = url
    app.config["SQLALCHEMY_DATABASE_URI"] = url
    Path(app.config["REPORTS_DIR"]).mkdir(parents=True, exist_ok=True)

    db.init_app(app)
    from . import storage

    with app.app_context():
        storage.configure_engine(db.engine, app.config["SQLITE_BUSY_TIMEOUT_MS"])
        storage.init_schema()

    from . import api, cli, dashboard

    app.register_blueprint(api.bp)
    app.register_blueprint(dashboard.bp)  # the web dashboard and GET /stores/<id>/timeline
    cli.register(app)
    return app
