"""The feeds' text to typed columns (storemon/parse.py), pure: the special-hours rows -- dates, times
and closed dates, the bad-row reasons in their documented order -- and one store id's reason."""

from __future__ import annotations

import pandas as pd
import pytest

from storemon.parse import (
    CLOSED,
    COLUMNS,
    FILE_PATTERNS,
    KINDS,
    SPECIAL,
    HoursLimit,
    parse_special_rows,
    store_id_reason,
)
from storemon.times import format_date, latest_date, parse_date


def special_rows(*rows: tuple[str, str, str, str]) -> tuple[pd.DataFrame, pd.Series]:
    raw = pd.DataFrame(list(rows), columns=list(COLUMNS[SPECIAL]), dtype=object)
    return parse_special_rows(raw)


def test_special_hours_are_the_fourth_feed_with_its_columns_and_file_names():
    assert KINDS == ("status", "hours", "timezones", "special_hours")
    assert list(COLUMNS[SPECIAL]) == ["store_id", "date", "start_time_local", "end_time_local"]
    assert FILE_PATTERNS[SPECIAL] == ("special_hours*.csv", "special hours*.csv", "closures*.csv", "holidays*.csv")


def test_a_special_row_is_its_local_date_in_days_and_its_times_in_seconds_as_written():
    rows, reasons = special_rows(
        ("007", "2023-01-23", "09:00", "13:00"),
        ("007", " 2023-01-24 ", "22:00", "02:00"),  # past midnight: kept as written
        ("007", "2023-01-25", "09:00", "09:00"),  # end equal to start: 24 h, kept as written
        ("007", "2023-01-26", "8:00", "23:59:59"),
        ("007", "2023-01-27", "00:00", "24:00:00"),
    )
    assert reasons.empty
    assert rows["date"].tolist() == [19380, 19381, 19382, 19383, 19384]  # days since 1970-01-01
    assert format_date(19380) == "2023-01-23" and parse_date("2023-01-23") == 19380
    assert rows["start_s"].tolist() == [32400, 79200, 32400, 28800, 0]
    assert rows["end_s"].tolist() == [46800, 7200, 32400, 86399, 86400]
    assert rows.dtypes.tolist() == [object, "int64", "int64", "int64"]


def test_a_row_whose_start_and_end_are_both_empty_is_a_closed_date():
    rows, reasons = special_rows(("007", "2023-01-23", "", ""), ("008", "2023-01-23", " ", "  "))
    assert reasons.empty
    assert rows[["start_s", "end_s"]].values.tolist() == [[CLOSED, CLOSED], [CLOSED, CLOSED]] == [[-1, -1]] * 2


def test_a_closed_row_with_only_one_time_is_a_bad_start_or_end_time():
    _, reasons = special_rows(("a", "2023-01-23", "", "13:00"), ("a", "2023-01-23", "09:00", " "))
    assert reasons.tolist() == ["bad start time", "bad end time"]


@pytest.mark.parametrize(
    "date",
    ["2023-02-30", "2023-02-29", "2023-13-01", "1999-12-31", "0001-01-01", "9999-12-31", "2023-1-23", "23-01-2023",
     "20230123", "2023-01-23T00:00", "today", "", "\uff12\uff10\uff12\uff13-01-23", "\u0662\u0660\u0662\u0663-01-23"],
)  # fmt: skip
def test_a_date_that_is_no_real_date_or_lies_outside_2000_to_a_year_ahead_is_a_bad_date(date):
    _, reasons = special_rows(("a", date, "", ""))
    assert reasons.tolist() == ["bad date"]


def test_the_accepted_dates_run_from_2000_01_01_to_one_year_after_today():
    last = format_date(latest_date())
    rows, reasons = special_rows(("a", "2000-01-01", "", ""), ("a", "2024-02-29", "", ""), ("a", last, "", ""))
    assert reasons.empty and rows["date"].tolist() == [10957, 19782, latest_date()]
    assert (pd.Timestamp(last) - pd.Timestamp.now(tz="UTC").tz_localize(None).normalize()).days in (365, 366)
    _, reasons = special_rows(("a", format_date(latest_date() + 1), "", ""))
    assert reasons.tolist() == ["bad date"]


def test_a_skipped_special_row_counts_under_the_first_reason_in_the_documented_order():
    rows, reasons = special_rows(
        ("", "", "", ""),  # empty line (before empty store_id, bad date, ...)
        (" ", "x", "x", "x"),  # empty store_id before bad date
        ("x" * 256, "x", "", ""),  # store_id too long before bad date
        ("=cmd", "x", "x", "x"),  # unsafe store_id before bad date
        ("a\tb", "2023-01-23", "", ""),  # a control character: unsafe
        ("a", "2023-02-30", "x", "x"),  # bad date before the times
        ("a", "2023-01-23", "24:00", "x"),  # bad start time (24:00 is an end only) before bad end time
        ("a", "2023-01-23", "09:00", "25:00"),  # bad end time
        ("ok", "2023-01-23", "", ""),
    )
    assert reasons.tolist() == [
        "empty line",
        "empty store_id",
        "store_id too long",
        "unsafe store_id",
        "unsafe store_id",
        "bad date",
        "bad start time",
        "bad end time",
    ]
    assert rows["store_id"].tolist() == ["ok"]


def test_the_limit_of_50_rows_a_day_counts_per_store_and_date_for_special_hours():
    limit = HoursLimit(day="date")
    rows = pd.DataFrame(
        {"store_id": ["a"] * 60 + ["b"], "date": [1] * 55 + [2] * 5 + [1], "start_s": list(range(60)) + [0],
         "end_s": [CLOSED] * 61},
    )  # fmt: skip
    beyond = limit.over(rows)
    assert beyond.sum() == 5 and beyond[50:55].all()  # a's 51st to 55th row of date 1
    again = limit.over(rows.iloc[:3])  # rows already counted are no new rows
    assert not again.any()


@pytest.mark.parametrize(
    "store_id, reason",
    [("007", None), ('a "quoted", id', None), ("=cmd", "unsafe store_id"), ("+1", "unsafe store_id"),
     ("a\x00b", "unsafe store_id"), (" ", "empty store_id"), ("x" * 256, "store_id too long"),
     ("a\udcffb", "not UTF-8")],
)  # fmt: skip
def test_a_store_id_a_user_names_gets_the_reason_a_feed_row_with_it_would(store_id, reason):
    assert store_id_reason(store_id) == reason


@pytest.mark.parametrize(
    "text, message",
    [
        ("soon", "cannot read 'soon' as a date; use YYYY-MM-DD"),
        ("2023-02-30", "'2023-02-30' is not a real calendar date"),
        ("1999-12-31", "'1999-12-31' is outside the accepted range: from 2000-01-01 to one year after today"),
    ],
)
def test_one_date_a_user_gives_is_refused_with_a_readable_reason(text, message):
    with pytest.raises(ValueError, match=message):
        parse_date(text)
