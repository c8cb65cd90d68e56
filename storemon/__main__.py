"""The ``storemon`` command (``[project.scripts]``; also ``python -m storemon``): the commands of
``flask --app storemon`` (storemon/cli.py) from any folder, and ``serve``."""

from __future__ import annotations

import os
import sys
from importlib.metadata import PackageNotFoundError, version

import click
from flask.cli import FlaskGroup

from . import create_app
from .config import PROJECT_ROOT


@click.command("serve")
def serve_command():
    """Serve the database as it is on 127.0.0.1:8000 (gunicorn with gunicorn.conf.py; no ingest).

    The server's settings come from the environment: STOREMON_BIND, STOREMON_WEB_WORKERS and
    the others of docs/configuration.md.
    """
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        str(PROJECT_ROOT / "gunicorn.conf.py"),
        "--chdir",
        str(PROJECT_ROOT),
        "wsgi:app",
    ]
    os.execv(command[0], command)


def main() -> None:
    """Run the command line: every command create_app registers, and ``serve``."""
    try:
        installed = version("storemon")
    except PackageNotFoundError:  # run from a checkout without `pip install -e .`
        installed = "unknown"
    group = FlaskGroup(
        create_app=lambda: create_app(),
        add_default_commands=False,
        add_version_option=False,
        help="storemon: how often were stores offline while they should have been open.\n\n"
        "Settings come from the environment (docs/configuration.md).",
    )
    group.params = [p for p in group.params if p.name not in ("app", "env_file", "debug")]  # the app is this one
    click.version_option(installed, "--version", prog_name="storemon", message="%(prog)s %(version)s")(group)
    group.add_command(serve_command)
    group.main(prog_name="storemon")


if __name__ == "__main__":
    main()
