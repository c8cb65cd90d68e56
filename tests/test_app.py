"""The app factory (storemon/__init__.py ``create_app``): settings that cannot work stop it at
start-up."""

from __future__ import annotations

import pytest

from storemon import create_app
from storemon.config import ConfigError


@pytest.mark.parametrize(
    "key, value",
    [("REPORT_WORKERS", 0), ("REPORT_WORKERS", "two"), ("MAX_UPLOAD_BYTES", -1)],
    ids=["REPORT_WORKERS=0", "REPORT_WORKERS=two", "MAX_UPLOAD_BYTES=-1"],
)
def test_settings_that_cannot_work_are_refused_at_start_up(tmp_path, key, value):
    with pytest.raises(ConfigError, match=key):
        create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "REPORTS_DIR": str(tmp_path), key: value})
