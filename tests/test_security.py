"""Who may call storemon (storemon/security.py), with the Flask test client on both databases:
cross-site writes are refused in every mode, whatever credentials the request carries."""

from __future__ import annotations

import base64

import pytest

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
    before = counts(app)
    headers = {**credentials, **cross}
    for response in (
        client.post("/ingest/timezones", data=TIMEZONES, content_type="text/plain", headers=headers),
        client.get("/trigger_report?as_of=2023-01-25T12:00:00Z", headers=headers),  # a link or navigation
        client.post("/trigger_report", headers=headers),
    ):
        assert response.status_code == 403
        assert response.is_json and "cross-site request refused" in response.get_json()["message"]
    assert counts(app) == before  # nothing stored, no ledger entry, no report


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
