"""Class colours for the map: every class up to 20 distinguishable at a glance, on a white background."""

from __future__ import annotations

from plotly.colors import qualitative

# Picked greedily, each the farthest (CIEDE2000) from those before it, from plotly's qualitative palettes, leaving
# out greys (they read as "dimmed") and very light or dark colours (lost on white, or mistaken for the black ×).
CLASS_COLOURS: tuple[str, ...] = (
    "#1F77B4",
    "#86CE00",
    "#FB0D0D",
    "#FE00FA",
    "#85660D",
    "#1C8356",
    "#42D4F4",
    "#FEAF16",
    "#FF9DA6",
    "#B00068",
    "#511CFB",
    "#862A16",
    "#B279A2",
    "#EEA6FB",
    "#F58231",
    "#7E7DCD",
    "#FC0080",
    "#6C7C32",
    "#604E97",
    "#2CA02C",
)
# Beyond 20 classes no palette keeps every pair apart; these continue the cycle.
FALLBACK_COLOURS: tuple[str, ...] = tuple(qualitative.Dark24 + qualitative.Light24)


def class_colours(n_classes: int) -> tuple[str, ...]:
    """One colour per class: the distinct 20 first, then the fallback cycle."""
    palette = CLASS_COLOURS + FALLBACK_COLOURS
    return tuple(palette[i % len(palette)] for i in range(n_classes))
