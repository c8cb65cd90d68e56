"""The dashboard in a real browser: headless Chromium driven by Selenium, against real gunicorn.

Every page is checked under the server's Content-Security-Policy: the browser's console must
show no refusal (``goog:loggingPrefs``), and a page framed by another site must not load.

Needs Debian's ``chromium`` and ``chromium-driver`` (``scripts/with-chromium.sh`` installs them
and exports ``STOREMON_REQUIRE_BROWSER=1``, which turns a missing browser into a failure; plain
``make test`` without them skips this test with the reason). Screenshots of the pages are
saved in the test's temp dir; their paths are printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import csv
import json
import os
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers import HOSTILE_IDS, ROOT, Server

from storemon import create_app, storage
from storemon.demo import generate_demo_data
from storemon.extensions import db
from storemon.ingest import ingest_file, ingest_files
from storemon.reports import build_report, write_csv

pytestmark = pytest.mark.slow

REQUIRED = os.environ.get("STOREMON_REQUIRE_BROWSER") == "1"
CHROMIUM = os.environ.get("STOREMON_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("STOREMON_CHROMEDRIVER", "/usr/bin/chromedriver")
ODD_ID = 'a/b <x>"&%20'  # an opaque id with a slash, markup, a quote and a percent sign
STORES = str(51 + len(HOSTILE_IDS))  # the demo's 50, ODD_ID and HOSTILE_IDS
# Flags that work as root on a machine without network: no sandbox, no background traffic
# (without those, Chromium's own connections are refused by the closed network).
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)


def unavailable(reason: str):
    if REQUIRED:
        pytest.fail(f"STOREMON_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(f"{reason} (run scripts/with-chromium.sh make test to include the browser test)")


@pytest.fixture
def browser(tmp_path):
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            unavailable(f"{path} is missing")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        unavailable("selenium is not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.add_argument("--window-size=1280,900")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, CSP refusals included
    try:
        driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    except Exception as exc:  # noqa: BLE001 -- a browser that cannot start is "unavailable"
        unavailable(f"Chromium did not start: {str(exc).splitlines()[0]}")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def site(tmp_path):
    """50 demo stores plus ones with awkward ids, in SQLite, served by real gunicorn whose report
    jobs wait until a /get_report has answered "Running" (helpers.gated_app; the gate file is
    ``tmp_path / "gate"``)."""
    generate_demo_data(tmp_path / "feeds", stores=50, days=8, seed=11)
    odd = tmp_path / "odd.csv"
    with open(odd, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["store_id", "status", "timestamp_utc"])
        writer.writerows(
            [[ODD_ID, "active", "2023-01-25 10:00:00 UTC"], [ODD_ID, "inactive", "2023-01-25 16:00:00 UTC"]]
        )
        writer.writerows([store_id, "active", "2023-01-25 11:00:00 UTC"] for store_id in HOSTILE_IDS)
    database = f"sqlite:///{tmp_path / 'storemon.db'}"
    app = create_app({"DATABASE_URL": database, "REPORTS_DIR": str(tmp_path / "expected")})
    with app.app_context():
        ingest_files(db.engine, tmp_path / "feeds")
        ingest_file(db.engine, "status", odd)
        expected = write_csv(build_report(db.engine).frame, tmp_path / "expected.csv").read_bytes()
        storage.dispose_all()
    env = {
        "DATABASE_URL": database,
        "REPORTS_DIR": str(tmp_path / "reports"),
        "STOREMON_TEST_GATE": str(tmp_path / "gate"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "tests"), os.environ.get("PYTHONPATH")])),
    }
    server = Server(env, workers=2, app="helpers:gated_app()")
    try:
        yield server, expected
    finally:
        server.stop()


def wait_for(condition, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def csp_refusals(driver) -> list[str]:
    """The console messages since the last call that say the Content-Security-Policy refused
    something (the log is drained by reading it)."""
    return [
        e["message"]
        for e in driver.get_log("browser")
        if "Content Security Policy" in e["message"] or "Refused to" in e["message"]
    ]


def screenshot(driver, path: Path, capsys, width: int = 1280) -> Path:
    """The whole page, not only the viewport; its path is printed (past pytest's capture)."""
    driver.set_window_size(width, 900)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(max(height, 600), 6000))
    driver.save_screenshot(str(path))
    driver.set_window_size(1280, 900)
    with capsys.disabled():
        print(f"\nscreenshot: {path}")
    return path


def test_dashboard_in_a_real_browser(browser, site, tmp_path, capsys):
    from selenium.webdriver.common.by import By

    server, expected_csv = site
    driver = browser
    find = driver.find_element

    # Overview: counts, then run a report and watch it reach Complete.
    driver.get(server.base + "/")
    assert find(By.ID, "count-stores").text == STORES
    assert csp_refusals(driver) == []
    assert find(By.ID, "latest-poll").text == "2023-01-25T18:13:22.479220Z"
    # Every text the status and stage lines show is recorded in the page as it is written. The
    # job waits until a poll has been answered Running (gated_app), so that answer is shown.
    driver.execute_script(
        "window.shown = [];"
        "var record = function () { window.shown.push([document.getElementById('report-status').textContent,"
        "  document.getElementById('report-stage').textContent]); };"
        "var observer = new MutationObserver(record);"
        "['report-status', 'report-stage'].forEach(function (id) {"
        "  observer.observe(document.getElementById(id), {childList: true, characterData: true, subtree: true}); });"
    )
    find(By.ID, "run-button").click()

    def complete():
        return find(By.ID, "report-status").text == "Complete"

    wait_for(complete, what="the report to reach Complete")
    shown = driver.execute_script("return window.shown")
    assert (tmp_path / "gate").exists()  # a poll was answered Running before the job computed
    statuses = [status for status, _ in shown]
    assert statuses[0] == "Starting" and statuses[-1] == "Complete", shown
    # Only the server's Running answer gives "Queued (n %)" or "Running (n %)" and a stage line.
    answered = [
        (status, stage)
        for status, stage in shown
        if status.split(" (")[0] in ("Queued", "Running") and status.endswith(" %)")
    ]
    assert answered, shown
    assert {stage for _, stage in answered} & {"stage: queued", "stage: starting"}, shown
    assert find(By.ID, "report-bar").get_attribute("value") == "1"
    report_id = find(By.ID, "report-id").text
    assert len(report_id) == 32

    # The download link hands over the same CSV the command line writes.
    find(By.ID, "report-download").click()
    csv_path = driver.downloads / f"report_{report_id}.csv"
    wait_for(csv_path.is_file, what=f"the download {csv_path}")
    wait_for(lambda: csv_path.read_bytes() == expected_csv, timeout=10, what="the complete download")

    # Run it again with nothing new: the new id reuses the first report, and its page is that one's.
    find(By.ID, "run-button").click()
    wait_for(
        lambda: find(By.ID, "report-id").text not in ("", report_id) and complete(),
        what="the second report to reach Complete",
    )
    reused_id = find(By.ID, "report-id").text
    find(By.ID, "report-open").click()
    wait_for(lambda: driver.find_elements(By.ID, "summary-stores"), what="the reused report's page")
    assert driver.current_url == server.base + f"/reports/{reused_id}"
    assert find(By.ID, "summary-stores").text == STORES
    assert find(By.ID, "reuse-of").get_attribute("href") == server.base + f"/reports/{report_id}"
    assert csp_refusals(driver) == []

    driver.get(server.base + "/")  # the recent-reports table now lists both
    table = find(By.ID, "recent-reports")
    assert report_id[:12] in table.text and reused_id[:12] in table.text
    shots = [screenshot(driver, tmp_path / "overview.png", capsys)]
    table.find_element(By.CSS_SELECTOR, f'a[href="/reports/{reused_id}"]').click()
    wait_for(lambda: driver.find_elements(By.ID, "summary-stores"), what="the reused report's page")
    assert find(By.ID, "summary-stores").text == STORES

    # The report page: sort by week uptime, descending (second click).
    driver.get(server.base + f"/reports/{report_id}")
    assert find(By.ID, "summary-stores").text == STORES
    assert len(driver.find_elements(By.CSS_SELECTOR, "#histogram rect.bar")) == 10
    find(By.CSS_SELECTOR, 'th a[data-column="uptime_last_week"]').click()
    find(By.CSS_SELECTOR, 'th a[data-column="uptime_last_week"]').click()
    wait_for(lambda: "order=desc" in driver.current_url, what="the descending sort")
    cells = [float(td.text) for td in driver.find_elements(By.CSS_SELECTOR, 'td[data-column="uptime_last_week"]')]
    expected_week = sorted((float(line.split(",")[3]) for line in expected_csv.decode().splitlines()[1:]), reverse=True)
    assert cells == expected_week[: len(cells)] and len(cells) == 50
    shots.append(screenshot(driver, tmp_path / "report.png", capsys))
    assert csp_refusals(driver) == []

    # A store page: the chart's segments are the timeline's.
    link = driver.find_elements(By.CSS_SELECTOR, "a.store-link")[0]
    store_id = link.text
    link.click()
    wait_for(lambda: driver.find_elements(By.ID, "week-chart"), what="the store page")
    assert find(By.ID, "store-id").text == store_id
    json_url = find(By.ID, "timeline-json").get_attribute("href")
    with urllib.request.urlopen(json_url, timeout=30) as response:
        timeline = json.loads(response.read())
    drawn: dict[int, tuple] = {}
    for rect in driver.find_elements(By.CSS_SELECTOR, "#week-chart rect.segment"):
        key = int(rect.get_attribute("data-segment"))
        piece = (rect.get_attribute("data-start"), rect.get_attribute("data-end"), rect.get_attribute("data-active"))
        assert drawn.setdefault(key, piece) == piece  # a segment over midnight: two rects, one segment
    assert drawn == {
        k: (s["start"], s["end"], "true" if s["active"] else "false") for k, s in enumerate(timeline["segments"])
    }
    assert len(drawn) > 0
    up_cells = {td.get_attribute("data-column"): td.text for td in driver.find_elements(By.CSS_SELECTOR, "#figures td")}
    assert up_cells == {k: f"{v:.2f}" for k, v in timeline["figures"].items()}
    marks = driver.find_elements(By.CSS_SELECTOR, "#week-chart .poll")
    assert len(marks) == len(timeline["polls"])
    assert len(driver.find_elements(By.CSS_SELECTOR, "#week-chart .poll.not-counted")) == sum(
        not p["counted"] for p in timeline["polls"]
    )
    shots.append(screenshot(driver, tmp_path / "store.png", capsys))
    assert csp_refusals(driver) == []
    shots.append(screenshot(driver, tmp_path / "store-phone.png", capsys, width=390))

    # An awkward id survives the round trip, escaped in the page, through the path converter.
    driver.get(server.base + "/stores/" + urllib.parse.quote(ODD_ID, safe="/"))
    assert find(By.ID, "store-id").text == ODD_ID
    assert find(By.ID, "notes").text  # no hours (24x7) and no zone: both said
    with urllib.request.urlopen(find(By.ID, "timeline-json").get_attribute("href"), timeout=30) as response:
        assert json.loads(response.read())["store_id"] == ODD_ID
    assert all(path.stat().st_size > 10_000 for path in shots)
    assert csp_refusals(driver) == []


def multipart(field: str, name: str, content: bytes) -> tuple[bytes, str]:
    """A multipart/form-data body holding one file: the body and its Content-Type."""
    boundary = "storemon-test-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
            "Content-Type: text/csv\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def test_a_stores_special_days_in_a_real_browser(browser, site, tmp_path, capsys):
    """A special-hours file uploaded over HTTP: on the store's page, the closed date is a hatched
    row, the special hours a band of their own, both in the legend, and the table lists them
    with the file's name; the page asked with ?periods=30d shows that period's figures."""
    from selenium.webdriver.common.by import By

    server, expected_csv = site
    driver = browser
    store_id = expected_csv.decode().splitlines()[1].split(",")[0]
    special = (
        f"store_id,date,start_time_local,end_time_local\n{store_id},2023-01-23,,\n{store_id},2023-01-24,10:00,14:00\n"
    )
    status, _headers, answer = server.request(
        "POST", "/ingest/special_hours", *multipart("file", "holidays.csv", special.encode())
    )
    assert status == 200, answer[:300]
    assert json.loads(answer)["rows_stored"] == 2

    driver.get(server.base + "/store?" + urllib.parse.urlencode({"store_id": store_id, "periods": "30d"}))
    wait_for(lambda: driver.find_elements(By.ID, "week-chart"), what="the store page")
    assert csp_refusals(driver) == []
    rows = [
        [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
        for tr in driver.find_elements(By.CSS_SELECTOR, "#special-days tbody tr")
    ]
    assert rows == [["2023-01-23", "closed", "holidays.csv"], ["2023-01-24", "10:00:00–14:00:00", "holidays.csv"]]
    closed = driver.find_elements(By.CSS_SELECTOR, '#week-chart rect.closed[data-special-date="2023-01-23"]')
    assert len(closed) == 1
    assert closed[0].find_element(By.TAG_NAME, "title").get_attribute("textContent") == (
        "closed (special day: 2023-01-23, from holidays.csv)"
    )
    # The hatching is the stylesheet's pattern: the CSS was applied, nothing refused.
    assert driver.execute_script("return getComputedStyle(arguments[0]).fill", closed[0]) == 'url("#hatch-closed")'
    bands = driver.find_elements(By.CSS_SELECTOR, '#week-chart rect.band.special[data-special-date="2023-01-24"]')
    assert len(bands) == 1
    assert bands[0].find_element(By.TAG_NAME, "title").get_attribute("textContent").startswith("special hours ")
    legend = {li.text for li in driver.find_elements(By.CSS_SELECTOR, ".legend li")}
    assert legend >= {"closed (special day)", "special hours (special day)"}
    # The figures include the period's, and equal the timeline's.
    with urllib.request.urlopen(driver.find_element(By.ID, "timeline-json").get_attribute("href"), timeout=30) as r:
        timeline = json.loads(r.read())
    cells = {td.get_attribute("data-column"): td.text for td in driver.find_elements(By.CSS_SELECTOR, "#figures td")}
    assert cells == {k: f"{v:,.2f}" for k, v in timeline["figures"].items()}
    assert "uptime_last_30d" in cells
    shot = screenshot(driver, tmp_path / "store-special-days.png", capsys)
    assert shot.stat().st_size > 10_000
    assert csp_refusals(driver) == []


def test_every_store_link_reaches_that_store(browser, site):
    """Ids that, put in a path, the browser would resolve elsewhere ("a/../b" to store b, ".." to
    the overview, "//evil.com" to another host or, after a redirect, store evil.com, a backslash
    to a slash): clicking the store's link on the report page, then its timeline link, reaches
    exactly that store."""
    from selenium.webdriver.common.by import By

    server, _ = site
    driver = browser
    driver.get(server.base + "/trigger_report")  # a GET trigger without Origin: allowed, creates one
    report_id = json.loads(driver.find_element(By.TAG_NAME, "pre").text)["report_id"]
    wait_for(
        lambda: (
            urllib.request.urlopen(f"{server.base}/get_report/{report_id}", timeout=30).headers.get("X-Report-Status")
            == "Complete"
        ),
        what="the report",
    )
    for store_id in HOSTILE_IDS:
        driver.get(f"{server.base}/reports/{report_id}?" + urllib.parse.urlencode({"q": store_id}))
        links = [a for a in driver.find_elements(By.CSS_SELECTOR, "a.store-link") if a.text == store_id]
        assert len(links) == 1, store_id
        links[0].click()
        wait_for(lambda: driver.find_elements(By.ID, "store-id"), what=f"the page of store {store_id!r}")
        assert driver.find_element(By.ID, "store-id").text == store_id, (store_id, driver.current_url)
        assert urllib.parse.urlsplit(driver.current_url).netloc == urllib.parse.urlsplit(server.base).netloc
        driver.find_element(By.ID, "timeline-json").click()
        timeline = json.loads(wait_for(lambda: driver.find_elements(By.TAG_NAME, "pre"), what="the JSON")[0].text)
        assert timeline["store_id"] == store_id, (store_id, driver.current_url)
    assert csp_refusals(driver) == []


def test_pages_cannot_be_framed_or_run_inline_script(browser, site):
    """The Content-Security-Policy is in force: another site's frame of the overview stays empty
    (clickjacking), and a script injected inline into a page does not run."""
    from selenium.webdriver.common.by import By

    server, _ = site
    driver = browser
    # "Another site": a page on another origin of this machine (Chromium refuses a public or
    # data: page's frame of a loopback address on its own, so the attacker's page is local too).
    attacker = f'<p>another site</p><iframe id="victim" src="{server.base}/" width="800" height="600"></iframe>'

    class Attacker(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(attacker.encode())

        def log_message(self, *args):
            pass

    other = ThreadingHTTPServer(("127.0.0.1", 0), Attacker)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        driver.get(f"http://localhost:{other.server_address[1]}/")
        driver.switch_to.frame(driver.find_element(By.ID, "victim"))

        def settled() -> str:  # the frame's address once loaded: the overview, or Chromium's error page
            href = driver.execute_script("return document.readyState === 'complete' ? location.href : ''")
            return "" if href in ("", "about:blank") else href

        where = wait_for(settled, timeout=30, what="the frame to load or be refused")
        assert where.startswith("chrome-error:") and driver.find_elements(By.ID, "run-button") == [], (
            f"the overview loaded inside another site's frame ({where})"
        )
        driver.switch_to.default_content()
    finally:
        other.shutdown()
        other.server_close()
    csp_refusals(driver)  # drain: the refused frame may be logged

    driver.get(server.base + "/")
    ran = driver.execute_script(
        "var s = document.createElement('script'); s.textContent = 'window.inlineRan = true;';"
        "document.body.appendChild(s); return window.inlineRan === true;"
    )
    assert ran is False
    assert any("script-src" in m for m in csp_refusals(driver))


def test_api_docs_in_a_real_browser(browser, site, tmp_path, capsys):
    """/docs renders every operation from this server's files alone, and "Try it out" works."""
    from selenium.webdriver.common.by import By

    server, _ = site
    driver = browser
    driver.get(server.base + "/docs")
    spec = json.loads(urllib.request.urlopen(server.base + "/openapi.json", timeout=30).read())
    operations = sum(len(ops) for ops in spec["paths"].values())
    wait_for(lambda: len(driver.find_elements(By.CSS_SELECTOR, ".opblock")) == operations, what="every operation")
    assert "storemon" in driver.find_element(By.CSS_SELECTOR, ".info .title").text
    assert csp_refusals(driver) == []
    screenshot(driver, tmp_path / "docs.png", capsys)
    # Try GET /health from the page, as a newcomer would ("Try it out" is on from the start).
    driver.find_element(By.CSS_SELECTOR, "#operations-operations-health .opblock-summary").click()
    wait_for(
        lambda: driver.find_elements(By.CSS_SELECTOR, "#operations-operations-health .execute"),
        what="the Execute button",
    ).pop().click()
    status = wait_for(
        lambda: [
            e.text
            for e in driver.find_elements(
                By.CSS_SELECTOR, "#operations-operations-health .live-responses-table tbody .response-col_status"
            )
            if e.text
        ],
        what="the live response",
    )
    assert status[0].startswith("200")
    screenshot(driver, tmp_path / "docs-try-it-out.png", capsys)
    assert csp_refusals(driver) == []
    # Nothing was fetched from anywhere but this server (no CDN, no validator badge).
    fetched = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert fetched and all(url.startswith(server.base + "/") for url in fetched), fetched
    # Swagger UI's demo page in the package (it loads petstore.swagger.io) is not served.
    driver.get(server.base + "/docs/static/index.html")
    assert "petstore" not in driver.page_source and "Swagger UI" not in driver.title
