"""The server's own settings and limits against a real gunicorn on 127.0.0.1 (gunicorn.conf.py,
storemon/webserver.py): slow clients (idle connections, request heads trickled a byte at a time),
settings that stop the server with one line, one instance's control socket kept from another's,
token lists that hold no usable token, and credentials kept out of the logs."""

from __future__ import annotations

import base64
import json
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
from helpers import ROOT, Server, free_port, start_and_wait

from storemon import create_app, storage
from storemon.config import BY_NAME, SERVER_SETTINGS, ConfigError, server_settings
from storemon.demo import generate_demo_data
from storemon.extensions import db
from storemon.ingest import ingest_files

pytestmark = pytest.mark.slow

TOKEN = "tokSECRET123-abcdef"  # 19 characters


@pytest.fixture(scope="module")
def small_database(tmp_path_factory):
    """A few hundred stores over 8 days, ingested once for the module."""
    folder = tmp_path_factory.mktemp("limits")
    generate_demo_data(folder / "feeds", stores=300, days=8, seed=5)
    app = create_app({"DATABASE_URL": f"sqlite:///{folder / 'storemon.db'}", "REPORTS_DIR": str(folder / "r")})
    with app.app_context():
        ingest_files(db.engine, folder / "feeds")
        db.session.remove()
        storage.dispose_all()
    return folder / "storemon.db"


def server_env(database, tmp_path, **extra) -> dict:
    copy = tmp_path / "storemon.db"
    copy.write_bytes(database.read_bytes())
    return {
        "DATABASE_URL": f"sqlite:///{copy}",
        "REPORTS_DIR": str(tmp_path / "reports"),
        "UPLOAD_DIR": str(tmp_path / "uploads"),
        **extra,
    }


def timed(url: str, data: bytes | None = None, timeout: float = 10) -> tuple[float, int, dict, bytes]:
    """(seconds, status, headers, body) of one request on a new connection (a POST when data is
    given); status 0 when it failed or timed out."""
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    start = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, headers, body = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        status, headers, body = err.code, dict(err.headers), err.read()
        err.close()
    except OSError:
        status, headers, body = 0, {}, b""
    return time.monotonic() - start, status, headers, body


class SlowClients:
    """Connections held open against a server, each opened again when the server closes it:
    ``idle`` ones send nothing, ``trickling`` ones send a request head one byte at a time and
    never finish it, ``lingering`` ones send a whole request with ``Connection: close`` and then
    neither read the answer nor close (for 3 s, then again on a new connection)."""

    HEAD = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Slow: " + b"a" * 4000
    CLOSE = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"

    def __init__(self, port: int, idle: int = 0, trickling: int = 0, lingering: int = 0, interval: float = 0.5):
        self.port, self.interval = port, interval
        self.selector = selectors.DefaultSelector()  # idle and trickling connections
        self.lingering: dict[int, tuple[socket.socket, float]] = {}
        self.stopping = threading.Event()
        self.reopened = 0
        self.kinds = ["idle"] * idle + ["trickle"] * trickling + ["linger"] * lingering
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _open(self, index: int) -> None:
        sock = socket.socket()
        if self.kinds[index] == "linger":
            sock.settimeout(10)
            try:
                sock.connect(("127.0.0.1", self.port))
                sock.sendall(self.CLOSE)
            except OSError:
                pass
            self.lingering[index] = (sock, time.monotonic())
            return
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", self.port))
        self.selector.register(sock, selectors.EVENT_READ, [index, 0])

    def _run(self) -> None:
        for index in range(len(self.kinds)):
            self._open(index)
        next_byte = time.monotonic()
        while not self.stopping.is_set():
            for key, _ in self.selector.select(timeout=0.05):  # the server answered or closed
                try:
                    key.fileobj.recv(65536)
                except OSError:
                    pass
                self._reopen(key)
            now = time.monotonic()
            for index, (sock, opened) in list(self.lingering.items()):
                if now - opened > 3:
                    sock.close()
                    self.reopened += 1
                    self._open(index)
            if now >= next_byte:
                next_byte += self.interval
                for key in list(self.selector.get_map().values()):
                    index, sent = key.data
                    if self.kinds[index] != "trickle":
                        continue
                    try:
                        key.fileobj.send(self.HEAD[sent % len(self.HEAD) :][:1])
                        key.data[1] += 1
                    except OSError:
                        self._reopen(key)
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()
        self.selector.close()
        for sock, _ in self.lingering.values():
            sock.close()

    def _reopen(self, key) -> None:
        self.selector.unregister(key.fileobj)
        key.fileobj.close()
        self.reopened += 1
        self._open(key.data[0])

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join(timeout=10)


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def test_slow_clients_do_not_take_the_service_down(small_database, tmp_path, capsys):
    """200 idle and 100 trickling connections, and 20 that never close after their answer, held
    for 30 s: /health and a finished report keep answering within 1 s (p99), and a report
    triggered meanwhile completes."""
    server = Server(server_env(small_database, tmp_path), workers=1)
    try:
        first = json.loads(server.request("POST", "/trigger_report")[2])["report_id"]
        deadline = time.monotonic() + 60
        while server.get(f"/get_report/{first}")[1].get("X-Report-Status") != "Complete":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        health, report = [], []
        with SlowClients(server.port, idle=200, trickling=100, lingering=20) as attack:
            time.sleep(2)  # every slow connection is open
            start = time.monotonic()
            triggered = None
            completed_after = None
            while time.monotonic() - start < 30:
                seconds, status, _, _ = timed(server.base + "/health")
                health.append(seconds if status == 200 else float("inf"))
                seconds, status, _, _ = timed(server.base + f"/get_report/{first}")
                report.append(seconds if status == 200 else float("inf"))
                if triggered is None and time.monotonic() - start > 2:
                    _, status, _, body = timed(server.base + "/trigger_report", b'{"as_of": "2023-01-24T12:00:00Z"}')
                    if status == 200:
                        triggered = json.loads(body)["report_id"]
                elif triggered and completed_after is None:
                    _, _, headers, _ = timed(server.base + f"/get_report/{triggered}")
                    if headers.get("X-Report-Status") == "Complete":
                        completed_after = time.monotonic() - start
                time.sleep(0.05)
            reopened = attack.reopened
        with capsys.disabled():  # past pytest's capture: the numbers show in the CI log
            print(
                f"\nslow clients (200 idle, 100 trickling, 20 lingering, 30 s): /health p99 {p99(health):.3f} s "
                f"(max {max(health):.3f} s, {len(health)} requests), /get_report/<id> p99 {p99(report):.3f} s; "
                f"report completed after {completed_after} s; {reopened} slow connections closed by the server"
            )
        assert p99(health) < 1 and p99(report) < 1
        assert completed_after is not None
    finally:
        server.stop()


# --- settings that stop the server ----------------------------------------------------------------


@pytest.mark.parametrize(
    "setting, value, message",
    [
        ("STOREMON_WEB_WORKERS", "abc", "STOREMON_WEB_WORKERS='abc' is not a number"),
        ("STOREMON_WEB_WORKERS", " ", "STOREMON_WEB_WORKERS=' ' is only whitespace"),
        ("STOREMON_WEB_WORKERS", "0", "STOREMON_WEB_WORKERS='0': must be at least 1"),
        ("STOREMON_BIND", "\n", "STOREMON_BIND='\\n' is only whitespace"),
        ("STOREMON_BIND", "127.0.0.1", "STOREMON_BIND='127.0.0.1': no port"),
        ("STOREMON_BIND", "127.0.0.1:http", "the port must be a number from 1 to 65535"),
        ("STOREMON_WEB_THREADS", "4.5", "STOREMON_WEB_THREADS='4.5' is not a number"),
        ("STOREMON_WEB_CONNECTIONS", "2", "STOREMON_WEB_CONNECTIONS='2': must be at least 10"),
        ("STOREMON_HEADER_TIMEOUT", "nan", "STOREMON_HEADER_TIMEOUT='nan': must be a finite number"),
        ("STOREMON_CLIENT_TIMEOUT", "0", "STOREMON_CLIENT_TIMEOUT='0': must be at least 1.0"),
    ],
)
def test_unusable_server_settings_stop_the_server_with_one_line(tmp_path, setting, value, message):
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        "REPORTS_DIR": str(tmp_path / "r"),
        "STOREMON_BIND": f"127.0.0.1:{free_port()}",
        setting: value,
    }
    result = start_and_wait(env)
    assert result.returncode == 78, result.stderr
    lines = [line for line in result.stderr.splitlines() if "storemon:" in line]
    assert lines == [f"storemon: configuration error: {lines[0].split(': ', 2)[2]}"] and message in lines[0]
    assert "Traceback" not in result.stderr and "Listening at" not in result.stderr


def test_empty_server_settings_are_the_defaults():
    """Unset or empty: the default, as for every other setting (docs/interfaces.md)."""
    defaults = {name: BY_NAME[name].default for name in SERVER_SETTINGS}
    assert server_settings({}) == defaults == server_settings(dict.fromkeys(defaults, ""))
    assert defaults["STOREMON_BIND"] == "127.0.0.1:8000" and defaults["STOREMON_WEB_WORKERS"] == 1
    assert server_settings({"STOREMON_BIND": " [::1]:8001 ", "STOREMON_HEADER_TIMEOUT": "2.5"}) == {
        **defaults,
        "STOREMON_BIND": "[::1]:8001",
        "STOREMON_HEADER_TIMEOUT": 2.5,
    }


def test_impossible_settings_stop_the_server_with_one_line(tmp_path):
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        "REPORTS_DIR": str(tmp_path / "r"),
        "STOREMON_BIND": f"127.0.0.1:{free_port()}",
        "REPORT_WORKERS": "0",
    }
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


# --- API tokens -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, message",
    [
        ("\n", "item 1 of 1 is empty or only whitespace"),
        (" , ", "item 1 of 2 is empty or only whitespace"),
        (f"{TOKEN},", "item 2 of 2 is empty or only whitespace"),
        (f"{TOKEN}, tokSHORT99", "item 2 of 2 has 10 characters; a token needs at least 16"),
        ("tokSECRET123\tabcdefgh", "item 1 of 1 holds a control character"),
    ],
)
def test_a_token_list_without_usable_tokens_stops_the_server(tmp_path, value, message):
    """On an open address, where tokens are all that stands between the data and anyone."""
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        "REPORTS_DIR": str(tmp_path / "r"),
        "STOREMON_BIND": f"0.0.0.0:{free_port()}",
        "STOREMON_API_TOKENS": value,
    }
    result = start_and_wait(env)
    assert result.returncode == 78, result.stderr
    lines = [line for line in result.stderr.splitlines() if "storemon:" in line]
    assert len(lines) == 1 and lines[0].startswith("storemon: configuration error: STOREMON_API_TOKENS: ")
    assert message in lines[0]
    assert "Traceback" not in result.stderr and "Booting worker" not in result.stderr
    assert "tokSHORT99" not in result.stderr and "tokSECRET123" not in result.stderr  # never quoted
    # The app refuses it too, and the command line says so in one line.
    with pytest.raises(ConfigError, match="STOREMON_API_TOKENS: item"):
        create_app(
            {"DATABASE_URL": env["DATABASE_URL"], "REPORTS_DIR": env["REPORTS_DIR"], "STOREMON_API_TOKENS": value}
        )
    if value == "\n":
        cli = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "storemon", "ingests"],
            cwd=ROOT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert cli.returncode == 1
        assert cli.stderr.strip().splitlines() == [
            "Error: STOREMON_API_TOKENS: item 1 of 1 is empty or only whitespace (tokens are separated by commas; "
            "leave the setting unset for no tokens)"
        ]


# --- credentials in the logs ------------------------------------------------------------------------


def send(port: int, head: bytes) -> bytes:
    """One request on a raw socket; the status line of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        data = b""
        while b"\r\n" not in data and (chunk := sock.recv(65536)):
            data += chunk
    return data.split(b"\r\n", 1)[0]


def test_no_part_of_a_token_reaches_the_logs(small_database, tmp_path):
    server = Server(
        server_env(
            small_database,
            tmp_path,
            STOREMON_API_TOKENS=TOKEN,
            STOREMON_BIND_HOST="0.0.0.0",
            GUNICORN_CMD_ARGS="--log-level debug",
        ),
        workers=1,
    )
    try:

        def basic(text: str) -> str:
            return "Basic " + base64.b64encode(text.encode()).decode()

        host = f"Host: 127.0.0.1:{server.port}\r\n"
        answers = {}
        for name, authorization in {
            "user": basic(f"{TOKEN}:"),
            "user and password": basic(f"{TOKEN}:{TOKEN}"),
            "password": basic(f":{TOKEN}"),
            "no colon": basic(TOKEN),
            "wrong user": basic(f"{TOKEN[:-1]}:"),
            "bearer": f"Bearer {TOKEN}",
            "wrong bearer": f"Bearer {TOKEN}x",
            "scheme only": TOKEN,
        }.items():
            answers[name] = send(
                server.port,
                f"GET /ingests HTTP/1.1\r\n{host}Authorization: {authorization}\r\nConnection: close\r\n\r\n".encode(),
            )
        # Headers gunicorn refuses: a control character in the value, a folded line, a bad name.
        for head in (
            f"GET /ingests HTTP/1.1\r\n{host}Authorization: Bearer {TOKEN}\x01\r\n\r\n",
            f"GET /ingests HTTP/1.1\r\n{host}Authorization: Bearer\r\n {TOKEN}\r\n\r\n",
            f"GET /ingests HTTP/1.1\r\n{host}Authorization {TOKEN}: x\r\n\r\n",
            f"GET /ingests?{TOKEN} HTTP/1.1\r\n{host}X-Long: {'a' * 9000}\r\n\r\n",
        ):
            answers[head[:40]] = send(server.port, head.encode())
        assert answers["password"].startswith(b"HTTP/1.1 200") and answers["bearer"].startswith(b"HTTP/1.1 200")
        assert answers["user"].startswith(b"HTTP/1.1 401") and answers["wrong bearer"].startswith(b"HTTP/1.1 401")
        assert all(answer.startswith((b"HTTP/1.1 4", b"HTTP/1.1 2")) for answer in answers.values()), answers
    finally:
        server.stop()
    log = (tmp_path / f"gunicorn-{server.port}.log").read_text()
    assert log.count("GET /ingests") >= 8  # the access log has the requests ...
    for part in (TOKEN, TOKEN[:12], TOKEN[-12:], base64.b64encode(f"{TOKEN}:".encode()).decode()[:12]):
        assert part not in log  # ... and no part of the token


# --- request heads and stalled clients ----------------------------------------------------------------


def read_all(sock: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except OSError:
        pass
    return data


def test_request_heads_and_stalls_are_bounded(small_database, tmp_path):
    server = Server(
        server_env(
            small_database,
            tmp_path,
            STOREMON_HEADER_TIMEOUT="1.5",
            STOREMON_CLIENT_TIMEOUT="1.5",
            MAX_UPLOAD_BYTES="100000",
        ),
        workers=1,
    )
    host = f"Host: 127.0.0.1:{server.port}\r\n".encode()
    try:

        def connect() -> socket.socket:
            return socket.create_connection(("127.0.0.1", server.port), timeout=10)

        # Kept alive: three requests on one connection, two of them sent in one piece (pipelined),
        # the third's head in two pieces.
        with connect() as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\n" + host + b"\r\nGET /ingests HTTP/1.1\r\n" + host + b"\r\n")
            time.sleep(0.5)
            sock.sendall(b"GET /health HTTP/1.1\r\n" + host)
            time.sleep(0.3)
            sock.sendall(b"Connection: close\r\n\r\n")
            answers = read_all(sock)
        assert answers.count(b"HTTP/1.1 200 OK") == 3 and b'"ingests"' in answers
        # A head that does not arrive in time: 408, or closed without a word when nothing came.
        for first in (b"GET /health HTTP/1.1\r\n", b""):
            with connect() as sock:
                start = time.monotonic()
                sock.sendall(first)
                answer = read_all(sock)
                took = time.monotonic() - start
            assert 1.4 < took < 4, took
            assert answer.startswith(b"HTTP/1.1 408 ") if first else answer == b""
        # Too large: a head over 64 KiB (fields within gunicorn's own limits), a request line over 4094 bytes.
        with connect() as sock:
            sock.sendall(
                b"GET /health HTTP/1.1\r\n" + host + b"".join(b"X-%d: %s\r\n" % (i, b"a" * 4000) for i in range(20))
            )
            assert read_all(sock).startswith(b"HTTP/1.1 431 ")
        with connect() as sock:
            sock.sendall(b"GET /" + b"a" * 5000)
            assert read_all(sock).startswith(b"HTTP/1.1 414 ")
        # A body that stops arriving: the request thread gives up after STOREMON_CLIENT_TIMEOUT.
        with connect() as sock:
            start = time.monotonic()
            sock.sendall(
                b"POST /ingest/status HTTP/1.1\r\n" + host + b"Content-Type: text/csv\r\n"
                b"Content-Length: 5000\r\n\r\nstore_id,status,timestamp_utc\n"
            )
            answer = read_all(sock)
            took = time.monotonic() - start
        assert 1.4 < took < 5, took
        assert answer == b"" or answer.startswith(b"HTTP/1.1 400 "), answer[:300]
        assert server.get("/health")[0] == 200  # and the server is none the worse
    finally:
        server.stop()
    log = (tmp_path / f"gunicorn-{server.port}.log").read_text()
    assert "Traceback" not in log, log
