"""MkDocs hooks of the docs site (``hooks:`` in mkdocs.yml).

* The loss pages in the navigation and the API reference are generated from the
  registry: the loss functions and module classes are built at import time by
  ``losslab.registry.register``, so static analysis cannot see them. The API pages name
  every registered loss and let mkdocstrings read it by importing the package (griffe's
  dynamic inspection, ``force_inspection``); a new loss or family appears without an
  edit here.
* Math is rendered at build time: ``pymdownx.arithmatex`` (generic mode) marks the
  ``$...$`` and ``$$...$$`` spans, and :func:`to_mathml` turns each into MathML, which
  browsers display natively. The site loads no script, style sheet or font from
  anywhere, and a formula that cannot be converted fails the strict build.
* Links that leave the site (``http(s)://`` in page content) are reported as warnings,
  so the strict build rejects them.

``python scripts/gen_docs_site.py`` prints the generated API pages (for a look without
building the site).
"""

from __future__ import annotations

import html
import logging
import re
from pathlib import Path
from typing import Any

log = logging.getLogger("mkdocs.hooks.losslab")

ROOT = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------- math

_BLOCK = re.compile(r'<div class="arithmatex">\s*\\\[(.*?)\\\]\s*</div>', re.S)
_INLINE = re.compile(r'<span class="arithmatex">\\\((.*?)\\\)</span>', re.S)
# Browsers implement only mathvariant="normal" (MathML Core), so other variants are
# written with the Unicode mathematical alphanumerics that they stand for.
_VARIANT = re.compile(
    r'<(mi|mn)([^>]*?) mathvariant="(double-struck|script|bold)"([^>]*)>([^<]*)</\1>'
)
_LETTERLIKE = {
    "double-struck": {"C": "ℂ", "H": "ℍ", "N": "ℕ", "P": "ℙ", "Q": "ℚ", "R": "ℝ", "Z": "ℤ"},
    "script": {
        "B": "ℬ",
        "E": "ℰ",
        "F": "ℱ",
        "H": "ℋ",
        "I": "ℐ",
        "L": "ℒ",
        "M": "ℳ",
        "R": "ℛ",
        "e": "ℯ",
        "g": "ℊ",
        "o": "ℴ",
    },
    "bold": {},
}
_FIRST = {  # code points of A, a and 0 in each variant
    "double-struck": (0x1D538, 0x1D552, 0x1D7D8),
    "script": (0x1D49C, 0x1D4B6, None),
    "bold": (0x1D400, 0x1D41A, 0x1D7CE),
}


def _variant_char(variant: str, ch: str) -> str:
    if ch in _LETTERLIKE[variant]:
        return _LETTERLIKE[variant][ch]
    upper, lower, digit = _FIRST[variant]
    if "A" <= ch <= "Z":
        return chr(upper + ord(ch) - ord("A"))
    if "a" <= ch <= "z":
        return chr(lower + ord(ch) - ord("a"))
    if digit is not None and "0" <= ch <= "9":
        return chr(digit + ord(ch) - ord("0"))
    return ch


def _unicode_variant(m: re.Match[str]) -> str:
    tag, before, variant, after, text = m.groups()
    mapped = "".join(_variant_char(variant, ch) for ch in text)
    return f"<{tag}{before}{after}>{mapped}</{tag}>"


# The converter writes \\log, \\exp, ... as bare identifiers; TeX sets a thin space around
# such operator names, without which "\\lambda \\log C" reads as one word.
_OPERATOR_NAME = re.compile(r"<mi>(log|ln|exp|max|min|sup|inf|arg|det|lim)</mi>")


def to_mathml(tex: str, display: bool) -> str:
    """MathML of a LaTeX formula (``display`` for a block); raises ``ValueError`` when
    the formula cannot be converted."""
    from latex2mathml.converter import convert

    try:
        out = convert(tex.strip(), display="block" if display else "inline")
    except Exception as exc:  # the converter raises its own and built-in exceptions
        raise ValueError(f"cannot render {tex.strip()!r}: {exc}") from exc
    out = _OPERATOR_NAME.sub(r'<mo lspace="0.167em" rspace="0.167em">\1</mo>', out)
    return _VARIANT.sub(_unicode_variant, out)


def render_math(text: str, where: str) -> str:
    """Replace arithmatex's generic markup in a page's HTML by MathML."""

    def sub(display: bool) -> Any:
        def one(m: re.Match[str]) -> str:
            tex = html.unescape(m.group(1))
            try:
                mathml = to_mathml(tex, display)
            except ValueError as exc:
                log.warning("%s: %s", where, exc)
                return m.group(0)
            tag = "div" if display else "span"
            return f'<{tag} class="arithmatex">{mathml}</{tag}>'

        return one

    return _INLINE.sub(sub(False), _BLOCK.sub(sub(True), text))


# --------------------------------------------------------------------------- generated pages

_API_INTRO = """\
The loss functions and their module classes are generated at import time by
`losslab.registry.register`; these pages are generated from the registry, and each
entry is read by importing the package, so it shows the signature and docstring a user
gets from `help()`. The same signatures are in the type stubs
`losslab/functional/__init__.pyi` and `losslab/losses/__init__.pyi`.
"""


def _directive(identifier: str, heading: str, label: str, *options: str) -> list[str]:
    """A mkdocstrings directive with the public name as its heading."""
    return [
        f"::: {identifier}",
        "    options:",
        f'      heading: "{heading}"',
        f'      toc_label: "{label}"',
        *(f"      {option}" for option in options),
        "",
    ]


def _families() -> dict[str, list[str]]:
    import losslab

    families: dict[str, list[str]] = {}
    for name in losslab.list_losses():
        families.setdefault(losslab.loss_info(name).family, []).append(name)
    return dict(sorted(families.items()))


def api_pages() -> dict[str, str]:
    """The API reference: path under docs/ -> Markdown."""
    import losslab
    from losslab.functional import HELPERS

    families = _families()
    functional = ["# `losslab.functional`", "", _API_INTRO]
    modules = [
        "# Loss modules (`losslab.<Name>Loss`)",
        "",
        _API_INTRO,
        "Every module class is exported by `losslab` and `losslab.losses`.",
        "",
        "::: losslab.losses.LossModule",
        "    options:",
        "      heading_level: 2",
        "      show_root_full_path: true",
        "",
    ]
    for family, names in families.items():
        functional += [f"## {family}", "", f"Family page: [{family}](../losses/{family}.md).", ""]
        modules += [f"## {family}", ""]
        for name in names:
            spec = losslab.loss_info(name)
            # The family module's path: `losslab.functional.comp_sum` is also a module,
            # which griffe would pick over the function of the same name.
            functional += _directive(
                f"{spec.kernel.__module__}.{name}", f"losslab.functional.{name}", name
            )
            # The constructor is the class's signature; forward's inputs are in the
            # docstring's "Forward" section.
            modules += _directive(
                f"losslab.losses.{spec.module_name}",
                f"losslab.{spec.module_name}",
                spec.module_name,
                "members: false",
            )
    functional += ["## Helpers", ""]
    for helper in HELPERS:
        # Helpers document several parameters in one entry, which griffe's Google
        # parser would report as unknown parameters.
        functional += [
            f"::: losslab.functional.{helper}",
            "    options:",
            "      docstring_options:",
            "        warn_unknown_params: false",
            "        warn_missing_types: false",
            "",
        ]
    index = [
        "# API reference",
        "",
        "| page | contents |",
        "|---|---|",
        "| [Registry](registry.md) | `build_loss`, `list_losses`, `loss_info`, `register` "
        "and the spec, claim and state types |",
        "| [Functions](functional.md) | every loss as `losslab.functional.<name>`, by family |",
        "| [Modules](losses.md) | every loss as an `nn.Module`, by family |",
        "| [Properties](properties.md) | the numerical checks behind the verified properties |",
        "| [Heads](heads.md) | fused linear cross-entropy, vocab-parallel and spherical heads |",
        "| [Metrics](metrics.md) | accuracy, F1, NLL, calibration |",
        "| [Data](data.md) | the data catalogue and label corruptions |",
        "",
    ]
    registry = [
        "# Registry (`losslab`)",
        "",
        "::: losslab.registry",
        "    options:",
        "      members:",
        "        - build_loss",
        "        - list_losses",
        "        - loss_info",
        "        - register",
        "        - LossSpec",
        "        - Claim",
        "        - PerSampleState",
        "        - PROPERTIES",
        "",
    ]
    simple = {
        "properties": ("Properties (`losslab.properties`)", "losslab.properties"),
        "metrics": ("Metrics (`losslab.metrics`)", "losslab.metrics"),
        "data": ("Data (`losslab.data`)", "losslab.data"),
    }
    pages = {
        "api/index.md": "\n".join(index),
        "api/registry.md": "\n".join(registry),
        "api/functional.md": "\n".join(functional),
        "api/losses.md": "\n".join(modules),
    }
    for page, (title, module) in simple.items():
        pages[f"api/{page}.md"] = f"# {title}\n\n::: {module}\n"
    pages["api/heads.md"] = heads_page()
    return pages


def heads_page() -> str:
    """The heads module and each of its exports; parser options reach a member only
    through a directive of its own."""
    import losslab.heads

    lines = [
        "# Heads (`losslab.heads`)",
        "",
        "::: losslab.heads",
        "    options:",
        "      members: false",
        "      show_root_heading: false",
        "",
    ]
    for name in losslab.heads.__all__:
        lines += [f"::: losslab.heads.{name}", "    options:", "      heading_level: 2"]
        if name == "vocab_parallel_linear_cross_entropy":
            # Its docstring lists "Other options as in ..." as an argument entry, which
            # griffe's Google parser reports as a parameter it cannot find.
            lines += ["      docstring_options:", "        warnings: false"]
        lines.append("")
    return "\n".join(lines)


def family_nav() -> list[dict[str, str]]:
    """One navigation entry per family page, in the registry's family order."""
    return [{family: f"losses/{family}.md"} for family in _families()]


# --------------------------------------------------------------------------- hooks

_OUTSIDE = re.compile(r'<a [^>]*href="((?:https?:)?//[^"]*)"', re.I)


def on_config(config: Any) -> Any:
    """Fill the "Losses" section of the navigation with the family pages."""
    for item in config["nav"] or []:
        if isinstance(item, dict) and isinstance(item.get("Losses"), list):
            item["Losses"] = [*item["Losses"], *family_nav()]
    return config


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    # The catalogue is one wide table and has no sections: its width goes to the table.
    if page.file.src_uri == "losses.md":
        page.meta.setdefault("hide", ["toc"])
    return markdown


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    for path, content in api_pages().items():
        files.append(File.generated(config, path, content=content))
    return files


def on_page_content(html_text: str, page: Any, config: Any, files: Any) -> str:
    where = page.file.src_uri
    if _OUTSIDE.search(html_text):
        log.warning("%s: links outside the site: %s", where, _OUTSIDE.findall(html_text))
    return render_math(html_text, where)


if __name__ == "__main__":
    for path, text in api_pages().items():
        print(f"--- {path}\n{text}")
