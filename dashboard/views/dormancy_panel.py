"""The monitor's "every definition" section (called by views/monitor.py; figures: charts/dormancy.py).

Reads only what the dormancy plug-in wrote (core/watcher/dormancy_plugin.py): dormancy/<definition>/<layer>
with its interval, rank/<layer>, feature_norm/<layer>, the overlap/<layer> unit-activity rows, and the
recycle_audit events joined to their recycles.
"""
from __future__ import annotations

import streamlit as st

from actlab.errors import UserError
from actlab.dashboard.charts import dormancy as charts
from actlab.watcher.dormancy import DEFINITIONS

LYLE = ("Networks can lose plasticity without any dead units (Lyle et al., *Understanding plasticity in neural "
        "networks*, ICML 2023; *Disentangling the causes of plasticity loss in neural networks*, 2024): read the "
        "effective rank and the feature norm beside the counts, not the counts alone.")
HOW_TO = ("This run has no dormancy scores. Turn them on with `watch(model, dormancy=True)` (or "
          "`plugins=[DormancyPlugin()]`); docs/dormancy.md describes every definition.")


def _latest_overlap(f, store, layer: str):
    rows = [u for u in f.units if u["key"] == f"overlap/{layer}"]
    if rows:
        return rows[-1]
    try:
        with store.open(f.name) as r:  # the follower keeps a bounded tail of unit rows: read this key's own
            rows = r.unit_activity(key=f"overlap/{layer}")
    except UserError:  # an external source (a tracker's run) is not in the run store
        return None
    return rows[-1] if rows else None


def dormancy_panel(f, df, store, x_axis: str = "step", events: list[dict] | None = None, columns: int = 2):
    """One run's definitions side by side: small multiples per layer, rank, overlap, recycle audits."""
    d = df[df["run"] == f.name] if len(df) else df
    layers = charts.layers_of(d)
    st.subheader("Unit health: every definition")
    if not layers:
        st.caption(HOW_TO)
        return
    st.info(LYLE)
    present = [k for k in DEFINITIONS if any(key.startswith(f"dormancy/{k}/") for key in d["key"].unique())]
    chosen = st.multiselect("Definitions", present, default=present, key="mon_defs",
                            format_func=lambda k: charts.LABELS.get(k, k),
                            help="docs/dormancy.md: the formula, the paper and the settings of each. The band is a "
                                 "bootstrap interval over the probe samples (sample-based definitions).")
    evs = [e for e in events or [] if e.get("run") == f.name]
    c1, c2 = st.columns(2)
    c1.plotly_chart(charts.rank_figure(d, layers, x_axis), key="chart_rank")
    c2.plotly_chart(charts.rank_figure(d, layers, x_axis, key="feature_norm"), key="chart_feature_norm")
    for i in range(0, len(layers), columns):
        cols = st.columns(columns)
        for col, layer in zip(cols, layers[i:i + columns]):
            col.plotly_chart(charts.layer_figure(d, layer, chosen, x_axis, events=evs), key=f"chart_dorm_{layer}")
    c1, c2 = st.columns([2, 3])
    layer = c1.selectbox("Overlap for layer", layers, key="mon_overlap_layer")
    row = _latest_overlap(f, store, layer)
    if row is not None:
        c1.plotly_chart(charts.overlap_figure(row["values"], f"{layer} @ step {row['step']}"), key="chart_overlap")
    audits = charts.audit_frame(evs)
    if len(audits):
        c2.markdown("**Recycle audit**: the fraction of the recycled units the same definition flags again at "
                    "each of the next 5 flushes (did the reset hold?)")
        c2.dataframe(audits, hide_index=True, key="mon_audit")
    else:
        c2.caption("No recycle yet: after one, the audit shows how many of its units fall dormant again.")
