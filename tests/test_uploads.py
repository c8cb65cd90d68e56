"""Uploads (storemon/uploads.py) through the Flask test client, on both databases: multipart
bodies of real size, with and without a part Content-Type, and the form limits that remain.
Uploads over a real socket (cut bodies, a 50 MB multipart file) are in test_intake_server.py."""

from __future__ import annotations

import pytest
from helpers import REAL_SAMPLE

from storemon.uploads import FORM_FIELD_BYTES, MAX_FORM_PARTS

BOUNDARY = "----storemon-test-boundary"


def multipart(parts: list[tuple[str, str | None, str | None, bytes]]) -> bytes:
    """A multipart/form-data body from (field name, file name, part Content-Type, data) parts;
    a part with no Content-Type gets no such header at all (as some clients send it)."""
    out = b""
    for name, filename, content_type, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n".encode()
        if content_type:
            out += f"Content-Type: {content_type}\r\n".encode()
        out += b"\r\n" + data + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def post(client, kind: str, body: bytes):
    return client.post(f"/ingest/{kind}", data=body, content_type=f"multipart/form-data; boundary={BOUNDARY}")


@pytest.mark.parametrize("part_type", ["text/csv", "application/octet-stream", None])
def test_the_real_hours_sample_is_accepted_as_a_multipart_upload(client, part_type):
    data = (REAL_SAMPLE / "menu_hours.csv").read_bytes()
    assert len(data) > 3_000_000  # far over the 64 KiB block of the multipart decoder
    response = post(client, "hours", multipart([("file", "menu_hours.csv", part_type, data)]))
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    assert (answer["outcome"], answer["file"], answer["size"]) == ("stored", "menu_hours.csv", len(data))
    assert answer["rows_read"] == data.count(b"\n") - 1


def test_text_fields_beside_the_file_are_accepted_up_to_their_limit(client):
    data = (REAL_SAMPLE / "timezones.csv").read_bytes()
    note = b"x" * (FORM_FIELD_BYTES - 1)
    response = post(client, "timezones", multipart([("note", None, None, note), ("file", "tz.csv", None, data)]))
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["size"] == len(data)


def test_a_text_field_over_its_limit_is_413_and_stores_nothing(client):
    data = (REAL_SAMPLE / "timezones.csv").read_bytes()
    note = b"x" * (FORM_FIELD_BYTES + 1)
    response = post(client, "timezones", multipart([("note", None, None, note), ("file", "tz.csv", None, data)]))
    assert response.status_code == 413
    assert "a form field other than 'file' is over 256 KiB" in response.get_json()["message"]
    assert client.get("/health").get_json()["stores_with_timezone"] == 0


def test_a_form_of_too_many_parts_is_413(client):
    parts = [(f"f{i}", None, None, b"1") for i in range(MAX_FORM_PARTS + 1)]
    response = post(client, "timezones", multipart(parts))
    assert response.status_code == 413
    assert f"over {MAX_FORM_PARTS} parts" in response.get_json()["message"]
