"""Write docs/storemon.postman_collection.json from the OpenAPI document, with tests on every request.

    .venv/bin/python scripts/postman_collection.py           # (re)write the collection
    .venv/bin/python scripts/postman_collection.py --check   # fail if the committed one is stale

Each request is an operation of /openapi.json (its method, path and summary come from there; an
operation the collection does not use, or a step naming an operation that does not exist, stops
the build), in the order a newcomer would call them: health, the document, upload the four
sample feeds of docs/samples/, list the sample store's special dates, the ledger, trigger a report, poll it until its CSV arrives, fetch
it as Excel, JSON and Parquet, remove one special date, then the error answers. Every request asserts its status and
content type; every error answer is
checked for the JSON shape {"error", "message"} (a collection-level test); the report's CSV for
its header row. Variables: base_url (default http://127.0.0.1:8000), api_token (only needed when
the server has STOREMON_API_TOKENS). Uploads name files relative to the repository root: run
newman with --working-dir set to it (in Postman: Settings > Working directory).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "docs" / "storemon.postman_collection.json"

CSV_HEADER = (
    "store_id,uptime_last_hour,uptime_last_day,uptime_last_week,downtime_last_hour,downtime_last_day,downtime_last_week"
)
AS_OF = "2023-01-25T18:00:00Z"
SAMPLE_STORE = "8419537941919820732"  # in docs/samples/
MAX_POLLS = 120  # x 0.5 s


def status(code: int) -> str:
    return f'pm.test("status {code}", function () {{ pm.response.to.have.status({code}); }});'


def content_type(kind: str) -> str:
    return (
        f'pm.test("Content-Type {kind}", function () {{ '
        f'pm.expect(pm.response.headers.get("Content-Type") || "").to.include("{kind}"); }});'
    )


def error(code: int) -> list[str]:
    """An expected error: the status and its JSON (the shape is checked for all errors at collection level)."""
    return [status(code), content_type("application/json")]


def uploaded(kind: str) -> list[str]:
    return [
        status(200),
        content_type("application/json"),
        f"""\
pm.test("the file's summary: {kind}, stored (or unchanged when sent before)", function () {{
    const s = pm.response.json();
    pm.expect(s.kind).to.eql("{kind}");
    pm.expect(["stored", "unchanged"]).to.include(s.outcome);
    pm.expect(s.rows_skipped).to.eql(0);
    pm.expect(s.sha256).to.match(/^[0-9a-f]{{64}}$/);
}});""",
    ]


TRIGGERED = [
    status(200),
    content_type("application/json"),
    """\
pm.test("a report id: 32 hex characters", function () {
    pm.expect(pm.response.json().report_id).to.match(/^[0-9a-f]{32}$/);
});
pm.collectionVariables.set("report_id", pm.response.json().report_id);
pm.collectionVariables.set("polls", 0);""",
]

CSV_CHECKS = [
    content_type("text/csv"),
    f"""\
pm.test("X-Report-Status: Complete", function () {{
    pm.expect(pm.response.headers.get("X-Report-Status")).to.eql("Complete");
}});
pm.test("an attachment named report_<id>.csv", function () {{
    pm.expect(pm.response.headers.get("Content-Disposition")).to.include("report_" + pm.collectionVariables.get("report_id") + ".csv");
}});
pm.test("the CSV's header row", function () {{
    pm.expect(pm.response.text().split("\\n")[0].trim()).to.eql("{CSV_HEADER}");
}});
pm.test("a row for the sample store {SAMPLE_STORE}", function () {{
    pm.expect(pm.response.text()).to.include("\\n{SAMPLE_STORE},");
}});""",
]

POLL = [
    status(200),
    f"""\
const type = pm.response.headers.get("Content-Type") || "";
if (type.includes("application/json")) {{
    const body = pm.response.json();
    pm.test("not failed: Running, with its state and progress", function () {{
        pm.expect(body.status).to.eql("Running");
        pm.expect(["queued", "running"]).to.include(body.state);
        pm.expect(body.report_id).to.eql(pm.collectionVariables.get("report_id"));
    }});
    const polls = Number(pm.collectionVariables.get("polls") || 0) + 1;
    pm.collectionVariables.set("polls", polls);
    pm.test("complete within {MAX_POLLS} polls", function () {{ pm.expect(polls).to.be.below({MAX_POLLS}); }});
    if (polls < {MAX_POLLS}) {{
        postman.setNextRequest(pm.info.requestName);  // poll again (after the pre-request pause)
    }}
}} else {{
{chr(10).join("    " + line for line in chr(10).join(CSV_CHECKS).splitlines())}
}}""",
]
PAUSE = """\
// Poll every half second while the report is running (not before the first poll).
if (Number(pm.collectionVariables.get("polls") || 0) > 0) { setTimeout(function () {}, 500); }"""

ERROR_SHAPE = """\
if (pm.response.code >= 400) {
    pm.test("the error is JSON {error, message}", function () {
        pm.expect(pm.response.headers.get("Content-Type") || "").to.include("application/json");
        const body = pm.response.json();
        pm.expect(Object.keys(body).sort()).to.eql(["error", "message"]);
        pm.expect(body.error).to.be.a("string").and.not.empty;
        pm.expect(body.message).to.be.a("string").and.not.empty;
    });
}"""


def file_part(path: str) -> dict:
    return {"mode": "formdata", "formdata": [{"key": "file", "type": "file", "src": path}]}


def csv_file(path: str) -> dict:
    return {"mode": "file", "file": {"src": path}}


# (name, operationId, path values, query, body, headers, tests[, pre-request])
STEPS = [
    (
        "Health",
        "health",
        {},
        {},
        None,
        {},
        [
            status(200),
            content_type("application/json"),
            """\
pm.test("the database is reachable", function () { pm.expect(pm.response.json().database).to.eql("reachable"); });""",
        ],
    ),
    (
        "OpenAPI document",
        "openapi_json",
        {},
        {},
        None,
        {},
        [
            status(200),
            content_type("application/json"),
            """\
pm.test("OpenAPI 3", function () { pm.expect(pm.response.json().openapi).to.match(/^3\\./); });""",
        ],
    ),
    (
        "Interactive docs (Swagger UI)",
        "docs",
        {},
        {},
        None,
        {},
        [
            status(200),
            content_type("text/html"),
            """\
pm.test("Swagger UI from this server", function () { pm.expect(pm.response.text()).to.include("/docs/static/swagger-ui-bundle.js"); });""",
        ],
    ),
    (
        "Upload time zones (multipart)",
        "ingest",
        {"kind": "timezones"},
        {},
        file_part("docs/samples/timezones.csv"),
        {},
        uploaded("timezones"),
    ),
    (
        "Upload business hours (multipart)",
        "ingest",
        {"kind": "hours"},
        {},
        file_part("docs/samples/menu_hours.csv"),
        {},
        uploaded("hours"),
    ),
    (
        "Upload special hours (multipart, force: applied on every run)",
        "ingest",
        {"kind": "special_hours"},
        {"force": "1"},
        file_part("docs/samples/special_hours.csv"),
        {},
        uploaded("special_hours"),
    ),
    (
        "Special dates of a store",
        "special_hours",
        {},
        {"store_id": SAMPLE_STORE},
        None,
        {},
        [
            status(200),
            content_type("application/json"),
            f"""\
pm.test("a closed date, and a date of two intervals", function () {{
    const body = pm.response.json();
    pm.expect(body.store_id).to.eql("{SAMPLE_STORE}");
    pm.expect(body.special_hours.map(function (r) {{ return r.date; }})).to.eql(["2023-01-23", "2023-01-24", "2023-01-24"]);
    pm.expect(body.special_hours[0].closed).to.eql(true);
    pm.expect(body.special_hours[1].start_time_local).to.eql("10:00:00");
    pm.expect(body.special_hours[1].source).to.eql("special_hours.csv");
}});""",
        ],
    ),
    (
        "Upload polls (text/csv body)",
        "ingest",
        {"kind": "status"},
        {},
        csv_file("docs/samples/store_status.csv"),
        {"Content-Type": "text/csv"},
        uploaded("status"),
    ),
    (
        "Ingest ledger",
        "ingests",
        {},
        {"limit": "5"},
        None,
        {},
        [
            status(200),
            content_type("application/json"),
            """\
pm.test("newest first, at most 5", function () {
    const rows = pm.response.json().ingests;
    pm.expect(rows.length).to.be.within(1, 5);
    pm.expect(rows[0].id).to.be.at.least(rows[rows.length - 1].id);
});""",
        ],
    ),
    (
        "Trigger report as of",
        "trigger_report",
        {},
        {},
        {"mode": "raw", "raw": json.dumps({"as_of": AS_OF}), "options": {"raw": {"language": "json"}}},
        {"Content-Type": "application/json"},
        TRIGGERED,
    ),
    ("Get report (poll until Complete)", "get_report", {"report_id": "{{report_id}}"}, {}, None, {}, POLL, PAUSE),
    (
        "Get report by query",
        "get_report_by_query",
        {},
        {"report_id": "{{report_id}}"},
        None,
        {},
        [status(200), *CSV_CHECKS],
    ),
    (
        "Get report as Excel",
        "get_report",
        {"report_id": "{{report_id}}"},
        {"format": "xlsx"},
        None,
        {},
        [
            status(200),
            content_type("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
            r"""pm.test("an xlsx attachment", function () {
    pm.expect(pm.response.headers.get("Content-Disposition")).to.match(/filename=report_[0-9a-f]{32}\.xlsx$/);
});""",
        ],
    ),
    (
        "Get report as JSON (Accept)",
        "get_report",
        {"report_id": "{{report_id}}"},
        {},
        None,
        {"Accept": "application/json"},
        [
            status(200),
            content_type("application/json"),
            """pm.test("rows as objects, figures as numbers", function () {
    const body = pm.response.json();
    pm.expect(body.columns[0]).to.eql("store_id");
    pm.expect(body.rows.length).to.be.above(0);
    pm.expect(body.rows[0].store_id).to.be.a("string");
    pm.expect(body.rows[0].uptime_last_week).to.be.a("number");
});""",
        ],
    ),
    (
        "Get report as Parquet",
        "get_report_by_query",
        {},
        {"report_id": "{{report_id}}", "format": "parquet"},
        None,
        {},
        [
            status(200),
            content_type("application/vnd.apache.parquet"),
            """pm.test("a Parquet file (PAR1 magic)", function () { pm.expect(pm.response.text().slice(0, 4)).to.eql("PAR1"); });""",
        ],
    ),
    (
        "Error: unknown report format",
        "get_report",
        {"report_id": "{{report_id}}"},
        {"format": "pdf"},
        None,
        {},
        error(400),
    ),
    (
        "Error: unacceptable report format",
        "get_report",
        {"report_id": "{{report_id}}"},
        {},
        None,
        {"Accept": "image/png"},
        error(406),
    ),
    ("Trigger report (GET)", "trigger_report_get", {}, {"as_of": AS_OF}, None, {}, TRIGGERED),
    (
        "Store timeline",
        "store_timeline",
        {"store_id": SAMPLE_STORE},
        {"as_of": AS_OF},
        None,
        {},
        [
            status(200),
            content_type("application/json"),
            f"""\
pm.test("the store's week and its six figures", function () {{
    const t = pm.response.json();
    pm.expect(t.store_id).to.eql("{SAMPLE_STORE}");
    pm.expect(t.timezone).to.eql("America/New_York");
    pm.expect(Object.keys(t.figures)).to.have.lengthOf(6);
}});""",
        ],
    ),
    (
        "Store timeline by query",
        "store_timeline_by_query",
        {},
        {"store_id": SAMPLE_STORE, "as_of": AS_OF},
        None,
        {},
        [
            status(200),
            content_type("application/json"),
            f"""\
pm.test("the same store, any id", function () {{ pm.expect(pm.response.json().store_id).to.eql("{SAMPLE_STORE}"); }});""",
        ],
    ),
    (
        "Metrics",
        "metrics",
        {},
        {},
        None,
        {},
        [
            status(200),
            content_type("text/plain"),
            """\
pm.test("Prometheus text with storemon's counters", function () {
    pm.expect(pm.response.text()).to.include('storemon_http_requests_total{endpoint="api.trigger_report",status="200"}');
    pm.expect(pm.response.text()).to.include('storemon_polls_ingested_total{kind="status",outcome="stored"}');
});""",
        ],
    ),
    (
        "Remove a special date",
        "remove_special_hours",
        {},
        {"store_id": SAMPLE_STORE, "date": "2023-01-24"},
        None,
        {},
        [
            status(200),
            content_type("application/json"),
            """\
pm.test("its two rows removed, and recorded in the ledger", function () {
    const body = pm.response.json();
    pm.expect(body.date).to.eql("2023-01-24");
    pm.expect(body.rows_removed).to.eql(2);
    pm.expect(body.ledger_id).to.be.a("number");
});""",
        ],
    ),
    ("Error: malformed report id", "get_report", {"report_id": "not-a-report-id"}, {}, None, {}, error(400)),
    ("Error: missing report id", "get_report_by_query", {}, {}, None, {}, error(400)),
    ("Error: unknown report", "get_report", {"report_id": "0" * 32}, {}, None, {}, error(404)),
    ("Error: unreadable as_of", "trigger_report", {}, {"as_of": "yesterday"}, None, {}, error(400)),
    (
        "Error: unknown feed",
        "ingest",
        {"kind": "menus"},
        {},
        csv_file("docs/samples/menu_hours.csv"),
        {"Content-Type": "text/csv"},
        error(404),
    ),
    (
        "Error: upload without a file field",
        "ingest",
        {"kind": "status"},
        {},
        {"mode": "formdata", "formdata": [{"key": "data", "type": "text", "value": "x"}]},
        {},
        error(400),
    ),
    (
        "Error: a file that is not the feed",
        "ingest",
        {"kind": "hours"},
        {},
        csv_file("docs/samples/timezones.csv"),
        {"Content-Type": "text/csv"},
        [
            *error(400),
            """\
pm.test("names the missing columns", function () { pm.expect(pm.response.json().message).to.include("missing required column"); });""",
        ],
    ),
    ("Error: unknown store", "store_timeline", {"store_id": "no-such-store"}, {}, None, {}, error(404)),
    (
        "Error: a special date already removed",
        "remove_special_hours",
        {},
        {"store_id": SAMPLE_STORE, "date": "2023-01-24"},
        None,
        {},
        error(404),
    ),
    (
        "Error: a date that is none",
        "remove_special_hours",
        {},
        {"store_id": SAMPLE_STORE, "date": "2023-02-30"},
        None,
        {},
        error(400),
    ),
]


def operations(spec: dict) -> dict[str, tuple[str, str, dict]]:
    return {
        op["operationId"]: (method.upper(), path, op)
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
    }


def build(spec: dict) -> dict:
    ops = operations(spec)
    used = {step[1] for step in STEPS}
    unknown, unused = used - set(ops), set(ops) - used
    if unknown or unused:
        raise SystemExit(
            f"collection out of step with /openapi.json: unknown {sorted(unknown)}, unused {sorted(unused)}"
        )
    items = []
    for name, op_id, values, query, body, headers, tests, *pre in STEPS:
        method, path, op = ops[op_id]
        filled = re.sub(r"{(\w+)}", lambda m: values[m.group(1)], path)
        segments = [s for s in filled.split("/") if s]
        raw = "{{base_url}}" + filled + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")
        request = {
            "method": method,
            "header": [{"key": k, "value": v} for k, v in headers.items()],
            "url": {
                "raw": raw,
                "host": ["{{base_url}}"],
                "path": segments,
                **({"query": [{"key": k, "value": v} for k, v in query.items()]} if query else {}),
            },
            "description": f"{op['summary']} (`{method} {path}`, operation `{op_id}`).\n\n{op.get('description', '')}".strip(),
        }
        if body is not None:
            request["body"] = body
        events = [{"listen": "test", "script": {"type": "text/javascript", "exec": "\n".join(tests).splitlines()}}]
        if pre:
            events.insert(
                0, {"listen": "prerequest", "script": {"type": "text/javascript", "exec": pre[0].splitlines()}}
            )
        items.append({"name": name, "request": request, "event": events})
    return {
        "info": {
            "name": "storemon",
            "description": (
                "storemon's HTTP API, generated from /openapi.json by scripts/postman_collection.py (do not edit by "
                "hand). Set base_url (and api_token when the server has STOREMON_API_TOKENS); run the whole "
                "collection in order: it uploads the sample feeds of docs/samples/ (set Postman's working directory "
                "to the repository, or newman --working-dir), triggers a report and polls it until its CSV arrives. "
                "Every request has tests. Interactive docs: {{base_url}}/docs."
            ),
            "schema": "https://schema.getpostman.com/json/collection/v2.1.0/collection.json",
        },
        "auth": {"type": "bearer", "bearer": [{"key": "token", "value": "{{api_token}}", "type": "string"}]},
        "event": [{"listen": "test", "script": {"type": "text/javascript", "exec": ERROR_SHAPE.splitlines()}}],
        "variable": [
            {"key": "base_url", "value": "http://127.0.0.1:8000"},
            {"key": "api_token", "value": ""},
            {"key": "report_id", "value": ""},
            {"key": "polls", "value": "0"},
        ],
        "item": items,
    }


def current_spec() -> dict:
    import tempfile

    from storemon import create_app, storage

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(
            {
                "DATABASE_URL": f"sqlite:///{tmp}/storemon.db",
                "REPORTS_DIR": f"{tmp}/reports",
                "UPLOAD_DIR": f"{tmp}/uploads",
            }
        )
        spec = app.test_client().get("/openapi.json").get_json()
        with app.app_context():
            storage.dispose_all()
        return spec


def main(argv: list[str]) -> int:
    text = json.dumps(build(current_spec()), indent=2) + "\n"
    if "--check" in argv:
        if not OUT.is_file() or OUT.read_text() != text:
            print(
                f"{OUT.relative_to(ROOT)} is out of step with /openapi.json: run "
                "`.venv/bin/python scripts/postman_collection.py`",
                file=sys.stderr,
            )
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)} ({len(STEPS)} requests)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
