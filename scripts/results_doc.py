"""Publish a finished benchmark grid as a docs page (see losslab.bench.report.write_results_page).

    python scripts/results_doc.py --store results/ldr.duckdb --grid ldr \
        --out docs/results-ldr.md --note "Command: ... Machine: ... Budget: ..."

Writes the page and its figures under ``docs/<page name>/``: the run record read from the store,
the note, then the body of ``losslab report`` (leaderboard with the mean rank per loss, its
bootstrap interval and the verdict against CE; the Friedman test, the Nemenyi critical
difference and its diagram; each loss against CE; accuracy vs noise per loss family; mean +-
std test top-1 per loss x corruption for each dataset; under-fitting check; calibration;
selected configurations). A retrieval grid (protocol ``retrieval``) ranks test Recall@1 and
tabulates Recall@1, Recall@4 and MAP@R on the unseen classes instead, without the calibration
panels. A grid with unfinished cells, or a store that cannot be read, is one line on stderr and
exit status 2: only finished tables go in docs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from losslab.bench.report import write_results_page


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--store", required=True, type=Path)
    ap.add_argument("--grid", default=None, help="grid id or name (default: newest)")
    ap.add_argument("--out", required=True, type=Path, help="markdown page to write")
    ap.add_argument("--note", default="", help="how the run was made (command, machine, budget)")
    args = ap.parse_args()
    try:
        page = write_results_page(args.store, args.out, args.grid, args.note)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"wrote {page} and {page.with_suffix('')}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
