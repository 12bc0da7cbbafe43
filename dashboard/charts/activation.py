"""Explorer and benchmark figures: pure functions from core data to plotly Figures."""
from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

PALETTE = px.colors.qualitative.Plotly
ORDER_NAMES = {0: "f(x)", 1: "f'(x)", 2: "f''(x)"}
ZONE_COLORS = {"dead": "rgba(214,39,40,0.15)", "saturated": "rgba(255,165,0,0.12)"}


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def curves_figure(x, curves: dict[str, list[float]], order: int = 0,
                  zones: dict[str, dict[str, list[tuple[float, float]]]] | None = None) -> go.Figure:
    """One line per activation; each activation's dead/saturated intervals as shaded vrects in its
    own colour family, named in the shape so tests and hovers can tell them apart."""
    fig = go.Figure()
    for i, (label, y) in enumerate(curves.items()):
        fig.add_trace(go.Scatter(x=list(x), y=list(y), mode="lines", name=label, line=dict(color=color(i)),
                                 hovertemplate=f"{label}<br>x=%{{x:.3f}}<br>{ORDER_NAMES[order]}=%{{y:.4f}}<extra></extra>"))
    for label, z in (zones or {}).items():
        for kind, intervals in z.items():
            for lo, hi in intervals:
                fig.add_vrect(x0=lo, x1=hi, fillcolor=ZONE_COLORS[kind], line_width=0, layer="below",
                              name=f"{kind}:{label}")
    fig.update_layout(xaxis_title="x", yaxis_title=ORDER_NAMES[order], hovermode="x unified",
                      margin=dict(t=30, b=40), legend=dict(orientation="h", y=1.08))
    return fig


def probs_figure(labels: list[str], series: dict[str, list[float]]) -> go.Figure:
    """Grouped bars, one group per category: true probabilities next to a sample mean, say."""
    fig = go.Figure([go.Bar(x=labels, y=list(v), name=k, marker_color=color(i)) for i, (k, v) in enumerate(series.items())])
    fig.update_layout(barmode="group", yaxis_title="probability", margin=dict(t=30, b=40))
    return fig


def tau_sweep_figure(sweep: dict) -> go.Figure:
    fig = go.Figure([
        go.Scatter(x=sweep["tau"], y=sweep["l1_distance"], mode="lines+markers", name="L1(sample mean, true probs)"),
        go.Scatter(x=sweep["tau"], y=sweep["sample_entropy"], mode="lines+markers", name="mean sample entropy"),
    ])
    fig.update_layout(xaxis_type="log", xaxis_title="tau", margin=dict(t=30, b=40), legend=dict(orientation="h", y=1.1))
    return fig


def propagation_figure(results: dict[str, dict], metric: str) -> go.Figure:
    """Per-layer forward std or gradient norm on a log axis: a straight slope is vanishing or exploding."""
    fig = go.Figure()
    for i, (label, r) in enumerate(results.items()):
        fig.add_trace(go.Scatter(x=r["layer"], y=r[metric], mode="lines+markers", name=label, line=dict(color=color(i))))
    fig.update_layout(yaxis_type="log", xaxis_title="layer", margin=dict(t=30, b=40),
                      yaxis_title={"forward_std": "activation std", "grad_norm": "weight gradient norm"}[metric])
    return fig


def bench_figure(rows: list[dict], metric: str, title: str = "") -> go.Figure:
    """One bar per activation (the copy baseline included) for a benchmark metric."""
    names = [r["name"] for r in rows]
    fig = go.Figure(go.Bar(x=names, y=[r[metric] for r in rows],
                           marker_color=["#888" if n == "clone" else color(0) for n in names]))
    fig.update_layout(yaxis_title=metric, title=title or None, margin=dict(t=40 if title else 20, b=40))
    return fig


def curves_table(x, data: dict[str, tuple]) -> pd.DataFrame:
    """The plotted curves as one wide table for the CSV download: x, then f, f', f'' per activation.
    `data[name]` is (x, f, f', f'') as the explorer computes it."""
    return pd.DataFrame({"x": list(x), **{f"{n}_{s}": list(d[i + 1]) for n, d in data.items()
                                         for i, s in enumerate(["f", "df", "d2f"])}})
