"""Plotly figures shared by several app pages (plotly only: no Streamlit, no torch)."""

from __future__ import annotations

import plotly.graph_objects as go

from kasp.checkpoint import sparsity_grid


def sparsity_heatmap(per_matrix: dict[str, float], height: int = 360) -> go.Figure:
    """Layers x (Q, K, V, O, FFN-in, FFN-out) heat map of the percentage of zero weights.

    Args:
        per_matrix: "<layer>.<kind>" -> fraction of zeros (as in a run report or ``inspect_checkpoint``).
    """
    layers, kinds, grid = sparsity_grid(per_matrix)
    fig = go.Figure(go.Heatmap(z=[[v * 100 for v in r] for r in grid], x=kinds, y=[f"layer {i}" for i in layers],
                               zmin=0, zmax=100, colorscale="Blues", colorbar={"title": "% zeros"},
                               text=[[f"{v * 100:.1f}" for v in r] for r in grid], texttemplate="%{text}"))
    fig.update_layout(title="Per-matrix sparsity (% of weights that are zero)", xaxis_title="matrix",
                      yaxis_title="encoder layer", yaxis_autorange="reversed", height=height)
    return fig
