"""The pure-Python R data reader, on files written by the test writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from losslab.data.rda import data_frame_columns, read_rda
from tests.data.rda_writer import data_frame, factor, ints, reals, write_rda


def test_reads_data_frame_with_factor_and_na(tmp_path: Path) -> None:
    path = tmp_path / "Toy.rda"
    frame = data_frame(
        {
            "x": reals(np.array([1.5, -2.0, np.nan])),
            "k": ints(np.array([3, -(2**31), 7])),
            "cls": factor(np.array([1, 0, -1]), ["a", "b"]),
        },
        nrow=3,
    )
    write_rda(path, "Toy", frame)
    cols = data_frame_columns(read_rda(path)["Toy"])
    assert list(cols) == ["x", "k", "cls"]
    assert np.allclose(cols["x"][:2], [1.5, -2.0]) and np.isnan(cols["x"][2])
    assert cols["k"][0] == 3 and np.isnan(cols["k"][1]) and cols["k"][2] == 7
    codes, levels = cols["cls"]
    assert codes.tolist() == [1, 0, -1] and levels == ["a", "b"]


def test_rejects_non_rda(tmp_path: Path) -> None:
    path = tmp_path / "bad.rda"
    path.write_bytes(b"hello world")
    with pytest.raises(ValueError, match="path expected an XDR-format R data file"):
        read_rda(path)
