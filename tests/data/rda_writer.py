"""A tiny writer of R's XDR serialisation format, for building test ``.rda`` files."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

NIL = 254


def _flags(kind: int, attr: bool = False, tag: bool = False, obj: bool = False) -> bytes:
    return struct.pack(">i", kind | (obj << 8) | (attr << 9) | (tag << 10))


def _charsxp(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">ii", 9 | (1 << 15), len(b)) + b  # UTF-8 flag bit as R writes


def _strsxp(items: list[str]) -> bytes:
    return _flags(16) + struct.pack(">i", len(items)) + b"".join(_charsxp(s) for s in items)


def _sym(name: str) -> bytes:
    return _flags(1) + _charsxp(name)


def _pairlist(items: list[tuple[str, bytes]]) -> bytes:
    out = b""
    for tag, value in items:
        out += _flags(2, tag=True) + _sym(tag) + value
    return out + _flags(NIL)


def _ints(values: np.ndarray, attrs: bytes | None = None) -> bytes:
    body = struct.pack(">i", len(values)) + np.asarray(values, ">i4").tobytes()
    return _flags(13, attr=attrs is not None, obj=attrs is not None) + body + (attrs or b"")


def _reals(values: np.ndarray) -> bytes:
    return _flags(14) + struct.pack(">i", len(values)) + np.asarray(values, ">f8").tobytes()


def factor(codes: np.ndarray, levels: list[str]) -> bytes:
    """codes are 0-based, -1 for NA."""
    r_codes = np.where(np.asarray(codes) < 0, -(2**31), np.asarray(codes) + 1)
    attrs = _pairlist([("levels", _strsxp(levels)), ("class", _strsxp(["factor"]))])
    return _ints(r_codes, attrs)


def data_frame(columns: dict[str, bytes], nrow: int) -> bytes:
    attrs = _pairlist(
        [
            ("names", _strsxp(list(columns))),
            ("row.names", _ints(np.array([-(2**31), -nrow]))),
            ("class", _strsxp(["data.frame"])),
        ]
    )
    body = struct.pack(">i", len(columns)) + b"".join(columns.values())
    return _flags(19, attr=True, obj=True) + body + attrs


def write_rda(path: Path, name: str, obj: bytes) -> None:
    header = b"RDX2\nX\n" + struct.pack(">iii", 2, 0x040201, 0x020300)
    path.write_bytes(gzip.compress(header + _pairlist([(name, obj)])))


def reals(values: np.ndarray) -> bytes:
    return _reals(values)


def ints(values: np.ndarray) -> bytes:
    return _ints(values)
