"""Who may call storemon (storemon/security.py), with the Flask test client on both databases: API
tokens (Bearer, or a Basic password), cross-site writes refused in every mode whatever credentials
the request carries, the Host check; and, against a real gunicorn, open binds refused without
tokens."""

from __future__ import annotations

import base64

import pytest
from helpers import SPECIAL_HEADER, STATUS, STATUS_HEADER, Server, free_port, special, start_and_wait

from storemon.extensions import db
from storemon.models import IngestRecord, Report, StoreTimezone

TOKEN = "storemon-test-token-0123456789"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
BASIC = {"Authorization": "Basic " + base64.b64encode(f":{TOKEN}".encode()).decode()}  # a browser's login
CROSS_SITE = [
    {"Origin": "https://evil.example"},
    {"Referer": "https://evil.example/page"},
    {"Origin": "null"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
    {"Origin": "http://localhost:9999"},  # another port is another origin
]
TIMEZONES = "store_id,timezone_str\nevil,America/New_York\n"


def counts(app) -> tuple[int, int, int]:
    with app.app_context():
        count = lambda model: db.session.execute(db.select(db.func.count()).select_from(model)).scalar_one()  # noqa: E731
        return count(StoreTimezone), count(IngestRecord), count(Report)


@pytest.mark.parametrize("credentials", [{}, BEARER, BASIC], ids=["no tokens", "bearer token", "basic login"])
@pytest.mark.parametrize("cross", CROSS_SITE, ids=lambda h: "=".join(next(iter(h.items()))))
def test_a_cross_site_write_is_403_whatever_credentials_it_carries(app, loaded, credentials, cross):
    if credentials:
        app.config["STOREMON_API_TOKENS"] = TOKEN
    client = app.test_client()
    special_file = SPECIAL_HEADER + "007,2023-01-23,,\n"
    assert (
        client.post(
            "/ingest/special_hours", data=special_file, content_type="text/csv", headers=credentials
        ).status_code
        == 200
    )
    before, closed = counts(app), special(loaded)
    headers = {**credentials, **cross}
    for response in (
        client.post("/ingest/timezones", data=TIMEZONES, content_type="text/plain", headers=headers),
        client.get("/trigger_report?as_of=2023-01-25T12:00:00Z", headers=headers),  # a link or navigation
        client.post("/trigger_report", headers=headers),
        client.delete("/special_hours?store_id=007&date=2023-01-23", headers=headers),
    ):
        assert response.status_code == 403
        assert response.is_json and "cross-site request refused" in response.get_json()["message"]
    assert counts(app) == before  # nothing stored, no ledger entry, no report
    assert special(loaded) == closed != []  # the special date is still there


@pytest.mark.parametrize("credentials", [{}, BEARER, BASIC], ids=["no tokens", "bearer token", "basic login"])
def test_own_pages_and_clients_without_origin_still_write(app, loaded, credentials):
    if credentials:
        app.config["STOREMON_API_TOKENS"] = TOKEN
    client = app.test_client()
    for same in (
        {"Origin": "http://localhost"},
        {"Sec-Fetch-Site": "same-origin"},
        {"Referer": "http://localhost/reports"},
        {},
    ):
        assert client.post("/trigger_report", headers={**credentials, **same}).status_code == 200, same
    response = client.post("/ingest/timezones", data=TIMEZONES, content_type="text/csv", headers=credentials)
    assert response.status_code == 200
    # Reads from another site are not refused here (the browser's CORS rules keep their answers).
    assert client.get("/ingests", headers={**credentials, "Origin": "https://evil.example"}).status_code == 200


def test_a_cross_site_request_without_a_token_is_403_not_401(app, loaded):
    app.config["STOREMON_API_TOKENS"] = TOKEN
    response = app.test_client().post("/trigger_report", headers={"Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 403


@pytest.fixture
def secured(app):
    app.config["STOREMON_API_TOKENS"] = "s3cret-one-0123456, s3cret-two-0123456"
    return app.test_client()


def basic(password: str, user: str = "") -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.post("/trigger_report"),
        lambda c: c.get("/ingests"),
        lambda c: c.get("/get_report/" + "0" * 32),
        lambda c: c.post("/ingest/status", data=STATUS, content_type="text/csv"),
        lambda c: c.get("/special_hours?store_id=007"),
        lambda c: c.delete("/special_hours?store_id=007&date=2023-01-23"),
        lambda c: c.post("/trigger_report", headers={"Authorization": "Bearer wrong"}),
        lambda c: c.post("/trigger_report", headers=basic("wrong")),
    ],
    ids=[
        "trigger",
        "ingests",
        "get_report",
        "ingest",
        "special_hours",
        "remove special hours",
        "a wrong bearer token",
        "a wrong basic password",
    ],
)
def test_with_api_tokens_a_call_without_a_valid_one_is_401_with_both_challenges(secured, loaded, call):
    response = call(secured)
    assert response.status_code == 401
    assert response.get_json()["error"] == "Unauthorized"
    assert response.headers.getlist("WWW-Authenticate") == [
        'Bearer realm="storemon"',
        'Basic realm="storemon", charset="UTF-8"',
    ]


def test_with_api_tokens_health_is_open_and_each_token_is_let_in_as_bearer_or_basic_password(secured, loaded):
    assert secured.get("/health").status_code == 200  # open, for load balancers
    assert secured.post("/trigger_report", headers={"Authorization": "Bearer s3cret-two-0123456"}).status_code == 200
    assert secured.get("/ingests", headers=basic("s3cret-one-0123456")).status_code == 200  # curl -u :token
    assert secured.get("/ingests", headers=basic("s3cret-one-0123456", user="anyone")).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Referer": "https://evil.example/page"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "http://localhost:9999"},
    ],
    ids=lambda h: "=".join(next(iter(h.items()))),
)
def test_without_tokens_other_sites_cannot_write(client, loaded, headers):
    csv_body = STATUS_HEADER + "x,active,2023-01-23 12:00:00 UTC\n"
    response = client.post("/ingest/status", data=csv_body, content_type="text/plain", headers=headers)
    assert response.status_code == 403, headers
    assert "cross-site request refused" in response.get_json()["message"]
    assert client.get("/trigger_report", headers=headers).status_code == 403  # GET creates a report


def test_without_tokens_own_pages_and_clients_without_origin_still_write(client, loaded):
    assert client.get("/ingests", headers={"Origin": "https://evil.example"}).status_code == 200  # reads: CORS applies
    assert client.post("/trigger_report", headers={"Origin": "http://localhost"}).status_code == 200  # own page
    assert client.post("/trigger_report", headers={"Sec-Fetch-Site": "same-origin"}).status_code == 200
    assert client.post("/trigger_report").status_code == 200  # curl


def test_a_host_name_that_is_not_this_machines_is_refused(client, loaded):
    """DNS rebinding: a page of another site whose name now points here."""
    assert client.get("/ingests", headers={"Host": "evil.example:8000"}).status_code == 403
    assert client.get("/ingests", headers={"Host": "127.0.0.1:8000"}).status_code == 200
    assert client.get("/ingests", headers={"Host": "[::1]:8000"}).status_code == 200


# --- a real gunicorn: open binds ------------------------------------------------------------------


@pytest.mark.slow
def test_an_open_bind_without_tokens_is_refused(tmp_path):
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        "REPORTS_DIR": str(tmp_path / "r"),
        "STOREMON_BIND": f"0.0.0.0:{free_port()}",
    }
    result = start_and_wait(env)
    assert result.returncode != 0
    assert "refusing to serve on 0.0.0.0" in result.stderr and "STOREMON_API_TOKENS" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra",
    [{"STOREMON_API_TOKENS": "t0ken-0123456789ab"}, {"STOREMON_ALLOW_OPEN": "1"}],
    ids=["with tokens", "with STOREMON_ALLOW_OPEN"],
)
def test_open_binds_with_tokens_or_allow_open_start(tmp_path, extra):
    server = Server(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
            "REPORTS_DIR": str(tmp_path / "r"),
            "STOREMON_BIND_HOST": "0.0.0.0",
            **extra,
        },
        workers=1,
    )
    try:
        assert server.get("/health")[0] == 200
    finally:
        server.stop()
