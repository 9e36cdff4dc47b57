"""The generated glyph set (CI-safe: fonts bundled with matplotlib)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from losslab.data import get_info, load_dataset

glyphs = pytest.importorskip("losslab.data.glyphs")
if not glyphs.available():  # pragma: no cover
    pytest.skip("glyphs need matplotlib, Pillow and fontTools", allow_module_level=True)


def test_at_least_500_distinct_classes() -> None:
    chars = glyphs.glyph_classes(500)
    assert len(chars) == len(set(chars)) == 500 == get_info("glyphs").num_classes
    # homoglyphs are removed: Latin A stays, Greek Alpha / Cyrillic A (same shape) go
    assert "A" in chars and "\u0391" not in chars and "\u0410" not in chars


def test_small_render_slice() -> None:
    raw = glyphs.make_glyphs(12, train_renders=2, test_renders=1, seed=0)
    n_tr = len(glyphs.TRAIN_FACES) * 12 * 2
    n_te = len(glyphs.TEST_FACES) * 12
    assert raw.X_train.shape == (n_tr, 784) and raw.X_test.shape == (n_te, 784)
    assert raw.X_train.dtype == np.uint8
    assert np.bincount(raw.y_train).tolist() == [n_tr // 12] * 12
    assert (raw.X_train.reshape(n_tr, -1).max(1) > 0).all()  # no blank render
    assert len(raw.class_names) == 12 and raw.class_names[0].startswith("U+0021")
    assert not set(raw.meta["train_faces"]) & set(raw.meta["test_faces"])
    again = glyphs.make_glyphs(12, train_renders=2, test_renders=1, seed=0)
    assert np.array_equal(raw.X_train, again.X_train)
    other = glyphs.make_glyphs(12, train_renders=2, test_renders=1, seed=1)
    assert not np.array_equal(raw.X_train, other.X_train)  # augmentation is seeded


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="num_classes expected an int >= 2, got 1"):
        glyphs.glyph_classes(1)
    with pytest.raises(ValueError, match="train_renders expected an int >= 1, got 0"):
        glyphs.make_glyphs(5, train_renders=0)
    with pytest.raises(ValueError, match="num_classes expected at most"):
        glyphs.glyph_classes(5000)


@pytest.mark.slow
def test_full_glyph_dataset(tmp_path: Path) -> None:
    ds = load_dataset("glyphs", root=tmp_path)
    assert ds.X_train.shape == (18000, 784) and ds.X_test.shape == (4000, 784)
    assert ds.num_classes == 500 and ds.meta["input_shape"] == (1, 28, 28)
    assert ds.X_train.dtype == np.float32 and 0.0 <= ds.X_train.min() <= ds.X_train.max() <= 1.0
