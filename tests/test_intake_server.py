"""Trustworthy intake against a real gunicorn on 127.0.0.1: cut uploads on a raw socket, limits on
streamed bodies, and the start-up refusals (open binds without tokens, impossible settings)."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys

import pytest
from helpers import ROOT, Server, free_port, start_and_wait

pytestmark = pytest.mark.slow

ROWS = b"".join(b"s%d,active,2023-01-25 12:%02d:00 UTC\n" % (i, i % 60) for i in range(200))
POLLS = b"store_id,status,timestamp_utc\n" + ROWS


@pytest.fixture
def server(tmp_path):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'storemon.db'}", "REPORTS_DIR": str(tmp_path / "reports"),
           "UPLOAD_DIR": str(tmp_path / "uploads"), "MAX_UPLOAD_BYTES": "200000"}
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


def test_cut_uploads_are_refused_and_store_nothing(server):
    host = f"Host: 127.0.0.1:{server.port}\r\n".encode()
    # A text/csv body shorter than its Content-Length (the client gave up or was cut off).
    head = (b"POST /ingest/status HTTP/1.1\r\n" + host + b"Content-Type: text/csv\r\n"
            b"Content-Length: %d\r\n\r\n" % (len(POLLS) + 5000))
    status, body = raw(server, head, POLLS)
    assert status == 400 and body["message"].startswith("upload incomplete: received")
    assert f"of the {len(POLLS) + 5000:,} bytes announced" in body["message"]
    # A chunked body cut inside a chunk.
    head = b"POST /ingest/status HTTP/1.1\r\n" + host + b"Content-Type: text/csv\r\nTransfer-Encoding: chunked\r\n\r\n"
    first = POLLS[:1000]
    status, body = raw(server, head, b"%x\r\n%s\r\n%x\r\n%s" % (len(first), first, 5000, POLLS[1000:2000]))
    assert status == 400 and body["message"].startswith("upload incomplete")
    # A multipart upload cut before its end.
    part = (b'--BOUNDARY\r\nContent-Disposition: form-data; name="file"; filename="store_status.csv"\r\n'
            b"Content-Type: text/csv\r\n\r\n" + POLLS + b"\r\n--BOUNDARY--\r\n")
    head = (b"POST /ingest/status HTTP/1.1\r\n" + host + b"Content-Type: multipart/form-data; boundary=BOUNDARY\r\n"
            b"Content-Length: %d\r\n\r\n" % len(part))
    status, body = raw(server, head, part[: len(part) // 2])
    assert status == 400 and body["message"].startswith("upload incomplete")
    assert stored(server) == (0, [])  # nothing stored, nothing in the ledger
    assert list((server.upload_dir).glob("*")) == []  # and no upload file left behind
    # The same upload, whole, is stored.
    status, body = raw(server, head, part)
    assert status == 200 and body["rows_stored"] == 200
    assert stored(server)[0] == 200


def test_streamed_bodies_past_the_limit_get_413(server):
    host = f"Host: 127.0.0.1:{server.port}\r\n".encode()
    big = POLLS * 40  # ~1.4 MB against a 200,000-byte limit, announced by nobody (chunked)
    head = b"POST /ingest/status HTTP/1.1\r\n" + host + b"Content-Type: text/csv\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(big[i:i + 65536]), big[i:i + 65536]) for i in range(0, len(big), 65536))
    status, body = raw(server, head, chunks + b"0\r\n\r\n")
    assert status == 413 and "limit is 200,000 bytes" in body["message"]
    # Announced too large: refused before a byte of the body is read.
    status, _, answer = server.request("POST", "/ingest/status", data=big, content_type="text/csv")
    assert status == 413 and json.loads(answer)["error"] == "Request Entity Too Large"
    assert stored(server) == (0, [])


def test_an_open_bind_without_tokens_is_refused(tmp_path):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "REPORTS_DIR": str(tmp_path / "r"),
           "STOREMON_BIND": f"0.0.0.0:{free_port()}"}
    result = start_and_wait(env)
    assert result.returncode != 0
    assert "refusing to serve on 0.0.0.0" in result.stderr and "STOREMON_API_TOKENS" in result.stderr
    assert "Traceback" not in result.stderr


def test_open_binds_with_tokens_or_allow_open_start(tmp_path):
    for extra in ({"STOREMON_API_TOKENS": "t0ken-0123456789ab"}, {"STOREMON_ALLOW_OPEN": "1"}):
        server = Server({"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "REPORTS_DIR": str(tmp_path / "r"),
                         "STOREMON_BIND_HOST": "0.0.0.0", **extra}, workers=1)
        try:
            assert server.get("/health")[0] == 200
        finally:
            server.stop()


def test_impossible_settings_stop_the_server_with_one_line(tmp_path):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "REPORTS_DIR": str(tmp_path / "r"),
           "STOREMON_BIND": f"127.0.0.1:{free_port()}", "REPORT_WORKERS": "0"}
    result = start_and_wait(env)
    assert result.returncode != 0
    assert "configuration error: REPORT_WORKERS='0': must be at least 1" in result.stderr
    assert "Traceback" not in result.stderr


def test_two_instances_on_one_host_do_not_share_a_control_socket(tmp_path):
    first = Server({"DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}", "REPORTS_DIR": str(tmp_path / "a")}, workers=1)
    second = Server({"DATABASE_URL": f"sqlite:///{tmp_path / 'b.db'}", "REPORTS_DIR": str(tmp_path / "b")}, workers=1)
    try:
        first.stop()
        assert second.get("/health")[0] == 200
        log = (tmp_path / f"gunicorn-{second.port}.log").read_text()
        assert "control" not in log.lower()
    finally:
        second.stop()


def test_processes_starting_at_once_on_a_new_database_all_start(tmp_path):
    """gunicorn's workers create the schema at the same moment: none may die of 'database is locked'."""
    for trial in range(3):
        folder = tmp_path / f"t{trial}"
        settings = {"DATABASE_URL": f"sqlite:///{folder / 's.db'}", "REPORTS_DIR": str(folder / "r"),
                    "UPLOAD_DIR": str(folder / "u")}
        code = f"from storemon import create_app; create_app({settings!r})"
        starts = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stderr=subprocess.PIPE, text=True)
                  for _ in range(4)]
        for process in starts:
            _, err = process.communicate(timeout=120)
            assert process.returncode == 0, err[-2000:]


@pytest.fixture
def roomy_server(tmp_path):
    """A server with the default upload limit (1 GiB)."""
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'storemon.db'}", "REPORTS_DIR": str(tmp_path / "reports"),
           "UPLOAD_DIR": str(tmp_path / "uploads")}
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
            block = b"".join(b"%d,%s,%s\n" % (7_000_000_000_000_000_000 + s, b"active" if (s + minute) % 5 else
                                              b"inactive", stamp) for s in range(stores))
            out.write(block)
            rows, size, minute = rows + stores, size + len(block), minute + 61
    return rows


@pytest.mark.parametrize("part_type", [b"Content-Type: text/csv\r\n", b""], ids=["with part type", "without"])
def test_a_50_mb_multipart_upload_is_stored_whole(roomy_server, tmp_path, part_type):
    """The README's own form (curl -F file=@...) with a real-size file, streamed from disk."""
    rows = big_status_file(tmp_path / "status.csv", 50)
    head = (b"--BOUNDARY\r\nContent-Disposition: form-data; name=\"file\"; filename=\"store_status.csv\"\r\n"
            + part_type + b"\r\n")
    tail = b"\r\n--BOUNDARY--\r\n"
    body = tmp_path / "body"
    with open(body, "wb") as out:
        out.write(head)
        out.write((tmp_path / "status.csv").read_bytes())
        out.write(tail)
    connection = http.client.HTTPConnection("127.0.0.1", roomy_server.port, timeout=120)
    with open(body, "rb") as stream:
        connection.request("POST", "/ingest/status", body=stream, headers={
            "Content-Type": "multipart/form-data; boundary=BOUNDARY", "Content-Length": str(body.stat().st_size)})
        response = connection.getresponse()
        answer = json.loads(response.read())
    connection.close()
    assert response.status == 200, answer
    assert (answer["outcome"], answer["rows_read"], answer["rows_stored"]) == ("stored", rows, rows)
    assert answer["size"] == (tmp_path / "status.csv").stat().st_size > 50_000_000
    assert stored(roomy_server)[0] == rows
    assert list(roomy_server.upload_dir.glob("*")) == []
