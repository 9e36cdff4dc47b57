"""Command line: ``app`` holds ``run``, ``status``, ``export`` and ``import`` (mounted as
``losslab bench``), ``report`` is the ``losslab report`` command. A user's mistake or a store
fault is one line per problem on stderr and exit status 2, never a traceback.
``python -m losslab.bench.cli`` gives all of them without the top-level CLI.

torch, pandas, duckdb and matplotlib are imported inside the commands, so that the help
of every command answers without loading them (``tests/test_cli_help.py``)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from losslab._cliutil import OneLineErrorsGroup

if TYPE_CHECKING:
    import pandas as pd
    from rich.table import Table

    from losslab.bench.grid import GridSpec
    from losslab.bench.plan import Plan
    from losslab.bench.runner import StaleRow
    from losslab.bench.store import ResultStore

__all__ = ["app", "build_grid", "export", "import_", "main", "report", "run", "status"]

DEFAULT_STORE = Path("results/bench.duckdb")
DEFAULT_REPORT = Path("results/report")
DEFAULT_EXPORT = Path("results/export")
WHERE = "bench run"

#: shown in --help without importing the protocol module (a test keeps them in sync)
PROTOCOL_NAMES = ("tuned", "ldr-faithful", "retrieval")
DEVICES = "cpu | cuda | cuda:N | mps"

app = typer.Typer(
    help="Run and inspect loss-benchmark grids.",
    no_args_is_help=True,
    add_completion=False,
    cls=OneLineErrorsGroup,
)

console = Console()

_LIVE_KEYS = (
    "dataset",
    "corruption",
    "loss",
    "seed",
    "test_acc",
    "test_ece",
    "test_nll",
    "test_macro_f1",
    "train_clean_acc",
    "val_acc",
    "val_nll",
    # retrieval rows: the board ranks Recall@1 when the protocol's task is retrieval
    "protocol",
    "test_recall_at_1",
    "test_map_at_r",
    "train_clean_recall_at_1",
)


def _board_table(board: pd.DataFrame, title: str, limit: int = 25) -> Table:
    """The leaderboard's columns, narrow enough for an 80-column terminal; the caption
    says what each short heading means. A retrieval grid's board shows Recall@1 and MAP@R
    where a classification board shows accuracy and ECE."""
    import pandas as pd
    from rich import box
    from rich.table import Table

    from losslab.bench.report import board_view
    from losslab.bench.stats import REFERENCE

    ref = REFERENCE
    view = board_view(board)
    means = [column for column, _ in view.board]
    heads = [head for _, head in view.board]
    what = view.board_caption
    t = Table(
        title=title,
        title_justify="left",
        caption=(
            f"rank: mean rank of {what}; w/t/l, p (Holm-corrected Wilcoxon) and better?: "
            f"against {ref} over (group, seed) pairs"
        ),
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        # one space between columns: a board of 17-letter loss names fits 80 columns
        collapse_padding=True,
    )
    for col in ("#", "loss", "rank", "95% CI", *heads, "w/t/l", "p", "better?"):
        t.add_column(col, justify="left" if col == "loss" else "right", no_wrap=True)

    def num(v: Any, digits: int = 3) -> str:
        return "" if pd.isna(v) else f"{float(v):.{digits}f}"

    for i, r in enumerate(board.head(limit).to_dict("records"), 1):
        ci = "" if pd.isna(r["rank_lo"]) else f"{r['rank_lo']:.1f}-{r['rank_hi']:.1f}"
        wtl = "" if pd.isna(r["wins"]) else f"{int(r['wins'])}/{int(r['ties'])}/{int(r['defeats'])}"
        p = "" if pd.isna(r["p_holm"]) else f"{float(r['p_holm']):.2g}"
        t.add_row(
            str(i),
            str(r["loss"]),
            num(r["mean_rank"], 2),
            ci,
            *(num(r[c]) for c in means),
            wtl,
            p,
            str(r["better_than_ce"]),
        )
    return t


def _provisional_board(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Leaderboard over the current validation leader of every group (what the selection
    would pick now), so tuning candidates are not averaged together."""
    import pandas as pd

    from losslab.bench.report import leaderboard

    if not rows:
        return leaderboard([])
    df = pd.DataFrame(rows)
    df = df.sort_values(["val_acc", "val_nll"], ascending=[False, True], na_position="last")
    return leaderboard(df.drop_duplicates(["dataset", "corruption", "loss", "seed"]))


def _fail(exc: BaseException | str, code: int = 2) -> typer.Exit:
    """Print an error, one line per problem, on stderr; the exit to raise."""
    for line in str(exc).splitlines() or [type(exc).__name__]:
        typer.echo(line, err=True)
    return typer.Exit(code)


def _parse_seeds(seeds: str, out: list[str]) -> list[int] | None:
    from losslab.bench.protocol import problem

    expected = "a count like '3' (= 0,1,2) or a list like '0,1' ('5,' = seed 5 only)"
    try:
        parts = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        parts = []
    seed_list = list(range(parts[0])) if len(parts) == 1 and "," not in seeds else parts
    if not seed_list or any(s < 0 for s in seed_list):
        out.append(problem(WHERE, "--seeds", expected, repr(seeds)))
        return None
    return seed_list


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
    *,
    select_metric: str | None = None,
    diagnostics: bool = False,
    data: Sequence[Path] = (),
    label_column: str | None = None,
    noisy_column: str | None = None,
    split_column: str | None = None,
) -> GridSpec:
    """A grid from a preset, a YAML/TOML file or options, with command-line overrides.
    ``data``: files registered as datasets (``losslab.data.register_file``) and added to
    ``datasets``. Raises :class:`GridError` listing every problem (names and data
    included)."""
    from losslab.bench.grid import GridError, make_grid, merge, spec_from_file
    from losslab.bench.protocol import problem

    problems: list[str] = []
    registered, noisy = _register_files(data, label_column, noisy_column, split_column, problems)
    datasets = [*(datasets or []), *registered] or None
    if data and not (corruptions or preset or config):
        # own data without --corruption: as it is, and with its given noisy labels
        corruptions = ["clean", *(["given"] if noisy else [])]
    if preset and config:
        problems.append(problem(WHERE, "--preset and --config", "one of them", "both"))
    overrides: dict[str, Any] = {
        "datasets": datasets or None,
        "corruptions": corruptions or None,
        "losses": losses or None,
        "seeds": None if seeds is None else _parse_seeds(seeds, problems),
        "lrs": lrs or None,
        "model": model,
        "protocol": protocol,
        "train": {"epochs": epochs} if epochs is not None else None,
        "select_metric": select_metric,
        "diagnostics": True if diagnostics else None,
    }
    where = WHERE
    if config is not None:
        where = str(config)
        try:
            spec, file_problems = spec_from_file(config)
        except GridError as exc:
            raise GridError(problems + exc.problems) from None
        problems += file_problems
        if protocol and protocol != spec.get("protocol", protocol):
            problems.append(
                problem(
                    WHERE,
                    "--protocol",
                    "the grid file's protocol (set 'protocol' in the file)",
                    repr(protocol),
                )
            )
        spec = merge(spec, overrides)
    elif preset:
        spec = merge({"preset": preset}, overrides)
    else:
        spec = merge({"seeds": [0]}, overrides)
        missing = False
        for key, flag in (
            ("datasets", "--dataset"),
            ("corruptions", "--corruption"),
            ("losses", "--loss"),
        ):
            if key == "datasets" and data:
                continue  # the --data files that could not be read are problems already
            if not spec.get(key):
                missing = True
                problems.append(
                    problem(WHERE, flag, "at least one value (or --preset or --config)", "none")
                )
        if missing or not spec.get("datasets"):
            # the grid cannot be built; what else is wrong is listed with what can be checked
            losses = spec.get("losses") or []
            problems += _name_problems_of(losses, spec.get("corruptions") or [])
            raise GridError(problems)
    problems += _given_problems(spec.get("datasets"), spec.get("corruptions"))
    return make_grid(spec, where=where, check_names=True, check_data=True, problems=problems)


def _name_problems_of(losses: list[Any], corruptions: list[Any]) -> list[str]:
    """Unknown losses and bad corruptions of a grid that cannot be built (no dataset)."""
    from losslab.bench.grid import GridError, GridSpec

    try:
        GridSpec(datasets=["-"], corruptions=corruptions or ["clean"], losses=losses or ["ce"],
                 seeds=[0], name="-")  # fmt: skip
    except GridError as exc:
        structural = [p.replace("grid -:", f"{WHERE}:", 1) for p in exc.problems]
    else:
        structural = []
    from losslab.bench.grid import _name_problems

    names = _name_problems(WHERE, losses, {}, [], check_data=False)
    return structural + names


def _register_files(
    files: Sequence[Path],
    label_column: str | None,
    noisy_column: str | None,
    split_column: str | None,
    out: list[str],
) -> tuple[list[str], bool]:
    """Register each ``--data`` file; returns the identities and whether any of them
    has given noisy labels. A file that cannot be read is a problem in ``out``."""
    from losslab.data import has_given_labels, register_file

    idents: list[str] = []
    for path in files:
        try:
            idents.append(
                register_file(
                    path,
                    label_column=label_column,
                    noisy_column=noisy_column,
                    split_column=split_column,
                )
            )
        except (TypeError, ValueError, OSError) as exc:
            out.append(f"{WHERE}: --data {str(exc).splitlines()[0]}")
    for flag, value in (
        ("--label-column", label_column),
        ("--noisy-column", noisy_column),
        ("--split-column", split_column),
    ):
        if value is not None and not files:
            out.append(f"{WHERE}: {flag} expected --data with a .csv or .parquet file, got none")
    return idents, any(has_given_labels(i) for i in idents)


def _given_problems(datasets: Any, corruptions: Any) -> list[str]:
    """The corruption 'given' needs every dataset of the grid to have given noisy labels."""
    from losslab.bench.protocol import problem
    from losslab.data import has_given_labels
    from losslab.data.corrupt import parse_corruption

    def is_given(c: object) -> bool:
        try:
            return isinstance(c, str) and parse_corruption(c).kind == "given"
        except ValueError:
            return False

    if not isinstance(corruptions, list) or not any(map(is_given, corruptions)):
        return []
    return [
        problem(
            WHERE,
            "corruptions",
            "'given' only for datasets with given noisy labels (y_noisy, --noisy-column)",
            f"'given' with {d!r}, which has none",
        )
        for d in (datasets if isinstance(datasets, list) else [])
        if isinstance(d, str) and has_given_labels(d) is False
    ]


def _header(grid: GridSpec, plan: Plan) -> str:
    c = plan.counts
    data = f"{len(grid.datasets)} datasets x {len(grid.corruptions)} corruptions"
    if grid.dataset_corruptions:  # not a product: count the pairs
        data = f"{len({g.id[:2] for g in plan.groups})} (dataset, corruption) pairs"
    return (
        f"grid {grid.grid_id}: {data} x {len(grid.losses)} losses x {len(grid.seeds)} "
        f"seeds, {plan.total} cells "
        f"({c['tuning']} tuning, {c['fixed']} untuned finals, {c['selected']} finals after "
        f"selection), protocol {grid.protocol}"
    )


@app.command("run")
def run(
    preset: Annotated[
        str | None, typer.Option(help="Named grid (demo, ldr, ...: see docs/bench.md).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Grid file (.yaml/.yml/.toml).")
    ] = None,
    dataset: Annotated[
        list[str] | None,
        typer.Option(
            "--dataset", "--datasets", "-d", help="Dataset, catalogued or registered (repeatable)."
        ),
    ] = None,
    data: Annotated[
        list[Path] | None,
        typer.Option(
            "--data",
            help="Your own data file (.npz, .csv, .parquet), registered as a dataset named "
            "after the file (repeatable).",
        ),
    ] = None,
    label_column: Annotated[
        str | None,
        typer.Option(help="--data tables: the integer label column (default 'label')."),
    ] = None,
    noisy_column: Annotated[
        str | None,
        typer.Option(help="--data tables: given noisy labels (corruption 'given')."),
    ] = None,
    split_column: Annotated[
        str | None,
        typer.Option(help="--data tables: 'train'/'test' per row (default: stratified 25 % test)."),
    ] = None,
    corruption: Annotated[
        list[str] | None,
        typer.Option(
            "--corruption",
            help="clean | given | uniform:R | class_dependent:R | ... (repeatable).",
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
    protocol: Annotated[
        str | None,
        typer.Option(help=f"{' | '.join(PROTOCOL_NAMES)} (default {PROTOCOL_NAMES[0]})."),
    ] = None,
    device: Annotated[
        str,
        typer.Option(
            help=f"{DEVICES}: where models train; not part of the cell key (stored per row)."
        ),
    ] = "cpu",
    store: Annotated[Path, typer.Option(help="DuckDB result file.")] = DEFAULT_STORE,
    workers: Annotated[
        int, typer.Option(help="Local worker processes (>1 uses a process pool).")
    ] = 1,
    backend: Annotated[str, typer.Option(help="inprocess | pool | ray.")] = "inprocess",
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (with --backend ray).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and count cells only (a flag).")
    ] = False,
    select_metric: Annotated[
        str | None,
        typer.Option(
            help="Validation metric for early stopping and selection: acc | balanced_acc "
            "| macro_f1 | worst_recall (default: the grid's, else acc)."
        ),
    ] = None,
    diagnostics: Annotated[
        bool,
        typer.Option(
            "--diagnostics",
            help="Also record neural collapse (NC1-NC4) per cell; these are cells of their "
            "own (other keys), trained again if stored without.",
        ),
    ] = False,
    lock_timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the store's lock before giving up.")
    ] = 600.0,
) -> None:
    """Run a grid; finished cells are skipped, so re-running resumes, and several runs
    on one store share the work."""
    from rich.console import Group
    from rich.live import Live
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from losslab.bench.backends import WorkerDiedError, make_backend
    from losslab.bench.grid import GridError
    from losslab.bench.plan import Plan
    from losslab.bench.report import final_frame, leaderboard
    from losslab.bench.runner import execute, stale_rows
    from losslab.bench.store import ResultStore
    from losslab.bench.trainer import check_device

    early: list[str] = []
    try:
        check_device(device, where=WHERE, arg="--device")
    except ValueError as exc:
        early.append(str(exc))
    try:
        engine = make_backend(backend, workers=workers, address=address, device=device)
    except ValueError as exc:
        early.append(str(exc))
    try:
        grid = build_grid(
            preset,
            config,
            dataset,
            corruption,
            loss,
            seeds,
            lr,
            epochs,
            model,
            protocol,
            select_metric=select_metric,
            diagnostics=diagnostics,
            data=data or (),
            label_column=label_column,
            noisy_column=noisy_column,
            split_column=split_column,
        )
    except GridError as exc:
        raise _fail("\n".join(early + exc.problems)) from None
    if early:
        raise _fail("\n".join(early))
    plan = Plan.of(grid)
    console.print(_header(grid, plan), markup=False, highlight=False)
    if dry_run:
        return
    results = ResultStore(store, timeout_s=lock_timeout)
    if results.path.is_file():
        try:
            old = stale_rows(results, plan)
        except ValueError as exc:
            raise _fail(exc) from None
        if old:
            console.print(_stale_line(grid.grid_id, old), markup=False, highlight=False)
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
    task = progress.add_task("cells", total=plan.total, last="")
    t0 = time.perf_counter()
    try:
        with Live(Group(progress), console=console, refresh_per_second=4) as live:

            def on_start(n: int, done: int) -> None:
                progress.update(task, total=n, completed=done)

            def on_result(row: Mapping[str, Any]) -> None:
                rows.append({k: row.get(k) for k in _LIVE_KEYS})
                where = f"{row['dataset']}/{row['corruption']}/{row['loss']}"
                where += " (diverged)" if row.get("diverged") else ""
                progress.update(task, advance=1, last=where)
                board = _provisional_board(rows)
                live.update(Group(progress, _board_table(board, "live leaderboard (this run)", 10)))

            def on_wait(left: int) -> None:
                progress.update(
                    task,
                    completed=plan.total - left,
                    last=f"waiting for {left} cells claimed by other runs",
                )

            outcome = execute(
                plan, results, engine, on_start=on_start, on_result=on_result, on_wait=on_wait
            )
        board = leaderboard(final_frame(results, grid.grid_id))
    except WorkerDiedError as exc:
        raise _fail(exc, 1) from None
    except ValueError as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt:
        raise _fail(
            "bench run: interrupted; finished cells are stored, re-run to resume", 130
        ) from None
    console.print()
    console.print(_board_table(board, f"leaderboard: {grid.name} (final cells, all seeds)"))
    others = f", {outcome.by_others} by other runs" if outcome.by_others else ""
    console.print(
        f"{outcome.ran} cells run, {outcome.skipped} already stored{others}, "
        f"{time.perf_counter() - t0:.1f} s; results in {results.path}",
        markup=False,
        highlight=False,
    )


@app.command("status")
def status(
    store: Annotated[Path, typer.Option(help="DuckDB result file.")] = DEFAULT_STORE,
    grid: Annotated[str | None, typer.Option(help="Grid id or name (default: newest).")] = None,
) -> None:
    """Grids in the store, their progress, and the newest grid's leaderboard (reads only)."""
    from rich.table import Table

    from losslab.bench.report import final_frame, grid_stats, leaderboard, resolve_grid, stats_line
    from losslab.bench.report import progress as grid_progress
    from losslab.bench.store import ResultStore

    results = ResultStore(store)
    try:
        grids = results.grids()
        info = resolve_grid(results, grid)
        finals = final_frame(results, info["grid"])
        st = grid_stats(finals) if len(finals) else None
        board = leaderboard(finals, st)
    except ValueError as exc:
        raise _fail(exc) from None
    t = Table(title=f"grids in {store}", title_justify="left")
    for col in ("grid", "name", "started", "cells done", "diverged", "stale"):
        t.add_column(col)
    stale: dict[str, list[StaleRow]] = {}
    for g in grids:
        done, total = grid_progress(g)
        stale[g["grid"]] = _stale(results, g)
        n = len(stale[g["grid"]])
        t.add_row(
            g["grid"],
            g["name"],
            str(g["created_at"])[:19],
            f"{done - n}/{total}",
            str(g["diverged"]),
            str(n),
        )
    console.print(t)
    for gid, rows in stale.items():
        if rows:
            console.print(_stale_line(gid, rows), markup=False, highlight=False)
    console.print(_board_table(board, f"leaderboard: {info['grid']} (finished final cells)"))
    if st is not None:
        console.print(stats_line(st), markup=False, highlight=False)


def _stale(results: ResultStore, info: Mapping[str, Any]) -> list[StaleRow]:
    """The grid's stored members that ran other code (none if its plan no longer builds)."""
    from losslab.bench.report import grid_plan
    from losslab.bench.runner import stale_rows

    plan = grid_plan(info)
    if plan is None:
        return []
    try:
        return stale_rows(results, plan)
    except ValueError:  # a loss or dataset of the grid is no longer registered
        return []


def _stale_line(grid_id: str, rows: Sequence[StaleRow], examples: int = 3) -> str:
    parts: dict[str, int] = {}
    for r in rows:
        for p in r.changed:
            parts[p] = parts.get(p, 0) + 1
    changed = ", ".join(f"{p} code changed: {n}" for p, n in parts.items())
    shown = "; ".join(r.label for r in rows[:examples])
    more = f" (+{len(rows) - examples} more)" if len(rows) > examples else ""
    return (
        f"stale: grid {grid_id}: {len(rows)} stored cells ran other code ({changed}), e.g. "
        f"{shown}{more}; `losslab bench run` trains them again"
    )


@app.command("export")
def export(
    store: Annotated[Path, typer.Option(help="DuckDB result file.")] = DEFAULT_STORE,
    out: Annotated[Path, typer.Option(help="Folder for the Parquet files.")] = DEFAULT_EXPORT,
) -> None:
    """Snapshot the store as Parquet files (results, grid_cells, grids) that any program
    can read without blocking a running grid."""
    from losslab.bench.store import ResultStore

    try:
        files = ResultStore(store).export(out)
    except ValueError as exc:
        raise _fail(exc) from None
    for f in files:
        console.print(str(f), markup=False, highlight=False)


@app.command("import")
def import_(
    folder: Annotated[Path, typer.Argument(help="Folder written by `losslab bench export`.")],
    store: Annotated[Path, typer.Option(help="DuckDB result file.")] = DEFAULT_STORE,
) -> None:
    """Load an export (results, grid_cells, grids) into a store: results already stored
    are skipped, conflicting ones stop the import unchanged, so a later `bench run` of the
    same grid trains only what the export lacks."""
    from losslab.bench.store import ResultStore

    try:
        counts = ResultStore(store).import_export(folder)
    except ValueError as exc:
        raise _fail(exc) from None
    console.print(
        f"{counts['added']} results imported, {counts['skipped']} already stored; "
        f"{counts['grids']} grids, {counts['members']} grid cells added to {store}",
        markup=False,
        highlight=False,
    )


def report(
    store: Annotated[Path, typer.Option(help="DuckDB result file.")] = DEFAULT_STORE,
    out: Annotated[Path, typer.Option(help="Output folder.")] = DEFAULT_REPORT,
    grid: Annotated[str | None, typer.Option(help="Grid id or name (default: newest).")] = None,
) -> None:
    """Write report.md and a self-contained report.html with figures (reads the store only)."""
    from losslab.bench.report import write_report

    try:
        files = write_report(store, out, grid)
    except ValueError as exc:
        raise _fail(exc) from None
    console.print(
        f"report: {files.markdown}\n        {files.html.resolve()}", markup=False, highlight=False
    )


main = typer.Typer(
    help="losslab benchmark (standalone entry point).",
    no_args_is_help=True,
    add_completion=False,
    cls=OneLineErrorsGroup,
)

main.add_typer(app, name="bench")
main.command("report")(report)

if __name__ == "__main__":
    main()
