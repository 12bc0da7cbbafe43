"""Compare-page figures: pure functions from the tidy scalar table to plotly Figures."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.express as px

from actlab.dashboard.charts.smoothing import ema

PALETTE = px.colors.qualitative.Plotly


def _colors(variants) -> dict:
    return {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(dict.fromkeys(variants))}


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    return f"rgba({int(h[0:2], 16)},{int(h[2:4], 16)},{int(h[4:6], 16)},{alpha})"


def curves_figure(df: pd.DataFrame, key: str, variant_of: dict | None = None, smoothing: float = 0.0,
                  show_raw: bool = True) -> go.Figure:
    """One smoothed line per run, coloured by variant; the raw points faintly behind when smoothing."""
    d = df[(df["key"] == key) & df["value"].notna()]
    variant_of = variant_of or {}
    runs = list(dict.fromkeys(d["run"]))  # legend in the order the runs were loaded
    d = d.sort_values("step", kind="stable")
    colors = _colors(variant_of.get(r, r) for r in runs)
    fig = go.Figure()
    for run in runs:
        g = d[d["run"] == run]
        color = colors[variant_of.get(run, run)]
        if show_raw and smoothing > 0:
            fig.add_trace(go.Scatter(x=g["step"], y=g["value"], mode="lines", line=dict(color=color, width=1),
                                     opacity=0.25, name=f"{run} (raw)", legendgroup=run, showlegend=False,
                                     hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=g["step"], y=ema(g["value"].to_numpy(), smoothing), mode="lines",
                                 line=dict(color=color), name=run, legendgroup=run))
    fig.update_layout(title=f"{key} per run" + (f" (EMA {smoothing:.2f})" if smoothing > 0 else ""),
                      xaxis_title="step", yaxis_title=key, height=420, margin=dict(t=50, b=40))
    return fig


def variant_band_figure(df: pd.DataFrame, key: str, variant_of: dict, smoothing: float = 0.0) -> go.Figure:
    """Per variant: mean over its runs at each step, with a ±1 std band. Runs are aligned on step;
    a step only some runs logged is averaged over those runs."""
    d = df[(df["key"] == key) & df["value"].notna()]
    fig = go.Figure()
    variants = list(dict.fromkeys(variant_of.get(r, r) for r in d["run"].unique()))
    colors = _colors(variants)
    for v in variants:
        runs = [r for r in d["run"].unique() if variant_of.get(r, r) == v]
        g = d[d["run"].isin(runs)]
        # The last value per (run, step) so repeated prints at one step count once.
        wide = g.groupby(["step", "run"], observed=True)["value"].last().unstack("run").sort_index()
        smoothed = wide.apply(lambda c: pd.Series(ema(c.dropna().to_numpy(), smoothing), index=c.dropna().index))
        mean = smoothed.mean(axis=1)
        std = smoothed.std(axis=1, ddof=1).fillna(0.0)
        x = mean.index.to_numpy()
        color = colors[v]
        fig.add_trace(go.Scatter(x=x, y=(mean - std).to_numpy(), mode="lines", line=dict(width=0),
                                 name=f"{v} -1 std", legendgroup=v, showlegend=False, hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=x, y=(mean + std).to_numpy(), mode="lines", line=dict(width=0), fill="tonexty",
                                 fillcolor=_rgba(color, 0.2), name=f"{v} +1 std", legendgroup=v, showlegend=False,
                                 hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=x, y=mean.to_numpy(), mode="lines", line=dict(color=color, width=2),
                                 name=f"{v} (n={len(runs)})", legendgroup=v))
    fig.update_layout(title=f"{key}: mean per variant, band = ±1 std over seeds", xaxis_title="step",
                      yaxis_title=key, height=420, margin=dict(t=50, b=40))
    return fig


def variant_bar_figure(variants: pd.DataFrame, per_run: pd.DataFrame, metric: str, use: str) -> go.Figure:
    """Mean of each variant's final/best with a 95% CI error bar, every seed as a dot on top."""
    colors = _colors(variants["variant"])
    fig = go.Figure(go.Bar(
        x=variants["variant"], y=variants["mean"],
        error_y=dict(type="data", array=variants["ci95"].fillna(0).to_numpy(), visible=True),
        marker_color=[colors[v] for v in variants["variant"]], name="mean ± 95% CI", opacity=0.8))
    fig.add_trace(go.Scatter(x=per_run["variant"], y=per_run["value"], mode="markers",
                             marker=dict(color="black", size=7), name="one seed",
                             text=per_run["run"], hovertemplate="%{text}: %{y}<extra></extra>"))
    fig.update_layout(title=f"{use} {metric} per variant (mean, 95% CI, seeds)", yaxis_title=metric,
                      height=380, margin=dict(t=50, b=40))
    return fig


def forest_figure(pairs: pd.DataFrame, metric: str, higher_better: bool = True) -> go.Figure:
    """One row per pair: the difference of means (A - B) with its 95% bootstrap interval, and a zero
    line; a pair whose Holm-corrected p is under alpha is drawn in colour, the rest in grey."""
    d = pairs.iloc[::-1]  # first pair on top
    labels = [f"{a} − {b}" for a, b in zip(d["a"], d["b"])]
    lo, hi = d["diff_lo"].to_numpy(float), d["diff_hi"].to_numpy(float)
    diff = d["diff"].to_numpy(float)
    sig = (d["verdict"] != "within noise").to_numpy()
    colors = ["#2ca02c" if s else "#7f7f7f" for s in sig]
    text = [f"diff {x:.4g} [{l:.4g}, {h:.4g}], Holm p {p:.3g}" if pd.notna(p) else f"diff {x:.4g}, no test"
            for x, l, h, p in zip(diff, lo, hi, d["p_adjusted"])]
    fig = go.Figure(go.Scatter(
        x=diff, y=labels, mode="markers", marker=dict(color=colors, size=10, symbol="square"),
        error_x=dict(type="data", symmetric=False, array=np.nan_to_num(hi - diff), arrayminus=np.nan_to_num(diff - lo),
                     color="#444", thickness=1.5, width=6),
        text=text, hovertemplate="%{y}: %{text}<extra></extra>", name="difference, 95% CI"))
    fig.add_vline(x=0, line=dict(color="black", dash="dash", width=1))
    better = "right" if higher_better else "left"
    fig.update_layout(title=f"{metric}: difference of means per pair (A − B), 95% bootstrap CI; A is better to the {better}",
                      xaxis_title=f"difference in {metric}", height=max(240, 60 + 40 * len(d)),
                      margin=dict(t=50, b=40, l=10), showlegend=False)
    return fig
