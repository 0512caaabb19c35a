"""Plotly figures of the weights' story (:mod:`kasp.weights_story`): plotly only, no Streamlit, no torch."""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from kasp.schedule import cubic_sparsity
from kasp.weights_story import Story


def _panel_traces(story: Story, i: int, k: int, show_scale: bool) -> list[go.BaseTraceType]:
    """Heat map of the density picture, histogram bars and the threshold line of matrix ``k`` at snapshot ``i``."""
    d = story.density[i][k] * 100
    edges = story.edges.astype(float)
    counts = story.hist[i, k]
    lo = edges[1] / 2  # bin 0 starts at 0: draw it from half its upper edge on the log axis
    left = np.concatenate([[lo], edges[1:-1]])
    right = np.concatenate([edges[1:-1], [edges[-2] * 2]])
    mids = np.sqrt(left * right)
    per_quarter = counts * 0.25 / np.log2(right / left)  # bins differ in log width: plot density per 1/4 octave
    thr = float(story.threshold[i, k])
    top = max(float(per_quarter.max()), 1.0)
    return [
        go.Heatmap(z=d, zmin=0, zmax=100, colorscale="Viridis", showscale=show_scale,
                   colorbar={"title": "% kept", "len": 0.6, "thickness": 12, "x": 0.345, "xanchor": "left", "y": 1.0,
                             "yanchor": "top"}
                   if show_scale else None,
                   hovertemplate="block row %{y}, col %{x}: %{z:.0f} % kept<extra></extra>"),
        go.Bar(x=mids, y=per_quarter, width=right - left, marker_color="#4a7ab5", showlegend=False,
               customdata=np.stack([left, right, counts], axis=1),
               hovertemplate="|w| in [%{customdata[0]:.3g}, %{customdata[1]:.3g}): %{customdata[2]:.0f} weights"
                             "<extra></extra>"),
        go.Scatter(x=[thr, thr] if thr > 0 else [], y=[0, top * 1.05] if thr > 0 else [], mode="lines",
                   line={"color": "#d62728", "dash": "dash", "width": 2}, showlegend=False,
                   hovertemplate=f"threshold: smallest kept |w| = {thr:.4g}<extra></extra>"),
    ]


def story_figure(panels: list[tuple[str, Story]], name: str, step: int, height_per_row: int = 330) -> go.Figure:
    """One row per run: the mask-density picture of matrix ``name`` and the |w| histogram of its kept
    weights with the magnitude threshold (dashed red), drawn at the last snapshot at or before ``step``.
    Bar heights are counts per quarter octave of |w| (count x 0.25 / log2(right / left edge)), since
    the recorded bins are not all of the same log width; hovering shows the raw count.

    The figure carries one animation frame per snapshot of the first run (the others at their nearest
    snapshot at or before the same step) and Play / Pause buttons, so the browser animates the run.

    Raises:
        ValueError: if ``panels`` is empty; KeyError: if a story lacks matrix ``name``.
    """
    if not panels:
        raise ValueError("story_figure needs at least one (label, story) panel")
    rows = len(panels)
    ref = panels[0][1]
    titles = []
    for label, s in panels:
        titles += [f"<b>{label}</b>: % of weights kept per block", f"<b>{label}</b>: |w| of the kept weights, threshold dashed"]
    fig = make_subplots(rows=rows, cols=2, column_widths=[0.4, 0.6], subplot_titles=titles,
                        horizontal_spacing=0.17, vertical_spacing=0.16 if rows > 1 else 0.1)

    def traces_at(t: int) -> list[go.BaseTraceType]:
        out = []
        for r, (_, s) in enumerate(panels):
            out += _panel_traces(s, s.nearest(t), s.index(name), show_scale=r == 0)
        return out

    for n, tr in enumerate(traces_at(step)):
        fig.add_trace(tr, row=n // 3 + 1, col=1 if n % 3 == 0 else 2)
    fig.frames = [go.Frame(data=traces_at(int(t)), name=str(int(t)),
                           layout={"title": {"text": _title(ref, ref.nearest(int(t)), name)}}) for t in ref.steps]
    for r in range(1, rows + 1):
        fig.update_xaxes(type="log", title_text="|w| (log scale)", row=r, col=2)
        fig.update_yaxes(title_text="weights per ¼ octave", row=r, col=2)
        fig.update_yaxes(autorange="reversed", title_text="block row (output features)", row=r, col=1)
        fig.update_xaxes(title_text="block column (input features)", row=r, col=1)
    play = {"type": "buttons", "direction": "left", "x": 1.0, "y": 1.0 + 0.16 / rows, "xanchor": "right",
            "yanchor": "bottom", "showactive": False,
            "buttons": [{"label": "▶ Play", "method": "animate",
                         "args": [None, {"frame": {"duration": 350, "redraw": True}, "fromcurrent": True,
                                         "transition": {"duration": 0}}]},
                        {"label": "❚❚ Pause", "method": "animate",
                         "args": [[None], {"frame": {"duration": 0, "redraw": False}, "mode": "immediate"}]}]}
    fig.update_layout(title={"text": _title(ref, ref.nearest(step), name), "x": 0.0, "xanchor": "left"}, updatemenus=[play],
                      height=height_per_row * rows + 90, margin={"t": 110}, bargap=0)
    return fig


def _title(story: Story, i: int, name: str) -> str:
    return f"{name} at step {story.steps[i]} ({story.phases[i]}): {story.sparsity[i] * 100:.1f} % of the weights pruned"


def schedule_figure(target: float, total_steps: int, step: int, evals: list[dict[str, Any]] | None = None,
                    metric: str = "accuracy", height: int = 330) -> go.Figure:
    """The cubic schedule ``s_t = s_f (1 - (1 - t/T)^3)`` (Zhu & Gupta 2017, eq. 1) with ``step``
    marked, and the dev metric of ``evals`` (progress records with ``step`` and ``metrics``) up to
    ``step`` on a second axis.

    Raises:
        ValueError: if ``total_steps`` <= 0 (from :func:`kasp.schedule.cubic_sparsity`).
    """
    ts = np.linspace(0, total_steps, 201)
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=ts, y=[cubic_sparsity(t, total_steps, target) * 100 for t in ts],
                             name="scheduled sparsity (%)", line={"color": "#4a7ab5"}))
    now = cubic_sparsity(step, total_steps, target) * 100
    fig.add_trace(go.Scatter(x=[step], y=[now], mode="markers", marker={"size": 13, "color": "#d62728"},
                             name=f"step {step}: {now:.1f} %"))
    shown = [e for e in (evals or []) if e["step"] <= step and isinstance(e.get("metrics"), dict)
             and isinstance(e["metrics"].get(metric), (int, float))]  # an undefined value is a gap, never 0
    if shown:
        fig.add_trace(go.Scatter(x=[e["step"] for e in shown], y=[e["metrics"][metric] * 100 for e in shown],
                                 mode="lines+markers", name=f"dev {metric} (%)", line={"color": "#2ca02c"}),
                      secondary_y=True)
    fig.add_vline(x=step, line_dash="dot", line_color="gray")
    fig.update_xaxes(title_text="optimizer step", range=[0, total_steps])
    fig.update_yaxes(title_text="sparsity (%)", range=[0, 100], secondary_y=False)
    fig.update_yaxes(title_text=f"dev {metric} (%)", secondary_y=True, showgrid=False)
    fig.update_layout(title="Cubic schedule and the dev metric so far", height=height,
                      legend={"orientation": "h", "y": -0.25})
    return fig
