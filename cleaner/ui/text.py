"""Text for Streamlit widgets, which render their labels as Markdown."""

from __future__ import annotations

_MARKDOWN_SPECIALS = set("\\`*_{}[]<>()#+-.!|~$:")


def literal(text: object) -> str:
    """Text for a widget label or alert, escaped so it shows exactly as written (file names and labels are user input)."""
    return "".join("\\" + ch if ch in _MARKDOWN_SPECIALS else ch for ch in str(text))
