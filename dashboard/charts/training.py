"""Monitor-page figures: pure functions from run-store data to plotly Figures (tested without a browser)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import torch

from actlab.activations import derivatives, get_spec, zones
from actlab.dashboard.charts.smoothing import ema

PALETTE = px.colors.qualitative.Plotly
X_AXES = {"step": "step", "epoch": "epoch", "wall_time": "wall time (s since run start)"}


def downsample(n: int, max_points: int) -> np.ndarray:
    """Indices of at most max_points evenly spaced rows, always keeping the first and the last."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_points).round().astype(int))


def _x(g: pd.DataFrame, x: str) -> pd.Series:
    if x == "wall_time":
        return g["wall_time"] - g["wall_time"].min()
    return g[x]


def scalar_figure(df: pd.DataFrame, keys: list[str], x: str = "step", smoothing: float = 0.0,
                  title: str = "", max_points: int = 2000, log_y: bool = False, y_title: str = "",
                  events: list[dict] | None = None) -> go.Figure:
    """One line per (run, key). The EMA runs over every point; only then is the series thinned, so
    smoothing does not change with the zoom level. Trace names are "<run> <key>"."""
    fig = go.Figure()
    d = df[df["key"].isin(keys)] if len(df) else df
    i = 0
    for run in dict.fromkeys(d["run"]) if len(d) else []:
        for key in keys:
            g = d[(d["run"] == run) & (d["key"] == key)].sort_values("step", kind="stable")
            g = g[g["value"].notna()]
            if g.empty:
                continue
            xs, ys = _x(g, x).to_numpy(), ema(g["value"].to_numpy(), smoothing)
            keep = downsample(len(g), max_points)
            # Plain lists, not numpy: the browser-side figure then carries countable arrays, not base64 blobs.
            fig.add_trace(go.Scatter(x=xs[keep].tolist(), y=ys[keep].tolist(), mode="lines+markers" if len(keep) < 30 else "lines",
                                     name=f"{run} {key}", line=dict(color=PALETTE[i % len(PALETTE)],
                                                                    dash="dash" if "test" in key or "exact" in key else None)))
            i += 1
    fig.update_layout(title=title + (f" (EMA {smoothing:.2f})" if smoothing > 0 else ""), xaxis_title=X_AXES.get(x, x),
                      yaxis_title=y_title, height=360, margin=dict(t=50, b=40), legend=dict(orientation="h", y=-0.25))
    if log_y:
        fig.update_yaxes(type="log")
    add_events(fig, events, df, x)
    return fig


def event_x(events: list[dict], df: pd.DataFrame, x: str = "step") -> list[float]:
    """Where each event sits on the chosen x-axis: its step, or the epoch / wall time the run had
    reached at that step (interpolated from its own scalar rows)."""
    out = []
    for e in events:
        if x == "step":
            out.append(float(e["step"]))
            continue
        g = df[df["run"] == e.get("run")] if len(df) else df
        if x == "wall_time":
            t0 = g["wall_time"].min() if len(g) else e["wall_time"]
            out.append(float(e["wall_time"] - t0))
            continue
        g = g.dropna(subset=["epoch"]).sort_values("step") if len(g) else g
        out.append(float(np.interp(e["step"], g["step"], g["epoch"])) if len(g) else float("nan"))
    return out


def add_events(fig: go.Figure, events: list[dict] | None, df: pd.DataFrame, x: str = "step") -> go.Figure:
    """Recycles (and refused commands) as markers along the top of the chart, one trace per run, with
    a dotted line at each recycle, so an effect can be read against the moment it was applied."""
    if not events:
        return fig
    # Their own hidden 0-1 axis: the markers sit along the top whatever the chart's scale (log, loss, 0-1).
    fig.update_layout(yaxis9=dict(overlaying="y", range=[0, 1.08], visible=False, fixedrange=True))
    for run in dict.fromkeys(e.get("run") for e in events):
        evs = [e for e in events if e.get("run") == run]
        xs = event_x(evs, df, x)
        fig.add_trace(go.Scatter(
            x=xs, y=[1.0] * len(xs), yaxis="y9", mode="markers", name=f"{run} events",
            marker=dict(symbol=["triangle-down" if e["kind"] == "recycle" else "x" for e in evs], size=11,
                        color=["black" if e["kind"] == "recycle" else "red" for e in evs]),
            hovertext=[f"step {e['step']}: {e['kind']} {e.get('layer') or ''}: {e.get('reason') or ''}{_audit_text(e)}"
                       for e in evs],
            hoverinfo="text"))
        for xv, e in zip(xs, evs):
            if e["kind"] == "recycle" and xv == xv:
                fig.add_vline(x=xv, line_dash="dot", line_color="black", opacity=0.5)
    return fig


def _audit_text(e: dict) -> str:
    """A recycle's audit (actlab.store.audit.attach_audits): flagged again at the next flushes."""
    if not e.get("audit"):
        return ""
    return f"; flagged again by {e.get('audit_by')}: " + ", ".join(f"{f:.0%}" for f in e["audit"])


def keys_with(df: pd.DataFrame, prefix: str) -> list[str]:
    return sorted(k for k in df["key"].unique() if k.startswith(prefix)) if len(df) else []


def loss_figure(df, x="step", smoothing=0.0, max_points=2000, events=None):
    return scalar_figure(df, ["loss/train", "loss/test"], x, smoothing, "Loss", max_points, y_title="cross-entropy",
                         events=events)


def accuracy_figure(df, x="step", smoothing=0.0, max_points=2000, events=None):
    # Every accuracy-like key: acc/train and acc/test for MNIST, acc/top1..10 and mrr for retrieval,
    # and a bare `acc` (what w.step(acc=...) writes in a user loop).
    keys = (keys_with(df, "acc/") + keys_with(df, "ndcg@")
            + [k for k in ("acc", "mrr") if len(df) and (df["key"] == k).any()])
    return scalar_figure(df, keys, x, smoothing, "Accuracy", max_points, y_title="accuracy", events=events)


def dead_figure(df, x="step", smoothing=0.0, max_points=2000, events=None):
    """dead/<layer>: train-mode window (the epoch so far); dead_exact/<layer> (dashed): eval mode on the probe set."""
    fig = scalar_figure(df, keys_with(df, "dead/") + keys_with(df, "dead_exact/"), x, smoothing,
                        "Dead fraction per layer", max_points, y_title="fraction of units dead", events=events)
    fig.update_yaxes(range=[0, 1.02])
    return fig


# What the monitor's standard charts draw: loss, accuracy, dead, dormant and gradient-norm keys.
PLOTTED_PREFIXES = ("acc/", "ndcg@", "dead/", "dead_exact/", "dormant/", "grad_norm/")
PLOTTED_KEYS = ("loss/train", "loss/test", "acc", "mrr")


def unplotted_keys(df: pd.DataFrame) -> list[str]:
    """Keys no standard chart draws (a TensorBoard run's own names, lr, ...), sorted."""
    return [k for k in sorted(df["key"].unique()) if k not in PLOTTED_KEYS and not k.startswith(PLOTTED_PREFIXES)] \
        if len(df) else []


def grad_norm_figure(df, x="step", smoothing=0.0, max_points=2000, events=None):
    return scalar_figure(df, keys_with(df, "grad_norm/"), x, smoothing, "Gradient norm per parameter",
                         max_points, log_y=True, y_title="L2 norm", events=events)


def dormant_from_scores(units: list[dict], tau: float, run: str = "") -> pd.DataFrame:
    """dormant/<layer> at any tau from the stored per-unit scores (`score/<layer>` rows): the fraction
    of units whose score (mean |output| / the layer's mean) is <= tau. Same columns as the scalars."""
    rows = []
    for u in units:
        if not u["key"].startswith("score/"):
            continue
        v = np.asarray(u["values"], float)
        if v.size:
            rows.append({"run": run, "step": u["step"], "epoch": u.get("epoch"), "key": "dormant/" + u["key"][6:],
                         "value": float((v <= tau).mean()), "wall_time": u.get("wall_time", float(u["step"]))})
    return pd.DataFrame(rows, columns=["run", "step", "epoch", "key", "value", "wall_time"])


def dormant_figure(df, x="step", smoothing=0.0, max_points=2000, tau: float | None = None, events=None):
    """dormant/<layer>: fraction of tau-dormant units (Sokar et al. 2023) over the window."""
    title = "τ-dormant fraction per layer" + (f" (τ = {tau:g})" if tau is not None else "")
    fig = scalar_figure(df, keys_with(df, "dormant/"), x, smoothing, title, max_points, y_title="fraction of units dormant",
                        events=events)
    fig.update_yaxes(range=[0, 1.02])
    return fig


def quiet_order(z: np.ndarray, threshold: float, by: str = "quiet") -> np.ndarray:
    """Unit order for the heatmap. "quiet": units that went quiet (value <= threshold from some row
    to the last) first, earliest first; units that never did follow, least active first. "activity":
    mean value, ascending. "index": as stored."""
    n_rows, n_units = z.shape
    if by == "index" or n_rows == 0:
        return np.arange(n_units)
    mean = z.mean(0)
    if by == "activity":
        return np.lexsort((np.arange(n_units), mean))
    quiet = z <= threshold
    # Row from which each unit stays quiet to the end (n_rows: not quiet at the end).
    tail = np.flip(np.cumprod(np.flip(quiet, 0), 0), 0).astype(bool)
    since = np.where(tail.any(0), n_rows - tail.sum(0), n_rows)
    return np.lexsort((np.arange(n_units), mean, since))


def activity_heatmap(rows: list[dict], max_rows: int = 200, order: str = "quiet", threshold: float = 0.0,
                     zmax: float = 1.0, label: str = "active") -> go.Figure:
    """Per-unit values over time (activity: fraction of samples with f' > eps; or tau-scores): units
    on x, step on y. Units are sorted by when they went quiet (`quiet_order`), so a dying layer reads
    as a block; the x labels keep each unit's own index."""
    fig = go.Figure()
    if rows:
        keep = downsample(len(rows), max_rows)
        rows = [rows[i] for i in keep]
        z = np.array([r["values"] for r in rows], float)
        idx = quiet_order(z, threshold, order)
        fig.add_trace(go.Heatmap(z=z[:, idx].tolist(), x=[f"u{i}" for i in idx], y=[r["step"] for r in rows], zmin=0,
                                 zmax=zmax, colorscale="Viridis", colorbar=dict(title=label)))
        fig.update_layout(title=f"Per-unit {label}: {rows[0]['key']} (sorted by {order})")
        fig.update_xaxes(type="category", showticklabels=len(idx) <= 64)
    fig.update_layout(xaxis_title="unit", yaxis_title="step", height=360, margin=dict(t=50, b=40))
    return fig


def histogram_figure(hist: dict, activation: str, params: dict | None = None, eps: float = 0.0) -> go.Figure:
    """Pre-activation histogram (density, bars) under the activation's f' curve (line, right axis),
    with the dead zone (|f'| <= eps) shaded: mass inside the shaded band gets no gradient."""
    edges = np.asarray(hist["edges"], float)
    counts = np.asarray(hist["counts"], float)
    widths = np.diff(edges)
    density = counts / max(counts.sum(), 1.0) / widths
    centers = (edges[:-1] + edges[1:]) / 2
    fig = go.Figure()
    fig.add_trace(go.Bar(x=centers, y=density, width=widths, name=f"pre-activation {hist['key']} @ step {hist['step']}",
                         marker_color="rgba(99,110,250,0.6)"))
    if not get_spec(activation).vector:
        x = torch.linspace(float(edges[0]), float(edges[-1]), 1201, dtype=torch.float64)
        _, dy, _ = derivatives(activation, x, **(params or {}))
        fig.add_trace(go.Scatter(x=x.numpy(), y=dy.numpy(), mode="lines", name=f"{activation} f'(x)",
                                 line=dict(color="crimson"), yaxis="y2"))
        for lo, hi in zones(x, dy, eps)["dead"]:
            fig.add_vrect(x0=lo, x1=hi, fillcolor="grey", opacity=0.2, line_width=0,
                          annotation_text="dead zone", annotation_position="top left")
    fig.update_layout(title=f"Pre-activations of {hist['key']} at step {hist['step']} under f'",
                      xaxis_title="pre-activation", yaxis=dict(title="density"),
                      yaxis2=dict(title="f'(x)", overlaying="y", side="right"), height=380,
                      margin=dict(t=50, b=40), bargap=0, legend=dict(orientation="h", y=-0.25))
    return fig
