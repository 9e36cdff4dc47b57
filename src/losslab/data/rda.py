"""Minimal reader for R's XDR serialisation format (``.rda`` / ``.RData`` files).

Enough of the format to read data frames of numeric, integer, logical and factor
columns, which is what the ``r-cran-mlbench`` Debian package ships. Written from
R's documented serialisation layout ("R Internals", section 1.8 "Serialization
Formats"; https://cran.r-project.org/doc/manuals/r-release/R-ints.html), so no R
interpreter and no third-party reader (``pyreadr`` or ``rdata``) is needed.

Supported: gzip / bzip2 / xz compressed or plain ``RDX2``/``RDX3`` XDR files; SEXP types
NIL, SYM, LIST (pairlist), CHAR, LGL, INT, REAL, STR, VEC and back-references.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import struct
from pathlib import Path
from typing import Any

import numpy as np

_NILVALUE = 254
_REFSXP = 255
_SPECIAL_ENVS = {241, 242, 253, 251, 252, 247}  # base env, empty env, global env, ...
_NA_INT = -(2**31)


class RObject:
    """An R vector together with its attributes (``names``, ``levels``, ``class``, ...)."""

    def __init__(self, value: Any, attributes: dict[str, Any] | None = None) -> None:
        self.value = value
        self.attributes = attributes or {}

    def __repr__(self) -> str:
        return f"RObject({type(self.value).__name__}, attrs={sorted(self.attributes)})"


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.refs: list[Any] = []

    def read_int(self) -> int:
        (v,) = struct.unpack_from(">i", self.data, self.pos)
        self.pos += 4
        return int(v)

    def length(self) -> int:
        n = self.read_int()
        if n == -1:
            hi, lo = self.read_int(), self.read_int()
            n = (hi << 32) + lo
        return n

    def array(self, dtype: str, n: int) -> np.ndarray:
        size = np.dtype(dtype).itemsize * n
        out = np.frombuffer(self.data, dtype=dtype, count=n, offset=self.pos)
        self.pos += size
        return out.astype(dtype[1:])

    def item(self) -> Any:
        flags = self.read_int()
        kind = flags & 0xFF
        has_attr = bool(flags & (1 << 9))
        has_tag = bool(flags & (1 << 10))
        if kind == _NILVALUE or kind in _SPECIAL_ENVS:
            return None
        if kind == _REFSXP:
            return self.refs[(flags >> 8) - 1]
        if kind == 1:  # SYMSXP
            name = self.item()
            self.refs.append(name)
            return name
        if kind == 9:  # CHARSXP
            n = self.read_int()
            if n == -1:
                return None
            s = self.data[self.pos : self.pos + n].decode("utf-8", errors="replace")
            self.pos += n
            return s
        if kind == 2:  # LISTSXP (pairlist): returned as a dict tag -> value
            out: dict[str, Any] = {}
            while kind == 2:
                if has_attr:
                    self.item()
                tag = self.item() if has_tag else str(len(out))
                out[str(tag)] = self.item()
                flags = self.read_int()
                kind = flags & 0xFF
                has_attr = bool(flags & (1 << 9))
                has_tag = bool(flags & (1 << 10))
            if kind != _NILVALUE:
                raise ValueError(
                    f"read_rda: pairlist terminator expected NILVALUE, got SEXP type {kind}"
                )
            return out
        if kind in (10, 13):  # LGLSXP, INTSXP
            value: Any = self.array(">i4", self.length())
        elif kind == 14:  # REALSXP
            value = self.array(">f8", self.length())
        elif kind in (16, 19):  # STRSXP, VECSXP
            value = [self.item() for _ in range(self.length())]
        else:
            raise ValueError(
                f"read_rda: SEXP type expected a supported type, got {kind} at byte {self.pos - 4}"
            )
        attrs = self.item() if has_attr else None
        return RObject(value, attrs)


def _decompress(raw: bytes) -> bytes:
    if raw[:2] == b"\x1f\x8b":
        return gzip.decompress(raw)
    if raw[:3] == b"BZh":
        return bz2.decompress(raw)
    if raw[:6] == b"\xfd7zXZ\x00":
        return lzma.decompress(raw)
    return raw


def read_rda(path: str | Path) -> dict[str, Any]:
    """Read every object saved in an ``.rda`` file; returns ``{name: RObject}``."""
    data = _decompress(Path(path).read_bytes())
    if data[:5] not in (b"RDX2\n", b"RDX3\n") or data[5:7] != b"X\n":
        raise ValueError(
            "read_rda: path expected an XDR-format R data file (RDX2/RDX3 header), got "
            f"{data[:7]!r}"
        )
    reader = _Reader(data[7:])
    version = reader.read_int()
    reader.read_int()  # R version that wrote the file
    reader.read_int()  # minimal R version needed to read it
    if version == 3:
        reader.pos += reader.read_int()  # native encoding name
    top = reader.item()
    if not isinstance(top, dict):
        raise ValueError(
            f"read_rda: {str(path)!r} expected a pairlist of named objects, got "
            f"{type(top).__name__}"
        )
    return top


def data_frame_columns(obj: RObject) -> dict[str, np.ndarray | tuple[np.ndarray, list[str]]]:
    """Columns of an R data frame: numeric arrays, or ``(codes, levels)`` for factors.

    Factor codes are 0-based; R's ``NA`` becomes -1. Numeric ``NA`` stays NaN.
    """
    names = obj.attributes.get("names")
    if names is None or not isinstance(obj.value, list):
        raise ValueError(
            "data_frame_columns: obj expected an R data frame (a named list of columns), got "
            f"{obj!r}"
        )
    cols: dict[str, np.ndarray | tuple[np.ndarray, list[str]]] = {}
    for name, col in zip(names.value, obj.value, strict=True):
        levels = col.attributes.get("levels")
        if levels is not None:
            codes = np.where(col.value == _NA_INT, -1, col.value - 1).astype(np.int64)
            cols[name] = (codes, [str(v) for v in levels.value])
        else:
            arr = np.asarray(col.value)
            if arr.dtype.kind == "i":
                arr = np.where(arr == _NA_INT, np.nan, arr)
            cols[name] = arr.astype(np.float64)
    return cols
