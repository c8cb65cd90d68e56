"""The dashboard's pages through the test client (the browser test drives them for real)."""

from __future__ import annotations

import csv
import html
import io
import re
import time
import urllib.parse

import pandas as pd
import pytest
from helpers import HAND_HOURS, HAND_ROWS, HAND_STATUS, HAND_ZONES, HOSTILE_IDS, special_days_timeline
from markupsafe import escape

from storemon import dashboard
from storemon.demo import generate_demo_data
from storemon.ingest import ingest_file, ingest_files

ODD_ID = 'a/b <x>"&%20'


@pytest.fixture
def demo_loaded(engine, tmp_path):
    """120 demo stores and one with an odd id, ingested."""
    generate_demo_data(tmp_path / "feeds", stores=120, days=8, seed=9)
    ingest_files(engine, tmp_path / "feeds")
    (tmp_path / "odd.csv").write_text('store_id,status,timestamp_utc\n"a/b <x>""&%20",active,2023-01-25 10:00:00 UTC\n')
    ingest_file(engine, "status", tmp_path / "odd.csv")
    return engine


def run_report(client, **trigger) -> tuple[str, pd.DataFrame]:
    """A report triggered with ``trigger`` (``periods="30d"``) and waited for: its id and rows."""
    report_id = client.post("/trigger_report", json=trigger).get_json()["report_id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with client.get(f"/get_report/{report_id}") as answer:  # a file response: close it
            if answer.headers.get("X-Report-Status") == "Complete":
                return report_id, pd.read_csv(io.BytesIO(answer.data), dtype={"store_id": str}, keep_default_na=False)
        time.sleep(0.05)
    raise AssertionError("report not complete")


def cells(page: str, column: str) -> list[str]:
    return re.findall(rf'<td class="num" data-column="{column}">([^<]*)</td>', page)


def headers(page: str) -> dict[str, str]:
    """The stores table's columns, as its header links name them, and their titles."""
    head = re.search(r'<table id="stores".*?</thead>', page, re.S).group(0)
    return {c: t.rstrip(" ▲▼") for c, t in re.findall(r'<a href="[^"]*" data-column="([^"]+)">([^<]*)</a>', head)}


def store_links(page: str) -> list[str]:
    return [html.unescape(s) for s in re.findall(r'<a class="store-link" href="[^"]*">([^<]*)</a>', page)]


def sorted_ids(rows: list[dict], column: str, order: str) -> list[str]:
    """The report table's documented order, by hand: by the column, ties by store id (ascending
    either way), stores without an uptime share (no business time in the week) last."""
    if column == "store_id":
        return sorted((r["store_id"] for r in rows), reverse=order == "desc")

    def value(row):
        if column != "uptime_share_week":
            return float(row[column])
        up, down = float(row["uptime_last_week"]), float(row["downtime_last_week"])
        return up / (up + down) if up + down > 0 else None

    sign = 1 if order == "asc" else -1
    valued = sorted((sign * value(r), r["store_id"]) for r in rows if value(r) is not None)
    return [i for _, i in valued] + sorted(r["store_id"] for r in rows if value(r) is None)


def test_overview(client, demo_loaded):
    page = client.get("/").get_data(as_text=True)
    assert '<span class="value" id="count-stores">121</span>' in page
    assert '<span class="value small" id="latest-poll">2023-01-25T18:13:22.479220Z</span>' in page
    assert "No report yet." in page and 'data-trigger="/trigger_report"' in page
    report_id, _ = run_report(client)
    page = client.get("/").get_data(as_text=True)
    row = re.search(rf'<tr>\s*<td><a href="/reports/{report_id}">.*?</tr>', page, re.S).group(0)
    assert "2023-01-25T18:13:22.479220Z" in row and ">complete<" in row.replace("</td>", "<").replace("<td>", ">")
    assert '<td class="num">121</td>' in row and f'href="/get_report/{report_id}" download' in row
    ingests = re.search(r'<table id="recent-ingests">.*?</table>', page, re.S).group(0)  # from the ledger
    assert "odd.csv" in ingests and "store_status.csv" in ingests and ">stored<" in ingests
    for name in ("dashboard.js", "dashboard.css"):
        with client.get(f"/static/{name}") as answer:
            assert answer.status_code == 200 and len(answer.data) > 1000


def test_report_page_sorts_filters_and_pages_on_the_server(client, demo_loaded, tmp_path):
    # Two stores open only Monday 09:00-10:00 and polled on Wednesday: no business time observed.
    (tmp_path / "closed-status.csv").write_text(
        "store_id,status,timestamp_utc\n"
        "closed-2,active,2023-01-25 12:00:00 UTC\n"
        "closed-1,active,2023-01-25 12:00:00 UTC\n"
    )
    (tmp_path / "closed-hours.csv").write_text(
        "store_id,day,start_time_local,end_time_local\nclosed-1,0,09:00,10:00\nclosed-2,0,09:00,10:00\n"
    )
    ingest_file(demo_loaded, "status", tmp_path / "closed-status.csv")
    ingest_file(demo_loaded, "hours", tmp_path / "closed-hours.csv")
    report_id, frame = run_report(client)
    base = f"/reports/{report_id}"
    page = client.get(base).get_data(as_text=True)
    assert '<span class="value" id="summary-stores">123</span>' in page
    assert store_links(page) == sorted(frame["store_id"])[:50]
    assert '<span id="page-of">page 1 of 3</span>' in page
    # Week uptime, descending, ties by id; page 2.
    expected = frame.sort_values(["uptime_last_week", "store_id"], ascending=[False, True], kind="stable")
    page2 = client.get(f"{base}?sort=uptime_last_week&order=desc&page=2").get_data(as_text=True)
    assert store_links(page2) == expected["store_id"].tolist()[50:100]
    assert cells(page2, "uptime_last_week") == [f"{v:.2f}" for v in expected["uptime_last_week"][50:100]]
    # Every column sorts both ways: the three pages together are every store in that order.
    with client.get(f"/get_report/{report_id}") as answer:
        rows = list(csv.DictReader(io.StringIO(answer.get_data(as_text=True))))
    assert [r["store_id"] for r in rows if float(r["uptime_last_week"]) + float(r["downtime_last_week"]) == 0] == [
        "closed-1",
        "closed-2",
    ]
    for column in dashboard.TABLE_COLUMNS:
        for order in ("asc", "desc"):
            shown = []
            for number in (1, 2, 3):
                answer = client.get(f"{base}?sort={column}&order={order}&page={number}")
                assert answer.status_code == 200
                shown += store_links(answer.get_data(as_text=True))
            assert shown == sorted_ids(rows, column, order), (column, order)
    # Filter by id, any case.
    some = frame["store_id"].iloc[7][2:6]
    hits = frame[frame["store_id"].str.contains(some, case=False, regex=False)]
    filtered = client.get(f"{base}?q={urllib.parse.quote(some.upper())}").get_data(as_text=True)
    assert store_links(filtered) == sorted(hits["store_id"])[:50]
    assert f'<span id="matching">{len(hits)} stores</span>' in filtered
    # Store links carry the report's now, and awkward ids are escaped.
    odd = client.get(f"{base}?q=%3Cx%3E").get_data(as_text=True)
    assert store_links(odd) == [ODD_ID]
    assert "a/b &lt;x&gt;&#34;&amp;%20" in odd and ODD_ID not in odd
    assert 'href="/store?store_id=a/b+%3Cx%3E%22%26%2520&amp;as_of=2023-01-25T18:13:22.479220Z"' in odd
    # Histogram: one count per 10 % bin, adding up to the stores with business time observed.
    with client.get(f"/get_report/{report_id}") as answer:
        summary = dashboard.summarise(dashboard.report_table(answer.data))
    assert summary.unobserved == 2 and sum(b["count"] for b in summary.histogram) == 123 - 2
    # Errors.
    bad = client.get(f"{base}?sort=nope")
    assert bad.status_code == 400 and bad.get_json()["message"].startswith("sort must be one of store_id")
    assert client.get(f"/reports/{'0' * 32}").status_code == 404
    assert client.get("/reports/not-an-id").status_code == 400


def test_report_summary_of_the_five_hand_computed_stores(client, engine, tmp_path):
    for kind, text in (("status", HAND_STATUS), ("hours", HAND_HOURS), ("timezones", HAND_ZONES)):
        (tmp_path / f"{kind}.csv").write_text(text)
        ingest_file(engine, kind, tmp_path / f"{kind}.csv")
    report_id, frame = run_report(client)
    assert frame.to_csv(index=False, header=False, float_format="%.2f").splitlines() == HAND_ROWS
    page = client.get(f"/reports/{report_id}").get_data(as_text=True)
    cards = [html.unescape(v) for v in re.findall(r'<span class="value[^"]*"[^>]*>([^<]*)</span>', page)]
    # Week up / down (h): hand-1 168.00/0.00, hand-2 1.74/1.26, hand-3 168.00/0.00, hand-4
    # 8.00/4.00, hand-5 0.00/0.00. Up 168 + 1.74 + 168 + 8 = 345.74, down 1.26 + 4 = 5.26,
    # observed 345.74 + 5.26 = 351.00; share 345.74 / 351 = 0.98501 -> 98.5 %. hand-5 has no
    # business time observed.
    assert cards == ["5", "351.00 h", "345.74 h / 5.26 h", "98.5 %", "1"]
    # Shares: hand-2 1.74 / 3 = 0.58 (50-60 %), hand-4 8 / 12 = 0.667 (60-70 %), hand-1 and
    # hand-3 1.0 (the last bin, 90-100 %).
    assert [int(c) for c in re.findall(r'<g class="bin" data-count="(\d+)">', page)] == [0, 0, 0, 0, 0, 1, 1, 0, 0, 2]


def test_report_frames_cache_warm_equals_cold(client, demo_loaded):
    report_id, _ = run_report(client)
    dashboard.report_frames.frames.clear()
    cold = client.get(f"/reports/{report_id}?sort=downtime_last_day&order=desc").get_data(as_text=True)
    assert report_id in dashboard.report_frames.frames
    warm = client.get(f"/reports/{report_id}?sort=downtime_last_day&order=desc").get_data(as_text=True)
    assert warm == cold
    small = dashboard.ReportFrames(size=2)
    for key in "abc":
        small.get(key, lambda key=key: pd.DataFrame({"k": [key]}))
    assert list(small.frames) == ["b", "c"]


def test_store_page(client, demo_loaded):
    page = client.get("/stores/" + urllib.parse.quote(ODD_ID, safe="/"))
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert '<code id="store-id">a/b &lt;x&gt;&#34;&amp;%20</code>' in text and "<x>" not in text
    timeline = client.get("/stores/" + urllib.parse.quote(ODD_ID, safe="") + "/timeline").get_json()
    # The chart draws every segment (one rect, or two over a local midnight) with its ends.
    drawn = re.findall(r'data-segment="(\d+)" data-start="([^"]+)" data-end="([^"]+)" data-active="(\w+)"', text)
    assert {(int(k), a, b, act) for k, a, b, act in drawn} == {
        (k, s["start"], s["end"], "true" if s["active"] else "false") for k, s in enumerate(timeline["segments"])
    }
    chart = re.search(r'<svg id="week-chart".*?</svg>', text, re.S).group(0)
    assert len(re.findall(r'class="poll ', chart)) == len(timeline["polls"])
    for note in timeline["notes"]:
        assert html.escape(note) in text
    assert '<td class="num" data-column="uptime_last_week">168.00</td>' in text
    assert 'id="special-days"' not in text and 'id="legend-closed"' not in text and 'class="band special"' not in text
    missing = client.get("/stores/no-such-store")
    assert missing.status_code == 404 and "no store &#39;no-such-store&#39;" in missing.get_data(as_text=True)


PERIOD_TITLES = {
    "uptime_last_30d": "up, last 30d (h)",
    "downtime_last_30d": "down, last 30d (h)",
    "uptime_last_2h": "up, last 2h (h)",
    "downtime_last_2h": "down, last 2h (h)",
}


def test_a_report_with_periods_shows_their_columns_sortable_and_filterable_after_the_weeks(client, demo_loaded):
    plain_id, _ = run_report(client)
    plain = client.get(f"/reports/{plain_id}").get_data(as_text=True)
    assert headers(plain) == {c: dashboard.COLUMN_TITLES[c] for c in dashboard.TABLE_COLUMNS}
    assert list(headers(plain)) == dashboard.TABLE_COLUMNS and "periods=" not in plain

    report_id, frame = run_report(client, periods="30d,2h")
    base = f"/reports/{report_id}"
    page = client.get(base).get_data(as_text=True)
    assert list(headers(page)) == [*dashboard.TABLE_COLUMNS, *PERIOD_TITLES]
    assert headers(page) == {**headers(plain), **PERIOD_TITLES}
    # The summary cards are the week's, as in the report without periods.
    card = r'<span class="value[^"]*"[^>]*>([^<]*)</span>'
    assert re.findall(card, page) == re.findall(card, plain)
    # A period's column sorts both ways (ties by store id) and shows its figures, 2 decimals.
    for order in ("asc", "desc"):
        expected = frame.sort_values(["uptime_last_30d", "store_id"], ascending=[order == "asc", True], kind="stable")
        shown = client.get(f"{base}?sort=uptime_last_30d&order={order}&page=2").get_data(as_text=True)
        assert store_links(shown) == expected["store_id"].tolist()[50:100], order
        assert cells(shown, "uptime_last_30d") == [f"{v:,.2f}" for v in expected["uptime_last_30d"][50:100]]
        assert cells(shown, "downtime_last_2h") == [f"{v:,.2f}" for v in expected["downtime_last_2h"][50:100]]
    # Filtered by id, sorted by a period's column: the sort and the filter keep each other.
    some = frame["store_id"].iloc[3][2:5]
    hits = frame[frame["store_id"].str.contains(some, case=False, regex=False)]
    filtered = client.get(f"{base}?q={urllib.parse.quote(some)}&sort=downtime_last_30d&order=desc")
    expected = hits.sort_values(["downtime_last_30d", "store_id"], ascending=[False, True], kind="stable")
    assert store_links(filtered.get_data(as_text=True)) == expected["store_id"].tolist()[:50]
    assert f'href="{base}?sort=uptime_last_30d&amp;order=asc&amp;q={urllib.parse.quote(some)}&amp;page=1"' in (
        filtered.get_data(as_text=True)
    )
    # The store links carry the report's now and its periods.
    odd = client.get(f"{base}?q=%3Cx%3E").get_data(as_text=True)
    assert (
        'href="/store?store_id=a/b+%3Cx%3E%22%26%2520&amp;as_of=2023-01-25T18:13:22.479220Z&amp;periods=30d,2h"' in odd
    )


def test_a_stores_page_reached_from_a_report_with_periods_shows_the_figures_of_its_row(client, demo_loaded):
    report_id, frame = run_report(client, periods="30d,2h")
    page = client.get(f"/reports/{report_id}?sort=downtime_last_30d&order=desc").get_data(as_text=True)
    links = re.findall(r'<a class="store-link" href="([^"]*)">([^<]*)</a>', page)[:5]
    figures = [c for c in frame.columns if c != "store_id"]
    assert figures[6:] == list(PERIOD_TITLES)
    for href, text in links:
        store_id = html.unescape(text)
        store = client.get(html.unescape(href)).get_data(as_text=True)
        row = frame[frame["store_id"] == store_id].iloc[0]
        assert {c: cells(store, c) for c in figures} == {c: [f"{row[c]:,.2f}"] for c in figures}, store_id
        labels = re.findall(r"<tr><th>([^<]*)</th><td class=\"num\" data-column=\"uptime_last_", store)
        assert labels == ["last hour (min)", "last day (h)", "last week (h)", "last 30d (h)", "last 2h (h)"]
        json_href = html.unescape(re.search(r'<a id="timeline-json" href="([^"]*)"', store).group(1))
        assert json_href.endswith("&as_of=2023-01-25T18:13:22.479220Z&periods=30d,2h"), json_href
        timeline = client.get(json_href).get_json()
        assert timeline["figures"] == {c: pytest.approx(row[c], abs=0.005) for c in figures}
    assert frame.loc[frame["store_id"] == html.unescape(links[0][1]), "downtime_last_30d"].iloc[0] > 0


@pytest.mark.parametrize(
    "query, message",
    [
        ("periods=1w", "periods: cannot read '1w'; give whole numbers of hours or days, e.g. 30d,2h"),
        ("periods=93d", "periods: 93d is longer than 92d, the longest period"),
        ("periods=2h,2h", "periods: 2h is given twice"),
        ("as_of=soon", "as_of: cannot read 'soon' as an instant"),
    ],
    ids=["an unknown unit", "longer than 92 days", "twice", "an unreadable as_of"],
)
def test_a_store_page_asked_for_unreadable_periods_or_as_of_is_a_400_page_that_says_why(
    client, demo_loaded, query, message
):
    answer = client.get(f"/store?store_id={urllib.parse.quote(ODD_ID)}&{query}")
    assert answer.status_code == 400 and answer.mimetype == "text/html"
    text = answer.get_data(as_text=True)
    assert "<h1>Bad request</h1>" in text
    assert html.unescape(re.search(r'<p id="bad-request">([^<]*)</p>', text).group(1)).startswith(message)
    # The timeline JSON answers the same request with the same reason, as JSON.
    json_answer = client.get(f"/store/timeline?store_id={urllib.parse.quote(ODD_ID)}&{query}")
    assert json_answer.status_code == 400 and json_answer.get_json()["message"].startswith(message)


def test_the_store_page_lists_the_special_days_and_draws_closed_days_and_special_hours_apart(client, monkeypatch):
    """From a timeline built by hand (helpers.special_days_timeline): Sunday 2022-12-25 and Monday
    2023-01-23 closed, Friday 2023-01-20 09:00-02:00 and Tuesday 2023-01-24 10:00-14:00."""
    asked = []

    def timeline(_engine, store_id, as_of_us, periods):
        asked.append((store_id, as_of_us, periods))
        return special_days_timeline()

    monkeypatch.setattr(dashboard, "load_timeline", timeline)
    answer = client.get("/store?store_id=holiday&periods=30d")
    assert answer.status_code == 200 and asked == [("holiday", None, "30d")]
    text = answer.get_data(as_text=True)
    table = re.search(r'<table id="special-days".*?</table>', text, re.S).group(0)
    assert re.findall(r"<tr[^>]*><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td></tr>", table) == [
        ("2022-12-25", "closed", "holidays.csv"),
        ("2023-01-20", "09:00:00–02:00:00", "holidays.csv"),
        ("2023-01-23", "closed", "holidays.csv"),
        ("2023-01-24", "10:00:00–14:00:00", "holidays.csv"),
    ]
    chart = re.search(r'<svg id="week-chart".*?</svg>', text, re.S).group(0)
    assert '<pattern id="hatch-closed"' in chart
    shape = r'<rect class="{}" [^>]*data-special-date="([^"]+)"><title>([^<]*)</title>'
    assert re.findall(shape.format("closed"), chart) == [
        ("2023-01-23", "closed (special day: 2023-01-23, from holidays.csv)")
    ]
    special = re.findall(shape.format("band special"), chart)
    assert [date for date, _ in special] == ["2023-01-20", "2023-01-20", "2023-01-24"]
    assert all(
        title.startswith("special hours ") and title.endswith(f"(special day: {date}, from holidays.csv)")
        for date, title in special
    )
    assert len(re.findall(r'<rect class="band" ', chart)) == 5  # the weekly hours' days
    assert 'id="legend-special"' in text and 'id="legend-closed"' in text
    assert cells(text, "uptime_last_30d") == ["1,234.50"] and cells(text, "downtime_last_30d") == ["0.25"]


def test_the_templates_filters_format_numbers_and_show_a_dash_for_nothing(app):
    filters = app.jinja_env.filters
    assert [filters[name] for name in ("thousands", "two_decimals", "three_decimals", "percent")] == [
        dashboard.thousands,
        dashboard.two_decimals,
        dashboard.three_decimals,
        dashboard.percent,
    ]
    assert [dashboard.thousands(v) for v in (0, 999, 1234567, None)] == ["0", "999", "1,234,567", "—"]
    assert [dashboard.two_decimals(v) for v in (0.0, 1.005, 2208.0, 60, None, float("nan"))] == [
        "0.00",
        "1.00",  # 1.005 is 1.00499... in binary
        "2,208.00",
        "60.00",
        "—",
        "—",
    ]
    assert [dashboard.three_decimals(v) for v in (0.0125, 1234.5, None)] == ["0.013", "1,234.500", "—"]
    assert [dashboard.percent(v) for v in (0.98501, 0.0, 1.0, None, float("nan"))] == [
        "98.5 %",
        "0.0 %",
        "100.0 %",
        "—",
        "—",
    ]
    rendered = app.jinja_env.from_string("{{ n|thousands }} stores, {{ h|two_decimals }} h").render(n=14000, h=167.5)
    assert rendered == "14,000 stores, 167.50 h"


def test_report_page_of_a_reused_report_and_of_a_csv_kept_only_in_the_database(app, client, demo_loaded):
    """A second trigger with nothing new names the first report (``reuse_of``): its page is the
    first one's. A report whose file is gone (written on another host) is read from ``csv_gz``;
    a reused report whose original expired is a 410 page, not a 500."""
    from sqlalchemy import update

    from storemon import jobs
    from storemon.extensions import db
    from storemon.models import Report

    first, frame = run_report(client)
    again, _ = run_report(client)
    with app.app_context():
        assert db.session.get(Report, again).reuse_of == first
    dashboard.report_frames.frames.clear()
    reused = client.get(f"/reports/{again}")
    assert reused.status_code == 200
    page = reused.get_data(as_text=True)
    assert '<span class="value" id="summary-stores">121</span>' in page
    assert store_links(page) == sorted(frame["store_id"])[:50]
    assert f'href="/get_report/{again}" download' in page  # links keep the id asked for
    assert f'href="/reports/{again}?sort=uptime_last_week' in page
    assert "2023-01-25T18:13:22.479220Z" in page
    overview = client.get("/").get_data(as_text=True)
    assert f'<a href="/reports/{again}">' in overview and f'<a href="/reports/{first}">' in overview

    # Only the database copy left: both ids still answer, from csv_gz.
    jobs.report_path(app, first).unlink()
    dashboard.report_frames.frames.clear()
    for report_id in (first, again):
        answer = client.get(f"/reports/{report_id}?sort=uptime_last_week&order=desc")
        assert answer.status_code == 200, report_id
        assert (
            store_links(answer.get_data(as_text=True))
            == frame.sort_values(["uptime_last_week", "store_id"], ascending=[False, True], kind="stable")[
                "store_id"
            ].tolist()[:50]
        )

    # The original expired: the reused id has nothing left to show.
    with app.app_context():
        db.session.execute(update(Report).where(Report.id == first).values(status=jobs.EXPIRED, csv_gz=None))
        db.session.commit()
    dashboard.report_frames.frames.clear()
    for report_id in (first, again):
        gone = client.get(f"/reports/{report_id}")
        assert gone.status_code == 410, report_id
        assert "has expired" in gone.get_data(as_text=True)


@pytest.fixture
def hostile(demo_loaded, tmp_path):
    with open(tmp_path / "hostile.csv", "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["store_id", "status", "timestamp_utc"])
        writer.writerows([store_id, "active", "2023-01-25 10:00:00 UTC"] for store_id in HOSTILE_IDS)
    summary = ingest_file(demo_loaded, "status", tmp_path / "hostile.csv")
    assert summary.rows_stored == len(HOSTILE_IDS) and summary.rows_skipped == 0
    return demo_loaded


def test_every_store_link_reaches_exactly_that_store(client, hostile):
    """The report page's store link and the store page's timeline link, resolved as a browser
    resolves a relative URL (dot segments, "//host"), reach that store and no other."""
    report_id, _ = run_report(client)
    base = f"http://localhost/reports/{report_id}"
    for store_id in HOSTILE_IDS:
        page = client.get(base, query_string={"q": store_id}).get_data(as_text=True)
        links = {
            html.unescape(text): html.unescape(href)
            for href, text in re.findall(r'<a class="store-link" href="([^"]*)">([^<]*)</a>', page)
        }
        url = urllib.parse.urljoin(base, links[store_id])
        assert urllib.parse.urlsplit(url).netloc == "localhost", (store_id, url)
        store = client.get(url)
        assert store.status_code == 200, (store_id, url)
        text = store.get_data(as_text=True)
        assert f'<code id="store-id">{escape(store_id)}</code>' in text, (store_id, url)
        href = html.unescape(re.search(r'<a id="timeline-json" href="([^"]*)"', text).group(1))
        timeline = client.get(urllib.parse.urljoin(url, href))
        assert timeline.status_code == 200 and timeline.get_json()["store_id"] == store_id, (store_id, href)
        assert timeline.get_json()["now"] == "2023-01-25T18:13:22.479220Z"
    # The links are query parameters, so no part of the id is read as a path.
    page = client.get(base, query_string={"q": "a/../b"}).get_data(as_text=True)
    assert 'href="/store?store_id=a/../b&amp;as_of=2023-01-25T18:13:22.479220Z"' in page
    for path in ("/store", "/store/timeline", "/store?store_id=", "/store/timeline?store_id="):
        missing = client.get(path)
        assert missing.status_code == 400 and missing.get_json()["message"].startswith("store_id is required")


BROWSER_HEADERS = {"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}


def csp_directives(response) -> dict[str, list[str]]:
    policy = response.headers.get("Content-Security-Policy", "")
    return {d.split()[0]: d.split()[1:] for d in policy.split(";") if d.strip()}


def test_every_answer_sends_the_browser_headers(app, client, hostile):
    """Pages cannot be framed (clickjacking), run only this server's scripts and styles, and no
    answer is content-sniffed -- HTML, JSON, CSV, static files, errors alike."""
    report_id, _ = run_report(client)
    pages = [
        "/",
        f"/reports/{report_id}",
        "/store?store_id=a/../b",
        "/stores/b",
        "/docs",
        f"/reports/{'0' * 32}",
        "/store?store_id=nope",
    ]
    others = [
        "/health",
        "/openapi.json",
        f"/get_report/{report_id}",
        "/store/timeline?store_id=b",
        "/static/dashboard.js",
        "/static/dashboard.css",
        "/static/docs.js",
        "/docs/static/swagger-ui-bundle.js",
        "/no-such-page",
        "/reports/not-an-id",
        "/store/timeline?store_id=nope",
        "/metrics",
    ]
    for path in pages + others:
        with client.get(path) as answer:
            assert {k: answer.headers.get(k) for k in BROWSER_HEADERS} == BROWSER_HEADERS, path
            csp = csp_directives(answer)
            assert csp.get("default-src") == ["'self'"], (path, csp)
            assert csp.get("script-src") == ["'self'"] and csp.get("style-src") == ["'self'"], (path, csp)
            assert csp.get("frame-ancestors") == ["'none'"] and csp.get("object-src") == ["'none'"], (path, csp)
            assert csp.get("img-src") == (["'self'", "data:"] if path == "/docs" else ["'self'"]), (path, csp)
            if path in pages:
                assert answer.mimetype == "text/html", path
                text = answer.get_data(as_text=True)
                # Nothing inline that the policy would refuse: scripts come from files, no style
                # attributes, no event-handler attributes.
                assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), path
                assert not re.search(r"<style\b|\sstyle=|\son[a-z]+=", text), path
    posted = client.post("/trigger_report")
    assert posted.headers.get("X-Frame-Options") == "DENY" and posted.headers.get("X-Content-Type-Options") == "nosniff"
    app.config["STOREMON_API_TOKENS"] = "a-token-of-24-characters"  # refusals too
    refused = client.get("/")
    assert refused.status_code == 401 and refused.headers.get("X-Content-Type-Options") == "nosniff"
    assert csp_directives(refused).get("frame-ancestors") == ["'none'"]
