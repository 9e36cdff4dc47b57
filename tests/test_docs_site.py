"""The docs site: its sources stay inside the repository, its math renders, and
`mkdocs build --strict` succeeds offline (when the `docs` extra is installed)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import losslab

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
sys.path.insert(0, str(ROOT / "scripts"))
import gen_docs_site  # noqa: E402

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)[^)]*\)")
OUTSIDE = re.compile(r"(https?:)?//|mailto:", re.I)
MACHINE_PATH = re.compile(r"(?<![\w.])/(work|home|tmp|root|opt|Users)/|\.\./shared|shared/research")


def _pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def _missing(*packages: str) -> list[str]:
    return [p for p in packages if importlib.util.find_spec(p) is None]


def test_links_stay_inside_the_docs() -> None:
    """Every Markdown link is relative and names a file of docs/ or a generated API page
    (no web links)."""
    generated = {DOCS / path for path in gen_docs_site.api_pages()}
    bad = []
    for page in _pages():
        for target in LINK.findall(page.read_text()):
            path = target.split("#", 1)[0]
            if OUTSIDE.match(target) or target.startswith("/"):
                bad.append(f"{page.relative_to(ROOT)}: {target}")
            elif path and not (page.parent / path).resolve().is_relative_to(DOCS):
                bad.append(f"{page.relative_to(ROOT)}: {target} leaves docs/")
            elif path and not (
                (page.parent / path).exists() or (page.parent / path).resolve() in generated
            ):
                bad.append(f"{page.relative_to(ROOT)}: {target} does not exist")
    assert not bad, "\n".join(bad)


def test_no_machine_paths_or_web_links_in_sources() -> None:
    sources = [*_pages(), ROOT / "mkdocs.yml", *sorted((ROOT / "examples").rglob("*.py"))]
    bad = []
    for path in sources:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if MACHINE_PATH.search(line) or re.search(r"<https?://|href=\"https?://", line):
                bad.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not bad, "\n".join(bad)


def test_generated_pages_cover_the_registry() -> None:
    families = {losslab.loss_info(n).family for n in losslab.list_losses()}
    assert [next(iter(e)) for e in gen_docs_site.family_nav()] == sorted(families)
    pages = gen_docs_site.api_pages()
    for name in losslab.list_losses():
        spec = losslab.loss_info(name)
        assert f'heading: "losslab.functional.{name}"' in pages["api/functional.md"]
        assert f'heading: "losslab.{spec.module_name}"' in pages["api/losses.md"]
    for family in families:
        assert (DOCS / "losses" / f"{family}.md").exists()


def test_griffe_rewrite_of_registry_docstrings() -> None:
    if _missing("griffe"):
        pytest.skip("griffe (docs extra) missing: pip install -e '.[docs]'")
    import gen_docs_griffe

    spec = losslab.loss_info("aldr_kl")
    doc = gen_docs_griffe.rewrite(spec.module.__doc__)
    assert "\nExamples:\n" in doc and "\nExample:\n" not in doc
    assert "\n    - `index`: int64 dataset indices" in doc
    fn_doc = gen_docs_griffe.rewrite(spec.function.__doc__)
    # Markdown needs the blank line between the sentence and the list of properties.
    assert "(`losslab.properties.verify`):\n\n    - `classification_calibrated`" in fn_doc
    # Hand-written module docstrings use Sphinx roles and reST literal blocks.
    assert gen_docs_griffe.rewrite(
        "See :func:`register` and :class:`~losslab.heads.HeadOptions`::\n\n    code"
    ) == ("See `register` and `HeadOptions`:\n\n    code")


@pytest.mark.skipif(bool(_missing("latex2mathml")), reason="latex2mathml (docs extra) missing")
def test_every_formula_renders_to_mathml() -> None:
    for name in losslab.list_losses():
        mathml = gen_docs_site.to_mathml(losslab.loss_info(name).formula, display=True)
        assert mathml.startswith("<math") and 'display="block"' in mathml, name
    # Browsers render only mathvariant="normal": other variants become Unicode letters.
    assert "𝟙" in gen_docs_site.to_mathml(r"\mathbb{1}[k \ne y]", display=False)
    assert 'mathvariant="double-struck"' not in gen_docs_site.to_mathml(r"\mathbb{R}", False)
    with pytest.raises(ValueError, match="cannot render"):
        gen_docs_site.to_mathml(r"\frac{1}{", display=True)


def test_render_math_replaces_arithmatex_markup() -> None:
    if _missing("latex2mathml"):
        pytest.skip("latex2mathml (docs extra) missing: pip install -e '.[docs]'")
    html = (
        '<p>With <span class="arithmatex">\\(a &lt; b\\)</span>:</p>'
        '<div class="arithmatex">\\[\n\\lambda \\log C\n\\]</div>'
    )
    out = gen_docs_site.render_math(html, "test.md")
    assert "\\(" not in out and "\\[" not in out
    assert '<math xmlns="http://www.w3.org/1998/Math/MathML" display="inline">' in out
    assert "<mo>&#x0003C;</mo>" in out  # the escaped "<" reached the converter as "<"
    assert '<mo lspace="0.167em" rspace="0.167em">log</mo>' in out


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path: Path) -> None:
    missing = _missing(
        "mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers", "latex2mathml"
    )
    if missing:
        pytest.skip(
            f"the docs extra is not installed ({', '.join(missing)} missing): "
            "pip install -e '.[docs]' or make docs"
        )
    site = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "WARNING" not in proc.stderr, proc.stderr[-4000:]
    catalogue = (site / "losses.html").read_text()
    assert catalogue.count("<math ") >= len(losslab.list_losses())
    assert 'class="arithmatex">\\(' not in catalogue  # every formula was converted
    for page in site.rglob("*.html"):
        text = page.read_text()
        # Nothing is fetched when a page is viewed: no remote script, style or font.
        assert not re.search(r'<(script|link|img)[^>]+(src|href)="(https?:)?//', text), page
    family = (site / "losses" / "cross_entropy.html").read_text()
    assert 'id="focal"' in family and "<math " in family
    functional = (site / "api" / "functional.html").read_text()
    for name in losslab.list_losses():
        assert f"losslab.functional.{name}" in functional, name
