"""Dormancy figures: every definition side by side (pure factories over run-store rows).

    layer_figure(df, layer, definitions)   one layer: one line per definition, its bootstrap band
    rank_figure(df, layers)                 effective rank per layer (beside the counts)
    overlap_figure(values, layer)           Jaccard matrix between the definitions' flagged sets
    audit_frame(events)                     recycles with their audit (flagged again at flushes 1..5)
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from actlab.dashboard.charts.training import PALETTE, X_AXES, _x, add_events
from actlab.watcher.dormancy import DEFINITIONS

LABELS = {"dead": "dead", "redo": "ReDo τ-dormant", "grama": "GraMa (gradient)", "utility": "CBP utility",
          "age": "firing age (SNR)", "overactive": "over-active (ReBorn)", "saturated": "saturated"}
COLORS = {d: PALETTE[i % len(PALETTE)] for i, d in enumerate(DEFINITIONS)}


def layers_of(df: pd.DataFrame) -> list[str]:
    """Layers with any dormancy/ key, in the order first written."""
    if not len(df):
        return []
    keys = df.loc[df["key"].str.startswith("dormancy/"), "key"].unique()
    return list(dict.fromkeys(k.split("/", 2)[2] for k in keys))


def _series(df: pd.DataFrame, key: str, x: str) -> tuple[list, list]:
    g = df[df["key"] == key].dropna(subset=["value"]).sort_values("step", kind="stable")
    return _x(g, x).tolist(), g["value"].tolist()


def layer_figure(df: pd.DataFrame, layer: str, definitions=DEFINITIONS, x: str = "step",
                 events: list[dict] | None = None, height: int = 300) -> go.Figure:
    """One chart for one layer: the flagged fraction of each definition over time, with the bootstrap
    interval over the probe samples as a band (sample-based definitions only). Trace names are the
    definition (lines) and "<definition> interval" (bands)."""
    fig = go.Figure()
    for d in definitions:
        xs, ys = _series(df, f"dormancy/{d}/{layer}", x)
        if not xs:
            continue
        lx, lo = _series(df, f"dormancy_lo/{d}/{layer}", x)
        hx, hi = _series(df, f"dormancy_hi/{d}/{layer}", x)
        if lo and hi and len(lo) == len(hi):
            # The band: upper edge, then the lower edge back along the same x, filled between.
            fig.add_trace(go.Scatter(x=hx + lx[::-1], y=hi + lo[::-1], fill="toself", mode="lines",
                                     line=dict(width=0), fillcolor=COLORS[d], opacity=0.2, hoverinfo="skip",
                                     name=f"{d} interval", showlegend=False))
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers" if len(xs) < 30 else "lines", name=d,
                                 line=dict(color=COLORS[d]), hovertemplate=f"{LABELS[d]}: %{{y:.3f}}<extra></extra>"))
    fig.update_layout(title=layer, height=height, margin=dict(t=40, b=30, l=40, r=10), xaxis_title=X_AXES.get(x, x),
                      yaxis=dict(title="fraction flagged", range=[-0.02, 1.02]), legend=dict(orientation="h", y=-0.3))
    add_events(fig, [e for e in events or [] if e.get("layer") in (layer, None) and e.get("kind") != "recycle_audit"],
               df, x)
    return fig


def rank_figure(df: pd.DataFrame, layers: list[str], x: str = "step", key: str = "rank") -> go.Figure:
    """Effective rank (or feature norm, key="feature_norm") per layer over time, one line per layer."""
    fig = go.Figure()
    for i, layer in enumerate(layers):
        xs, ys = _series(df, f"{key}/{layer}", x)
        if xs:
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers" if len(xs) < 30 else "lines", name=layer,
                                     line=dict(color=PALETTE[i % len(PALETTE)])))
    title = "Effective rank of the sampled activations" if key == "rank" else "Feature norm (mean ‖h‖)"
    fig.update_layout(title=title, height=300, margin=dict(t=40, b=30, l=40, r=10), xaxis_title=X_AXES.get(x, x),
                      legend=dict(orientation="h", y=-0.3))
    return fig


def overlap_matrix(values) -> tuple[list[str], np.ndarray]:
    """The stored overlap/<layer> row (row-major, DEFINITIONS order) as (defined names, matrix)."""
    n = len(DEFINITIONS)
    m = np.asarray(values, dtype=float).reshape(n, n)
    keep = [i for i in range(n) if not np.isnan(m[i, i])]  # the diagonal marks a defined definition
    return [DEFINITIONS[i] for i in keep], m[np.ix_(keep, keep)]


def overlap_figure(values, layer: str = "") -> go.Figure:
    """Jaccard |A ∩ B| / |A ∪ B| between the definitions' flagged sets at one flush (blank: both empty)."""
    names, m = overlap_matrix(values)
    text = [["" if np.isnan(v) else f"{v:.2f}" for v in row] for row in m]
    z = [[None if np.isnan(v) else float(v) for v in row] for row in m]
    fig = go.Figure(go.Heatmap(z=z, x=names, y=names, zmin=0, zmax=1, colorscale="Blues", text=text,
                               texttemplate="%{text}", hovertemplate="%{y} vs %{x}: %{z:.2f}<extra></extra>"))
    fig.update_layout(title=f"Overlap of flagged units (Jaccard) {layer}".strip(), height=320,
                      margin=dict(t=40, b=30, l=80, r=10), yaxis=dict(autorange="reversed"))
    return fig


def audit_frame(events: list[dict]) -> pd.DataFrame:
    """One row per recycle: step, layer, definition, convention, units and the fraction of them flagged
    again at each audit flush (events already joined by actlab.store.audit.attach_audits)."""
    rows = []
    for e in events:
        if e.get("kind") != "recycle":
            continue
        d = e.get("details") or {}
        row = {"run": e.get("run"), "step": e["step"], "layer": e.get("layer"), "by": e.get("audit_by"),
               "convention": d.get("convention", "redo"), "units": e.get("units")}
        for k, v in enumerate(e.get("audit") or [], start=1):
            row[f"again@{k}"] = v
        rows.append(row)
    return pd.DataFrame(rows)
