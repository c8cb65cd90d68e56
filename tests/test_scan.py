"""The scan of an upload's bytes (storemon/scan.py): records cut as Python's csv module cuts them,
whatever blocks the bytes arrive in; long rows and stray quotes found on the line they start on."""

from __future__ import annotations

import csv
import io
import random

import numpy as np

from storemon import scan as scan_module
from storemon.scan import FileScan, Scanner


def _csv_records(text: str) -> list[tuple[int, int]]:
    """(fields, line it starts on) of each record, as Python's csv module reads them."""
    reader = csv.reader(io.StringIO(text, newline=""))
    records, line = [], 1
    for row in reader:
        records.append((max(len(row), 1), line))  # an empty line is a row of one empty field
        line = reader.line_num + 1
    return records


def _scan(data: bytes, writes: list[int] | None = None) -> FileScan:
    scanner = Scanner(1 << 20)
    at = 0
    for size in writes or [len(data)]:
        scanner.update(data[at : at + size])
        at += size
    scanner.update(data[at:])
    return scanner.finish()


def _random_csv(rng: random.Random) -> str:
    def field() -> str:
        if rng.random() < 0.5:
            return "".join(rng.choice("ab1 é") for _ in range(rng.randrange(4)))
        return '"' + "".join(rng.choice(["a", ",", "\n", "\r\n", "\r", '""']) for _ in range(rng.randrange(5))) + '"'

    width = rng.randrange(1, 5)
    rows = [",".join(f"h{i}" for i in range(width))]
    for _ in range(rng.randrange(12)):
        rows.append(",".join(field() for _ in range(max(1, width + rng.choice([0, 0, 1, 3, -1])))))
    end = rng.choice(["\n", "\r\n", "\r"])
    return end.join(rows) + (end if rng.random() < 0.7 else "")


def test_the_scanner_cuts_records_as_a_csv_reader_does_across_any_blocks(monkeypatch):
    monkeypatch.setattr(scan_module, "SCAN_PIECE", 5)  # steps of 5 bytes: every state crosses a boundary
    rng = random.Random(22)
    fixed = ['\ufeffa,b\r\n"x\ny",2\r\n"q,""r""",3,extra\r\n,\r\n', "a,b\rc,d\re,f,g\r", "a\n\n\n"]
    for text in fixed + [_random_csv(rng) for _ in range(300)]:
        data = text.encode()
        expected = _csv_records(text.lstrip("\ufeff"))
        writes = [rng.randrange(1, 8) for _ in range(len(data) // 3)]
        for scan in (_scan(data), _scan(data, writes)):
            assert not scan.stray_quote and not scan.long_line, text
            assert scan.records == len(expected), text
            assert [scan.line_of(r) for r in range(scan.records)] == [line for _, line in expected], text
            width = expected[0][0]
            assert (scan.width, scan.widest) == (width, max(f for f, _ in expected)), text
            wide = [r for r, (fields, _) in enumerate(expected) if r and fields > width]
            assert np.flatnonzero(scan.wide_mask(0, scan.records)).tolist() == wide, text
            assert scan.marks[0][-1] == scan.records and scan.marks[1][-1] == len(data), text


def test_the_scanner_finds_long_rows_and_stray_quotes_where_they_start(monkeypatch):
    monkeypatch.setattr(scan_module, "SCAN_PIECE", 7)
    scanner = Scanner(30)
    scanner.update(b'h,n\n1,short\n2,"a quoted\nfield over\nthree lines and long"\n3,x\n')
    scan = scanner.finish()
    assert (scan.long_line, scan.long_spans) == (3, True)
    scanner = Scanner(30)
    scanner.update(b"h,n\n1," + b"y" * 40 + b"\n")
    assert (scanner.finish().long_line, scanner.scan.long_spans) == (2, False)
    for text in (b'h,n\n1,"ok"\n2,a"b\n', b'h,n\n1,"a""b"\n2,"x"y"\n', b'"h",n\r\n1,2\r\n3,4 "\r\n'):
        assert _scan(text).stray_quote == 3, text
    assert _scan(b'\xef\xbb\xbf"h",n\n"1",""\n').stray_quote == 0  # a quote right after a byte-order mark
