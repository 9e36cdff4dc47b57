"""Command line: ``app`` holds ``run`` and ``status`` (mounted as ``losslab bench``),
``report`` is the ``losslab report`` command. ``python -m losslab.bench.cli`` gives both
without the top-level CLI."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

__all__ = ["app", "build_grid", "main", "report", "run", "status"]

DEFAULT_STORE = Path("results/bench.duckdb")
DEFAULT_REPORT = Path("results/report")

app = typer.Typer(help="Run and inspect loss-benchmark grids.", no_args_is_help=True)
console = Console()

_LIVE_KEYS = ("dataset", "corruption", "loss", "seed", "test_acc", "test_ece", "test_nll",
              "test_macro_f1", "train_clean_acc", "val_acc", "val_nll")  # fmt: skip


def _board_table(board: pd.DataFrame, title: str, limit: int = 25) -> Table:
    t = Table(title=title, title_justify="left", show_edge=False)
    for col, just in (("#", "right"), ("loss", "left"), ("mean rank", "right"),
                      ("test acc", "right"), ("ECE", "right"), ("NLL", "right"),
                      ("clean-train acc", "right"), ("cells", "right")):  # fmt: skip
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for i, r in enumerate(board.head(limit).itertuples(index=False), 1):
        t.add_row(str(i), r.loss, f"{r.mean_rank:.2f}", f"{r.test_acc:.3f}",
                  f"{r.test_ece:.3f}", f"{r.test_nll:.3f}", f"{r.train_clean_acc:.3f}",
                  str(r.cells))  # fmt: skip
    return t


def _provisional_board(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Leaderboard over the current validation leader of every group (what the selection
    would pick now), so tuning candidates are not averaged together."""
    from losslab.bench.report import leaderboard

    if not rows:
        return leaderboard([])
    df = pd.DataFrame(rows)
    df = df.sort_values(["val_acc", "val_nll"], ascending=[False, True], na_position="last")
    return leaderboard(df.drop_duplicates(["dataset", "corruption", "loss", "seed"]))


def build_grid(
    preset: str | None = None,
    config: Path | None = None,
    datasets: list[str] | None = None,
    corruptions: list[str] | None = None,
    losses: list[str] | None = None,
    seeds: str | None = None,
    lrs: list[float] | None = None,
    epochs: int | None = None,
    model: str | None = None,
    protocol: str | None = None,
) -> Any:
    """A grid from a preset or a YAML/TOML file, with command-line overrides."""
    from losslab.bench.grid import GridSpec, grid_from_file
    from losslab.bench.grid import preset as make_preset

    if preset and config:
        raise ValueError("--preset and --config: expected one of them, got both")
    seed_list: list[int] | None = None
    if seeds is not None:
        try:
            parts = [int(s) for s in seeds.split(",") if s.strip()]
        except ValueError:
            raise ValueError(
                f"--seeds: expected '0,1,2' or a count like '3', got {seeds!r}"
            ) from None
        seed_list = list(range(parts[0])) if len(parts) == 1 and "," not in seeds else parts
        if not seed_list:
            raise ValueError(
                f"--seeds: expected a positive count or a list like '0,1', got {seeds!r}"
            )
    overrides: dict[str, Any] = {
        "datasets": datasets or None,
        "corruptions": corruptions or None,
        "losses": losses or None,
        "seeds": seed_list,
        "lrs": lrs or None,
        "model": model,
        "protocol": protocol,
        "train": {"epochs": epochs} if epochs else None,
    }
    if config is not None:
        base = grid_from_file(config).to_dict()
        name = base.pop("name")
        if protocol and protocol != base["protocol"]:
            raise ValueError("--protocol: set 'protocol' in the grid file instead")
        for k, v in overrides.items():
            if v is not None:
                base[k] = {**base["train"], **v} if k == "train" else v
        return GridSpec(name=name, **base)
    if preset:
        return make_preset(preset, **overrides)
    missing = [f"--{k.rstrip('s')}" for k in ("datasets", "corruptions", "losses")
               if not overrides[k]]  # fmt: skip
    if missing:
        raise ValueError(f"grid: give --preset, --config, or all of {missing}")
    spec = {k: v for k, v in overrides.items() if v is not None}
    spec.setdefault("seeds", [0])
    return GridSpec(**spec)


@app.command("run")
def run(
    preset: Annotated[str | None, typer.Option(help="Named grid: demo or ldr.")] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Grid file (.yaml/.yml/.toml).")
    ] = None,
    dataset: Annotated[
        list[str] | None, typer.Option("--dataset", "-d", help="Dataset (repeatable).")
    ] = None,
    corruption: Annotated[
        list[str] | None,
        typer.Option(
            "--corruption", help="clean | uniform:R | class_dependent:R | ... (repeatable)."
        ),
    ] = None,
    loss: Annotated[
        list[str] | None, typer.Option("--loss", "-l", help="Loss name (repeatable).")
    ] = None,
    seeds: Annotated[
        str | None, typer.Option(help="'0,1,2', or a count: '3' = 0,1,2 ('5,' = seed 5 only).")
    ] = None,
    lr: Annotated[
        list[float] | None, typer.Option("--lr", help="Candidate learning rate (repeatable).")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Override the number of epochs.")] = None,
    model: Annotated[str | None, typer.Option(help="auto | mlp | cnn | ldr_mlp.")] = None,
    protocol: Annotated[str | None, typer.Option(help="tuned (default) | ldr-faithful.")] = None,
    store: Annotated[Path, typer.Option(help="DuckDB result file.")] = DEFAULT_STORE,
    workers: Annotated[
        int, typer.Option(help="Local worker processes (>1 uses a process pool).")
    ] = 1,
    backend: Annotated[str, typer.Option(help="inprocess | pool | ray.")] = "inprocess",
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (with --backend ray).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and count cells only.")
    ] = False,
) -> None:
    """Run a grid; finished cells are skipped, so re-running resumes."""
    from losslab.bench.backends import make_backend
    from losslab.bench.grid import count_cells, validate_grid
    from losslab.bench.report import final_frame, leaderboard
    from losslab.bench.runner import run_grid
    from losslab.bench.store import ResultStore

    try:
        grid = build_grid(preset, config, dataset, corruption, loss, seeds, lr, epochs, model,
                          protocol)  # fmt: skip
        validate_grid(grid)
        engine = make_backend(backend, workers=workers, address=address)
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    total = count_cells(grid)
    console.print(
        f"grid [bold]{grid.grid_id}[/bold]: {len(grid.datasets)} datasets x "
        f"{len(grid.corruptions)} corruptions x {len(grid.losses)} losses x "
        f"{len(grid.seeds)} seeds, {total} cells (tuning included), protocol {grid.protocol}"
    )
    if dry_run:
        return
    results = ResultStore(store)
    rows: list[dict[str, Any]] = []
    progress = Progress(
        TextColumn("[bold]cells"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[last]}"),
        console=console,
    )
    task = progress.add_task("cells", total=total, last="")
    t0 = time.perf_counter()
    with Live(Group(progress), console=console, refresh_per_second=4) as live:

        def on_start(n: int, done: int) -> None:
            progress.update(task, total=n, completed=done)

        def on_result(row: Mapping[str, Any]) -> None:
            rows.append({k: row.get(k) for k in _LIVE_KEYS})
            progress.update(task, advance=1,
                            last=f"{row['dataset']}/{row['corruption']}/{row['loss']}")  # fmt: skip
            board = _provisional_board(rows)
            live.update(Group(progress, _board_table(board, "live leaderboard (this run)", 10)))

        try:
            outcome = run_grid(grid, results, engine, on_start=on_start, on_result=on_result,
                               validate=False)  # fmt: skip
        except ValueError as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None
    board = leaderboard(final_frame(results, grid.grid_id))
    console.print()
    console.print(_board_table(board, f"leaderboard: {grid.name} (final cells, all seeds)"))
    console.print(
        f"{outcome.ran} cells run, {outcome.skipped} already stored, "
        f"{time.perf_counter() - t0:.1f} s; results in {results.path}"
    )


@app.command("status")
def status(
    store: Annotated[Path, typer.Option(help="DuckDB result file.")] = DEFAULT_STORE,
    grid: Annotated[str | None, typer.Option(help="Grid id or name (default: newest).")] = None,
) -> None:
    """Grids in the store, their progress, and the newest grid's leaderboard."""
    from losslab.bench.report import final_frame, leaderboard, resolve_grid
    from losslab.bench.store import ResultStore

    if not store.exists():
        console.print(f"[red]error:[/red] store {str(store)!r} does not exist")
        raise typer.Exit(2)
    results = ResultStore(store)
    t = Table(title=f"grids in {store}", title_justify="left")
    for col in ("grid", "name", "started", "cells done"):
        t.add_column(col)
    for g in results.grids():
        t.add_row(g["grid"], g["name"], str(g["created_at"])[:19], f"{g['done']}/{g['cells']}")
    console.print(t)
    try:
        info = resolve_grid(results, grid)
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    board = leaderboard(final_frame(results, info["grid"]))
    console.print(_board_table(board, f"leaderboard: {info['grid']} (finished final cells)"))


def report(
    store: Annotated[Path, typer.Option(help="DuckDB result file.")] = DEFAULT_STORE,
    out: Annotated[Path, typer.Option(help="Output folder.")] = DEFAULT_REPORT,
    grid: Annotated[str | None, typer.Option(help="Grid id or name (default: newest).")] = None,
) -> None:
    """Write report.md and a self-contained report.html with figures."""
    from losslab.bench.report import write_report

    try:
        files = write_report(store, out, grid)
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    console.print(f"report: {files.markdown}\n        {files.html.resolve()}")


main = typer.Typer(help="losslab benchmark (standalone entry point).", no_args_is_help=True)
main.add_typer(app, name="bench")
main.command("report")(report)

if __name__ == "__main__":
    main()
