"""Claims page figures: pure functions from actlab.analysis.claims results to plotly Figures."""
from __future__ import annotations

import plotly.graph_objects as go

from actlab.dashboard.charts.activation import color


def ffn_sparsity_figure(result: dict) -> go.Figure:
    """Per backbone layer, the fraction of FFN outputs that are exactly 0: the original GELU model
    and the same weights relufied, side by side."""
    fig = go.Figure()
    for i, r in enumerate(result["results"]):
        layers = list(r["zero_frac"])
        label = f"{r['activation']} (original)" if r.get("original") else f"{r['activation']} (relufied)"
        fig.add_trace(go.Bar(x=[name.replace("backbone.", "").replace(".ffn", "") for name in layers],
                             y=[r["zero_frac"][n] for n in layers], name=label, marker_color=color(i)))
    fig.update_layout(barmode="group", yaxis_title="FFN outputs exactly 0", yaxis_tickformat=".0%",
                      yaxis_range=[0, 1], xaxis_title="backbone layer", margin=dict(t=20, b=40))
    return fig
