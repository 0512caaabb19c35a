"""The live panel's "where your run lands" figure: plotly only, no Streamlit, no torch.

A student's finished prune run among the shipped sweep's points, with its own teacher as a second
reference line, so that a run of a shorter budget (the class recipe) is read against the teacher it
was distilled from, not only against the shipped sweep's teacher.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go

from kasp.ui.figures import METHOD_COLOURS, accuracy_sparsity_figure

YOUR_RUN = "your run"


def your_run_figure(ctx: dict[str, Any], curve, metric_name: str, task: str, height: int = 420) -> go.Figure:
    """Dev metric against sparsity: the shipped points of ``curve`` (:func:`kasp.ui.curves.curve_data`; live runs
    other than this one left out), this run as a large marker (source "your run"), the shipped sweep's teacher
    (grey dashed) and this run's own teacher (dashed, in the run's method colour).

    Args:
        ctx: :func:`kasp.ui.curves.your_run_context` of the run.
    """
    pts = curve.points
    pts = pts[pts["source"] != "live run"] if len(pts) else pts
    if ctx["metric"] is not None and ctx["sparsity"] is not None:
        mine = pd.DataFrame([{"method": ctx["method"], "nominal": float("nan"), "sparsity": ctx["sparsity"],
                              "metric": ctx["metric"], "spread": 0.0, "n": 1, "wall_min": float("nan"),
                              "source": YOUR_RUN, "label": f"{ctx['id']}, {ctx['steps']} steps", "note": None}])
        pts = pd.concat([pts, mine], ignore_index=True) if len(pts) else mine
    fig = accuracy_sparsity_figure(pts, curve.teacher, curve.published, metric_name, task, height=height)
    colour = METHOD_COLOURS.get(ctx["method"], "#000000")
    for tr in fig.data:  # this run: larger and outlined, so it is found at once
        if tr.name and tr.name.endswith(f"({YOUR_RUN})"):
            tr.marker.size = 16
            tr.marker.line = {"color": "black", "width": 2}
            tr.name = f"{YOUR_RUN}: {ctx['id']}"
    t = ctx["teacher"]
    if t["metric"] is not None:
        v = t["metric"] * 100
        fig.add_trace(go.Scatter(x=[0, 100], y=[v, v], mode="lines", name=f"your run's teacher {v:.2f} ({t['id']})",
                                 line={"color": colour, "dash": "dash", "width": 2}, hoverinfo="name"))
        lo, hi = fig.layout.yaxis.range
        if not lo <= v <= hi:
            span = hi - lo
            fig.update_yaxes(range=[min(lo, v - 0.08 * span), max(hi, v + 0.08 * span)])
    fig.update_layout(title=f"Where your run lands: {fig.layout.title.text}" if fig.layout.title.text else None)
    return fig
