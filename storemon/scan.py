"""One pass over an uploaded file's bytes, before it is parsed: its hash, whether it is UTF-8,
and where its CSV records end (pure: bytes in, a :class:`FileScan` out)."""

from __future__ import annotations

import codecs
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .parse import MAX_COLUMNS, MAX_EXAMPLES


@dataclass
class FileScan:
    """What one pass over a file's bytes tells before it is parsed.

    ``sha256`` names the content for the ingest ledger; ``utf8`` says whether every byte is
    UTF-8 (if not, the rows holding other bytes are found and skipped).

    The bytes are also cut into CSV records as the CSV reader cuts them: a record ends at a line
    break (LF, CRLF or CR) outside quotes, so a quoted field that spans lines belongs to one
    record. Quotes are followed as RFC 4180 has them: a field is quoted when it starts with a
    quote, and a quote inside it is doubled. ``stray_quote`` is the first line holding a quote
    inside a field that does not start with one (0: none) -- CSV readers take such a quote
    literally, a count of quotes does not, so such a file is refused. ``long_line`` is the line
    on which the first record longer than ``max_line`` bytes starts (0: none), ``long_spans``
    whether that record runs over several lines: such a file is refused too, since no feed row
    is that long and parsing it would take memory in proportion.

    ``width`` is the header's number of fields, ``widest`` the most fields of any record, and
    ``too_wide`` the line of the first record with more than :data:`MAX_COLUMNS` fields (0:
    none; such a file is refused). ``wide`` counts the records with more fields than the header,
    ``wide_bits`` marks them (bit per record, kept only for the pieces of the file that have
    some) and ``wide_examples`` gives (record, fields) of the first few; the header is record 0.
    ``multiline`` holds (record, extra lines) for the first :data:`MAX_MULTILINE` records that
    span lines, so that rows get their line numbers. ``marks`` are (records, their bytes)
    cumulated at points along the file: the reader's chunks are cut from them.
    """

    size: int = 0
    sha256: str = ""
    utf8: bool = True
    stray_quote: int = 0
    long_line: int = 0
    long_spans: bool = False
    lines: int = 0  # line breaks, quoted ones included
    records: int = 0  # the header included
    width: int = 0
    widest: int = 0
    too_wide: int = 0
    wide: int = 0
    wide_bits: list[tuple[int, int, np.ndarray]] = field(default_factory=list)  # (first record, records, bits)
    wide_examples: list[tuple[int, int]] = field(default_factory=list)
    multiline: list[tuple[int, int]] = field(default_factory=list)
    marks: tuple[np.ndarray, np.ndarray] | None = None
    _lookup: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of_file(cls, path: str | Path, max_line: int, block: int = 1 << 20) -> FileScan:
        scanner = Scanner(max_line)
        with open(path, "rb") as handle:
            while data := handle.read(block):
                scanner.update(data)
        return scanner.finish()

    def line_of(self, record: int) -> int:
        """The line on which ``record`` starts (the header's is 1); exact up to the
        :data:`MAX_MULTILINE`-th record that spans lines."""
        if not self.multiline:
            return record + 1
        if "lines" not in self._lookup:
            self._lookup["lines"] = (
                np.array([r for r, _ in self.multiline]),
                np.cumsum([0] + [e for _, e in self.multiline]),
            )
        spanning, extra = self._lookup["lines"]
        return record + 1 + int(extra[np.searchsorted(spanning, record)])

    def wide_mask(self, first: int, count: int) -> np.ndarray:
        """Which of the records ``first`` .. ``first + count - 1`` have more fields than the header."""
        mask = np.zeros(count, dtype=bool)
        for start, records, bits in self.wide_bits:
            lo, hi = max(start, first), min(start + records, first + count)
            if lo < hi:
                mask[lo - first : hi - first] = np.unpackbits(bits, count=records).astype(bool)[lo - start : hi - start]
        return mask


SCAN_PIECE = 1 << 20  # bytes the scanner looks at in one step; smaller writes are gathered first
MAX_MULTILINE = 100_000  # records spanning lines remembered per file (for line numbers)
_LF, _CR, _QUOTE, _COMMA = 10, 13, 34, 44


class Scanner:
    """Builds a :class:`FileScan` from blocks of bytes (an upload is scanned as it arrives).

    A step looks at :data:`SCAN_PIECE` bytes in a few vectorised passes: one finds the commas
    and line breaks together; only a piece holding a quote (or starting inside a quoted field)
    also finds its quotes, and drops the separators that an odd number of quotes precede.
    """

    def __init__(self, max_line: int):
        self.max_line = max_line
        self.hash = hashlib.sha256()
        self.decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self.scan = FileScan()
        self.pending = bytearray()  # bytes gathered towards a piece
        self.quoted = 0  # 1: the bytes scanned end inside a quoted field
        self.tail = b""  # their last two bytes (a CR ends a record, the LF right after it does not)
        self.current = 0  # bytes of the record being read
        self.commas = 0  # its separators outside quotes
        self.start_line = 1  # the line it starts on
        self.records_bytes = 0  # bytes of the records counted
        self.marks: list[tuple[int, int]] = [(0, 0)]
        self.masks = [np.empty(SCAN_PIECE, dtype=bool) for _ in range(3)]

    def update(self, data: bytes) -> None:
        if not self.pending and len(data) == SCAN_PIECE and isinstance(data, bytes):
            self._step(data)
            return
        self.pending += data
        whole = len(self.pending) - len(self.pending) % SCAN_PIECE
        if whole:
            pieces = bytes(self.pending[:whole])
            del self.pending[:whole]
            for at in range(0, whole, SCAN_PIECE):
                self._step(pieces[at : at + SCAN_PIECE])

    def finish(self) -> FileScan:
        if self.pending:
            self._step(bytes(self.pending))
            self.pending = bytearray()
        scan = self.scan
        if scan.utf8:
            try:
                self.decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                scan.utf8 = False
        scan.sha256 = self.hash.hexdigest()
        # A last record without a line break (the LF of a final CRLF is no record: its byte is
        # the last record's).
        if self.current == 1 and self.tail == b"\r\n":
            self.records_bytes += 1
        elif not (scan.long_line or scan.stray_quote) and (self.current or self.commas):
            self._count(np.array([self.current]), np.array([self.commas]), self.current)
            if self.start_line <= scan.lines:
                self._note_multiline(scan.records, scan.lines + 1 - self.start_line)
            scan.records += 1
        self.marks.append((self.scan.records, self.records_bytes))
        scan.marks = (np.array([m[0] for m in self.marks]), np.array([m[1] for m in self.marks]))
        return scan

    def _step(self, piece: bytes) -> None:
        scan = self.scan
        scan.size += len(piece)
        self.hash.update(piece)
        if scan.utf8 and not (piece.isascii() and not self.decoder.getstate()[0]):
            try:
                self.decoder.decode(piece)
            except UnicodeDecodeError:
                scan.utf8 = False
        after_cr = self.tail.endswith(b"\r")
        tail, self.tail = self.tail, (self.tail + piece[-2:])[-2:]
        if scan.long_line or scan.stray_quote or not piece:
            return
        arr = np.frombuffer(piece, dtype=np.uint8)
        # The masks go to buffers kept from piece to piece: fresh ones would cost page faults.
        sep, lf, cr = (buffer[: len(piece)] for buffer in self.masks)
        np.equal(arr, _COMMA, out=sep)
        np.equal(arr, _LF, out=lf)
        if after_cr or b"\r" in piece:
            np.equal(arr, _CR, out=cr)
            sep |= cr
            cr[1:] = cr[:-1]  # now: the byte before is a CR
            cr[0] = after_cr
            lf &= ~cr
        sep |= lf
        found = np.flatnonzero(sep)  # commas and line breaks
        breaks = arr[found] != _COMMA
        lines_before = scan.lines
        scan.lines += int(np.count_nonzero(breaks))
        at, ends = found, None  # the separators outside quotes; which of them end a record
        if b'"' in piece:
            quotes = np.flatnonzero(arr == _QUOTE)
            if self._stray(arr, quotes, found[breaks], lines_before, tail):
                return
            outside = ((np.searchsorted(quotes, found) + self.quoted) & 1) == 0
            self.quoted = (self.quoted + len(quotes)) & 1
            at, ends = found[outside], np.flatnonzero(breaks[outside])
        elif self.quoted:
            at, ends = found[:0], found[:0]
        else:
            ends = np.flatnonzero(breaks)
        if len(ends):
            self._records(len(piece), at, ends, found, breaks, lines_before)
        else:
            self.current += len(piece)
            self.commas += len(at)
        if self.current > self.max_line and not scan.long_line:
            scan.long_line, scan.long_spans = self.start_line, scan.lines >= self.start_line

    def _stray(
        self, arr: np.ndarray, quotes: np.ndarray, line_breaks: np.ndarray, lines_before: int, tail: bytes
    ) -> bool:
        """Whether a quote that opens a quoted field (as a count of quotes has it) follows
        something other than a separator, a line break or a closing quote (a doubled quote);
        if so, note its line."""
        opening = quotes[self.quoted :: 2]
        if not len(opening):
            return False
        before = arr[np.maximum(opening - 1, 0)]
        if opening[0] == 0:  # the byte before is the last of the piece before (none: the file starts)
            before[0] = tail[-1] if tail else _COMMA
        if self.scan.size == len(arr) and arr[:3].tobytes() == codecs.BOM_UTF8:
            before[opening == 3] = _COMMA  # the header's first field, after a byte-order mark
        fine = (before == _COMMA) | (before == _LF) | (before == _CR) | (before == _QUOTE)
        if fine.all():
            return False
        at = int(opening[np.argmin(fine)])
        self.scan.stray_quote = lines_before + int(np.searchsorted(line_breaks, at)) + 1
        return True

    def _records(
        self, size: int, at: np.ndarray, ends: np.ndarray, found: np.ndarray, breaks: np.ndarray, lines_before: int
    ) -> None:
        """Count the records that end in this piece of ``size`` bytes. ``at``: its separators
        outside quotes, ``ends``: the indices of those that end a record; ``found``: every
        separator, ``breaks``: which of them are line breaks."""
        scan = self.scan
        end_at = at[ends]
        lengths = np.diff(end_at, prepend=-1)  # bytes of each record, its line break included
        lengths[0] += self.current
        commas = np.diff(ends, prepend=-1) - 1
        commas[0] += self.commas
        last_line = None  # the line each record ends on, when a record spans lines
        if len(at) < len(found) or self.start_line <= lines_before:
            last_line = lines_before + np.searchsorted(found[breaks], end_at, side="right")
        if int(lengths.max()) > self.max_line + 1:
            k = int(np.argmax(lengths > self.max_line + 1))
            start = (
                self.start_line
                if k == 0
                else (int(last_line[k - 1]) + 1 if last_line is not None else lines_before + k + 1)
            )
            scan.long_line = start
            scan.long_spans = last_line is not None and int(last_line[k]) > start
            return
        if last_line is not None:
            starts = np.concatenate(([self.start_line], last_line[:-1] + 1))
            for k in np.flatnonzero(last_line > starts)[: max(MAX_MULTILINE - len(scan.multiline), 0)]:
                self._note_multiline(scan.records + int(k), int(last_line[k] - starts[k]))
        self._count(lengths, commas, self.current + int(end_at[-1]) + 1)
        scan.records += len(ends)
        self.current = size - int(end_at[-1]) - 1
        self.commas = len(at) - int(ends[-1]) - 1
        self.start_line = (int(last_line[-1]) if last_line is not None else lines_before + len(ends)) + 1
        self.marks.append((self.scan.records, self.records_bytes))

    def _count(self, lengths: np.ndarray, commas: np.ndarray, total: int) -> None:
        """The width, widest and wide records, and the bytes, of the records from ``scan.records``
        on, of ``lengths`` bytes (``total`` together) and ``commas`` separators each."""
        scan = self.scan
        first = scan.records
        if first == 0:
            scan.width = int(commas[0]) + 1
        most = int(commas.max()) + 1
        if most > scan.widest:
            scan.widest = most
        if most > MAX_COLUMNS and not scan.too_wide:
            record = first + int(np.argmax(commas >= MAX_COLUMNS))
            scan.too_wide = record + 1 + sum(extra for r, extra in scan.multiline if r < record)
        if most > scan.width:
            wide = commas >= scan.width
            scan.wide += int(np.count_nonzero(wide))
            scan.wide_bits.append((first, len(wide), np.packbits(wide)))
            for k in np.flatnonzero(wide)[: max(MAX_EXAMPLES - len(scan.wide_examples), 0)]:
                scan.wide_examples.append((first + int(k), int(commas[k]) + 1))
        self.records_bytes += total

    def _note_multiline(self, record: int, extra: int) -> None:
        if len(self.scan.multiline) < MAX_MULTILINE:
            self.scan.multiline.append((record, extra))
