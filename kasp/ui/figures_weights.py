"""Plotly figures of the weights' story (:mod:`kasp.training.weights_story`): plotly only, no Streamlit, no torch."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from kasp.training.weights_story import Story
from kasp.ui.style import QUANTITY_COLOURS


PRUNED_COLOUR = QUANTITY_COLOURS["pruned weights"]  # the bar of pruned weights (|w| = 0)


def pruned_bar_x(edges: np.ndarray) -> tuple[float, float]:
    """(centre, width) on the log |w| axis of the bar of pruned weights: one octave wide, one octave left
    of the first kept bin (which is drawn from edges[1] / 2), so it never overlaps a kept bin."""
    right = float(edges[1]) / 4
    left = right / 2
    return float(np.sqrt(left * right)), right - left


def _panel_traces(story: Story, i: int, k: int, show_scale: bool, rows: int = 1) -> list[go.BaseTraceType]:
    """Heat map of the density picture, the bar of pruned weights (at |w| = 0, grey), the histogram bars of
    the kept weights and the threshold line of matrix ``k`` at snapshot ``i``."""
    from kasp.training.weights_story import pruned_count

    d = story.density[i][k] * 100
    edges = story.edges.astype(float)
    counts = story.hist[i, k]
    lo = edges[1] / 2  # bin 0 starts at 0: draw it from half its upper edge on the log axis
    left = np.concatenate([[lo], edges[1:-1]])
    right = np.concatenate([edges[1:-1], [edges[-2] * 2]])
    mids = np.sqrt(left * right)
    per_quarter = counts * 0.25 / np.log2(right / left)  # bins differ in log width: plot density per 1/4 octave
    thr = float(story.threshold[i, k])
    zeros = pruned_count(story, i, story.matrices[k])
    zx, zw = pruned_bar_x(story.edges)
    top = max(float(per_quarter.max()), float(zeros), 1.0)
    return [
        go.Heatmap(z=d, zmin=0, zmax=100, colorscale="Viridis", showscale=show_scale,
                   colorbar={"title": "% kept", "len": 0.55 / rows, "thickness": 12, "x": 1.01, "xanchor": "left", "y": 1.0,
                             "yanchor": "top"}
                   if show_scale else None,
                   hovertemplate="block row %{y}, col %{x}: %{z:.0f} % kept<extra></extra>"),
        go.Bar(x=[zx], y=[zeros], width=[zw], marker_color=PRUNED_COLOUR, showlegend=False, name="pruned",
               customdata=[zeros],
               hovertemplate="pruned (|w| = 0): %{customdata:,} weights (a count, not per ¼ octave)<extra></extra>"),
        go.Bar(x=mids, y=per_quarter, width=right - left, marker_color=QUANTITY_COLOURS["kept weights"], showlegend=False, name="kept",
               customdata=np.stack([left, right, counts], axis=1),
               hovertemplate="|w| in [%{customdata[0]:.3g}, %{customdata[1]:.3g}): %{customdata[2]:.0f} weights"
                             "<extra></extra>"),
        go.Scatter(x=[thr, thr] if thr > 0 else [], y=[0.5, top * 2] if thr > 0 else [], mode="lines",
                   line={"color": QUANTITY_COLOURS["threshold"], "dash": "dash", "width": 2}, showlegend=False,
                   hovertemplate=f"threshold: smallest kept |w| = {thr:.4g}<extra></extra>"),
    ]


def story_figure(panels: list[tuple[str, Story, int]], name: str, height_per_row: int = 330) -> go.Figure:
    """One row per run: the mask-density picture of matrix ``name`` and the |w| histogram of its weights,
    each run drawn at its own snapshot index (the caller pairs them, :func:`kasp.training.weights_story.pair_index`).

    The histogram's grey bar at the left is the matrix's pruned weights (|w| = 0, a count); the
    (sky-blue) bars are the kept weights, counts per quarter octave of |w| (count x 0.25 / log2(right / left
    edge)), since the recorded bins are not all of the same log width (hovering shows the raw count);
    the dashed black line is the magnitude threshold. The count axis is logarithmic, so that the zeros
    (90 % of the matrix at 90 % sparsity) and the kept weights show together.

    No animation frames: the page moves the step (slider, Back / Next, Play) so that the address, the
    text and the schedule marker move with the pictures.

    Raises:
        ValueError: if ``panels`` is empty; KeyError: if a story lacks matrix ``name``.
    """
    if not panels:
        raise ValueError("story_figure needs at least one (label, story, snapshot) panel")
    rows = len(panels)
    titles = []
    for label, s, i in panels:
        # two short lines each, so that neighbouring titles never run into each other at 1024 px
        titles += [f"<b>{label}</b><br>step {s.steps[i]}: {s.sparsity[i] * 100:.1f} % pruned",
                   "|w|: kept (blue), pruned (grey, = 0),<br>threshold (dashed)"]
    fig = make_subplots(rows=rows, cols=2, column_widths=[0.4, 0.6], subplot_titles=titles,
                        horizontal_spacing=0.16, vertical_spacing=0.24 if rows > 1 else 0.1)
    for r, (_, s, i) in enumerate(panels):
        for n, tr in enumerate(_panel_traces(s, i, s.index(name), show_scale=r == 0, rows=rows)):
            fig.add_trace(tr, row=r + 1, col=1 if n == 0 else 2)
    zx, _ = pruned_bar_x(panels[0][1].edges)
    ticks = [zx] + [10.0 ** e for e in range(-4, 1, 2)]
    for r in range(1, rows + 1):
        fig.update_xaxes(type="log", title_text="|w| (log scale)", tickvals=ticks,
                         ticktext=["0 (pruned)"] + [f"{t:g}" for t in ticks[1:]], row=r, col=2)
        fig.update_yaxes(type="log", title_text="weights (per ¼ octave; log)", row=r, col=2)
        fig.update_yaxes(autorange="reversed", title_text="block row (output features)", row=r, col=1)
        fig.update_xaxes(title_text="block column (input features)", row=r, col=1)
    ref, i0 = panels[0][1], panels[0][2]
    fig.update_layout(title={"text": _title(ref, i0, name), "x": 0.0, "xanchor": "left"},
                      height=height_per_row * rows + (90 if rows == 1 else 170), margin={"t": 120, "r": 70}, bargap=0)
    fig.update_annotations(font_size=13)  # the panel titles fit a 1024-pixel projector
    return fig


def _title(story: Story, i: int, name: str) -> str:
    return f"{name} at step {story.steps[i]} ({story.phases[i]}): {story.sparsity[i] * 100:.1f} % of the weights pruned"
