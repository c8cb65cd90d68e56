"""storemon: how often were stores offline while they should have been open.

The layers and what each module holds: docs/architecture.md.
"""

from __future__ import annotations

import logging.config
from pathlib import Path

import pandas as pd
from flask import Flask
from sqlalchemy.engine import make_url

from .config import defaults, from_environment, pool_overflow, validate
from .extensions import db

# Text columns hold what a file held, undecodable bytes included (as surrogates, so a bad row can
# be quoted): pandas' Python-backed strings can, Arrow's cannot. pandas would choose Arrow for
# every str column once pyarrow is installed (it is, for Parquet reports).
pd.set_option("mode.string_storage", "python")


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
    app.config.update(defaults(), SQLALCHEMY_TRACK_MODIFICATIONS=False)
    app.config.update(from_environment())
    if test_config:
        app.config.update(test_config)

    validate(app.config)

    url = app.config["DATABASE_URL"]
    if not url:
        Path(app.instance_path).mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{Path(app.instance_path) / 'storemon.db'}"
    from . import storage

    app.config["DATABASE_URL"] = url
    app.config["SQLALCHEMY_DATABASE_URI"] = url
    app.config["JOBS_DATABASE_URL"] = app.config["JOBS_DATABASE_URL"] or storage.jobs_url_beside(url)
    app.config["SQLALCHEMY_BINDS"] = {"jobs": app.config["JOBS_DATABASE_URL"]}
    if not _in_memory(url):  # (an in-memory database has one connection, no pool)
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {"max_overflow": pool_overflow(app.config)}  # the data's engine
    app.config["UPLOAD_DIR"] = app.config["UPLOAD_DIR"] or str(Path(app.instance_path) / "uploads")
    Path(app.config["REPORTS_DIR"]).mkdir(parents=True, exist_ok=True)

    db.init_app(app)
    with app.app_context():
        for engine in db.engines.values():
            storage.configure_engine(engine, app.config["SQLITE_BUSY_TIMEOUT_MS"])
        storage.init_schema()

    from . import api, cli, dashboard, metrics, openapi, security, uploads

    uploads.sweep_stale(app.config["UPLOAD_DIR"])
    metrics.init_app(app)  # first: its timer starts before the security check, so refusals count
    security.init_app(app)
    app.register_blueprint(api.bp)
    app.register_blueprint(dashboard.bp)  # the web dashboard and GET /stores/<id>/timeline
    app.register_blueprint(openapi.bp)  # GET /openapi.json and /docs
    cli.register(app)
    return app


def _in_memory(url: str) -> bool:
    """An in-memory SQLite database (Flask-SQLAlchemy gives it one shared connection, no pool)."""
    parsed = make_url(url)
    return parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:")
