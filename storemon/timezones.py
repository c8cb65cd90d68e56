"""Time-zone names: which ones we know, and the default for the rest (docs/report-rules.md)."""

from __future__ import annotations

import pytz

DEFAULT_TIMEZONE = "America/Chicago"

# The names pandas can localize to. pytz's list is fixed per release, so ingest (which warns
# about unknown names) and the report (which replaces them by the default) always agree.
KNOWN_TIMEZONES: frozenset[str] = frozenset(pytz.all_timezones)


def is_known_timezone(name: str) -> bool:
    return name in KNOWN_TIMEZONES
