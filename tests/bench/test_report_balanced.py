"""A grid that selects by balanced accuracy (the imbalance preset) is reported by it."""

from __future__ import annotations

import json

from losslab.bench.report import BALANCED, CLASSIFICATION, grid_task, leaderboard


def _rows(select: str | None) -> list[dict]:
    train = {"epochs": 1} | ({"select_metric": select} if select else {})
    rows = []
    for g in ("clean", "long_tail:10", "long_tail:100"):
        for seed in range(3):
            for loss, acc, bal in (("ce", 0.9, 0.6), ("balanced_softmax", 0.85, 0.8)):
                rows.append(
                    dict(
                        dataset="letter",
                        corruption=g,
                        loss=loss,
                        seed=seed,
                        test_acc=acc,
                        test_balanced_acc=bal + seed / 100,
                        test_macro_f1=bal - 0.05,
                        test_worst_recall=bal - 0.3,
                        test_ece=0.1,
                        test_nll=0.5,
                        train_clean_acc=0.9,
                        protocol="tuned",
                        config=json.dumps({"train": train}),
                    )
                )
    return rows


def test_balanced_grids_rank_balanced_accuracy() -> None:
    import pandas as pd

    rows = _rows("balanced_acc")
    assert grid_task(pd.DataFrame(rows)) is BALANCED
    board = leaderboard(rows)
    assert list(board["loss"]) == ["balanced_softmax", "ce"]
    assert {"test_balanced_acc", "test_macro_f1", "test_worst_recall"} <= set(board.columns)
    assert board.set_index("loss").loc["balanced_softmax", "test_worst_recall"] == 0.5


def test_accuracy_grids_keep_ranking_accuracy() -> None:
    import pandas as pd

    rows = _rows(None)
    assert grid_task(pd.DataFrame(rows)) is CLASSIFICATION
    assert list(leaderboard(rows)["loss"]) == ["ce", "balanced_softmax"]
