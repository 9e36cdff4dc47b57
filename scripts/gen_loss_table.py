"""Generate the loss table of README.md and docs/losses.md from the registry.

python scripts/gen_loss_table.py          # rewrite the tables
python scripts/gen_loss_table.py --check  # exit 1 if they are out of date (CI)
"""

from __future__ import annotations

import sys
from pathlib import Path

import losslab

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- loss-table:start -->", "<!-- loss-table:end -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def short_table() -> str:
    rows = ["| loss | family | verified properties | module |", "|---|---|---|---|"]
    for name in losslab.list_losses():
        spec = losslab.loss_info(name)
        module = spec.module.__name__ if spec.module else ""
        rows.append(
            f"| `{name}` | {spec.family} | {', '.join(spec.property_labels())} | `{module}` |"
        )
    return "\n".join(rows)


def full_page() -> str:
    lines = [
        "# Loss table",
        "",
        "Generated from the registry by `scripts/gen_loss_table.py`; do not edit by hand.",
        "Every property listed is verified by the generic tests (`tests/test_properties.py`)",
        "at the hyperparameters shown in brackets (defaults otherwise).",
        "",
        "| loss | family | formula | defaults | properties | targets | reference |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in losslab.list_losses():
        s = losslab.loss_info(name)
        defaults = ", ".join(f"{k}={v!r}" for k, v in s.defaults.items()) or "-"
        targets = "index, soft" if s.soft_targets else "index"
        if s.stateful:
            targets += " (stateful: `index=`)"
        lines.append(
            f"| `{name}` | {s.family} | ${_cell(s.formula)}$ | {_cell(defaults)} | "
            f"{', '.join(s.property_labels())} | {targets} | {_cell(s.reference)} |"
        )
    return "\n".join(lines) + "\n"


def main(check: bool) -> int:
    readme = ROOT / "README.md"
    text = readme.read_text()
    if START not in text or END not in text:
        print(f"README.md lacks the markers {START} / {END}")
        return 1
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    new_readme = f"{head}{START}\n{short_table()}\n{END}{tail}"
    page = ROOT / "docs" / "losses.md"
    targets = {readme: new_readme, page: full_page()}
    stale = [p for p, t in targets.items() if not p.exists() or p.read_text() != t]
    if check:
        for p in stale:
            print(f"{p.relative_to(ROOT)} is out of date: run python scripts/gen_loss_table.py")
        return 1 if stale else 0
    for p in stale:
        p.write_text(targets[p])
        print(f"wrote {p.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main("--check" in sys.argv[1:]))
