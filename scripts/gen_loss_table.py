"""Generate the loss tables (README.md, docs/losses.md) and the generated part of the
family pages (docs/losses/<family>.md) from the registry.

The family pages turn each loss's docstring into Markdown (math stays `$`/`$$` for the
docs site's arithmatex; Google-style sections become headed paragraphs, lists and a
`pycon` block), so the same file reads well in the site and as plain Markdown.

python scripts/gen_loss_table.py          # rewrite the tables and pages
python scripts/gen_loss_table.py --check  # exit 1 if they are out of date (CI)
"""

from __future__ import annotations

import inspect
import re
import sys
import textwrap
from pathlib import Path

import losslab

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- loss-table:start -->", "<!-- loss-table:end -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _math_cell(formula: str) -> str:
    """A formula for a table cell: a pipe would end the cell (and an escaped one would
    reach the math renderer as ``\\``), so the bars are written as their LaTeX names."""
    return formula.replace("\\|", "\\Vert ").replace("|", "\\vert ").replace("\n", " ")


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
            f"| [`{name}`](losses/{s.family}.md#{name}) | [{s.family}](losses/{s.family}.md) | "
            f"${_math_cell(s.formula)}$ | "
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


_SECTION = re.compile(r"^([A-Z][A-Za-z ]*):\s*$")
_TITLES = {
    "Args": "Arguments",
    "Returns": "Returns",
    "Properties": "Verified properties",
    "Reference": "Reference",
    "Example": "Example",
    "Examples": "Example",
}


def _split_sections(doc: str) -> tuple[str, list[tuple[str, list[str]]]]:
    """A cleaned Google-style docstring as its intro and its ``Title:`` sections, each
    with its body dedented by one level."""
    intro: list[str] = []
    sections: list[tuple[str, list[str]]] = []
    for line in doc.splitlines():
        m = _SECTION.match(line)
        if m:
            sections.append((m.group(1), []))
        elif sections:
            sections[-1][1].append(line[4:] if line.startswith("    ") else line.strip())
        else:
            intro.append(line)
    return "\n".join(intro).strip(), sections


def _entries(body: list[str]) -> list[str]:
    """``name: text`` entries whose continuation lines are indented, one line each."""
    out: list[str] = []
    for line in body:
        if not line.strip():
            continue
        if line.startswith(" ") and out:
            out[-1] += " " + line.strip()
        else:
            out.append(line.strip())
    return out


def _arguments(body: list[str]) -> list[str]:
    items = []
    for entry in _entries(body):
        name, _, text = entry.partition(":")
        items.append(f"- `{name.strip()}`: {text.strip()}")
    return items


def _markdown_block(body: list[str]) -> list[str]:
    """Markdown text whose lists need a blank line before them to be lists."""
    lines = [line.rstrip() for line in textwrap.dedent("\n".join(body)).strip().splitlines()]
    out: list[str] = []
    for line in lines:
        if line.startswith("- ") and out and out[-1] and not out[-1].startswith(("- ", " ")):
            out.append("")
        out.append(line)
    return out


def doc_markdown(doc: str) -> str:
    """A registered loss's docstring as Markdown."""
    intro, sections = _split_sections(doc)
    out = [intro]
    for title, body in sections:
        heading = f"**{_TITLES.get(title, title)}**"
        if title == "Args":
            out += ["", heading, "", *_arguments(body)]
        elif title in ("Example", "Examples"):
            code = textwrap.dedent("\n".join(body)).strip("\n")
            out += ["", heading, "", "```pycon", code, "```"]
        elif title in ("Returns", "Reference"):
            text = " ".join(line.strip() for line in body if line.strip())
            out += ["", f"{heading}: {text}"]
        else:
            out += ["", heading, "", *_markdown_block(body)]
    return "\n".join(out)


def _call_signature(name: str, function: object) -> str:
    """``name(inputs, *, keywords=defaults)`` without annotations, one argument per line
    when it does not fit on one."""
    sig = inspect.signature(function)  # type: ignore[arg-type]
    plain = sig.replace(
        parameters=[p.replace(annotation=inspect.Parameter.empty) for p in sig.parameters.values()],
        return_annotation=inspect.Signature.empty,
    )
    one_line = f"{name}{plain}"
    if len(one_line) <= 88:
        return one_line
    parts = []
    star = False
    for p in plain.parameters.values():
        if p.kind is inspect.Parameter.KEYWORD_ONLY and not star:
            parts.append("*")
            star = True
        parts.append(str(p))
    return f"{name}(\n" + "".join(f"    {part},\n" for part in parts) + ")"


def _targets(spec: losslab.registry.LossSpec) -> str:
    text = f"`{spec.kind.name}`"
    if spec.rules.get("soft_targets"):
        text += ", index or soft targets"
    if spec.stateful:
        text += "; stateful (the module takes `index=`)"
    return text


def family_section(family: str) -> str:
    lines = [short_table_for(family), ""]
    for name in losslab.list_losses(family=family):
        spec = losslab.loss_info(name)
        doc = inspect.getdoc(spec.function) or ""
        module = spec.module.__name__ if spec.module else "?"
        lines += [
            f"## `{name}`",
            "",
            f"Function `losslab.functional.{spec.function.__name__}`, module "
            f"`losslab.{module}`; kind {_targets(spec)}.",
            "",
            "```python",
            _call_signature(f"F.{name}", spec.function),
            "```",
            "",
            doc_markdown(doc),
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
