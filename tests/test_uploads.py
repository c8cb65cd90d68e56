"""Uploads (storemon/uploads.py) through the Flask test client, on both databases: multipart
bodies of real size, with and without a part Content-Type, the upload and form limits, upload
files swept and never left behind. Against a real gunicorn (marked slow): bodies cut on a raw
socket, streamed bodies past the limit, a 50 MB multipart file."""

from __future__ import annotations

import http.client
import io
import json
import socket
from pathlib import Path

import pytest
from helpers import REAL_SAMPLE, STATUS, STATUS_HEADER, Server, polls

from storemon.uploads import FORM_FIELD_BYTES, MAX_FORM_PARTS, sweep_stale

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


@pytest.mark.parametrize("multipart", [False, True], ids=["a text/csv body", "a multipart form"])
def test_an_upload_over_its_limit_is_413_and_leaves_no_ledger_entry(app, client, multipart):
    app.config["MAX_UPLOAD_BYTES"] = 100
    body = STATUS_HEADER + "a,active,2023-01-23 12:00:00 UTC\n" * 5
    if multipart:
        response = client.post(
            "/ingest/status", data={"file": (io.BytesIO(body.encode()), "s.csv")}, content_type="multipart/form-data"
        )
    else:
        response = client.post("/ingest/status", data=body, content_type="text/csv")
    assert response.status_code == 413
    assert "limit is 100 bytes" in response.get_json()["message"]
    assert client.get("/ingests").get_json()["ingests"] == []


def test_stale_upload_files_are_swept_at_start_up(tmp_path):
    folder = tmp_path / "uploads"
    folder.mkdir()
    dead = folder / "upload-999999999-0123abcd.part"  # no such pid
    dead.write_bytes(b"half an upload")
    mine = folder / "notes.txt"
    mine.write_text("not ours")
    assert sweep_stale(folder) == 1
    assert not dead.exists() and mine.exists()


def test_uploads_leave_no_file_behind(app, client):
    stored = client.post("/ingest/status", data=STATUS, content_type="text/csv")
    assert stored.status_code == 200 and stored.get_json()["outcome"] == "stored"
    refused = client.post(
        "/ingest/status", data={"other": (io.BytesIO(STATUS.encode()), "s.csv")}, content_type="multipart/form-data"
    )
    assert refused.status_code == 400 and "a field named 'file'" in refused.get_json()["message"]
    assert list(Path(app.config["UPLOAD_DIR"]).glob("*")) == []


def test_multipart_needs_a_field_named_file(client):
    response = client.post(
        "/ingest/status", data={"upload": (io.BytesIO(STATUS.encode()), "s.csv")}, content_type="multipart/form-data"
    )
    assert response.status_code == 400 and "field named 'file'" in response.get_json()["message"]


def test_a_multipart_body_without_its_closing_boundary_is_incomplete(client, engine):
    body = b'--XX\r\nContent-Disposition: form-data; name="file"; filename="s.csv"\r\n\r\n' + STATUS.encode()
    response = client.post("/ingest/status", data=body, content_type="multipart/form-data; boundary=XX")
    assert response.status_code == 400
    assert response.get_json()["message"].startswith("upload incomplete: the multipart body ends before")
    assert polls(engine) == []


# --- a real gunicorn: bodies on a socket ----------------------------------------------------------


ROWS = b"".join(b"s%d,active,2023-01-25 12:%02d:00 UTC\n" % (i, i % 60) for i in range(200))
POLLS = b"store_id,status,timestamp_utc\n" + ROWS


@pytest.fixture
def server(tmp_path):
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'storemon.db'}",
        "REPORTS_DIR": str(tmp_path / "reports"),
        "UPLOAD_DIR": str(tmp_path / "uploads"),
        "MAX_UPLOAD_BYTES": "200000",
    }
    server = Server(env, workers=1)
    yield server
    server.stop()


def raw(server: Server, head: bytes, body: bytes) -> tuple[int, dict]:
    """Send a request whose body stops early (the client half-closes), return (status, JSON)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head + body)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    payload = data.split(b"\r\n\r\n", 1)[1]
    return status, json.loads(payload)


def stored(server: Server) -> tuple[int, list]:
    health = json.loads(server.get("/health")[2])
    return health["polls"], json.loads(server.get("/ingests")[2])["ingests"]


@pytest.mark.slow
def test_cut_uploads_are_refused_and_store_nothing(server):
    host = f"Host: 127.0.0.1:{server.port}\r\n".encode()
    # A text/csv body shorter than its Content-Length (the client gave up or was cut off).
    head = (
        b"POST /ingest/status HTTP/1.1\r\n" + host + b"Content-Type: text/csv\r\n"
        b"Content-Length: %d\r\n\r\n" % (len(POLLS) + 5000)
    )
    status, body = raw(server, head, POLLS)
    assert status == 400 and body["message"].startswith("upload incomplete: received")
    assert f"of the {len(POLLS) + 5000:,} bytes announced" in body["message"]
    # A chunked body cut inside a chunk.
    head = b"POST /ingest/status HTTP/1.1\r\n" + host + b"Content-Type: text/csv\r\nTransfer-Encoding: chunked\r\n\r\n"
    first = POLLS[:1000]
    status, body = raw(server, head, b"%x\r\n%s\r\n%x\r\n%s" % (len(first), first, 5000, POLLS[1000:2000]))
    assert status == 400 and body["message"].startswith("upload incomplete")
    # A multipart upload cut before its end.
    part = (
        b'--BOUNDARY\r\nContent-Disposition: form-data; name="file"; filename="store_status.csv"\r\n'
        b"Content-Type: text/csv\r\n\r\n" + POLLS + b"\r\n--BOUNDARY--\r\n"
    )
    head = (
        b"POST /ingest/status HTTP/1.1\r\n" + host + b"Content-Type: multipart/form-data; boundary=BOUNDARY\r\n"
        b"Content-Length: %d\r\n\r\n" % len(part)
    )
    status, body = raw(server, head, part[: len(part) // 2])
    assert status == 400 and body["message"].startswith("upload incomplete")
    assert stored(server) == (0, [])  # nothing stored, nothing in the ledger
    assert list((server.upload_dir).glob("*")) == []  # and no upload file left behind
    # The same upload, whole, is stored.
    status, body = raw(server, head, part)
    assert status == 200 and body["rows_stored"] == 200
    assert stored(server)[0] == 200


@pytest.mark.slow
def test_streamed_bodies_past_the_limit_get_413(server):
    host = f"Host: 127.0.0.1:{server.port}\r\n".encode()
    big = POLLS * 40  # ~1.4 MB against a 200,000-byte limit, announced by nobody (chunked)
    head = b"POST /ingest/status HTTP/1.1\r\n" + host + b"Content-Type: text/csv\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(big[i : i + 65536]), big[i : i + 65536]) for i in range(0, len(big), 65536)
    )
    status, body = raw(server, head, chunks + b"0\r\n\r\n")
    assert status == 413 and "limit is 200,000 bytes" in body["message"]
    # Announced too large: refused before a byte of the body is read.
    status, _, answer = server.request("POST", "/ingest/status", data=big, content_type="text/csv")
    assert status == 413 and json.loads(answer)["error"] == "Request Entity Too Large"
    assert stored(server) == (0, [])


@pytest.fixture
def roomy_server(tmp_path):
    """A server with the default upload limit (1 GiB)."""
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'storemon.db'}",
        "REPORTS_DIR": str(tmp_path / "reports"),
        "UPLOAD_DIR": str(tmp_path / "uploads"),
    }
    server = Server(env, workers=1)
    yield server
    server.stop()


def big_status_file(path, megabytes: int) -> int:
    """A status file of about ``megabytes`` MB (distinct polls of 20,000 stores); returns its rows."""
    stores = 20_000
    with open(path, "wb") as out:
        out.write(b"store_id,status,timestamp_utc\n")
        rows, size, minute = 0, 0, 0
        while size < megabytes * 1_000_000:
            stamp = b"2023-01-%02d %02d:%02d:00.250000 UTC" % (18 + minute // 1440, minute // 60 % 24, minute % 60)
            block = b"".join(
                b"%d,%s,%s\n" % (7_000_000_000_000_000_000 + s, b"active" if (s + minute) % 5 else b"inactive", stamp)
                for s in range(stores)
            )
            out.write(block)
            rows, size, minute = rows + stores, size + len(block), minute + 61
    return rows


@pytest.mark.slow
@pytest.mark.parametrize("part_type", [b"Content-Type: text/csv\r\n", b""], ids=["with part type", "without"])
def test_a_50_mb_multipart_upload_is_stored_whole(roomy_server, tmp_path, part_type):
    """The README's own form (curl -F file=@...) with a real-size file, streamed from disk."""
    rows = big_status_file(tmp_path / "status.csv", 50)
    head = (
        b'--BOUNDARY\r\nContent-Disposition: form-data; name="file"; filename="store_status.csv"\r\n'
        + part_type
        + b"\r\n"
    )
    tail = b"\r\n--BOUNDARY--\r\n"
    body = tmp_path / "body"
    with open(body, "wb") as out:
        out.write(head)
        out.write((tmp_path / "status.csv").read_bytes())
        out.write(tail)
    connection = http.client.HTTPConnection("127.0.0.1", roomy_server.port, timeout=120)
    with open(body, "rb") as stream:
        connection.request(
            "POST",
            "/ingest/status",
            body=stream,
            headers={
                "Content-Type": "multipart/form-data; boundary=BOUNDARY",
                "Content-Length": str(body.stat().st_size),
            },
        )
        response = connection.getresponse()
        answer = json.loads(response.read())
    connection.close()
    assert response.status == 200, answer
    assert (answer["outcome"], answer["rows_read"], answer["rows_stored"]) == ("stored", rows, rows)
    assert answer["size"] == (tmp_path / "status.csv").stat().st_size > 50_000_000
    assert stored(roomy_server)[0] == rows
    assert list(roomy_server.upload_dir.glob("*")) == []
