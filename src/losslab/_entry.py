"""The ``losslab`` console script: says which extra to install when the CLI's own
dependencies are missing, instead of a traceback."""

from __future__ import annotations

import importlib.util
import sys


def main() -> None:
    missing = [m for m in ("typer", "rich") if importlib.util.find_spec(m) is None]
    if missing:
        sys.stderr.write(
            f"losslab: the command line needs {', '.join(missing)} (the 'cli' extra): "
            "pip install 'losslab[cli]'\n"
        )
        raise SystemExit(2)
    from losslab.cli import main as cli_main

    cli_main()
