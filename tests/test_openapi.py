"""The described API: /openapi.json generated from the routes, /docs served locally, the document
fuzzed by schemathesis against a live gunicorn, and /metrics (also across two workers)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from helpers import ROOT, Server, wait_for_jobs
from prometheus_client.parser import text_string_to_metric_families

from storemon import create_app, storage
from storemon.demo import generate_demo_data
from storemon.extensions import db
from storemon.ingest import ingest_files
from storemon.openapi import ERRORS, UNDOCUMENTED

CSV_HEADER = (
    "store_id,uptime_last_hour,uptime_last_day,uptime_last_week,downtime_last_hour,downtime_last_day,downtime_last_week"
)
DOCUMENTED_METHODS = ("GET", "POST", "DELETE")


@pytest.fixture
def sqlite_app(tmp_path):
    """The document does not depend on the database: one SQLite app is enough."""
    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'storemon.db'}",
            "REPORTS_DIR": str(tmp_path / "reports"),
            "UPLOAD_DIR": str(tmp_path / "uploads"),
        }
    )
    yield app
    with app.app_context():
        storage.dispose_all()


def test_every_route_is_described(sqlite_app):
    spec = sqlite_app.test_client().get("/openapi.json").get_json()
    assert spec["openapi"] == "3.0.3"
    described = {(path, method.upper()) for path, ops in spec["paths"].items() for method in ops}
    expected = set()
    for rule in sqlite_app.url_map.iter_rules():
        if rule.endpoint in UNDOCUMENTED:
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        expected |= {(path, m) for m in DOCUMENTED_METHODS if m in rule.methods}
    assert described == expected
    assert {
        "/trigger_report",
        "/get_report",
        "/get_report/{report_id}",
        "/ingest/{kind}",
        "/ingests",
        "/special_hours",
        "/health",
        "/stores/{store_id}/timeline",
        "/store/timeline",
        "/openapi.json",
        "/docs",
        "/metrics",
    } == set(spec["paths"])
    ids = [op["operationId"] for ops in spec["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    # Security: declared once, applied everywhere but /health.
    note = (
        "Required only when the server is started with `STOREMON_API_TOKENS` (comma-separated tokens); "
        "otherwise every call is open to this machine only."
    )
    assert spec["components"]["securitySchemes"] == {
        "bearerAuth": {"type": "http", "scheme": "bearer", "description": note},
        "basicAuth": {
            "type": "http",
            "scheme": "basic",
            "description": "The API token as the password (any user name). " + note,
        },
    }
    assert spec["security"] == [{"bearerAuth": []}, {"basicAuth": []}]
    assert spec["paths"]["/health"]["get"]["security"] == []
    assert "401" not in spec["paths"]["/health"]["get"]["responses"]
    # One error shape for every error answer.
    for name, _ in ERRORS.values():
        response = spec["components"]["responses"][name]
        assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    assert spec["components"]["schemas"]["Error"]["required"] == ["error", "message"]
    for path, ops in spec["paths"].items():
        for op in ops.values():
            assert {"403", "500"} <= set(op["responses"]), path
    # get_report: the report in its four formats, or the Running / Failed JSON; linked from trigger.
    report = spec["paths"]["/get_report/{report_id}"]["get"]
    ok = report["responses"]["200"]
    assert set(ok["content"]) == {
        "text/csv",
        "application/json",
        "application/vnd.apache.parquet",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    }
    assert ok["content"]["text/csv"]["example"].startswith(CSV_HEADER + "\n")
    assert ok["headers"]["X-Report-Status"]["schema"]["enum"] == ["Complete"]
    assert set(report["responses"]) == {"200", "400", "401", "403", "404", "406", "410", "500"}
    assert ok["content"]["application/json"]["schema"]["oneOf"] == [
        {"$ref": "#/components/schemas/ReportRunning"},
        {"$ref": "#/components/schemas/ReportFailed"},
        {"$ref": "#/components/schemas/ReportRows"},
    ]
    assert {p["name"]: p["schema"]["enum"] for p in report["parameters"] if p["name"] == "format"} == {
        "format": ["csv", "xlsx", "json", "parquet"]
    }
    trigger = spec["paths"]["/trigger_report"]["post"]
    assert trigger["operationId"] == "trigger_report"
    assert trigger["responses"]["200"]["links"]["GetReport"]["operationId"] == "get_report"
    assert {"429", "503"} <= set(trigger["responses"])
    assert spec["components"]["responses"]["TooManyRequests"]["headers"]["Retry-After"]
    # Uploads: multipart (field `file`) or a text/csv body; 413 documented.
    upload = spec["paths"]["/ingest/{kind}"]["post"]
    assert set(upload["requestBody"]["content"]) == {"multipart/form-data", "text/csv"}
    assert upload["requestBody"]["content"]["multipart/form-data"]["schema"]["required"] == ["file"]
    assert {"400", "404", "413", "503"} <= set(upload["responses"])
    assert upload["parameters"][0] == {
        "name": "kind",
        "in": "path",
        "required": True,
        "schema": {
            "type": "string",
            "enum": ["status", "hours", "timezones", "special_hours"],
            "description": "the feed: polls, business hours, time zones or special hours (single dates)",
        },
    }
    # Special dates: listed (GET) and one removed (DELETE), on one path.
    special = spec["paths"]["/special_hours"]
    assert set(special) == {"get", "delete"}
    assert special["delete"]["operationId"] == "remove_special_hours"
    assert {"400", "404", "503"} <= set(special["delete"]["responses"])
    assert [p["name"] for p in special["delete"]["parameters"]] == ["store_id", "date"]


def test_a_body_that_is_no_object_a_non_string_as_of_and_an_offset_past_64_bits_are_400(sqlite_app):
    """What schemathesis tried: a trigger's JSON body must be an object, its as_of a string (or
    null: no as_of); an offset must fit SQLite's integers."""
    client = sqlite_app.test_client()
    for body in ([], 5, "2023-01-25T12:00:00Z", {"as_of": {}}, {"as_of": 5}):
        response = client.post("/trigger_report", json=body)
        assert response.status_code == 400, body
        assert set(response.get_json()) == {"error", "message"}
    assert client.post("/trigger_report", json={"as_of": None}).status_code == 200  # null: no as_of
    huge = client.get("/ingests?offset=99999999999999999999")
    assert huge.status_code == 400 and "offset must be between 0 and" in huge.get_json()["message"]
    last = client.get(f"/ingests?offset={2**63 - 1}")
    assert last.status_code == 200 and last.get_json()["ingests"] == []
    wait_for_jobs()


def test_docs_are_served_from_the_package(sqlite_app):
    client = sqlite_app.test_client()
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources and all(s.startswith(("/docs/static/", "/static/")) for s in sources), (
        sources
    )  # nothing from elsewhere
    for source in sources:
        with client.get(source) as asset:  # a file response: closed here
            assert asset.status_code == 200 and len(asset.data) > 500, source
    assert 'data-openapi="/openapi.json"' in html and "<script>" not in html  # the initializer is a file
    with client.get("/static/docs.js") as initializer:
        assert b"SwaggerUIBundle" in initializer.data and b"validatorUrl: null" in initializer.data
    # Only the files the page loads: not the package's demo page (it loads petstore.swagger.io).
    for other in (
        "index.html",
        "swagger-initializer.js",
        "oauth2-redirect.html",
        "index.css",
        "swagger-ui-bundle.js.map",
        "..",
        "%2e%2e/openapi.py",
    ):
        assert client.get(f"/docs/static/{other}").status_code == 404, other


def test_tokens_protect_docs_document_and_metrics(sqlite_app):
    sqlite_app.config["STOREMON_API_TOKENS"] = "s3cret-0123456789"
    client = sqlite_app.test_client()
    for path in ("/docs", "/openapi.json", "/metrics", "/docs/static/swagger-ui.css"):
        response = client.get(path)
        assert response.status_code == 401, path
        assert set(response.get_json()) == {"error", "message"}
        with client.get(path, headers={"Authorization": "Bearer s3cret-0123456789"}) as allowed:
            assert allowed.status_code == 200, path
    assert client.get("/health").status_code == 200


def _samples(metrics_text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics_text)
        for s in family.samples
    }


def test_metrics_count_requests_ingests_and_reports(sqlite_app, tmp_path):
    client = sqlite_app.test_client()
    before = _samples(client.get("/metrics").get_data(as_text=True))
    for _ in range(3):
        assert client.get("/health").status_code == 200
    assert client.get("/get_report/" + "0" * 32).status_code == 404
    assert client.get("/no/such/route").status_code == 404
    body = b"store_id,status,timestamp_utc\ns1,active,2023-01-25 12:00:00 UTC\ns2,active,bad\n"
    assert client.post("/ingest/status", data=body, content_type="text/csv").status_code == 200
    report_id = client.post("/trigger_report").get_json()["report_id"]
    wait_for_jobs()
    with client.get(f"/get_report/{report_id}") as csv:
        assert csv.headers["X-Report-Status"] == "Complete"
    scrape = client.get("/metrics")
    assert scrape.status_code == 200 and scrape.mimetype == "text/plain"
    after = _samples(scrape.get_data(as_text=True))

    def delta(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert delta("storemon_http_requests_total", endpoint="api.health", status="200") == 3
    assert delta("storemon_http_requests_total", endpoint="api.get_report", status="404") == 1
    assert delta("storemon_http_requests_total", endpoint="unmatched", status="404") == 1
    assert delta("storemon_http_request_duration_seconds_count", endpoint="api.health") == 3
    assert delta("storemon_polls_ingested_total", kind="status", outcome="stored") == 1
    assert delta("storemon_polls_ingested_total", kind="status", outcome="skipped") == 1
    assert delta("storemon_report_duration_seconds_count", outcome="complete") == 1
    assert after[("storemon_reports", (("state", "complete"),))] == 1
    assert after[("storemon_reports", (("state", "running"),))] == 0
    assert not any("report_id" in str(key) or report_id in str(key) for key in after)  # ids are no labels


# --- against a live gunicorn -----------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_database(tmp_path_factory):
    """50 demo stores (the demo always has store 007), ingested into a SQLite file."""
    folder = tmp_path_factory.mktemp("described")
    generate_demo_data(folder / "feeds", stores=50, days=8, seed=13)
    app = create_app({"DATABASE_URL": f"sqlite:///{folder / 'storemon.db'}", "REPORTS_DIR": str(folder / "r")})
    with app.app_context():
        ingest_files(db.engine, folder / "feeds")
        storage.dispose_all()
    return folder / "storemon.db"


def live_server(demo_database: Path, tmp_path: Path, workers: int = 2, **env) -> Server:
    copy = tmp_path / "storemon.db"
    copy.write_bytes(demo_database.read_bytes())
    # The jobs database too: two workers creating its tables at once can meet SQLite's lock.
    (tmp_path / "storemon.jobs.db").write_bytes(demo_database.with_suffix(".jobs.db").read_bytes())
    return Server(
        {
            "DATABASE_URL": f"sqlite:///{copy}",
            "REPORTS_DIR": str(tmp_path / "reports"),
            "UPLOAD_DIR": str(tmp_path / "uploads"),
            **env,
        },
        workers=workers,
    )


def fetch(url: str, token: str | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


@pytest.mark.slow
def test_metrics_add_up_across_two_workers(demo_database, tmp_path):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"stale")  # an earlier server's: removed at start
    server = live_server(
        demo_database,
        tmp_path,
        workers=2,
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        STOREMON_API_TOKENS="m3trics-0123456789",
    )
    try:
        assert not (metrics_dir / "counter_1.db").exists()
        sent = 0
        # New connections, several at once, until both workers have answered some (each worker
        # writes its own counter_<pid>.db).
        while len(list(metrics_dir.glob("counter_*.db"))) < 2 or sent < 40:
            assert sent < 2000, "one worker answered everything"
            threads = [threading.Thread(target=fetch, args=(server.base + "/health",)) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            sent += 8
        assert fetch(server.base + "/metrics")[0] == 401  # tokens protect it
        status, headers, body = fetch(server.base + "/metrics", "m3trics-0123456789")
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        samples = _samples(body.decode())
        # The /health startup probes of Server() count too: at least `sent`, at most a few more.
        health = samples[("storemon_http_requests_total", (("endpoint", "api.health"), ("status", "200")))]
        assert sent <= health <= sent + 50
        assert samples[("storemon_http_request_duration_seconds_count", (("endpoint", "api.health"),))] == health
        assert ("storemon_reports", (("state", "queued"),)) in samples
    finally:
        server.stop()


@pytest.mark.slow
def test_schemathesis_finds_nothing(demo_database, tmp_path, capsys):
    """Every operation, all checks, the stateful trigger -> get_report links, against gunicorn
    with API tokens (so the `ignored_auth` check proves each operation refuses a missing token)."""
    server = live_server(demo_database, tmp_path, workers=2, STOREMON_API_TOKENS="fuzz-t0ken-0123456789")
    try:
        # One schemathesis worker: with two threads, hypothesis' ast.parse can hit CPython 3.11's
        # "AST constructor recursion depth mismatch" (a thread-safety bug of 3.11's compiler).
        command = [
            str(Path(sys.executable).parent / "schemathesis"),
            "--config-file",
            str(ROOT / "tests" / "schemathesis.toml"),
            "run",
            f"{server.base}/openapi.json",
            "--header",
            "Authorization: Bearer fuzz-t0ken-0123456789",
            "--checks",
            "all",
            "--max-examples",
            os.environ.get("STOREMON_FUZZ_EXAMPLES", "100"),
            "--workers",
            "1",
            "--seed",
            os.environ.get("STOREMON_FUZZ_SEED", "13"),
            "--no-color",
            "--request-timeout",
            "30",
        ]
        result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        (tmp_path / "schemathesis.txt").write_text(result.stdout)
        summary = re.search(r"Test cases:\s*\n\s*(.+)", result.stdout)
        with capsys.disabled():  # past pytest's capture: the numbers show in the CI log
            print(f"\nschemathesis: {summary.group(1) if summary else '?'}")
        assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
        assert summary and re.match(r"\d+ generated, \d+ passed", summary.group(1)), result.stdout[-3000:]
        assert int(summary.group(1).split()[0]) >= 500
        selected = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", result.stdout)
        assert selected and len(set(selected.groups())) == 1, result.stdout[-3000:]  # every operation tested
    finally:
        server.stop()
