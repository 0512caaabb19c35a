"""Plotly figures of the app's pages (plotly and pandas only: no Streamlit).

Every builder takes plain data (DataFrames from :mod:`kasp.ui.tables` and :mod:`kasp.ui.curves`, lists, arrays) and returns a
``plotly.graph_objects.Figure`` whose title and axis titles name the task by its GLUE name and the
task's own metric, so that the pages only lay figures out.
"""

from __future__ import annotations

from typing import Any, Sequence

import math

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from kasp.spec.methods import METHODS, REFERENCE
from kasp.spec.pruned_set import sparsity_grid
from kasp.ui.style import (COMPRESSION_TICKS, METHOD_COLOURS, METHOD_LABELS, QUANTITY_COLOURS, method_colour,  # noqa: F401
                        method_label, source_symbol, sparsity_tick_text)
from kasp.spec.tasks import get_task, metric_axis, metric_label, task_name

SPARSITY_AXIS = "sparsity (% of encoder linear weights that are zero) and compression (×)"


def sparsity_axis(fig: go.Figure, lo: float = -2.0, hi: float = 100.0, row: int | None = None, col: int | None = None,
                  title: str = SPARSITY_AXIS, compression: bool = False, data=None, min_gap: float = 0.07) -> go.Figure:
    """Label ``fig``'s sparsity axis with the compression each sparsity means ("90 %" over "×10").

    ``compression=False``: x is the sparsity in % on a linear axis, ticks at 0, 50, 80 and 90 % (95 % would
    crowd 90 % at projector width). ``compression=True``: x is the compression 1 / (1 − s) on a log axis
    (x values from :func:`xpos`), ticks ×1 to ×33, which spreads out the high sparsities where the methods
    differ and shows the paper's 20× (95 %). ``data``: the sparsities (fractions) drawn; when given, the ticks
    are exactly those, to the whole percent (and 0 when the axis starts there), so that every point has its tick
    and no tick is empty; a tick closer than ``min_gap`` (a fraction of the axis's span) to the one before it is
    left out so that labels never overlap, except 90 %, the lesson's sparsity, which then replaces its neighbour
    (give a larger ``min_gap`` for a half-width chart)."""
    # whole percents: a small dense model's 90.05 % shares the tick of 90 %
    chosen = sorted({round(float(t), 2) for t in data if t == t}) if data is not None and len(data) else None
    if compression:
        ticks = chosen or [t for t in COMPRESSION_TICKS + (0.97,) if t < 0.99]
        fig.update_xaxes(type="log", range=[math.log10(0.9), math.log10(40)], tickvals=[xpos(t * 100, True) for t in ticks],
                         ticktext=[_compression_tick(t) for t in ticks], tickangle=0, title_text=COMPRESSION_AXIS,
                         row=row, col=col)
        return fig
    ticks = [t for t in COMPRESSION_TICKS if lo <= t * 100 <= hi and t != 0.95] if chosen is None else (
        sorted({0.0} | set(chosen)) if lo <= 0 else chosen)
    ticks = _spaced([t for t in ticks if lo <= t * 100 <= hi], min_gap * (hi - lo) / 100)
    fig.update_xaxes(range=[lo, hi], tickvals=[t * 100 for t in ticks], ticktext=[sparsity_tick_text(t) for t in ticks],
                     tickangle=0, title_text=title, row=row, col=col)
    return fig


COMPRESSION_AXIS = "compression of encoder linear weights (×, log scale) and sparsity"


def _spaced(ticks: list[float], gap: float) -> list[float]:
    """``ticks`` (sorted fractions) without those closer than ``gap`` to the previous kept one; 0.9 always stays."""
    kept: list[float] = []
    for t in ticks:
        if kept and t - kept[-1] < gap - 1e-9:
            if t == 0.9:
                kept[-1] = t
            continue
        kept.append(t)
    return kept


def _compression_tick(s: float) -> str:
    return "×1<br>dense" if s == 0 else f"×{round(1 / (1 - s)):d}<br>{s * 100:g} %"


def xpos(sparsity_pct, compression: bool = False):
    """The x position of a sparsity (in %) on the sparsity axis, or on the compression axis (1 / (1 − s))."""
    if not compression:
        return sparsity_pct
    s = np.clip(np.asarray(sparsity_pct, dtype=float) / 100, 0.0, 0.99)
    out = 1.0 / (1.0 - s)
    return float(out) if out.ndim == 0 else out


def token_labels(tokens: list[str]) -> list[str]:
    """Axis labels for per-token heat maps: each token with its position ("the·1", ..., "the·5"), so that
    repeated tokens keep their own row and column (plotly merges equal category labels)."""
    return [f"{t}·{i}" for i, t in enumerate(tokens)]


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


def schedule_figure(curve: pd.DataFrame, points: pd.DataFrame, height: int = 380, step: int | None = None,
                    evals: list[dict[str, Any]] | None = None, task: str | None = None, initial: float = 0.0,
                    recovery: float = 0.0) -> go.Figure:
    """The cubic schedule s_t (Zhu & Gupta 2017, eq. 1) and its mask-update steps, from
    :func:`kasp.ui.curves.schedule_frame` (the Overview); with ``step`` (the Weights page), that step is
    marked and the dev metric of ``task`` in ``evals`` (progress records with ``step`` and ``metrics``)
    up to it is drawn on a second axis (an undefined value is a gap, never 0). ``initial`` (s_i, a fraction)
    and ``recovery`` (the fraction of the run after the ramp R) are the schedule's, for its title's formula.

    Axes: optimizer step; sparsity (% of encoder linear weights); dev metric (:func:`metric_axis`).
    """
    from plotly.subplots import make_subplots

    fig = make_subplots(specs=[[{"secondary_y": True}]]) if step is not None else go.Figure()
    fig.add_trace(go.Scatter(x=curve["step"], y=curve["sparsity"] * 100, mode="lines", name="schedule s_t",
                             line={"color": QUANTITY_COLOURS["schedule"], "dash": "dot"}))
    fig.add_trace(go.Scatter(x=points["step"], y=points["sparsity"] * 100, mode="markers", name="mask updates",
                             marker={"size": 5, "color": QUANTITY_COLOURS["sparsity"]}))
    s_i = f"{initial * 100:g} %" if initial else "0"
    title = (f"Cubic schedule: s_t = s_f + ({s_i} − s_f)(1 − t/T)³ (Zhu & Gupta 2017)" if not recovery else
             f"Cubic schedule: s_t = s_f + ({s_i} − s_f)(1 − t/R)³ until R = {1 - recovery:.0%} of the steps, "
             "then s_f (recovery)")
    if step is None:
        fig.update_layout(title=title, xaxis_title="optimizer step", yaxis_title="sparsity (% of encoder linear weights)",
                          height=height)
        return fig
    total = int(curve["step"].max())
    now = float(np.interp(step, curve["step"], curve["sparsity"])) * 100
    fig.add_trace(go.Scatter(x=[step], y=[now], mode="markers", marker={"size": 13, "color": QUANTITY_COLOURS["marker"]},
                             name=f"step {step}: {now:.1f} %"))
    main = get_task(task).main_metric if task else "accuracy"
    shown = [e for e in (evals or []) if e["step"] <= step and isinstance(e.get("metrics"), dict)
             and isinstance(e["metrics"].get(main), (int, float))]
    axis = metric_axis(task) if task else "dev accuracy (%)"
    if shown:
        fig.add_trace(go.Scatter(x=[e["step"] for e in shown], y=[e["metrics"][main] * 100 for e in shown],
                                 mode="lines+markers", name=axis, line={"color": QUANTITY_COLOURS["dev metric"]}),
                      secondary_y=True)
    fig.add_vline(x=step, line_dash="dot", line_color="gray")
    fig.update_xaxes(title_text="optimizer step", range=[0, total])
    fig.update_yaxes(title_text="sparsity (%)", range=[0, 100], secondary_y=False)
    fig.update_yaxes(title_text=axis, secondary_y=True, showgrid=False, range=[0, 100])
    fig.update_layout(title="Cubic schedule and the dev metric so far", height=height,
                      legend={"orientation": "h", "y": -0.42, "yanchor": "top"}, margin={"b": 120})
    return fig


def loss_figure(train: pd.DataFrame, terms: Sequence[str], height: int = 320) -> go.Figure:
    """Each logged loss term against the step (log scale) for the live panel."""
    mode = "lines+markers" if len(train) < 30 else "lines"
    pal = QUANTITY_COLOURS["loss"]
    fig = go.Figure([go.Scatter(x=train["step"], y=train[t], name=t, mode=mode, line={"color": pal[i % len(pal)]})
                     for i, t in enumerate(terms)])
    fig.update_layout(title="Loss terms (live run)", xaxis_title="optimizer step", yaxis_title="loss (log scale)",
                      yaxis_type="log", height=height, margin={"t": 40})
    return fig


def live_sparsity_figure(curve: pd.DataFrame, train: pd.DataFrame, height: int = 320) -> go.Figure:
    """The masks' measured sparsity against the cubic schedule it follows (prune runs only)."""
    mode = "lines+markers" if len(train) < 30 else "lines"
    fig = go.Figure([go.Scatter(x=curve["step"], y=curve["sparsity"] * 100, name="cubic schedule s_t",
                                line={"dash": "dot", "color": QUANTITY_COLOURS["schedule"]}),
                     go.Scatter(x=train["step"], y=train["sparsity"] * 100, name="masks, measured (live run)", mode=mode,
                                line={"color": QUANTITY_COLOURS["sparsity"]})])
    fig.update_layout(title="Sparsity against its schedule (live run)", xaxis_title="optimizer step",
                      yaxis_title="sparsity (%)", yaxis_range=[0, 100], height=height, margin={"t": 40})
    return fig


def dev_metric_figure(evals: pd.DataFrame, task: str, height: int = 320) -> go.Figure:
    """The periodic dev metric of a live run against the step."""
    m = evals.columns[evals.columns.isin([_main(task)])]
    fig = go.Figure([go.Scatter(x=evals["step"], y=evals[c] * 100, mode="lines+markers", name=metric_label(task),
                                line={"color": QUANTITY_COLOURS["dev metric"]}) for c in m])
    fig.update_layout(title=f"{task_name(task)}: dev {metric_label(task)} (live run)", xaxis_title="optimizer step",
                      yaxis_title=metric_axis(task), height=height, margin={"t": 40})
    return fig


def training_curves(train: pd.DataFrame, evals: pd.DataFrame, task: str, height: int = 460) -> go.Figure:
    """Sparsity (or, for a run that prunes nothing, the training loss) and dev metric over one run's training
    (Results): two panels sharing the step axis, so that each has its own honest axis (sparsity 0-100 %; the
    metric in its own unit, from the task's floor, always answering the majority class, or 0 for a correlation,
    to just above the best value: a dip of a few points is then drawn against all that training achieved and
    does not look like a collapse)."""
    from plotly.subplots import make_subplots

    has_metric = not evals.empty and _main(task) in evals and evals[_main(task)].notna().any()
    prunes = "sparsity" in train and bool((train["sparsity"].fillna(0) > 0).any())
    fig = make_subplots(rows=2 if has_metric else 1, cols=1, shared_xaxes=True, vertical_spacing=0.08)
    if prunes or "loss" not in train:
        fig.add_trace(go.Scatter(x=train["step"], y=train["sparsity"] * 100, name="sparsity (%)", mode="lines",
                                 line={"color": QUANTITY_COLOURS["sparsity"]}), row=1, col=1)
        fig.update_yaxes(title_text="sparsity (%)", range=[0, 100], row=1, col=1)
    else:  # a teacher's fine-tuning: nothing is pruned, so its loss tells how training goes
        fig.add_trace(go.Scatter(x=train["step"], y=train["loss"], name="training loss", mode="lines",
                                 line={"color": QUANTITY_COLOURS["loss"][0]}), row=1, col=1)
        fig.update_yaxes(title_text="training loss (log scale)", type="log", row=1, col=1)
    if has_metric:
        ys = evals[_main(task)].dropna() * 100
        fig.add_trace(go.Scatter(x=evals["step"], y=evals[_main(task)] * 100, name=metric_axis(task),
                                 mode="lines+markers", line={"color": QUANTITY_COLOURS["dev metric"]}), row=2, col=1)
        from kasp.ui.devset import majority_metric

        floor = majority_metric(task) if get_task(task).main_metric == "accuracy" else 0.0
        lo = min(100 * (floor or 0.0), float(ys.min()))
        fig.update_yaxes(title_text=metric_axis(task), range=[lo - 2, min(100.0, float(ys.max()) + 3)], row=2, col=1)
    fig.update_xaxes(title_text="optimizer step", row=2 if has_metric else 1, col=1)
    first = "Sparsity" if prunes or "loss" not in train else "Training loss"
    fig.update_layout(title=f"{first} and dev {metric_label(task)} over training" if has_metric
                      else f"{first} over training", height=height, legend={"orientation": "h", "y": -0.18})
    return fig


def retention_scatter(df: pd.DataFrame, y: str, height: int = 420) -> go.Figure:
    """A retention measure ("attention similarity" or "CKA") of each student against sparsity (Attention):
    colour = method, marker = source (:mod:`kasp.ui.style`), the y axis from where the values are."""
    fig = go.Figure()
    d = df[df[y].notna()] if len(df) else df
    for (method, source), g in d.groupby(["method", "source"], sort=False):
        fig.add_trace(go.Scatter(
            x=g["sparsity (%)"], y=g[y], mode="markers", name=f"{method_label(method)} ({source})",
            marker={"color": method_colour(method), "symbol": source_symbol(source), "size": 11,
                    "line": {"width": 1, "color": "white"}},
            hovertext=[f"{method_label(method)}, {source}<br>{r}<br>sparsity {x:.1f} %<br>{y} {v:.3f}"
                       + ("" if a != a else f"<br>agreement {a:.1f} %")
                       for r, x, v, a in zip(g["run"], g["sparsity (%)"], g[y], g["agreement (%)"])],
            hoverinfo="text"))
    # the legend below the axis title: one line an entry when the column is narrow (two charts side by side)
    n = d.groupby(["method", "source"]).ngroups if len(d) else 0
    plot, below = max(height - 180, 200), 96 + 20 * max(n, 1)
    fig.update_layout(title=f"{y[0].upper() + y[1:]} with the teacher", yaxis_title=f"{y} (1 = as the teacher)",
                      height=50 + plot + below, legend={"orientation": "h", "y": -88 / plot, "yanchor": "top"},
                      margin={"b": below, "t": 50})
    xs = d["sparsity (%)"].dropna() if len(d) else []
    lo = -2.0 if not len(xs) else max(-2.0, math.floor((float(min(xs)) - 8) / 10) * 10)  # from where the data start
    return sparsity_axis(fig, lo=lo, title="sparsity (%) and compression (×)", data=[x / 100 for x in xs], min_gap=0.14)


def head_heatmap(values: Sequence[Sequence[float]], title: str, colorbar: str, colorscale: str = "Viridis",
                 zrange: tuple[float, float] | None = (0.0, 1.0), height: int = 380) -> go.Figure:
    """Layers x heads heat map of a per-head retention measure (attention similarity, score MSE)."""
    z = np.asarray(values, dtype=float)
    fig = go.Figure(go.Heatmap(z=z, x=[f"h{h}" for h in range(z.shape[1])], y=[f"layer {i}" for i in range(z.shape[0])],
                               colorscale=colorscale, colorbar={"title": colorbar},
                               **({"zmin": zrange[0], "zmax": zrange[1]} if zrange else {})))
    fig.update_layout(title=title, xaxis_title="head", yaxis_title="layer", yaxis_autorange="reversed", height=height)
    return fig


def _layer_names(n_layers: int, embeddings: bool = False) -> list[str]:
    """Category labels of per-layer bars, as the Attention page names layers elsewhere (the heat maps' rows, its
    Layer box: "layer 0" first): "layer 0", ..., with "embeddings" first when ``embeddings`` (the hidden states:
    the embedding output, then each layer's output). Words, not digits, so that plotly never reads the axis as
    numbers (which drops a non-numeric "emb." and shifts every bar)."""
    return (["embeddings"] if embeddings else []) + [f"layer {i}" for i in range(n_layers)]


def layer_similarity_figure(similarity: Sequence[float], height: int = 320) -> go.Figure:
    """Attention similarity with the teacher per layer (1 − JS, mean over heads and real queries): the shipped
    runs' summary, where the per-head map of a live measurement is not kept."""
    fig = go.Figure(go.Bar(x=_layer_names(len(similarity)), y=list(similarity),
                           marker_color=QUANTITY_COLOURS["retention"]))
    fig.update_layout(title="Attention similarity per layer", xaxis_title="encoder layer", xaxis_type="category",
                      yaxis_title="1 − JS (1 = same distribution)", yaxis_range=[0, 1], height=height)
    return fig


def cka_figure(cka: Sequence[float], height: int = 320) -> go.Figure:
    """Linear CKA (Kornblith et al. 2019) of the student's and teacher's hidden states, one bar per hidden state:
    ``cka[0]`` the embedding output, ``cka[i]`` the output of layer i − 1 (:class:`kasp.analysis.retention.Retention`;
    the shipped sweeps store it alike). A category axis, so that every hidden state keeps its bar."""
    fig = go.Figure(go.Bar(x=_layer_names(len(cka) - 1, embeddings=True), y=list(cka),
                           marker_color=QUANTITY_COLOURS["retention"]))
    fig.update_layout(title="Linear CKA per hidden state", xaxis_title="output of", xaxis_type="category",
                      yaxis_title="CKA (1 = same up to rotation and scale)", yaxis_range=[0, 1], height=height)
    return fig


def attention_heatmap(attention: np.ndarray, tokens: list[str], title: str, height: int | None = None) -> go.Figure:
    """One head's attention map, one row (query) and one column (key) per token.

    Args:
        attention: [T, T] post-softmax weights (rows sum to 1).
        tokens: the T tokens; labelled with their position (:func:`token_labels`) so that a
            repeated token keeps its own row and column.

    Raises:
        ValueError: when the map is not T x T.
    """
    a = np.asarray(attention, dtype=float)
    if a.shape != (len(tokens), len(tokens)):
        raise ValueError(f"attention map {a.shape} does not match {len(tokens)} tokens")
    labels = token_labels(tokens)
    fig = go.Figure(go.Heatmap(z=a, x=labels, y=labels, zmin=0, zmax=1, colorscale="Blues", colorbar={"title": "weight"}))
    fig.update_layout(title=title, xaxis_title="attended token (key)", yaxis_title="token (query)",
                      yaxis_autorange="reversed", height=height or max(420, 160 + 18 * len(tokens)))
    fig.update_xaxes(type="category", tickangle=-60)
    fig.update_yaxes(type="category")
    return fig


def _main(task: str) -> str:
    from kasp.data.glue import get_task

    return get_task(task).main_metric


# --- accuracy against sparsity (issue 15) -----------------------------------------------------------
#: the y-range spans at least this many metric points ...
MIN_SPAN_POINTS = 4.0
#: ... and at least this many times the largest seed spread shown
SPREAD_SPAN_FACTOR = 6.0

def curve_y_range(values: list[float], spreads: list[float]) -> tuple[float, float]:
    """A y-range (metric points) that holds every value and does not exaggerate small differences.

    The span is at least max(:data:`MIN_SPAN_POINTS`, :data:`SPREAD_SPAN_FACTOR` x the largest
    spread), centred on the data, plus 8 % margins; so a difference smaller than the seed spread
    covers at most 1/6 of the chart.
    """
    if not values:
        return 0.0, 100.0
    lo, hi = min(values), max(values)
    span = max(hi - lo, MIN_SPAN_POINTS, SPREAD_SPAN_FACTOR * max(spreads or [0.0]))
    mid = (lo + hi) / 2
    return mid - span / 2 - 0.08 * span, mid + span / 2 + 0.08 * span


def accuracy_sparsity_figure(points, teacher: tuple[float, str] | None = None, published=None,
                             metric_name: str = "accuracy", task: str = "", height: int = 480,
                             baseline: float | None = None, compression: bool = False):
    """Dev metric against sparsity: one line per method (mean over seeds, error bars = seed range),
    the dense teacher as a reference line, and the paper's figures as a separate series.

    Args:
        points: DataFrame with columns method, sparsity (fraction of encoder linear weights that are
            zero; for small-dense the sparsity its size equals), metric (fraction), spread (fraction,
            half the seed range; 0 for one run), n (seeds), source, label (recipe or run id).
            Lines join the points of one (method, source) when it has several sparsities.
        teacher: (metric fraction, where it comes from) of the dense teacher, or None.
        published: DataFrame with method, sparsity, metric (fractions), e.g.
            :func:`kasp.ui.tables.published_frame` renamed; drawn as grey stars, labelled as the paper's.
        metric_name: the task's GLUE metric name for the axis.
        baseline: the metric (fraction) of always answering the dev set's majority class
            (:func:`kasp.ui.devset.majority_baseline`), drawn as a dotted line when it falls inside the
            y-range the results set (it never widens the axis).

    Labels sit only in the legend and hover texts (no annotations), so they never overlap.
    Colours: :data:`METHOD_COLOURS`.
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    ys: list[float] = []
    spreads: list[float] = []
    span = [0.9, 40] if compression else [0, 100]  # the reference lines cross the whole axis
    if points is not None and len(points):
        points = points[points["metric"].notna()]  # an undefined metric is a gap (curve_notes says why), never 0
    if points is not None and len(points):
        for (method, source), g in points.sort_values("sparsity").groupby(["method", "source"], sort=False):
            spread = g["spread"].fillna(0.0) * 100 if "spread" in g else None
            n = g["n"] if "n" in g else [1] * len(g)
            y = g["metric"] * 100
            ys += list(y + (spread if spread is not None else 0)) + list(y - (spread if spread is not None else 0))
            spreads += list(spread) if spread is not None else []
            hover = [f"{method_label(method)}, {source}<br>sparsity {x * 100:.1f} %<br>"
                     f"{metric_name} {v * 100:.2f}" + (f" ± {s * 100:.2f} over {k} seeds" if k > 1 else " (one run)")
                     + (f"<br>{note}" if isinstance(note, str) and note else "") + f"<br>{lab}"
                     for x, v, s, k, lab, note in zip(g["sparsity"], g["metric"], g.get("spread", [0.0] * len(g)).fillna(0.0),
                                                      n, g.get("label", [""] * len(g)), g.get("note", [None] * len(g)))]
            fig.add_trace(go.Scatter(
                x=xpos(g["sparsity"] * 100, compression), y=y, mode="lines+markers" if len(g) > 1 and "sweep" in source else "markers",
                name=f"{method_label(method)} ({source})", legendgroup=method,
                marker={"color": method_colour(method), "size": 10, "symbol": source_symbol(source)},
                line={"color": method_colour(method)},
                error_y={"type": "data", "array": list(spread), "visible": True} if spread is not None and spread.any() else None,
                hovertext=hover, hoverinfo="text"))
    if published is not None and len(published):
        ys += list(published["metric"] * 100)
        fig.add_trace(go.Scatter(
            x=xpos(published["sparsity"] * 100, compression), y=published["metric"] * 100, mode="markers",
            name="published, BERT-base (Xu et al. 2021)", legendgroup="published", marker={"color": METHOD_COLOURS["published"], "size": 12,
                                                                 "symbol": source_symbol("published")},
            hovertext=[f"{m}: {v * 100:.1f} at {s * 100:.0f} % (Xu et al., NAACL 2021, BERT-base)"
                       for m, s, v in zip(published["method"], published["sparsity"], published["metric"])],
            hoverinfo="text"))
    if teacher is not None:
        value, source = teacher
        ys.append(value * 100)
        fig.add_trace(go.Scatter(x=span, y=[value * 100, value * 100], mode="lines",
                                 name=f"dense teacher {value * 100:.2f} ({source})", legendgroup="dense teacher",
                                 line={"color": METHOD_COLOURS["dense teacher"], "dash": "dash"}, hoverinfo="name"))
    lo, hi = curve_y_range(ys, spreads)
    if baseline is not None and lo <= baseline * 100 <= hi:
        fig.add_trace(go.Scatter(x=span, y=[baseline * 100] * 2, mode="lines",
                                 name=f"always the majority class {baseline * 100:.2f} (computed on the dev set)",
                                 legendgroup="majority class", line={"color": METHOD_COLOURS["published"], "dash": "dot"}, hoverinfo="name"))
    fig.update_layout(title=f"{task_name(task)}: dev {metric_name} against sparsity" if task else None, height=height,
                      yaxis_title=metric_axis(task) if task else f"dev {metric_name} (%)",
                      legend={"orientation": "h", "y": -0.3, "yanchor": "top"},
                      margin={"b": 170, "t": 50})
    xs = ([] if points is None or not len(points) else list(points["sparsity"])) + (
        [] if published is None or not len(published) else list(published["sparsity"]))
    x_lo = -2.0 if not xs or min(xs) < 0.4 else 40.0  # the sparsity axis starts where the data start
    sparsity_axis(fig, lo=x_lo, compression=compression, data=xs)
    fig.update_yaxes(range=[lo, hi])
    return fig


def _nominal(g):
    """The nominal sparsity of each row of ``g`` (a points frame): its "nominal" column, else its measured one."""
    return g["nominal"].astype(float).fillna(g["sparsity"].astype(float)) if "nominal" in g else g["sparsity"].astype(float)


def _at(points, method: str, nominal: float):
    """The (metric, spread, n) row of a method nearest to ``nominal`` sparsity (within 0.5 points), or None."""
    if points is None or not len(points):
        return None
    g = points[(points["method"] == method) & points["metric"].notna()]  # an undefined metric compares with nothing
    if not len(g):
        return None
    where = _nominal(g)
    d = (where - nominal).abs()
    if d.min() > 0.005:
        return None
    r = g.loc[d.idxmin()]
    return float(r["metric"]), float(r.get("spread", 0.0) or 0.0), int(r.get("n", 1) or 1)


def curve_notes(points) -> list[str]:
    """Lines for the points of an accuracy-against-sparsity chart whose metric carries a note
    (``note`` column of :func:`kasp.experiments.results.sweep_points`): a gap where the metric is undefined, or a
    value kept by GLUE's convention, e.g. "KASP at 90 % (precomputed sweep): 0.00 on all 2 seeds, by GLUE's
    convention: the student answered one class for every dev example, ... (2 of 2 seeds)." Empty when no point has a
    note."""
    if points is None or not len(points) or "note" not in points:
        return []
    out = []
    for _, r in points[points["note"].notna()].sort_values(["method", "sparsity"]).iterrows():
        if not isinstance(r["note"], str) or not r["note"]:
            continue
        where = f"{METHOD_LABELS.get(r['method'], r['method'])} at {r['sparsity'] * 100:.0f} % ({r['source']})"
        if r["metric"] != r["metric"]:
            out.append(f"{where}: not drawn, undefined ({r['note']})")
        else:
            spread = r.get("spread", 0.0)
            spread = 0.0 if spread != spread or spread is None else spread
            n = int(r.get("n", 1) or 1)
            value = f"{r['metric'] * 100:.2f}" + ("" if n < 2 else f" on all {n} seeds" if round(spread * 100, 2) == 0
                                                  else f" ± {spread * 100:.2f}")
            conv = "constant predictions: GLUE's convention"
            if r["note"].startswith(conv):  # "... (2 of 2 seeds)": say it in words
                seeds = r["note"][len(conv):].strip()
                out.append(f"{where}: {value}, by GLUE's convention: the student answered one class for every dev "
                           "example, where the correlation is undefined, and GLUE counts that as 0"
                           + (f" {seeds}" if seeds else "") + ".")
            else:
                out.append(f"{where}: {value} ({r['note']}).")
    return out


_CAPTION_NAMES = {m.name: m.caption_name for m in METHODS.values() if m.claim}
#: the paper's claims, by the method KASP is compared with (each method's record, kasp.spec.methods)
CLAIMS: dict[str, str] = {m.name: m.claim for m in METHODS.values() if m.claim}


def compare(k: tuple[float, float, int], o: tuple[float, float, int]) -> dict[str, Any]:
    """KASP (``k``) against another method (``o``), each (metric, half seed range, seeds) as fractions.

    Decided on the numbers as the caption prints them (x 100, two decimals), so that a reader can check
    every sentence against the printed values: ``diff`` = printed KASP - printed other, ``noise`` = the
    larger printed half-range. ``outcome``: "lead" (diff > noise), "trail" (diff < -noise), "tie" (within
    the spread), "same" (equal printed values), "one seed" (a side has one seed: spread unknown).
    """
    kv, ov = round(k[0] * 100, 2), round(o[0] * 100, 2)
    diff = round(kv - ov, 2)
    noise = round(max(k[1], o[1]) * 100, 2)
    if min(k[2], o[2]) < 2:
        outcome = "same" if diff == 0 else "one seed"
    elif diff == 0:
        outcome = "same"
    elif diff > noise:
        outcome = "lead"
    elif diff < -noise:
        outcome = "trail"
    else:
        outcome = "tie"
    return {"kasp": kv, "other": ov, "diff": diff, "noise": noise, "outcome": outcome, "seeds": min(k[2], o[2])}


def _verdict(c: dict[str, Any], name: str) -> str:
    d, n = abs(c["diff"]), c["noise"]
    if c["outcome"] == "same":
        return (f"KASP and the {name} score the same ({c['kasp']:.2f})" + (" on one seed" if c["seeds"] < 2 else
                f" on average, seed spread ±{n:.2f}: no winner" if n else " on every seed"))
    if c["outcome"] == "one seed":
        return f"KASP {'leads' if c['diff'] > 0 else 'trails'} the {name} by {d:.2f} points on one seed (spread unknown)"
    if c["outcome"] == "lead":
        return f"KASP leads the {name} by {d:.2f} points, more than the seed spread (±{n:.2f})"
    if c["outcome"] == "trail":
        return f"the {name} leads KASP by {d:.2f} points, more than the seed spread (±{n:.2f})"
    return f"KASP and the {name} differ by {d:.2f} points, no more than the seed spread (±{n:.2f}): no winner"


def caption_facts(points, at: float = 0.9, baseline: float | None = None, teacher: float | None = None,
                  teacher_at_chance: bool = False) -> dict[str, Any]:
    """What :func:`curve_caption` says at sparsity ``at``, as data: each method's value (x 100, printed), each
    comparison (:func:`compare`), whether the students learnt the task there (``learnt``: False when all
    are nearer the floor than the teacher, or KASP is not a point above the majority class, or
    ``teacher_at_chance``: the dense teacher itself is not significantly above the floor,
    :func:`kasp.ui.lesson.teacher_near_floor`, so no student can have learnt the task from it), and each of
    the paper's claims as "holds", "fails" or "open" (not decided by these numbers). A claim is judged
    only where the students learnt the task."""
    k = _at(points, REFERENCE, at)
    facts: dict[str, Any] = {"at": at, "kasp": k, "values": {}, "compare": {}, "claims": {}, "learnt": True}
    if k is None:
        return facts
    facts["values"][REFERENCE] = round(k[0] * 100, 2)
    for other in CLAIMS:
        o = _at(points, other, at)
        if o is not None:
            facts["values"][other] = round(o[0] * 100, 2)
            facts["compare"][other] = compare(k, o)
    vals = [k[0]] + [o[0] for o in (_at(points, m, at) for m in CLAIMS) if o is not None]
    facts["collapsed"] = bool(_collapse_note(vals, teacher, baseline, ""))
    facts["at_floor"] = bool(_baseline_note(k[0], baseline, "", ""))
    facts["teacher_at_chance"] = bool(teacher_at_chance)
    facts["learnt"] = not (facts["collapsed"] or facts["at_floor"] or facts["teacher_at_chance"])
    for other, c in facts["compare"].items():
        facts["claims"][other] = ("open" if not facts["learnt"] or c["outcome"] not in ("lead", "trail")
                                  else "holds" if c["outcome"] == "lead" else "fails")
    return facts


def curve_caption(points, metric_name: str = "accuracy", at: float = 0.9, baseline: float | None = None,
                  teacher: float | None = None, teacher_at_chance: bool = False) -> str:
    """One to three sentences on what to notice in :func:`accuracy_sparsity_figure`, from its numbers
    (:func:`caption_facts`), so that the caption cannot contradict itself or the chart.

    Compares KASP with the magnitude baseline and with the small dense model at sparsity ``at`` (the
    paper's two claims: distilling while pruning beats prune-then-fine-tune; a sparse model beats a
    small dense one with as many non-zero weights). A lead counts only when it is larger than the seed
    spread (the larger half-range of the two), on the printed numbers; with one seed the spread is
    unknown and the sentence says so. When the students have not learnt the task at ``at`` (every method
    nearer the floor, ``baseline`` or 0 for a correlation, than the dense ``teacher``; or KASP not a point
    above the majority class), no claim is judged there: the caption says so and goes on with the
    comparison at the highest lower sparsity where they did learn it. A claim is said to hold only when
    its lead is larger than the seed spread, and to fail only when the other method's lead is. With
    ``teacher_at_chance`` (the teacher itself not significantly above the majority class) no sparsity counts as
    learnt, and the caption says why.
    """
    f = caption_facts(points, at, baseline, teacher, teacher_at_chance)
    pct = f"{at * 100:g} %"
    if f["kasp"] is None:
        return (f"No KASP result at {pct} sparsity on this model yet: only what is plotted; run "
                "`kasp sweep` to fill the curve.")
    head = f"At {pct} sparsity, dev {metric_name}: KASP {f['values']['kasp']:.2f}" + "".join(
        f", {METHOD_LABELS[m]} {v:.2f}" for m, v in f["values"].items() if m != REFERENCE) + "."
    if not f["learnt"]:
        vals = [_at(points, m, at)[0] for m in (REFERENCE, *f["compare"])]
        if f["teacher_at_chance"]:
            floor = f" ({baseline * 100:.2f})" if baseline is not None else ""
            note = (f" The dense teacher itself{f' ({teacher * 100:.2f})' if teacher is not None else ''} is not clearly "
                    f"better than always answering the majority class{floor} on this dev set, so no student can have "
                    "learnt the task from it, at this sparsity or any other.")
        else:
            note = (_collapse_note(vals, teacher, baseline, pct)
                    or _baseline_note(f["kasp"][0], baseline, metric_name, pct))
        text = head + note
        if f["compare"]:
            text += " These numbers neither confirm nor refute the paper's claims."
        for lower in sorted((x for x in _kasp_sparsities(points) if x < at - 0.005), reverse=True):
            if caption_facts(points, lower, baseline, teacher, teacher_at_chance)["learnt"]:
                return text + " " + curve_caption(points, metric_name, at=lower, baseline=baseline, teacher=teacher)
        return text
    if not f["compare"]:
        return head + " No baseline at this sparsity to compare with yet."
    sentences = []
    for other, c in f["compare"].items():
        v = _verdict(c, _CAPTION_NAMES[other])
        if f["claims"][other] == "holds":
            v += f": {CLAIMS[other]}, as the paper claims"
        elif f["claims"][other] == "fails":
            v += f": here the paper's claim that {CLAIMS[other]} does not hold"
        sentences.append(v[0].upper() + v[1:] + ".")
    return head + " " + " ".join(sentences)


def _kasp_sparsities(points) -> list[float]:
    """The nominal sparsities (fractions) at which ``points`` has a KASP result."""
    g = points[points["method"] == REFERENCE]
    where = _nominal(g)
    return sorted({round(float(x), 4) for x in where})


def _collapse_note(values: list[float], teacher: float | None, baseline: float | None, pct: str) -> str:
    """A sentence when every value is nearer the floor (``baseline``, else 0) than the ``teacher``, else ""."""
    if teacher is None:
        return ""
    floor = 0.0 if baseline is None else baseline
    if teacher <= floor or max(values) > floor + (teacher - floor) / 2:
        return ""
    what = ("always answering the majority class" if baseline is not None
            else "a prediction unrelated to the gold answers")
    who, verdict = ("All of them are", "none has learnt") if len(values) > 1 else ("KASP is", "it has not learnt")
    return (f" {who} nearer to what {what} scores ({floor * 100:.2f}) than to the dense teacher's "
            f"{teacher * 100:.2f}: at {pct} and this budget {verdict} the task, so the differences here say "
            "little; compare the methods at the lower sparsities.")


def _baseline_note(kasp: float, baseline: float | None, metric_name: str, pct: str) -> str:
    if baseline is None or kasp - baseline >= 0.01:
        return ""
    return (f" Always answering the majority class scores {baseline * 100:.2f}: at {pct} and this budget KASP is "
            "not clearly better than that, so the comparison says little about what the student learnt.")


def parameter_groups_bar(parameters: dict[str, int], height: int = 260) -> go.Figure:
    """Horizontal bars of a checkpoint's parameters by group, in millions.

    Args:
        parameters: {"embeddings", "encoder_linear", "other"} -> count (``kasp.analysis.inspection.analyse``'s
            ``parameters``; groups as :func:`kasp.spec.pruned_set.parameter_group`).
    """
    groups = ["embeddings", "encoder linear (pruned set)", "other (biases, LayerNorm, pooler, head)"]
    values = [parameters[k] / 1e6 for k in ("embeddings", "encoder_linear", "other")]
    fig = go.Figure(go.Bar(x=values, y=groups, orientation="h"))
    fig.update_layout(title="Parameters by group (millions)", xaxis_title="parameters (M)", yaxis_title="",
                      height=height)
    return fig


def size_table(sizes: dict[str, float]):
    """The size report (``kasp.analysis.inspection.size_report``) as a table in MB (10^6 bytes): one row per format,
    columns "whole model (MB)" and "encoder linear (MB)"."""
    import pandas as pd

    keys = ("dense", "dense_zstd", "sparse_export", "bound")
    return pd.DataFrame({
        "format": ["dense safetensors", f"dense + zstd -{sizes['zstd_level']}", "KASP sparse export", "information bound"],
        "whole model (MB)": [sizes[k] / 1e6 for k in keys],
        "encoder linear (MB)": [sizes[k + "_encoder_linear"] / 1e6 for k in keys],
    })


def sizes_bar(sizes: dict[str, float], height: int = 360) -> go.Figure:
    """Grouped bars of :func:`size_table`: the bytes of this checkpoint's weights encoded in each format (measured
    by encoding them; only "dense safetensors" is a file on disk), whole model and encoder linear part."""
    table = size_table(sizes)
    fig = go.Figure([go.Bar(name=col, x=table["format"], y=table[col]) for col in table.columns[1:]])
    fig.update_layout(barmode="group", title="This checkpoint's weights encoded in each format (MB = 10⁶ bytes)",
                      xaxis_title="", yaxis_title="size (MB)", legend_title_text="part", height=height)
    return fig


def mark_x(fig: go.Figure, x: float, text: str) -> go.Figure:
    """The guided lesson's mark (:mod:`kasp.ui.lesson`): a purple dashed vertical line at ``x`` (the axis's own units:
    % sparsity, or compression on a compression axis) with ``text`` at its top. Returns ``fig``."""
    fig.add_vline(x=x, line_color=QUANTITY_COLOURS["lesson"], line_width=3, line_dash="dash", opacity=0.9)
    fig.add_annotation(x=x, y=1.0, yref="paper", text=text, showarrow=False, yanchor="bottom", xanchor="right",
                       bgcolor="rgba(255,255,255,0.85)", bordercolor=QUANTITY_COLOURS["lesson"], borderwidth=2,
                       font={"size": 13})
    return fig


def mark_point(fig: go.Figure, x: float, y: float, text: str) -> go.Figure:
    """The guided lesson's mark on one point: a purple ring at (``x``, ``y``) with an arrow and ``text``."""
    fig.add_trace(go.Scatter(x=[x], y=[y], mode="markers", showlegend=False, hoverinfo="skip",
                             marker={"size": 22, "color": "rgba(0,0,0,0)",
                                     "line": {"width": 3, "color": QUANTITY_COLOURS["lesson"]}}))
    fig.add_annotation(x=x, y=y, text=text, showarrow=True, arrowcolor=QUANTITY_COLOURS["lesson"], ax=60, ay=40,
                       bgcolor="rgba(255,255,255,0.9)", bordercolor=QUANTITY_COLOURS["lesson"], borderwidth=2,
                       font={"size": 13})
    return fig


#: the 2 x 2's bars: the loss term decides the colour (distillation as KASP's blue, task labels as the
#: magnitude baseline's vermillion: the two losses of the paper's two methods)
INGREDIENT_COLOURS = {"distillation": METHOD_COLOURS["kasp"], "task labels": METHOD_COLOURS["magnitude"]}


def ingredients_figure(cells: pd.DataFrame, teacher: float | None = None, metric: str = "accuracy",
                       height: int = 420) -> go.Figure:
    """The 2 x 2 of student start x loss (:func:`kasp.ui.tables.ingredient_cells`): per start, one point per loss
    at the mean dev metric (x 100) with the seed range as error bars (points, not bars: the y axis starts near
    the data, :func:`curve_y_range`, and a bar's length would exaggerate); the study's own teacher as a dashed line."""
    fig = go.Figure()
    for loss, shift in (("task labels", -0.12), ("distillation", 0.12)):
        g = cells[cells["loss"] == loss]
        xs = [(0 if s == "pre-trained" else 1) + shift for s in g["start"]]
        fig.add_trace(go.Scatter(x=xs, y=list(g["mean"]), mode="markers+text", name=f"loss: {loss}",
                                 marker={"color": INGREDIENT_COLOURS[loss], "size": 14, "symbol": "circle"},
                                 error_y={"type": "data", "array": list(g["spread"]), "visible": True},
                                 text=[f"{m:.2f}" for m in g["mean"]], textposition="middle right",
                                 hovertext=[f"{s} start, {loss}: {m:.2f} ± {sp:.2f} ({n} seeds), {line}"
                                            for s, m, sp, n, line in zip(g["start"], g["mean"], g["spread"], g["n"], g["line"])],
                                 hoverinfo="text"))
    ys = list(cells["mean"] - cells["spread"]) + list(cells["mean"] + cells["spread"])
    if teacher is not None:
        ys.append(teacher * 100)
        fig.add_hline(y=teacher * 100, line_dash="dash", line_color=METHOD_COLOURS["dense teacher"],
                      annotation_text=f"this study's teacher {teacher * 100:.2f}", annotation_position="top left")
    lo, hi = curve_y_range(ys, list(cells["spread"]))
    fig.update_layout(height=height, yaxis_title=f"dev {metric} (%)", yaxis_range=[lo, hi],
                      xaxis={"tickvals": [0, 1], "ticktext": ["pre-trained", "fine-tuned"], "range": [-0.6, 1.6],
                             "title": "the student starts from the … model"},
                      legend={"orientation": "h", "y": -0.25, "yanchor": "top"}, margin={"b": 110, "t": 30})
    return fig


def ingredients_caption(cells: pd.DataFrame) -> str:
    """What the 2 x 2 shows, generated from its numbers: each ingredient's effect with the other held fixed, called
    a lead only when larger than the two cells' seed spreads together; the cells not yet measured, named."""
    got = {(r.start, r.loss): r for r in cells.itertuples()}
    out = []
    pairs = [(("pre-trained", loss), ("fine-tuned", loss), f"starting from the pre-trained model instead of the "
              f"fine-tuned one, with {loss}") for loss in ("distillation", "task labels")]
    pairs += [((start, "distillation"), (start, "task labels"), f"distilling the teacher instead of training on the "
               f"labels, from the {start} model") for start in ("pre-trained", "fine-tuned")]
    for a, b, what in pairs:
        if a in got and b in got:
            d, noise = got[a].mean - got[b].mean, got[a].spread + got[b].spread
            verdict = ("beyond the seed spread" if abs(d) > noise else "within the seed spread") + f" (±{noise:.2f})"
            out.append(f"{what[0].upper() + what[1:]}: {d:+.2f} points, {verdict}.")
    if len(got) == 4:  # a headline: which ingredient moves the metric more, averaged over the other one
        loss = sum(got[(st, "distillation")].mean - got[(st, "task labels")].mean for st in ("pre-trained", "fine-tuned")) / 2
        start = sum(got[("pre-trained", l)].mean - got[("fine-tuned", l)].mean for l in ("distillation", "task labels")) / 2
        bigger = "the loss (distilling the teacher)" if abs(loss) > abs(start) else "the start (the pre-trained model)"
        out.insert(0, f"Here {bigger} matters more: distilling instead of training on the labels moves the score "
                      f"{loss:+.2f} points on average over the two starts, starting from the pre-trained model instead "
                      f"of the fine-tuned one {start:+.2f} on average over the two losses.")
    diagonal = (("pre-trained", "distillation"), ("fine-tuned", "task labels"))
    if not out and all(c in got for c in diagonal):  # only KASP's cell and the magnitude baseline's: both ingredients differ
        a, b = (got[c] for c in diagonal)
        d, noise = a.mean - b.mean, a.spread + b.spread
        verdict = ("beyond the seed spread" if abs(d) > noise else "within the seed spread") + f" (±{noise:.2f})"
        out.append(f"KASP's cell (pre-trained start, distillation) against the magnitude baseline's (fine-tuned start, "
                   f"task labels): {d:+.2f} points, {verdict}. The two differ in both ingredients, so which one carries "
                   "the difference needs the other two cells.")
    missing = [f"{s} start with {l}" for s, l in [("pre-trained", "task labels"), ("pre-trained", "distillation"),
                                                   ("fine-tuned", "task labels"), ("fine-tuned", "distillation")]
               if (s, l) not in got]
    if missing:
        out.append("Not measured yet: " + "; ".join(missing) + " (the study runs them in turn).")
    return " ".join(out)
