r"""LaTeX formulas as plain Unicode text, for terminals (``losslab info``, ``losslab list``).

Covers the subset the loss docstrings use: fractions, sub- and superscripts, Greek
letters and common operators, accents, sizing delimiters, ``\mathrm`` and friends.
Fractions and scripts of more than one symbol are parenthesised, so the text is
unambiguous: ``\frac{1 - p_y^{q}}{q}`` reads ``(1 - p_y^q)/q``.
"""

from __future__ import annotations

import re

SYMBOLS = {
    "alpha": "α",
    "beta": "β",
    "gamma": "γ",
    "delta": "δ",
    "zeta": "ζ",
    "eta": "η",
    "theta": "θ",
    "iota": "ι",
    "kappa": "κ",
    "lambda": "λ",
    "mu": "μ",
    "nu": "ν",
    "xi": "ξ",
    "pi": "π",
    "rho": "ρ",
    "sigma": "σ",
    "tau": "τ",
    "upsilon": "υ",
    "phi": "ϕ",
    "chi": "χ",
    "psi": "ψ",
    "omega": "ω",
    "varepsilon": "ε",
    "epsilon": "ε",
    "vartheta": "ϑ",
    "varphi": "φ",
    "Gamma": "Γ",
    "Delta": "Δ",
    "Theta": "Θ",
    "Lambda": "Λ",
    "Pi": "Π",
    "Sigma": "Σ",
    "Phi": "Φ",
    "Psi": "Ψ",
    "Omega": "Ω",
    "ell": "ℓ",
    "sum": "Σ",
    "prod": "∏",
    "ne": "≠",
    "neq": "≠",
    "le": "≤",
    "leq": "≤",
    "ge": "≥",
    "geq": "≥",
    "in": "∈",
    "cdot": "·",
    "times": "×",
    "infty": "∞",
    "to": "→",
    "approx": "≈",
    "propto": "∝",
    "partial": "∂",
    "nabla": "∇",
    "lVert": "‖",
    "rVert": "‖",
    "Vert": "‖",
    "|": "‖",
    "mid": "|",
    "langle": "⟨",
    "rangle": "⟩",
    "top": "ᵀ",
    "sqrt": "√",
    "ldots": "…",
    "dots": "…",
    "cdots": "⋯",
}
FUNCTIONS = {"log", "exp", "max", "min", "sup", "inf", "arg", "softmax", "det", "tanh", "cos"}
SPACES = {",": " ", ";": " ", ":": " ", "quad": "  ", "qquad": "   ", "!": "", " ": " "}
SIZING = {"big", "Big", "bigg", "Bigg", "left", "right", "bigl", "bigr", "Bigl", "Bigr"}
ROMAN = {"mathrm", "text", "operatorname", "textrm", "mathit", "mathsf", "textbf", "mathbf"}
ACCENTS = {"tilde": "\u0303", "bar": "\u0304", "hat": "\u0302", "dot": "\u0307", "vec": "\u20d7"}
FONTS = {
    "mathbb": {"1": "𝟙", "E": "𝔼", "R": "ℝ", "P": "ℙ", "N": "ℕ"},
    "mathcal": {"L": "ℒ", "D": "𝒟", "N": "𝒩", "H": "ℋ"},
}
_TOKEN = re.compile(r"\\([A-Za-z]+|.)|([{}^_])|(\s+)|(.)", re.S)


def latex_to_text(latex: str) -> str:
    """``latex`` (math mode) as plain Unicode text."""
    tokens = [m.groups() for m in _TOKEN.finditer(latex)]
    text, _ = _render(tokens, 0, stop_at_brace=False)
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(r"\s+([,.;)])", r"\1", text)


def _wrap(text: str) -> str:
    text = text.strip()
    if len(text) == 1:
        return text
    simple = re.fullmatch(r"[\w\u0300-\u036f\u2000-\u2bff]+", text) is not None
    return text if simple or (text.startswith("(") and text.endswith(")")) else f"({text})"


def _render(
    tokens: list[tuple[str | None, ...]], i: int, *, stop_at_brace: bool
) -> tuple[str, int]:
    out: list[str] = []
    while i < len(tokens):
        piece, i = _atom(tokens, i)
        if piece is None:  # a closing brace
            if stop_at_brace:
                return "".join(out), i
            continue
        out.append(piece)
    return "".join(out), i


def _argument(tokens: list[tuple[str | None, ...]], i: int) -> tuple[str, int]:
    """The next group or single atom (skipping spaces)."""
    while i < len(tokens) and tokens[i][2] is not None:
        i += 1
    if i < len(tokens) and tokens[i][1] == "{":
        return _render(tokens, i + 1, stop_at_brace=True)
    piece, i = _atom(tokens, i)
    return piece or "", i


def _atom(tokens: list[tuple[str | None, ...]], i: int) -> tuple[str | None, int]:
    command, special, space, char = tokens[i]
    i += 1
    if space is not None:
        return " ", i
    if char is not None:
        return char, i
    if special == "{":
        text, i = _render(tokens, i, stop_at_brace=True)
        return text, i
    if special == "}":
        return None, i
    if special in ("^", "_"):
        arg, i = _argument(tokens, i)
        return special + _wrap(arg), i
    assert command is not None
    if command in SPACES:
        return SPACES[command], i
    if command in SIZING:
        return "", i
    if command in ("frac", "tfrac", "dfrac"):
        num, i = _argument(tokens, i)
        den, i = _argument(tokens, i)
        return f"{_wrap(num)}/{_wrap(den)} ", i
    if command == "sqrt":
        arg, i = _argument(tokens, i)
        return "√" + _wrap(arg), i
    if command in ROMAN:
        arg, i = _argument(tokens, i)
        return arg, i
    if command in FONTS:
        arg, i = _argument(tokens, i)
        return FONTS[command].get(arg.strip(), arg), i
    if command in ACCENTS:
        arg, i = _argument(tokens, i)
        return arg + ACCENTS[command], i
    if command in FUNCTIONS:
        return command, i
    if command in SYMBOLS:
        return SYMBOLS[command], i
    if command in ("{", "}", "(", ")", "[", "]"):
        return command, i
    return command, i


__all__ = ["latex_to_text"]
