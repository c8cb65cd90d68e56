"""The Postman collection: generated from /openapi.json (the committed one is current), its sample
uploads are in the repository, and newman runs it against a live gunicorn with 0 failures.

newman comes from ``scripts/with-newman.sh`` (``npm ci`` in tests/postman/), which exports
``STOREMON_NEWMAN`` and ``STOREMON_REQUIRE_NEWMAN=1``; without it the newman test skips, saying why.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import ROOT, Server

from storemon import create_app, storage
from storemon.demo import generate_demo_data
from storemon.extensions import db
from storemon.ingest import ingest_file, ingest_files

COLLECTION = ROOT / "docs" / "storemon.postman_collection.json"
SAMPLES = ROOT / "docs" / "samples"
NEWMAN = os.environ.get("STOREMON_NEWMAN", str(ROOT / "tests" / "postman" / "node_modules" / ".bin" / "newman"))
REQUIRED = os.environ.get("STOREMON_REQUIRE_NEWMAN") == "1"


def test_collection_is_generated_from_the_document():
    result = subprocess.run(
        [sys.executable, "scripts/postman_collection.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    collection = json.loads(COLLECTION.read_text())
    assert {"base_url", "api_token"} <= {v["key"] for v in collection["variable"]}
    for item in collection["item"]:
        tests = next(e for e in item["event"] if e["listen"] == "test")["script"]["exec"]
        assert any("pm.response.to.have.status(" in line for line in tests), item["name"]  # every request asserts
        assert item["request"]["url"]["raw"].startswith("{{base_url}}/")
        body = item["request"].get("body") or {}
        files = (
            [body["file"]["src"]]
            if body.get("mode") == "file"
            else [p["src"] for p in body.get("formdata", []) if p.get("type") == "file"]
        )
        for src in files:
            assert (ROOT / src).is_file(), f"{item['name']}: {src} is not in the repository"


def test_sample_feeds_are_small_and_clean(app):
    for kind, name in (
        ("timezones", "timezones.csv"),
        ("hours", "menu_hours.csv"),
        ("special_hours", "special_hours.csv"),
        ("status", "store_status.csv"),
    ):
        path = SAMPLES / name
        assert path.stat().st_size < 4096
        with app.app_context():
            summary = ingest_file(db.engine, kind, path)
        assert summary.rows_skipped == 0 and summary.rows_stored == len(path.read_text().splitlines()) - 1


def newman_or_skip() -> str:
    try:
        subprocess.run([NEWMAN, "--version"], capture_output=True, check=True, timeout=60)
    except (OSError, subprocess.CalledProcessError) as exc:
        if REQUIRED:
            pytest.fail(f"STOREMON_REQUIRE_NEWMAN=1 but newman does not run ({NEWMAN}): {exc}")
        pytest.skip("no newman (run scripts/with-newman.sh make test to include the Postman collection)")
    return NEWMAN


@pytest.mark.slow
def test_newman_runs_the_collection_without_failures(tmp_path, capsys):
    newman = newman_or_skip()
    generate_demo_data(tmp_path / "feeds", stores=50, days=8, seed=17)
    database = tmp_path / "storemon.db"
    app = create_app({"DATABASE_URL": f"sqlite:///{database}", "REPORTS_DIR": str(tmp_path / "r")})
    with app.app_context():
        ingest_files(db.engine, tmp_path / "feeds")
        storage.dispose_all()
    # With API tokens (the collection's api_token), and report jobs held until a poll has seen
    # them Running (gated_app): the collection's first poll sees "Running" and its poll loop runs.
    env = {
        "DATABASE_URL": f"sqlite:///{database}",
        "REPORTS_DIR": str(tmp_path / "reports"),
        "UPLOAD_DIR": str(tmp_path / "uploads"),
        "STOREMON_API_TOKENS": "p0stman-0123456789",
        "STOREMON_TEST_GATE": str(tmp_path / "gate"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "tests"), os.environ.get("PYTHONPATH")])),
    }
    server = Server(env, workers=2, app="helpers:gated_app()")
    try:
        report = tmp_path / "newman.json"
        result = subprocess.run(
            [
                newman,
                "run",
                str(COLLECTION),
                "--env-var",
                f"base_url={server.base}",
                "--env-var",
                "api_token=p0stman-0123456789",
                "--working-dir",
                str(ROOT),
                "--reporters",
                "cli,json",
                "--reporter-json-export",
                str(report),
                "--color",
                "off",
                "--timeout-request",
                "30000",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
        run = json.loads(report.read_text())["run"]
        stats = run["stats"]
        polls = sum(1 for e in run["executions"] if e["item"]["name"].startswith("Get report (poll"))
        with capsys.disabled():  # past pytest's capture: the numbers show in the CI log
            print(
                f"\nnewman: {stats['requests']['total']} requests, {stats['assertions']['total']} assertions, "
                f"{stats['assertions']['failed']} failed; {polls} polls until Complete"
            )
        assert stats["assertions"]["failed"] == 0 and stats["requests"]["failed"] == 0
        assert stats["testScripts"]["failed"] == 0
        assert stats["assertions"]["total"] >= 70
        assert polls >= 2  # it saw Running, then looped until the CSV
        assert (tmp_path / "gate").exists()
    finally:
        server.stop()
