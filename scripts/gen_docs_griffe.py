"""Griffe extension of the docs site (mkdocs.yml: mkdocstrings' ``extensions``).

The docstrings that ``losslab.registry`` generates are written for ``help()`` and for
the family pages; griffe's Google parser reads a few of their sections differently:

* ``Example:`` is not a section title for it (``Examples:`` is), so the doctest would
  be rendered as an admonition whose ``>>>`` lines run together; it is renamed.
* ``Forward:`` (a module's ``forward`` inputs) and ``Properties:`` are admonitions whose
  bodies are Markdown: the ``name: text`` entries become a list, and a list gets the
  blank line before it that Markdown needs.
* Sphinx roles (``:func:`~losslab.heads.HeadOptions` ``) and the reST literal-block
  marker ``::`` of hand-written docstrings would show as typed; the role becomes a code
  span of the name (its last part for ``~``), the marker a colon.
* An attribute read by importing the package (``stateful = False``) would carry the
  docstring of its value's type (``bool``); that docstring is dropped.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import griffe

_SECTION = re.compile(r"^([A-Z][A-Za-z ]*):\s*$")
_ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|exc|obj):`(~?)([\w.]+)(?:\(\))?`")
_LITERAL_MARKER = re.compile(r"(?<=\S)::$", re.M)


def _role(m: re.Match[str]) -> str:
    name = m.group(2).rsplit(".", 1)[-1] if m.group(1) else m.group(2)
    return f"`{name}`"


_ENTRY = re.compile(r"^    (\w+): (.*)$")


def rewrite(doc: str) -> str:
    """The docstring with the sections above rewritten for griffe."""
    doc = _LITERAL_MARKER.sub(":", _ROLE.sub(_role, doc))
    out: list[str] = []
    section = None
    for line in doc.splitlines():
        m = _SECTION.match(line)
        if m:
            section = m.group(1)
            out.append("Examples:" if section == "Example" else line)
            continue
        if section == "Forward":
            entry = _ENTRY.match(line)
            if entry:
                out.append(f"    - `{entry.group(1)}`: {entry.group(2)}")
                continue
            if line.startswith("        "):
                out.append("      " + line.strip())
                continue
        if section == "Properties" and line.startswith("    - "):
            # Not right below the title: griffe needs the admonition's body there.
            previous = out[-1] if out else ""
            if not _SECTION.match(previous) and not previous.startswith(("    - ", "      ")):
                out.append("")
        out.append(line)
    return "\n".join(out)


class ExampleSections(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)

    def on_attribute_instance(
        self, *, node: Any, attr: griffe.Attribute, agent: Any, **kwargs: Any
    ) -> None:
        value = getattr(node, "obj", None)
        if (
            attr.docstring is not None
            and value is not None
            and attr.docstring.value == inspect.getdoc(type(value))
        ):
            attr.docstring = None
