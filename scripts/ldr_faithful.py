"""The faithful reproduction of the LDR code's vowel runs (docs/results-ldr-faithful.md).

    python scripts/ldr_faithful.py run --store faithful.duckdb [--workers 2]
    python scripts/ldr_faithful.py compare --store faithful.duckdb [--out docs/results-ldr-faithful]

``run`` registers vowel once per (label setting, noise seed) with the noisy training
labels that the official code (Optimization-AI/ICML2023_LDR, ``experiment.py`` with its
``SEED`` set to the noise seed) drew, kept in
``docs/results-ldr-faithful/official_noisy_labels.csv``, and trains the ``ldr-faithful``
preset on them with the corruption ``given``: the same rows, labels, folds, model,
optimiser, schedule and loss hyperparameter grids as the official code, so every
(loss, setting, noise seed, fold) is paired with an official run of the same data.
Features are the catalogue's vowel scaled to [-1, 1] with the training minimum and
maximum, the file the official runs read. The learning rate is 0.1 on both sides.

``compare`` reads the store and ``official_runs.csv`` (the last-epoch validation and test
accuracy of every official run: loss, setting, noise seed, fold, hyperparameter) and
applies one selection rule to both sides: per (loss, setting, noise seed) the
hyperparameter with the best validation accuracy on fold 0, reported on folds 0-4. It
writes the paired tables of the page.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parents[1] / "docs" / "results-ldr-faithful"
SETTINGS = {
    "clean": ("uniform", 0.0),
    "uniform_0.3": ("uniform", 0.3),
    "uniform_0.6": ("uniform", 0.6),
    "class_dependent_0.3": ("class-dependent", 0.3),
}
NOISE_SEEDS = (0, 1)
FOLDS = 5
LR = 0.1
#: official loss names -> losslab's
LOSSES = {
    "CE": "ce",
    "CS": "cs_svm",
    "WW": "ww_svm",
    "GCE": "gce",
    "SCE": "sce",
    "JSC": "jsc",
    "NCEandRCE": "nce_rce",
    "LDR": "ldr_kl",
    "ALDR": "aldr_kl",
}


def dataset_name(setting: str, seed: int) -> str:
    return f"vowel-ldr-{setting.replace('_', '-')}-s{seed}"


def register() -> list[str]:
    from losslab.data import load_dataset, register_dataset

    vowel = load_dataset("vowel")
    lo, hi = vowel.X_train.min(0), vowel.X_train.max(0)

    def scale(x: np.ndarray) -> np.ndarray:
        return 2 * (x - lo) / (hi - lo) - 1

    labels = pd.read_csv(HERE / "official_noisy_labels.csv")
    if not (labels["clean"].to_numpy() == vowel.y_train).all():
        sys.exit("ldr_faithful: official_noisy_labels.csv expected vowel's row order")
    names = []
    for setting in SETTINGS:
        for seed in NOISE_SEEDS:
            column = "clean" if setting == "clean" else f"{setting}_s{seed}"
            names.append(
                register_dataset(
                    dataset_name(setting, seed),
                    scale(vowel.X_train),
                    vowel.y_train,
                    X_test=scale(vowel.X_test),
                    y_test=vowel.y_test,
                    y_noisy=labels[column].to_numpy(),
                    class_names=vowel.class_names,
                    source="vowel with the LDR code's noisy labels",
                )
            )
    return names


def run(store: str, workers: int) -> None:
    from losslab.bench.backends import InProcessBackend, PoolBackend
    from losslab.bench.grid import preset
    from losslab.bench.runner import run_grid

    names = register()
    grid = preset(
        "ldr-faithful",
        name="ldr-faithful-official-labels",
        datasets=names,
        corruptions=["given"],
        seeds=list(range(FOLDS)),
        lrs=[LR],
    )
    backend = PoolBackend(workers) if workers > 1 else InProcessBackend()
    out = run_grid(grid, store, backend)
    print(out)


def official_para(loss: str, config: dict) -> str:
    """The official code's hyperparameter value (as its logs print it) for a losslab config."""
    if loss == "gce":
        return str(config["q"])
    if loss == "sce":
        return str(round(1 - config["alpha"], 2))
    if loss == "jsc":
        return f"{config['pi']} {round(1 - config['pi'], 1)}"
    if loss == "nce_rce":
        return str(config["alpha"])
    if loss in ("ww_svm", "cs_svm"):
        return str(config["margin"])
    return {"ce": "0.0", "ldr_kl": "10", "aldr_kl": "10"}[loss]


def _ours(store: str) -> pd.DataFrame:
    from losslab.bench.report import final_frame, resolve_grid
    from losslab.bench.store import ResultStore

    results = ResultStore(store)
    info = resolve_grid(results, "ldr-faithful-official-labels")
    df = final_frame(results, info["grid"])
    rows = []
    for name in df["dataset"].unique():
        setting, seed = next(
            (s, k) for s in SETTINGS for k in NOISE_SEEDS if name.startswith(dataset_name(s, k))
        )
        part = df[df["dataset"] == name]
        for r in part.itertuples():
            config = r.loss_config if isinstance(r.loss_config, dict) else json.loads(r.loss_config)
            rows.append(
                dict(
                    loss=r.loss,
                    setting=setting,
                    noise_seed=seed,
                    fold=r.seed % FOLDS,
                    test_acc=r.test_acc,
                    para=official_para(r.loss, config),
                )
            )
    return pd.DataFrame(rows)


def _official_all() -> pd.DataFrame:
    d = pd.read_csv(HERE / "official_runs.csv", dtype={"para": str})
    inv = {v: k for k, v in SETTINGS.items()}
    d["setting"] = [inv[(n, float(level))] for n, level in zip(d["noise"], d["level"], strict=True)]
    d["loss"] = d["loss"].map(LOSSES)
    return d.rename(columns={"seed": "noise_seed"})


def _official() -> pd.DataFrame:
    d = _official_all()
    # the bench's rule: the hyperparameter with the best validation accuracy on fold 0
    first = d[d["fold"] == 0].sort_values("val_acc", ascending=False)
    chosen = first.drop_duplicates(["loss", "setting", "noise_seed"])[
        ["loss", "setting", "noise_seed", "para"]
    ]
    return d.merge(chosen, on=["loss", "setting", "noise_seed", "para"])[
        ["loss", "setting", "noise_seed", "fold", "para", "test_acc"]
    ]


def compare(store: str) -> str:
    from scipy import stats

    ours, theirs, every = _ours(store), _official(), _official_all()
    pairs = ours.merge(
        theirs, on=["loss", "setting", "noise_seed", "fold"], suffixes=("_ours", "_official")
    )
    # the official runs at the hyperparameter losslab's selection chose (same configuration)
    same = ours.merge(
        every, on=["loss", "setting", "noise_seed", "fold", "para"], suffixes=("_ours", "_same")
    )
    lines = [
        "| loss | setting | official (mean +- s.e.) | losslab (mean +- s.e.) | "
        "difference (mean +- s.e.) | paired runs | Wilcoxon p | selected: official / losslab "
        "| difference at losslab's selection |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    flagged = []
    for (loss, setting), g in pairs.groupby(["loss", "setting"], sort=False):
        a, b = g["test_acc_official"].to_numpy(), g["test_acc_ours"].to_numpy()
        d = b - a
        se = lambda x: x.std(ddof=1) / np.sqrt(len(x))  # noqa: E731
        p = stats.wilcoxon(b, a).pvalue if np.any(d != 0) else 1.0
        beyond = abs(d.mean()) > 2 * se(d)
        if beyond:
            flagged.append((loss, setting, d.mean(), se(d)))
        s = same[(same["loss"] == loss) & (same["setting"] == setting)]
        ds = s["test_acc_ours"].to_numpy() - s["test_acc_same"].to_numpy()
        chosen = "; ".join(
            "/".join(sorted(set(g[g["noise_seed"] == k]["para_official"].astype(str))))
            for k in NOISE_SEEDS
        )
        mine = "; ".join(
            "/".join(sorted(set(g[g["noise_seed"] == k]["para_ours"].astype(str))))
            for k in NOISE_SEEDS
        )
        lines.append(
            f"| `{loss}` | {setting} | {a.mean():.3f} +- {se(a):.3f} | {b.mean():.3f} +- "
            f"{se(b):.3f} | {d.mean():+.3f} +- {se(d):.3f}{' (*)' if beyond else ''} | "
            f"{len(d)} | {p:.2g} | {chosen} / {mine} | {ds.mean():+.3f} +- {se(ds):.3f} |"
        )
    lines.append("")
    lines.append(
        f"(*) beyond 2 standard errors: {len(flagged)} of "
        f"{pairs.groupby(['loss', 'setting']).ngroups}"
    )
    return "\n".join(lines)


def versus_ce(store: str, losses: tuple[str, ...] = ("aldr_kl", "ldr_kl", "gce")) -> str:
    """Paired (noise seed, fold) differences to CE on each side, with Wilcoxon p-values."""
    from scipy import stats

    sides = (_ours(store), _official())
    lines = [
        "| loss vs CE | setting | losslab: difference (mean +- s.e.) | Wilcoxon p | "
        "official code: difference | Wilcoxon p |",
        "|---|---|---|---|---|---|",
    ]
    for loss in losses:
        for setting in SETTINGS:
            cells = []
            for d in sides:
                rows = d[d["setting"] == setting].set_index(["noise_seed", "fold"])
                x = rows[rows["loss"] == loss].test_acc - rows[rows["loss"] == "ce"].test_acc
                x = x.dropna().to_numpy()
                p = stats.wilcoxon(x).pvalue if np.any(x != 0) else 1.0
                se = x.std(ddof=1) / np.sqrt(len(x))
                cells += [f"{x.mean():+.3f} +- {se:.3f}", f"{p:.2g}"]
            lines.append(f"| `{loss}` | {setting} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def statistics(store: str, out: Path = HERE) -> str:
    """The bench's statistics on each side: Friedman over the 4 settings, Nemenyi critical
    difference (diagram written to ``out``), bootstrap intervals of mean rank, and the
    Holm-corrected Wilcoxon comparison with CE over (setting, noise seed, fold) pairs."""
    from losslab.bench.figures import cd_diagram
    from losslab.bench.stats import bench_stats

    lines = []
    for side, d in (("losslab", _ours(store)), ("official code", _official())):
        rows = d.assign(
            dataset="vowel", corruption=d["setting"], seed=d["noise_seed"] * FOLDS + d["fold"]
        )
        st = bench_stats(rows)
        slug = side.split()[0]
        cd_diagram(st, out / f"cd_{slug}.png")
        fr = st.friedman
        assert fr is not None and st.cd is not None
        lines += [
            f"**{side}**: Friedman chi2 = {fr.statistic:.1f} ({len(st.mean_rank) - 1} degrees of "
            f"freedom, {st.n_groups} groups), p = {fr.pvalue:.2g}; Nemenyi critical difference "
            f"{st.cd:.2f} ranks at alpha = {st.alpha:g}.",
            "",
            f"![critical difference, {side}](results-ldr-faithful/cd_{slug}.png)",
            "",
            "| loss | mean rank (95% CI) | vs CE: wins / ties / losses | median difference "
            "| Holm p | better than CE? |",
            "|---|---|---|---|---|---|",
        ]
        for loss, rank in st.mean_rank.items():
            lo, hi = st.rank_ci.loc[loss, "lo"], st.rank_ci.loc[loss, "hi"]
            if loss in st.versus.index:
                v = st.versus.loc[loss]
                versus = (
                    f"{v['wins']} / {v['ties']} / {v['losses']} | {v['median_diff']:+.3f} | "
                    f"{v['p_holm']:.2g} | {v['better']}"
                )
            else:
                versus = "(reference) | | |"
            lines.append(f"| `{loss}` | {rank:.2f} ({lo:.2f}-{hi:.2f}) | {versus} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["run", "compare"])
    ap.add_argument("--store", default="results/ldr-faithful.duckdb")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=HERE, help="folder of the figures")
    args = ap.parse_args()
    if args.command == "run":
        run(args.store, args.workers)
    else:
        print(compare(args.store))
        print()
        print(versus_ce(args.store))
        print()
        print(statistics(args.store, args.out))


if __name__ == "__main__":
    main()
