"""The report through the database path, against an independent expectation: random stores'
feeds uploaded over HTTP, a report triggered and fetched (and one written by `flask report`),
compared byte for byte with the brute force (tests/bruteforce.py) under the documented rounding,
on SQLite and PostgreSQL."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from bruteforce import brute_force_report, report_csv
from helpers import fetch_report, random_stores


def feed_texts(polls: pd.DataFrame, hours: pd.DataFrame, zones: pd.DataFrame) -> dict[str, str]:
    """The three feeds as CSV text, shaped like the real ones."""
    stamped = polls.assign(timestamp_utc=pd.to_datetime(polls["timestamp_utc"]).dt.strftime("%Y-%m-%d %H:%M:%S UTC"))
    return {
        "timezones": zones.to_csv(index=False),
        "hours": hours.rename(columns={"day": "dayOfWeek"}).to_csv(index=False),
        "status": stamped.to_csv(index=False),
    }


@pytest.mark.parametrize(
    "seed,now",
    [
        (21, "2023-03-13 05:00:00Z"),  # the week holds the US spring change
        (22, "2023-11-06 09:30:00Z"),  # the US autumn change
    ],
)
def test_uploaded_feeds_give_the_brute_force_report(client, runner, tmp_path, seed, now):
    polls, hours, zones = random_stores(np.random.default_rng(seed), 40, now)
    polls = polls.drop_duplicates(["store_id", "timestamp_utc"], keep="last")
    for kind, text in feed_texts(polls, hours, zones).items():
        answer = client.post(f"/ingest/{kind}", data=text, content_type="text/csv")
        assert answer.status_code == 200 and answer.get_json()["rows_skipped"] == 0, answer.get_json()
    expected = report_csv(brute_force_report(polls, hours, zones, pd.Timestamp(now).to_pydatetime()))
    assert len(expected.splitlines()) > 25  # stores with a poll at or before now, and the header
    as_of = pd.Timestamp(now).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert fetch_report(client, as_of) == expected
    out = tmp_path / "report.csv"
    result = runner.invoke(args=["report", "--out", str(out), "--as-of", as_of])
    assert result.exit_code == 0, result.output
    assert out.read_text() == expected
