"""Generated many-class glyph images, rendered from the fonts bundled with matplotlib.

A stand-in for many-class image sets (ALOI, Kuzushiji-49, CIFAR-100) that no package
registry ships (see ``shared/research/datasets.md``). The idea of rendering font glyphs
as classes and testing on held-out fonts follows the "fonts" style of benchmarks such
as notMNIST (Bulatov 2011) and the glyph study in the research notes; the code is ours.

* Faces: 16 TrueType faces shipped inside the matplotlib wheel (``mpl-data/fonts/ttf``):
  12 DejaVu faces (Bitstream Vera licence + public-domain changes) and 4 STIX General
  faces (SIL Open Font Licence 1.1). No system font is used, so the set is CI-safe.
* Classes: the printable characters (Unicode categories L, N, P, S) present in every face,
  minus blanks and near-duplicates (e.g. Latin ``A``, Greek ``Α`` and Cyrillic ``А`` render
  alike; a character is dropped when its summed absolute pixel difference to an already
  kept character, divided by the larger of the two ink totals, is below
  ``DUPLICATE_THRESHOLD`` over the three reference faces, or below ``SAME_FACE_THRESHOLD``
  in any one of them (identical in one typeface); this also drops some accented
  variants that differ by a few pixels at 28 x 28), in code point order; the first
  ``num_classes`` (default 500, of 507 available with matplotlib 3.x fonts) are used.
* Split: the 12 ``TRAIN_FACES`` for training, the 4 held-out ``TEST_FACES`` (one per
  family) for testing, so the test measures generalisation to unseen typefaces.
  Each face gives one clean render plus ``renders - 1`` augmented ones (rotation
  +-10 degrees, shift +-2 px, scale 0.85..1.15; seeded).
* Images are 28 x 28 uint8 (stored flattened), drawn at 2x and downsampled.

Pixels depend on the FreeType build behind Pillow, so the checksum is recorded, not pinned.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .catalog import DataNotAvailableError, RawData

TRAIN_FACES = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Oblique.ttf", "DejaVuSansMono-BoldOblique.ttf",
    "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-BoldItalic.ttf",
    "STIXGeneral.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
)  # fmt: skip
TEST_FACES = (
    "DejaVuSans-Oblique.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSerif-Italic.ttf",
    "STIXGeneralBol.ttf",
)  # fmt: skip
REFERENCE_FACES = ("DejaVuSans.ttf", "DejaVuSerif.ttf", "STIXGeneral.ttf")
DUPLICATE_THRESHOLD = 0.15  # sum |a - b| / max(sum a, sum b) over the reference renders
SAME_FACE_THRESHOLD = 0.05  # the same ratio in any single reference face
SIZE = 28
DEFAULT_CLASSES = 500


def font_dir() -> Path:
    """Folder of the TrueType fonts bundled with matplotlib."""
    try:
        import matplotlib
    except ImportError as e:  # pragma: no cover - matplotlib is a bench dependency
        raise DataNotAvailableError(
            "glyphs: fonts expected matplotlib's bundled fonts, got matplotlib missing "
            "(pip install matplotlib)"
        ) from e
    return Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf"


def available() -> bool:
    """True when the fonts and the rendering libraries are importable."""
    try:
        import fontTools  # noqa: F401
        import PIL  # noqa: F401

        d = font_dir()
    except (ImportError, DataNotAvailableError):
        return False
    return all((d / f).is_file() for f in TRAIN_FACES + TEST_FACES)


@lru_cache(maxsize=256)
def _font(face: str, px: int) -> Any:
    from PIL import ImageFont

    return ImageFont.truetype(str(font_dir() / face), px)


def render(
    char: str, face: str, *, size: int = SIZE, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Render ``char`` in ``face`` as a (size, size) uint8 image; ``rng`` adds augmentation."""
    from PIL import Image, ImageDraw

    big = 2 * size
    scale, angle, shift = 1.0, 0.0, (0, 0)
    bilinear = Image.Resampling.BILINEAR
    if rng is not None:
        scale = float(rng.uniform(0.85, 1.15))
        angle = float(rng.uniform(-10.0, 10.0))
        dx, dy = (int(v) for v in rng.integers(-4, 5, size=2))
        shift = (dx, dy)
    img = Image.new("L", (big, big), 0)
    font = _font(face, round(big * 0.7 * scale))
    ImageDraw.Draw(img).text((big / 2, big / 2), char, fill=255, font=font, anchor="mm")
    if rng is not None:
        img = img.rotate(angle, resample=bilinear, translate=shift)
    return np.asarray(img.resize((size, size), bilinear), np.uint8)


def candidate_characters(faces: tuple[str, ...] = TRAIN_FACES + TEST_FACES) -> list[str]:
    """Printable characters (categories L, N, P, S) present in every face, by code point."""
    from fontTools.ttLib import TTFont

    common: set[int] | None = None
    for face in faces:
        cmap = set(TTFont(str(font_dir() / face), lazy=True).getBestCmap())
        common = cmap if common is None else common & cmap
    return [chr(c) for c in sorted(common or ()) if unicodedata.category(chr(c))[0] in "LNPS"]


@lru_cache(maxsize=1)
def distinct_characters() -> tuple[str, ...]:
    """All candidate characters that survive the blank and near-duplicate filters."""
    cands = candidate_characters()
    nf = len(REFERENCE_FACES)
    imgs = np.zeros((len(cands), nf, SIZE * SIZE), np.float32)
    for i, ch in enumerate(cands):
        for j, face in enumerate(REFERENCE_FACES):
            imgs[i, j] = render(ch, face).ravel()
    ink = imgs.sum(2)  # (n, faces)
    kept: list[int] = []
    for i in range(len(cands)):
        if imgs[i].max(1).min() < 64:
            continue  # blank or nearly blank in some reference face
        if kept:
            k = np.asarray(kept)
            diff = np.abs(imgs[k] - imgs[i]).sum(2)  # (kept, faces)
            overall = diff.sum(1) / np.maximum(ink[k].sum(1), ink[i].sum())
            per_face = (diff / np.maximum(np.maximum(ink[k], ink[i]), 1.0)).min(1)
            if (overall < DUPLICATE_THRESHOLD).any() or (per_face < SAME_FACE_THRESHOLD).any():
                continue
        kept.append(i)
    return tuple(cands[i] for i in kept)


def glyph_classes(num_classes: int = DEFAULT_CLASSES) -> tuple[str, ...]:
    """The first ``num_classes`` distinct, non-blank characters (see the module docstring)."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"glyph_classes: num_classes expected an int >= 2, got {num_classes!r}")
    chars = distinct_characters()
    if num_classes > len(chars):
        raise ValueError(
            f"glyph_classes: num_classes expected at most {len(chars)} (distinct glyphs in the "
            "bundled "
            f"fonts), got {num_classes}"
        )
    return chars[:num_classes]


def make_glyphs(
    num_classes: int = DEFAULT_CLASSES,
    *,
    train_renders: int = 3,
    test_renders: int = 2,
    seed: int = 0,
    train_faces: tuple[str, ...] = TRAIN_FACES,
    test_faces: tuple[str, ...] = TEST_FACES,
) -> RawData:
    """Render the glyph dataset; X arrays are uint8 of shape (n, 28 * 28)."""
    for name, val in (("train_renders", train_renders), ("test_renders", test_renders)):
        if isinstance(val, bool) or not isinstance(val, int) or val < 1:
            raise ValueError(f"make_glyphs: {name} expected an int >= 1, got {val!r}")
    if not available():
        raise DataNotAvailableError(
            "make_glyphs: renderer expected matplotlib's bundled fonts, Pillow and fontTools, "
            "got some missing (pip install matplotlib)"
        )
    chars = glyph_classes(num_classes)
    rng = np.random.default_rng(seed)

    def block(faces: tuple[str, ...], renders: int) -> tuple[np.ndarray, np.ndarray]:
        X = np.empty((len(faces) * len(chars) * renders, SIZE * SIZE), np.uint8)
        y = np.empty(len(X), np.int64)
        i = 0
        for face in faces:
            for c, ch in enumerate(chars):
                for r in range(renders):
                    X[i] = render(ch, face, rng=rng if r else None).ravel()
                    y[i] = c
                    i += 1
        return X, y

    Xtr, ytr = block(train_faces, train_renders)
    Xte, yte = block(test_faces, test_renders)
    names = tuple(f"U+{ord(ch):04X} {unicodedata.name(ch, '?')}" for ch in chars)
    meta = {
        "pixel_max": 255,
        "characters": "".join(chars),
        "train_faces": list(train_faces),
        "test_faces": list(test_faces),
        "renders_per_face": [train_renders, test_renders],
    }
    return RawData(Xtr, ytr, Xte, yte, names, meta)


def build_glyphs(root: Path) -> RawData:
    return make_glyphs()
