"""``losslab calibrate`` and ``losslab diagnose``: calibrate saved logits, measure
neural collapse of saved features; rich tables on stdout, figures written beside the
input. Bad input is one line on stderr and exit code 2.

Mounted by the main CLI without a group name, so both are top-level commands; also
runnable as ``python -m losslab.calibration.cli``.
"""

from __future__ import annotations

import json
import math
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
import typer.core
from rich.console import Console
from rich.table import Table

from losslab._cliutil import one_line_usage
from losslab.calibration._base import Calibrator
from losslab.calibration.ca import CorrectnessAwareCalibrator
from losslab.calibration.scaling import (
    DirichletScaling,
    MatrixScaling,
    TemperatureScaling,
    VectorScaling,
)
from losslab.diagnostics import neural_collapse
from losslab.metrics import (
    adaptive_ece,
    brier_score,
    classwise_ece,
    ece,
    nll,
    reliability,
    smooth_ece,
)
from losslab.metrics._inputs import predictions

app = typer.Typer(help="Calibration of saved logits and neural-collapse diagnostics.")

METHODS = ("temperature", "vector", "matrix", "dirichlet", "ca")


class CliError(Exception):
    """Bad input: reported as one line on stderr, exit code 2."""


# Typer re-exports click's BadParameter but not its base UsageError (and recent Typer
# versions vendor click), so the class is taken from BadParameter's ancestry.
_UsageError: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError"
)


class _OneLineUsage(typer.core.TyperCommand):
    """Usage errors (a value that does not parse, an unknown option) as one line on
    stderr with exit code 2, like every other bad input of these commands."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        given = list(args)  # the parser consumes args
        try:
            return list(super().parse_args(ctx, args))
        except _UsageError as err:
            typer.echo(one_line_usage(err, given, ctx), err=True)
            raise typer.Exit(2) from None


@contextmanager
def _one_line_errors(command: str) -> Iterator[None]:
    try:
        yield
    except (CliError, ValueError, TypeError, KeyError, OSError, RuntimeError) as err:
        text = " ".join(str(err).split()) or type(err).__name__
        typer.echo(f"losslab {command}: {text}", err=True)
        raise typer.Exit(2) from None


def _load(
    option: str, path: Path | None, *keys: str, optional: tuple[str, ...] = ()
) -> dict[str, Any]:
    if path is None:
        raise CliError(f"{option} expected a .npz file, got nothing")
    if not path.is_file():
        raise CliError(f"{option} expected an existing .npz file, got {str(path)!r}")
    if not zipfile.is_zipfile(path):
        raise CliError(f"{option} expected a .npz file (a zip of arrays), got {str(path)!r}")
    try:
        with np.load(path, allow_pickle=False) as data:
            found = {k: data[k] for k in data.files}
    except (OSError, ValueError) as err:
        raise CliError(f"{option} expected a .npz file, got {str(path)!r} ({err})") from None
    missing = [k for k in keys if k not in found]
    if missing:
        raise CliError(f"{option} expected arrays {list(keys)} in {path.name}, got {sorted(found)}")
    return {k: found[k] for k in (*keys, *optional) if k in found}


def _factory(method: str, reg_lambda: float, reg_mu: float | None) -> Callable[[], Calibrator]:
    if method == "temperature":
        return TemperatureScaling
    if method == "vector":
        return VectorScaling
    if method == "matrix":
        return lambda: MatrixScaling(reg_lambda=reg_lambda, reg_mu=reg_mu)
    if method == "dirichlet":
        return lambda: DirichletScaling(reg_lambda=reg_lambda, reg_mu=reg_mu)
    return CorrectnessAwareCalibrator


def _metrics(where: str, logits: Any, labels: Any, n_bins: int) -> dict[str, float]:
    p = predictions(where, logits, labels)  # errors name the file option
    return {
        "accuracy": float(p.correct.mean()) if len(p) else float("nan"),
        "nll": nll(logits, labels),
        "ece": ece(logits, labels, n_bins=n_bins),
        "adaptive_ece": adaptive_ece(logits, labels, n_bins=n_bins),
        "classwise_ece": classwise_ece(logits, labels, n_bins=n_bins),
        "smooth_ece": smooth_ece(logits, labels),
        "brier": brier_score(logits, labels),
    }


def _figure(path: Path, draw: Callable[[], Any]) -> str:
    try:
        fig = draw()
    except ImportError:
        return "figure skipped (matplotlib is not installed)"
    fig.savefig(path, dpi=110)
    return f"figure: {path}"


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.4f}" if math.isfinite(v) else str(v)


ValOption = Annotated[
    Path | None,
    typer.Option("--val", help="Held-out logits and labels (.npz) to fit the calibrators on."),
]
ApplyOption = Annotated[
    Path | None,
    typer.Option("--apply", help="Logits and labels (.npz) to calibrate and evaluate."),
]
MethodOption = Annotated[
    list[str] | None,
    typer.Option(
        "--method", help=f"Calibrator, repeatable: {', '.join(METHODS)}. Default: temperature."
    ),
]


@app.command("calibrate", cls=_OneLineUsage)
def calibrate(
    val: ValOption = None,
    apply: ApplyOption = None,
    method: MethodOption = None,
    bins: Annotated[int, typer.Option("--bins", help="Equal-width bins of the ECEs.")] = 15,
    reg_lambda: Annotated[
        float, typer.Option("--reg-lambda", help="Matrix/Dirichlet: off-diagonal or L2 weight.")
    ] = 0.0,
    reg_mu: Annotated[
        float | None, typer.Option("--reg-mu", help="Matrix/Dirichlet: intercept weight (ODIR).")
    ] = None,
    logits_key: Annotated[
        str, typer.Option("--logits-key", help="Array of logits (N, C).")
    ] = "logits",
    labels_key: Annotated[
        str, typer.Option("--labels-key", help="Array of int labels (N,).")
    ] = "labels",
    out: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default: beside the input).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Also print the results as JSON.")
    ] = False,
) -> None:
    """Fit calibrators on --val logits and evaluate them on --apply.

    Prints accuracy, NLL, ECEs and Brier score before and after each calibrator, and
    writes the calibrated logits, the results (JSON) and a reliability figure beside the
    --apply file (without --apply: beside --val, evaluated in-sample)."""
    with _one_line_errors("calibrate"):
        console = Console()  # per call: the terminal width is read when it is created
        methods = list(method or ["temperature"])
        unknown = sorted(set(methods) - set(METHODS))
        if unknown:
            raise CliError(f"--method expected some of {list(METHODS)}, got {unknown}")
        if bins < 1:
            raise CliError(f"--bins expected a positive int, got {bins}")
        v = _load("--val", val, logits_key, labels_key)
        target_path = apply if apply is not None else val
        assert target_path is not None
        t = _load("--apply", apply, logits_key, labels_key) if apply is not None else v
        split = "test" if apply is not None else "validation (in-sample)"
        predictions("--val", v[logits_key], v[labels_key])
        source = "--apply" if apply is not None else "--val"
        results: dict[str, dict[str, float]] = {
            "uncalibrated": _metrics(source, t[logits_key], t[labels_key], bins)
        }
        calibrated: dict[str, np.ndarray] = {}
        extra: dict[str, dict[str, float]] = {}
        for name in methods:
            cal = _factory(name, reg_lambda, reg_mu)().fit(v[logits_key], v[labels_key])
            z = cal.transform(t[logits_key]).detach().cpu().numpy()
            calibrated[name] = z
            results[name] = _metrics(source, z, t[labels_key], bins)
            val_nll = nll(cal.transform(v[logits_key]), v[labels_key])
            extra[name] = {"val_nll": val_nll}
            if isinstance(cal, TemperatureScaling):
                extra[name]["temperature"] = cal.temperature
        extra["uncalibrated"] = {"val_nll": nll(v[logits_key], v[labels_key])}

        table = Table(title=f"calibration on the {split} split ({len(t[labels_key])} samples)")
        cols = ["accuracy", "nll", "ece", "adaptive_ece", "classwise_ece", "smooth_ece", "brier"]
        for col in ("method", "T", "val nll", *cols):
            table.add_column(col, justify="left" if col == "method" else "right")
        for name, row in results.items():
            table.add_row(
                name,
                _fmt(extra[name].get("temperature")),
                _fmt(extra[name]["val_nll"]),
                *(_fmt(row[c]) for c in cols),
            )
        console.print(table)

        folder = out if out is not None else target_path.parent
        folder.mkdir(parents=True, exist_ok=True)
        stem = target_path.stem
        arrays: dict[str, Any] = {"labels": t[labels_key]}
        arrays.update({f"logits_{name}": z for name, z in calibrated.items()})
        np.savez(folder / f"{stem}.calibrated.npz", **arrays)
        record = {name: {**results[name], **extra[name]} for name in results}
        (folder / f"{stem}.calibration.json").write_text(json.dumps(record, indent=2) + "\n")
        panels = {"uncalibrated": reliability(t[logits_key], t[labels_key], n_bins=bins)}
        panels.update(
            {name: reliability(z, t[labels_key], n_bins=bins) for name, z in calibrated.items()}
        )
        from losslab import plot

        note = _figure(
            folder / f"{stem}.reliability.png",
            lambda: plot.reliability_figure(panels, title=f"{target_path.name}: {split}"),
        )
        console.print(
            f"calibrated logits: {folder / f'{stem}.calibrated.npz'}", markup=False, soft_wrap=True
        )
        console.print(
            f"results: {folder / f'{stem}.calibration.json'}", markup=False, soft_wrap=True
        )
        console.print(note, markup=False, soft_wrap=True)
        if as_json:
            print(json.dumps(record, indent=2))


NC_ROWS = [
    ("nc1", "NC1: tr(Sigma_W Sigma_B^+)/K, within- vs between-class variability"),
    ("nc2_norms_means", "NC2: CoV of the centred class-mean norms"),
    ("nc2_angles_means", "NC2: mean |cos + 1/(K-1)| between centred class means"),
    ("etf_distance_means", "distance of the class means' Gram matrix to a simplex ETF"),
    ("nc2_norms_weights", "NC2: CoV of the classifier-row norms"),
    ("nc2_angles_weights", "NC2: mean |cos + 1/(K-1)| between classifier rows"),
    ("etf_distance_weights", "distance of the classifier's Gram matrix to a simplex ETF"),
    ("nc3", "NC3: ||W/||W|| - M^T/||M|| ||^2, self-duality"),
    ("nc3_wm_etf", "NC3: distance of W M to a simplex ETF"),
    ("nc4", "NC4: classifier decisions that differ from the nearest class mean"),
    ("accuracy", "classifier accuracy on these labels"),
]


@app.command("diagnose", cls=_OneLineUsage)
def diagnose(
    features: Annotated[
        Path | None,
        typer.Option("--features", help="Penultimate features (N, d) and labels (N,), .npz."),
    ] = None,
    features_key: Annotated[str, typer.Option("--features-key")] = "features",
    labels_key: Annotated[str, typer.Option("--labels-key")] = "labels",
    weight_key: Annotated[
        str, typer.Option("--weight-key", help="Classifier weight (K, d), used when present.")
    ] = "weight",
    bias_key: Annotated[str, typer.Option("--bias-key", help="Classifier bias (K,).")] = "bias",
    out: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default: beside the input).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Also print the results as JSON.")
    ] = False,
) -> None:
    """Neural-collapse measures (NC1-NC4, simplex-ETF distances) of saved features.

    Uses the classifier weight (and bias) when the file holds them, and writes a figure
    of the class-mean and classifier cosines beside the file."""
    with _one_line_errors("diagnose"):
        console = Console()
        d = _load("--features", features, features_key, labels_key, optional=(weight_key, bias_key))
        assert features is not None
        nc = neural_collapse(d[features_key], d[labels_key], d.get(weight_key), d.get(bias_key))
        values = nc.to_dict()
        table = Table(
            title=f"neural collapse: {nc.num_samples} samples, {nc.num_classes} classes, "
            f"dimension {nc.dim} (0 = collapsed onto a simplex ETF)"
        )
        for col in ("measure", "value", "meaning"):
            table.add_column(col, justify="right" if col == "value" else "left")
        for key, meaning in NC_ROWS:
            if values[key] is not None:
                table.add_row(key, _fmt(values[key]), meaning)
        console.print(table)
        folder = out if out is not None else features.parent
        folder.mkdir(parents=True, exist_ok=True)
        from losslab import plot

        note = _figure(
            folder / f"{features.stem}.collapse.png",
            lambda: plot.collapse_figure(d[features_key], d[labels_key], d.get(weight_key)),
        )
        console.print(note, markup=False, soft_wrap=True)
        if as_json:
            print(json.dumps(values, indent=2))


if __name__ == "__main__":
    app()
