"""Explorer and benchmark figures: pure functions from core data to plotly Figures."""
from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

PALETTE = px.colors.qualitative.Plotly
ORDER_NAMES = {0: "f(x)", 1: "f'(x)", 2: "f''(x)"}


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    return f"rgba({int(h[0:2], 16)},{int(h[2:4], 16)},{int(h[4:6], 16)},{alpha})"


def curves_figure(x, curves: dict[str, list[float]], order: int = 0,
                  zones: dict[str, dict[str, list[tuple[float, float]]]] | None = None) -> go.Figure:
    """One line per activation. Each activation's dead/saturated intervals are shaded in that
    activation's own line colour (dead: solid tint; saturated: lighter, dotted edge). With several
    activations overlaid, each gets its own horizontal strip of the plot, so zones never blend into
    one. Shapes are named "<kind>:<activation>" so tests and hovers can tell them apart."""
    fig = go.Figure()
    index = {label: i for i, label in enumerate(curves)}
    for i, (label, y) in enumerate(curves.items()):
        fig.add_trace(go.Scatter(x=list(x), y=list(y), mode="lines", name=label, line=dict(color=color(i)),
                                 hovertemplate=f"{label}<br>x=%{{x:.3f}}<br>{ORDER_NAMES[order]}=%{{y:.4f}}<extra></extra>"))
    shaded = [label for label, z in (zones or {}).items() if any(z.values())]
    for strip, label in enumerate(shaded):
        c = color(index.get(label, len(index) + strip))
        y0, y1 = (0.0, 1.0) if len(shaded) == 1 else (strip / len(shaded), (strip + 1) / len(shaded))
        for kind, intervals in zones[label].items():
            dead = kind == "dead"
            for k, (lo, hi) in enumerate(intervals):
                fig.add_shape(type="rect", xref="x", yref="paper", x0=lo, x1=hi, y0=y0, y1=y1, layer="below",
                              fillcolor=_rgba(c, 0.18 if dead else 0.08),
                              line=dict(width=0) if dead else dict(color=_rgba(c, 0.6), width=1, dash="dot"),
                              name=f"{kind}:{label}", legendgroup=label, showlegend=k == 0)
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
