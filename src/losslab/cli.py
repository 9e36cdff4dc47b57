"""The ``losslab`` command: ``list``, ``info``, and the ``data`` / ``bench`` sub-commands.

The registry (and with it torch) is imported inside the commands that use it, and the
sub-commands' modules only when they run or show their help (:class:`LosslabGroup`), so
that ``losslab --help`` answers without loading torch, pandas, duckdb or matplotlib.
"""

from __future__ import annotations

import inspect
import json
from typing import ClassVar

import typer
from rich.console import Console

from losslab._cliutil import LazyGroup


class LosslabGroup(LazyGroup):
    """The top-level group: ``data``, ``bench``, ``report``, ``calibrate`` and
    ``diagnose`` live in their own modules and load on first use."""

    lazy_commands: ClassVar[dict[str, tuple[str, str, str | None, str]]] = {
        "data": (
            "losslab.data.cli",
            "app",
            None,
            "Datasets: list, fetch from package registries, register your own.",
        ),
        "bench": ("losslab.bench.cli", "app", None, "Run and inspect benchmark grids."),
        "report": (
            "losslab.bench.cli",
            "main",
            "report",
            "Write report.md and a self-contained report.html with figures.",
        ),
        "calibrate": (
            "losslab.calibration.cli",
            "app",
            "calibrate",
            "Fit calibrators on --val logits and evaluate them on --apply.",
        ),
        "diagnose": (
            "losslab.calibration.cli",
            "app",
            "diagnose",
            "Neural-collapse measures (NC1-NC4, simplex-ETF distances) of saved features.",
        ),
    }
    extras: ClassVar[dict[str, str]] = {"losslab.data.cli": "cli", "losslab.calibration.cli": "cli"}


app = typer.Typer(
    help="losslab: training losses with verified properties, and their benchmark.",
    no_args_is_help=True,
    add_completion=False,
    cls=LosslabGroup,
)
console = Console()
err_console = Console(stderr=True)


def _fail(message: str) -> None:
    err_console.print(message, markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@app.command("list")
def list_cmd(
    family: str | None = typer.Option(None, help="Only losses of this family."),
    property: str | None = typer.Option(None, "--property", help="Only losses declaring this."),
    kind: str | None = typer.Option(None, "--kind", help="Only losses of this input kind."),
) -> None:
    """Table of registered losses: name, kind, family, verified properties."""
    from rich.table import Table
    from rich.text import Text

    from losslab.registry import list_losses, loss_info

    try:
        names = list_losses(family=family, property=property, kind=kind)
    except ValueError as err:
        _fail(str(err))
    table = Table(title=f"{len(names)} losses")
    table.add_column(Text("name"), no_wrap=True, min_width=max(map(len, names), default=4))
    for col in ("kind", "family", "verified properties [at hyperparameters]"):
        table.add_column(Text(col))
    for name in names:
        spec = loss_info(name)
        # Text(), not str: rich would read "[normalize=none]" as a markup tag.
        table.add_row(
            Text(name),
            Text(spec.kind.name),
            Text(spec.family),
            Text(", ".join(spec.property_labels())),
        )
    console.print(table)


@app.command("info")
def info_cmd(name: str, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Formula, defaults, properties and reference of one loss."""
    from losslab._mathtext import latex_to_text
    from losslab.registry import loss_info

    try:
        spec = loss_info(name)
    except ValueError as err:
        _fail(str(err))
    props = {p: dict(c.params) for p, c in spec.properties.items()}
    data = {
        "name": spec.name,
        "summary": spec.summary,
        "family": spec.family,
        "kind": spec.kind.name,
        "formula": latex_to_text(spec.formula),
        "formula_latex": spec.formula,
        "defaults": {k: _jsonable(v) for k, v in spec.defaults.items()},
        "properties": props,
        "soft_targets": bool(spec.rules.get("soft_targets")),
        "stateful": spec.stateful,
        "function": f"losslab.functional.{spec.name}",
        "module": f"losslab.{spec.module_name}",
        "reference": spec.reference,
    }
    if as_json:
        print(json.dumps(data, indent=2))
        return
    lines = [
        f"{spec.name} ({spec.family}, {spec.kind.name}): {spec.summary}",
        f"  formula:    {data['formula']}",
        f"  defaults:   {', '.join(f'{k}={v!r}' for k, v in spec.defaults.items()) or '(none)'}",
    ]
    for p, c in spec.properties.items():
        at = f" at {', '.join(f'{k}={v!r}' for k, v in c.params.items())}" if c.params else ""
        lines.append(f"  verified:   {p}{at}")
    lines.append(f"  inputs:     {spec.kind.description}")
    if spec.stateful:
        lines.append("  stateful:   yes (the module takes index= in training mode)")
    lines += [
        f"  call:       {data['function']}{inspect.signature(spec.function)}",
        f"  module:     {data['module']}",
        f"  reference:  {spec.reference}",
    ]
    for line in lines:
        console.print(line, markup=False, highlight=False)


def _jsonable(v: object) -> object:
    return v if isinstance(v, (int, float, str, bool, type(None))) else repr(v)


def main() -> None:
    """The ``losslab`` console script."""
    app()


if __name__ == "__main__":
    main()
