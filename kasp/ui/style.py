"""The app's one visual language: the name, colour and marker of every method, source and quantity.

Every figure (:mod:`kasp.ui.figures`, :mod:`kasp.ui.figures_weights`) and every table that names a method
or a source reads it here, so that KASP is "KASP" in the same blue with the same marker on every page
and in the live panel, and green means the small dense model and nothing else. No plotly, no
Streamlit: plain dicts and functions.

Colours: Okabe & Ito (2008), distinguishable with the common colour-vision deficiencies. Markers
tell the *source* of a number (where it came from), colours the *method* (what made it).
"""

from __future__ import annotations

from typing import Any

from kasp.spec.methods import FINETUNE, METHODS

#: method key (as recipes write it) -> how the app names it: each method's record (kasp.spec.methods), then
#: the dense teacher and the paper's figures, which are drawn beside them
METHOD_LABELS: dict[str, str] = {
    **{m.name: m.label for m in METHODS.values()},
    FINETUNE: "dense teacher",
    "dense teacher": "dense teacher",
    "published": "published, BERT-base",
}
#: method key -> colour (Okabe-Ito): KASP blue, magnitude vermillion, small dense bluish green (nowhere else)
METHOD_COLOURS: dict[str, str] = {
    **{m.name: m.colour for m in METHODS.values()},
    "dense teacher": "#555555",   # dark grey
    FINETUNE: "#555555",
    "published": "#999999",       # grey: the paper's BERT-base figures
}
#: quantities drawn against the step (live panel, Results curves, Weights schedule): never a method's colour
QUANTITY_COLOURS: dict[str, str] = {
    "sparsity": "#000000",        # black: measured sparsity of the masks
    "schedule": "#999999",        # grey dotted: the cubic schedule s_t
    "dev metric": "#CC79A7",      # reddish purple: the task's dev metric
    "marker": "#E69F00",          # orange: "you are here" (the step shown)
    "lesson": "#6A3D9A",          # purple, dashed: the guided lesson's answer mark (no method's colour, not orange)
    "retention": "#56B4E9",       # sky blue: similarity and CKA of one student with its teacher
    "kept weights": "#56B4E9",    # sky blue: the Weights page's histogram of kept |w|
    "pruned weights": "#8C8C8C",  # grey: the Weights page's bar of pruned weights (|w| = 0)
    "threshold": "#000000",       # black dashed: the magnitude threshold (the smallest kept |w|)
    # one per loss term, none a method's colour (total, attention, hidden, prediction, task, ...)
    "loss": ["#000000", "#E69F00", "#56B4E9", "#CC79A7", "#8C6D1F", "#999999"],
}
#: source of a number -> how the app names it
SOURCE_LABELS: dict[str, str] = {
    "live run": "live run",
    "precomputed run": "precomputed run",
    "precomputed sweep": "precomputed sweep",
    "live sweep": "live sweep",
    "GPU sweep": "GPU sweep",
    "shipped model": "shipped model",
    "published": "published",
}
#: source -> plotly marker symbol
SOURCE_SYMBOLS: dict[str, str] = {
    "precomputed sweep": "circle",
    "live sweep": "circle",
    "live run": "diamond",
    "precomputed run": "square",
    "GPU sweep": "triangle-up",
    "shipped model": "hexagon",
    "published": "star",
}


def method_label(method: Any) -> str:
    """How the app names a method ("KASP", "magnitude baseline", ...); unknown names are shown as they are."""
    return METHOD_LABELS.get(method, str(method)) if isinstance(method, str) else "?"


def method_colour(method: Any) -> str:
    """The colour of a method (black for an unknown one)."""
    return METHOD_COLOURS.get(method, "#000000") if isinstance(method, str) else "#000000"


def source_symbol(source: Any) -> str:
    """The marker of a source; a GPU sweep ("GPU sweep, 12 epochs") is a triangle, unknown ones circles."""
    if not isinstance(source, str):
        return "circle"
    if source.startswith("GPU sweep"):
        return SOURCE_SYMBOLS["GPU sweep"]
    if source.startswith("published"):
        return SOURCE_SYMBOLS["published"]
    return SOURCE_SYMBOLS.get(source, "circle")


#: sparsity (fraction of encoder linear weights that are zero) -> compression of those weights, 1 / (1 - s)
COMPRESSION_TICKS: tuple[float, ...] = (0.0, 0.5, 0.8, 0.9, 0.95)


def compression(sparsity: float) -> float:
    """How many times fewer non-zero weights: 1 / (1 − sparsity) (0.9 → 10, 0.95 → 20)."""
    return float("inf") if sparsity >= 1 else 1.0 / (1.0 - sparsity)


def sparsity_tick_text(sparsity: float) -> str:
    """A tick label of the sparsity axis with its compression: "90 %<br>×10"; "0 %<br>dense"."""
    c = compression(sparsity)
    return f"{sparsity * 100:g} %<br>" + ("dense" if sparsity == 0 else f"×{c:.3g}")


#: presenter mode (``?present=1``): larger type everywhere, figures' text included (plotly sets its sizes
#: inline, so they are raised with !important), for a projector at 1024x768
PRESENTER_CSS = """
html { font-size: 19px; }
[data-testid="stMainBlockContainer"] { padding-top: 2.2rem; padding-left: 1.4rem; padding-right: 1.4rem; }
.js-plotly-plot .main-svg .xtick text, .js-plotly-plot .main-svg .ytick text { font-size: 14px !important; }
.js-plotly-plot .main-svg .legendtext { font-size: 14px !important; }
.js-plotly-plot .main-svg .g-xtitle text, .js-plotly-plot .main-svg .g-ytitle text { font-size: 15px !important; }
.js-plotly-plot .main-svg .gtitle { font-size: 19px !important; }
"""
