"""Generate the loss table of README.md and docs/losses.md from the registry.

python scripts/gen_loss_table.py          # rewrite the tables
python scripts/gen_loss_table.py --check  # exit 1 if they are out of date (CI)
"""

from __future__ import annotations

import inspect
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
        "| loss | family | formula | defaults | properties | kind | reference |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in losslab.list_losses():
        s = losslab.loss_info(name)
        defaults = ", ".join(f"{k}={v!r}" for k, v in s.defaults.items()) or "-"
        targets = s.kind.name + (", soft targets" if s.rules.get("soft_targets") else "")
        if s.stateful:
            targets += " (stateful: `index=`)"
        lines.append(
            f"| `{name}` | [{s.family}](losses/{s.family}.md) | ${_cell(s.formula)}$ | "
            f"{_cell(defaults)} | {', '.join(s.property_labels())} | {targets} | "
            f"{_cell(s.reference)} |"
        )
    return "\n".join(lines) + "\n"


FAMILY_INTRO = {
    "cross_entropy": "Cross-entropy with label smoothing and soft targets, and the focal loss.",
    "comp_sum": "The comp-sum family of Mao, Mohri & Zhong (ICML 2023): one parameter tau "
    "moves from the sum-exponential loss (tau=0) through cross-entropy (tau=1) and "
    "generalized CE to MAE (tau=2).",
    "hinge": "Multi-class hinge losses (Crammer-Singer, Weston-Watkins): convex, "
    "margin-based, not classification-calibrated.",
    "ldr": "Label-distributionally-robust losses (Zhu, Ying & Yang, ICML 2023): a smoothed "
    "maximum over label distributions near uniform, with an adaptive per-example "
    "temperature in ALDR-KL.",
    "spherical": "Losses that depend on the logits only through their sum, sum of squares and "
    "the target logit, which output layers can train in O(D^2) per example.",
}


def family_section(family: str) -> str:
    lines = [short_table_for(family), ""]
    for name in losslab.list_losses(family=family):
        spec = losslab.loss_info(name)
        doc = inspect.getdoc(spec.function) or ""
        lines += [
            f"## `{name}`",
            "",
            f"`losslab.functional.{spec.function.__name__}` / "
            f"`losslab.{spec.module.__name__ if spec.module else '?'}`",
            "",
            "```text",
            doc,
            "```",
            "",
        ]
    return "\n".join(lines).rstrip()


def short_table_for(family: str) -> str:
    rows = ["| loss | defaults | verified properties | kind |", "|---|---|---|---|"]
    for name in losslab.list_losses(family=family):
        s = losslab.loss_info(name)
        defaults = ", ".join(f"{k}={v!r}" for k, v in s.defaults.items()) or "-"
        rows.append(
            f"| `{name}` | {_cell(defaults)} | {', '.join(s.property_labels())} | "
            f"{s.kind.name}{', soft targets' if s.rules.get('soft_targets') else ''} |"
        )
    return "\n".join(rows)


def family_page(path: Path, family: str) -> str:
    start, end = "<!-- generated:start -->", "<!-- generated:end -->"
    body = family_section(family)
    if path.exists() and start in path.read_text():
        head, rest = path.read_text().split(start, 1)
        tail = rest.split(end, 1)[1]
        return f"{head}{start}\n{body}\n{end}{tail}"
    if path.exists():  # a hand-written page: keep it, append the generated part
        return f"{path.read_text().rstrip()}\n\n{start}\n{body}\n{end}\n"
    intro = FAMILY_INTRO.get(family, "")
    return f"# {family} losses\n\n{intro}\n\n{start}\n{body}\n{end}\n"


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
    families = sorted({losslab.loss_info(n).family for n in losslab.list_losses()})
    for fam in families:
        fpath = ROOT / "docs" / "losses" / f"{fam}.md"
        targets[fpath] = family_page(fpath, fam)
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
