"""The server's own settings and limits against a real gunicorn on 127.0.0.1: token lists that
hold no usable token."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from test_intake_server import start_and_wait
from test_server import ROOT, free_port

from storemon import create_app
from storemon.config import ConfigError

pytestmark = pytest.mark.slow

TOKEN = "tokSECRET123-abcdef"  # 19 characters


# --- API tokens -------------------------------------------------------------------------------------


@pytest.mark.parametrize("value, message", [
    ("\n", "item 1 of 1 is empty or only whitespace"),
    (" , ", "item 1 of 2 is empty or only whitespace"),
    (f"{TOKEN},", "item 2 of 2 is empty or only whitespace"),
    (f"{TOKEN}, tokSHORT99", "item 2 of 2 has 10 characters; a token needs at least 16"),
    ("tokSECRET123\tabcdefgh", "item 1 of 1 holds a control character"),
])
def test_a_token_list_without_usable_tokens_stops_the_server(tmp_path, value, message):
    """On an open address, where tokens are all that stands between the data and anyone."""
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "REPORTS_DIR": str(tmp_path / "r"),
           "STOREMON_BIND": f"0.0.0.0:{free_port()}", "STOREMON_API_TOKENS": value}
    result = start_and_wait(env)
    assert result.returncode == 78, result.stderr
    lines = [line for line in result.stderr.splitlines() if "storemon:" in line]
    assert len(lines) == 1 and lines[0].startswith("storemon: configuration error: STOREMON_API_TOKENS: ")
    assert message in lines[0]
    assert "Traceback" not in result.stderr and "Booting worker" not in result.stderr
    assert "tokSHORT99" not in result.stderr and "tokSECRET123" not in result.stderr  # never quoted
    # The app refuses it too, and the command line says so in one line.
    with pytest.raises(ConfigError, match="STOREMON_API_TOKENS: item"):
        create_app({"DATABASE_URL": env["DATABASE_URL"], "REPORTS_DIR": env["REPORTS_DIR"],
                    "STOREMON_API_TOKENS": value})
    if value == "\n":
        cli = subprocess.run([sys.executable, "-m", "flask", "--app", "storemon", "ingests"], cwd=ROOT,
                             env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
        assert cli.returncode == 1
        assert cli.stderr.strip().splitlines() == [
            "Error: STOREMON_API_TOKENS: item 1 of 1 is empty or only whitespace (tokens are separated by commas; "
            "leave the setting unset for no tokens)"]
