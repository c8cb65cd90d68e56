"""Receiving an uploaded CSV: streamed to disk, size-limited, and refused when incomplete.

A request body is never held in memory: it is read in blocks of :data:`BLOCK` bytes and written
to a file in ``UPLOAD_DIR`` (a multipart body is parsed as it streams, its ``file`` part going
straight to disk), while a :class:`storemon.scan.Scanner` hashes it and checks its encoding
and line lengths on the way. What arrives is checked against what was announced:

* a body shorter than its ``Content-Length`` (the client stopped sending or was cut off),
* a chunked body cut before its last chunk (the server's reader fails),
* a multipart body that ends before its closing boundary,

are all refused as ``upload incomplete`` and nothing of them is ingested. A body larger than
``MAX_UPLOAD_BYTES`` is refused with 413 as soon as that is known (at once when it is announced).

Upload files are named ``upload-<pid>-<random>.part``, removed when the request ends, and swept
at start-up when the process that wrote one is gone (a worker killed mid-upload).
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from flask import Request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.formparser import FormDataParser
from werkzeug.http import parse_options_header

from .parse import quote
from .processes import process_alive
from .scan import FileScan, Scanner

log = logging.getLogger(__name__)

BLOCK = 1 << 20  # bytes read from the client at a time
CSV_TYPES = ("text/csv", "text/plain", "application/csv", "application/vnd.ms-excel")
_PART = re.compile(r"^upload-(\d+)-[0-9a-f]+\.part$")
STALE_AFTER_S = 24 * 3600  # an upload file this old is removed even if its pid looks alive
# Memory for a multipart form field that is not a file (their values are held in memory). The
# multipart decoder also checks this bound against its own buffer -- what is left of the last
# block plus the next 64 KiB block -- for file parts too, so it must exceed one block by a margin.
FORM_FIELD_BYTES = 256 * 1024
MAX_FORM_PARTS = 16


class UploadError(Exception):
    """The upload cannot be used; ``code`` is the HTTP status to answer with."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


class TooLarge(UploadError):
    def __init__(self, limit: int):
        super().__init__(413, f"upload too large: the limit is {limit:,} bytes (MAX_UPLOAD_BYTES)")


@dataclass
class Upload:
    """A received CSV on disk: its path, the name the client gave it, and its scan."""

    path: Path
    name: str
    scan: FileScan

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


class _Counted:
    """A read-only view of the request body that counts bytes and enforces the size limit."""

    def __init__(self, stream, limit: int):
        self.stream, self.limit, self.count = stream, limit, 0

    def read(self, size: int = -1) -> bytes:
        size = BLOCK if size is None or size < 0 else min(size, BLOCK)
        data = self.stream.read(size)
        self.count += len(data)
        if self.count > self.limit:
            raise TooLarge(self.limit)
        return data


class _ScannedFile:
    """A file in the upload folder that scans what is written to it (a multipart part's sink)."""

    def __init__(self, folder: Path, max_line: int):
        self.path = new_upload_path(folder)
        self.handle = open(self.path, "w+b")
        self.scanner = Scanner(max_line)

    def write(self, data: bytes) -> int:
        self.scanner.update(data)
        return self.handle.write(data)

    def __getattr__(self, name):  # seek, read, close, ... as the file
        return getattr(self.handle, name)


def new_upload_path(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"upload-{os.getpid()}-{secrets.token_hex(8)}.part"


def receive_csv(request: Request, folder: str | Path, max_bytes: int, max_line: int) -> Upload:
    """Stream the request's CSV (a ``file`` multipart part or a ``text/csv`` body) to disk.

    Raises :class:`UploadError` (400 incomplete or malformed, 413 too large) and leaves no file
    behind when it does.
    """
    folder = Path(folder)
    announced = request.content_length
    if announced is not None and announced > max_bytes:
        raise TooLarge(max_bytes)
    mimetype, options = parse_options_header(request.headers.get("Content-Type", ""))
    body = _Counted(request.stream, max_bytes)
    if mimetype == "multipart/form-data":
        return _receive_multipart(body, options, announced, folder, max_line)
    if mimetype in CSV_TYPES:
        return _receive_plain(body, announced, folder, max_line)
    raise UploadError(
        400,
        "send the CSV as a multipart upload in a field named 'file' (curl -F file=@f.csv) "
        "or as a text/csv body (curl -H 'Content-Type: text/csv' --data-binary @f.csv)",
    )


def _receive_plain(body: _Counted, announced: int | None, folder: Path, max_line: int) -> Upload:
    sink = _ScannedFile(folder, max_line)
    try:
        with sink.handle:
            while True:
                try:
                    data = body.read(BLOCK)
                except UploadError:
                    raise
                except Exception as exc:  # noqa: BLE001 -- the server's reader failed: a cut body
                    raise _incomplete(body, announced, exc) from exc
                if not data:
                    break
                sink.write(data)
        _check_length(body, announced)
        return Upload(sink.path, "upload.csv", sink.scanner.finish())
    except BaseException:
        sink.path.unlink(missing_ok=True)
        raise


def _receive_multipart(body: _Counted, options: dict, announced: int | None, folder: Path, max_line: int) -> Upload:
    if not options.get("boundary"):
        raise UploadError(400, "malformed multipart upload: its Content-Type names no boundary")
    sinks: list[_ScannedFile] = []

    def factory(total_content_length=None, content_type=None, filename=None, content_length=None):
        sinks.append(_ScannedFile(folder, max_line))
        return sinks[-1]

    keep = None
    try:
        parser = FormDataParser(
            stream_factory=factory, max_form_memory_size=FORM_FIELD_BYTES, silent=False, max_form_parts=MAX_FORM_PARTS
        )
        try:
            _, _, files = parser.parse(body, "multipart/form-data", announced, options)
        except UploadError:
            raise
        except RequestEntityTooLarge as exc:
            raise UploadError(
                413,
                f"multipart upload: a form field other than 'file' is over "
                f"{FORM_FIELD_BYTES // 1024} KiB, or the form has over {MAX_FORM_PARTS} parts",
            ) from exc
        except HTTPException as exc:
            raise _incomplete(body, announced, exc) from exc
        except ValueError as exc:  # werkzeug: the body ended inside a part, before the closing boundary
            raise _incomplete(body, announced, exc, "the multipart body ends before its closing boundary") from exc
        except Exception as exc:  # noqa: BLE001 -- the server's reader failed: a cut body
            raise _incomplete(body, announced, exc) from exc
        _check_length(body, announced)
        upload = files.get("file")
        if upload is None:
            named = ", ".join(sorted(files.keys())) or "none"
            raise UploadError(
                400, f"multipart upload: put the CSV in a field named 'file' (file fields sent: {quote(named, 100)})"
            )
        keep = next(s for s in sinks if s is upload.stream)
        keep.handle.close()
        name = quote(os.path.basename((upload.filename or "upload.csv").replace("\\", "/")), 100) or "upload.csv"
        return Upload(keep.path, name, keep.scanner.finish())
    finally:
        for sink in sinks:
            if sink is not keep:
                sink.handle.close()
                sink.path.unlink(missing_ok=True)


def _check_length(body: _Counted, announced: int | None) -> None:
    if announced is not None and body.count < announced:
        raise UploadError(
            400,
            f"upload incomplete: received {body.count:,} of the {announced:,} bytes announced "
            "by Content-Length; nothing stored",
        )


def _incomplete(body: _Counted, announced: int | None, exc: BaseException, why: str | None = None) -> UploadError:
    if why is None:
        why = f"the body could not be read to its end ({type(exc).__name__})"
    of = f" of the {announced:,} announced" if announced is not None else ""
    return UploadError(400, f"upload incomplete: {why}; received {body.count:,}{of} bytes; nothing stored")


def sweep_stale(folder: str | Path) -> int:
    """Remove upload files left by processes that are gone (or older than a day). Returns how many."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    now = time.time()
    for path in folder.iterdir():
        match = _PART.match(path.name)
        if not match:
            continue
        try:
            pid = int(match.group(1))
            stale = not _alive(pid) or now - path.stat().st_mtime > STALE_AFTER_S
            if stale:
                path.unlink()
                removed += 1
        except OSError:
            continue
    if removed:
        log.info("removed %d upload file(s) left by stopped processes in %s", removed, folder)
    return removed


def _alive(pid: int) -> bool:
    # This process is only starting: nothing of it is uploading yet.
    return pid != os.getpid() and process_alive(pid)
