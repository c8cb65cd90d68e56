"""How gunicorn serves storemon: its threaded worker with request heads read by the worker's event
loop, not by threads (:class:`HeadFirstWorker`), and its logger without request text that may
carry a credential (:class:`Logger`).

``gunicorn.conf.py`` names both: one process, a few request threads, report jobs in their own
thread pool beside them.

Why a subclass. gunicorn 27's ``gthread`` worker hands every accepted connection to a request
thread at once. The thread waits up to 5 s for a first byte (an idle connection holds it that
long), and once a byte has arrived it reads the rest of the request head with a blocking read and
no time limit. So a handful of clients that connect and send nothing, or send a head one byte at
a time, hold every thread and every other request waits behind them (8 were enough for
``/health`` to take 5 s or time out; docs/deployment.md has the measurements). More threads only
raise the number of slow clients needed.

What this worker changes, and nothing else:

* **The head is read by the event loop.** A connection (new, or kept alive and readable again)
  is read without blocking by the worker's selector until its head is complete (an empty line),
  and only then handed to a thread, with the bytes read so far put back in front of gunicorn's
  own parser, which parses them as usual (its ``limit_request_line``, ``limit_request_fields``
  and ``limit_request_field_size`` apply). Waiting and trickling clients cost a file descriptor
  and a small buffer, never a thread.
* **A head has a deadline** (``STOREMON_HEADER_TIMEOUT``): a connection that has not sent a
  whole head within it of connecting -- or of its first byte, when kept alive -- is closed, with
  ``408`` if it sent anything. A head larger than :data:`MAX_HEAD_BYTES`, or a request line
  longer than ``limit_request_line``, gets ``431`` / ``414`` and is closed.
* **A thread waits for a client only so long** (``STOREMON_CLIENT_TIMEOUT``): once a request is
  in a thread, each read of its body and each write of its response that makes no progress for
  that long ends the connection. (This bounds a stall, not a slow but steady upload or download;
  for those, see the reverse proxy in docs/deployment.md.)
* **Closing lingers in the event loop.** gunicorn closes a "Connection: close" response
  gracefully -- half-close, then read until the client closes, up to 2 s -- in the worker's
  main loop, where one client that never closes stalls every other connection for 2 s. Here the
  same linger (2 s, at most 64 KiB) runs in the selector.
* The open-files limit is raised to fit ``worker_connections`` (or ``worker_connections`` is
  lowered to fit it), so accepting never fails on "too many open files".

With TLS (``certfile``), HTTP/2 cleartext, the uwsgi protocol or a PROXY protocol line configured,
connections are handled exactly as by ``gthread``: storemon configures none of them (TLS belongs
to the reverse proxy).

Why a logger. gunicorn's access log names the HTTP Basic user (``%(u)s``) -- the token itself
for ``curl -u TOKEN:`` -- and its warning about a refused request quotes the offending text (a
header line without a colon, ``Authorization TOKEN``, is logged whole). :class:`Logger` logs
``-`` as the user whatever the format, and keeps of such a warning the kind of error only.
"""

from __future__ import annotations

import errno
import os
import re
import resource
import selectors
import socket
import time
from functools import partial

from gunicorn import glogging
from gunicorn.http2 import negotiation
from gunicorn.workers.gthread import TConn, ThreadWorker

from .config import server_settings

# Largest request head (request line and all header fields) read before refusing it (431).
MAX_HEAD_BYTES = 64 * 1024
# The empty line that ends a request head (gunicorn's parser decides whether bare LFs are valid).
HEAD_END = re.compile(rb"\r?\n\r?\n")
# How long, and how much, a graceful close reads from a client before closing (as gunicorn's).
LINGER_SECONDS = 2.0
LINGER_BYTES = 64 * 1024
# Descriptors kept free beside the connections (listeners, databases, logs, report files).
SPARE_FILES = 256
# How often (s) the deadlines of heads and lingering closes are checked.
SWEEP_SECONDS = 0.25


def _answer(status: str, message: str) -> bytes:
    body = b'{"error": "%s", "message": "%s"}' % (status.split(" ", 1)[1].encode(), message.encode())
    return b"HTTP/1.1 %s\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        status.encode(),
        len(body),
        body,
    )


REQUEST_TIMEOUT = _answer("408 Request Timeout", "the request head did not arrive in time")
HEAD_TOO_LARGE = _answer(
    "431 Request Header Fields Too Large", f"the request head is larger than {MAX_HEAD_BYTES} bytes"
)
LINE_TOO_LONG = _answer("414 URI Too Long", "the request line is too long")


class Connection(TConn):
    """gunicorn's connection, plus the head read so far and the thread's I/O timeout."""

    def __init__(self, cfg, sock, client, server, io_timeout: float):
        super().__init__(cfg, sock, client, server)
        self.io_timeout = io_timeout
        self.head = bytearray()
        self.deadline = 0.0
        self.lingered = 0

    def init(self):
        """Called by the request thread before it parses: the head read by the event loop goes
        back in front of the parser, and the socket gets the thread's I/O timeout."""
        super().init()
        if self.head and self.parser is not None:
            self.parser.unreader.unread(bytes(self.head))
            self.head.clear()
        self.sock.settimeout(self.io_timeout)


class HeadFirstWorker(ThreadWorker):
    """``gthread`` that hands a connection to a thread only once its request head is complete."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        settings = server_settings(os.environ)
        self.head_timeout = settings["STOREMON_HEADER_TIMEOUT"]
        self.io_timeout = settings["STOREMON_CLIENT_TIMEOUT"]
        self.reading: set[Connection] = set()  # connections whose head is being read
        self.lingering: set[Connection] = set()  # connections being closed gracefully
        self.next_sweep = 0.0
        self.refused = {"timed out": 0, "too large": 0}
        self.last_summary = time.monotonic()

    def init_process(self):
        self._fit_open_files()
        super().init_process()

    def _fit_open_files(self) -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = self.worker_connections + SPARE_FILES
        if soft != resource.RLIM_INFINITY and soft < wanted:
            limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
                soft = limit
            except (OSError, ValueError):
                pass
        if soft != resource.RLIM_INFINITY and soft < wanted:
            fitted = max(soft - SPARE_FILES, self.cfg.threads + 1)
            self.log.warning(
                "open files limited to %d: serving at most %d connections, not %d",
                soft,
                fitted,
                self.worker_connections,
            )
            self.worker_connections = fitted
            self.max_keepalived = fitted - self.cfg.threads

    def _reads_heads(self, conn) -> bool:
        cfg = self.cfg
        return not (
            cfg.is_ssl
            or conn.is_http2
            or getattr(cfg, "protocol", "http") != "http"
            or cfg.proxy_protocol != "off"
            or negotiation.prior_knowledge_allowed(cfg, conn.client)
        )

    # -- accepting and reading heads (event loop) ------------------------------------------------

    def accept(self, listener):
        try:
            client_sock, client_addr = listener.accept()
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        self.enqueue_req(Connection(self.cfg, client_sock, client_addr, listener.getsockname(), self.io_timeout))

    def enqueue_req(self, conn):
        """Every way to a thread passes here (a new connection, a kept-alive one readable again,
        bytes read ahead behind a response): a head still incomplete is read by the loop first."""
        if not isinstance(conn, Connection) or not self._reads_heads(conn):
            super().enqueue_req(conn)
            return
        if conn.parser is not None:
            conn.head[:0] = conn.parser.unreader.take_buffered()
        conn.sock.setblocking(False)
        conn.deadline = time.monotonic() + self.head_timeout
        verdict = self._verdict(conn, 0)
        if verdict is not None:
            self._head_done(conn, verdict)
        else:
            self.reading.add(conn)
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_head_readable, conn))

    def on_head_readable(self, conn, _sock):
        data = _receive(conn.sock)
        if data is None:
            return
        if not data:  # the client left
            self._stop_reading(conn)
            self._close(conn)
            return
        searched = max(0, len(conn.head) - 3)  # the empty line may have begun in the last read
        conn.head += data
        verdict = self._verdict(conn, searched)
        if verdict is not None:
            self._stop_reading(conn)
            self._head_done(conn, verdict)

    def _verdict(self, conn, searched: int) -> bytes | None:
        """b"" when the head is complete, the answer refusing it, or None: read on."""
        head = conn.head
        if HEAD_END.search(head, searched):
            return b""
        line_limit = self.cfg.limit_request_line
        if 0 < line_limit < len(head) - 2 and b"\n" not in head[: line_limit + 2]:
            return LINE_TOO_LONG
        if len(head) > MAX_HEAD_BYTES:
            return HEAD_TOO_LARGE
        return None

    def _head_done(self, conn, verdict: bytes) -> None:
        """Hand a complete head (verdict b"") to a thread, or refuse it with the verdict's answer.
        (The connection is not registered with the selector.)"""
        if verdict:
            self._refuse(conn, verdict, "too large")
        else:
            conn.data_ready = True  # gunicorn's thread then parses without waiting for data
            super().enqueue_req(conn)

    def _stop_reading(self, conn) -> None:
        if conn in self.reading:
            self.reading.discard(conn)
            try:
                self.poller.unregister(conn.sock)
            except (KeyError, ValueError, OSError):
                pass

    def _refuse(self, conn, answer: bytes, reason: str) -> None:
        """Answer a head that will not be served (never logging what it held) and close."""
        self.refused[reason] += 1
        conn.head.clear()
        try:
            conn.sock.send(answer)
        except OSError:
            pass
        self._linger(conn)

    # -- closing (event loop) -------------------------------------------------------------------

    def finish_request(self, conn, fs):
        """A thread is done with a connection: one that is to be closed lingers in the loop
        rather than in gunicorn's blocking graceful close."""
        if (
            isinstance(conn, Connection)
            and self._reads_heads(conn)
            and not fs.cancelled()
            and fs.exception() is None
            and fs.result() is False
        ):
            self._linger(conn)
            return
        super().finish_request(conn, fs)

    def _linger(self, conn) -> None:
        try:
            conn.sock.shutdown(socket.SHUT_WR)
            conn.sock.setblocking(False)
        except OSError:
            self._close(conn)
            return
        conn.deadline = time.monotonic() + LINGER_SECONDS
        conn.lingered = 0
        self.lingering.add(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_linger_readable, conn))

    def on_linger_readable(self, conn, _sock):
        data = _receive(conn.sock)
        if data is None:
            return
        conn.lingered += len(data)
        if not data or conn.lingered >= LINGER_BYTES:
            self._end_linger(conn)

    def _end_linger(self, conn) -> None:
        self.lingering.discard(conn)
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass
        self._close(conn)

    def _close(self, conn) -> None:
        self.nr_conns -= 1
        conn.close()

    # -- deadlines (called by gunicorn's loop after every round of events, at least once a second)

    def murder_pending(self):
        super().murder_pending()
        now = time.monotonic()
        if now < self.next_sweep and self.alive:
            return
        self.next_sweep = now + SWEEP_SECONDS
        # A stopping worker closes the connections that have sent nothing yet at once.
        for conn in [c for c in self.reading if c.deadline <= now or not (self.alive or c.head)]:
            self._stop_reading(conn)
            if conn.head:
                self._refuse(conn, REQUEST_TIMEOUT, "timed out")
            else:
                self.refused["timed out"] += self.alive
                self._close(conn)
        for conn in [c for c in self.lingering if c.deadline <= now]:
            self._end_linger(conn)
        if now - self.last_summary >= 60:
            self.last_summary = now
            if any(self.refused.values()):
                self.log.warning(
                    "slow or oversized requests closed in the last minute: %d without a whole head "
                    "within %g s, %d too large",
                    self.refused["timed out"],
                    self.head_timeout,
                    self.refused["too large"],
                )
                self.refused = dict.fromkeys(self.refused, 0)

    def handle_request(self, req, conn):
        try:
            return super().handle_request(req, conn)
        except TimeoutError:
            self.log.info(
                "closed a connection from %s: no progress for %g s",
                conn.client[0] if conn.client else "?",
                self.io_timeout,
            )
            raise StopIteration() from None  # gunicorn's handle() closes the connection


class Logger(glogging.Logger):
    """gunicorn's logger, without the text of refused requests and without the Basic user name."""

    def warning(self, msg, *args, **kwargs):
        if isinstance(msg, str) and msg.startswith("Invalid request from ip="):
            msg, args = _kind_only(msg), ()
        super().warning(msg, *args, **kwargs)

    def debug(self, msg, *args, **kwargs):
        if isinstance(msg, str) and msg.startswith("Ignored premature client disconnection"):
            msg, args = "Ignored premature client disconnection.", ()  # its argument holds the bytes read
        super().debug(msg, *args, **kwargs)

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        atoms["u"] = "-"
        return atoms


def _kind_only(message: str) -> str:
    """``Invalid request from ip=1.2.3.4: Invalid HTTP header name: 'Authorization x'`` ->
    ``Invalid request from ip=1.2.3.4: Invalid HTTP header name (request text not logged)``:
    gunicorn's error messages name the kind of error first, then quote the request."""
    where, _, error = message.partition(": ")
    kind = re.split(r"""[:'"(%\[]""", error, maxsplit=1)[0].strip()
    return f"{where}: {kind} (request text not logged)"


def _receive(sock) -> bytes | None:
    """What a non-blocking socket has to read: None if nothing yet, ``b""`` if the client left
    (or the connection broke)."""
    try:
        return sock.recv(65536)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return b""
