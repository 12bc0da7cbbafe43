"""Compare runs: uploaded logs (any common format) or store runs -> curves, per-variant stats, verdicts."""
import hashlib
import json
import os
import sys
from pathlib import Path

import pandas as pd
import streamlit as st

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core import UserError, compare, logs  # noqa: E402
from core.runs import RunStore  # noqa: E402
from dashboard.charts import compare as charts  # noqa: E402


@st.cache_data(show_spinner="Parsing logs...", max_entries=256)
def parse_upload(name: str, sha256: str, regex: str, _data: bytes) -> logs.LoadResult:
    # Keyed on the content hash, not the bytes: hashing a 200 MB argument on every rerun is slow.
    return logs.load_bytes(name, _data, regex or None)


def _fmt(v, digits=4):
    return "n/a" if v is None or pd.isna(v) else f"{v:.{digits}g}"


st.title("Compare runs")
st.caption("Upload logs from anywhere (our key=value text, plain-text training logs, JSON lines, CSV from "
           "Lightning/Keras/W&B/MLflow, trainer_state.json, TensorBoard event files, or a zip of a log folder), "
           "or pick runs from the store. Is the difference between variants larger than the seed noise?")

c1, c2 = st.columns([3, 2])
with c1:
    uploads = st.file_uploader("Log files, or a .zip of a log folder", accept_multiple_files=True, key="uploads")
with c2:
    runs_dir = os.environ.get("ACTLAB_RUNS_DIR", "runs")
    store_runs = st.multiselect(f"Runs from the store ({runs_dir})", RunStore(runs_dir).names(), key="store_runs")
    regex = st.text_input("Regex override (optional)", key="regex",
                          help="Named groups: (?P<step>..), (?P<epoch>..), (?P<key>..) with (?P<value>..), or "
                               "one group per metric such as (?P<acc>[0-9.]+%?). Applies to text logs.")
if regex:
    try:
        logs.compile_user_regex(regex)
    except UserError as e:
        st.error(str(e))
        regex = ""

res = logs.LoadResult()
for f in uploads or []:
    data = f.getvalue()
    res.extend(parse_upload(f.name, logs.content_hash(data), regex, data))
if store_runs:
    res.extend(logs.load_store_runs(runs_dir, store_runs))
logs.dedupe_runs(res)

for name, problem in res.errors:
    st.error(f"**{name}**: {problem}")
for log in res.logs:
    for w in log.warnings:
        st.warning(w)
    if log.n_unparsed:
        with st.expander(f"{log.name}: {log.n_unparsed} lines not understood"):
            st.code("\n".join(f"{n:>6}: {t}" for n, t in log.unparsed))

if not res.logs:
    st.info("Upload two or more logs (or pick store runs) to compare them.")
    st.stop()

percent_keys = sorted({k for log in res.logs for k in log.percent_keys})
if percent_keys:
    st.info("Values printed with a percent sign were divided by 100: " + ", ".join(percent_keys))

st.subheader("Runs")
st.caption("Variant and seed were read from file and folder names; edit them here.")
table = logs.variant_seed_of(res)
editor_key = "assign_" + hashlib.sha1("\n".join(table["run"]).encode()).hexdigest()[:10]
assign = st.data_editor(table, key=editor_key, hide_index=True, width="stretch",
                        disabled=["run", "file", "format", "n_points"],
                        column_config={"seed": st.column_config.NumberColumn("seed", step=1)})
variant_of = dict(zip(assign["run"], assign["variant"].fillna(assign["run"]).astype(str)))

df = res.scalars()
keys = sorted(df["key"].unique())
default = compare.pick_metric(df)
o1, o2, o3, o4 = st.columns(4)
metric = o1.selectbox("Metric", keys, index=keys.index(default), key="metric",
                      format_func=lambda k: f"{k} (from %)" if k in percent_keys else k)
use = o2.radio("Compare each run's", ["final", "best"], horizontal=True, key="use",
               help="best = max for accuracy-like keys, min for loss-like keys")
smoothing = o3.slider("EMA smoothing", 0.0, 0.99, 0.6, 0.01, key="smoothing")
test = o4.selectbox("Test", ["auto", "welch", "permutation"], key="test",
                    help="auto: Welch's t-test, or an exact permutation test when a variant has < 3 runs")

t1, t2 = st.tabs(["Per run", "Per variant"])
with t1:
    st.plotly_chart(charts.curves_figure(df, metric, variant_of, smoothing), key="curves")
with t2:
    st.plotly_chart(charts.variant_band_figure(df, metric, variant_of, smoothing), key="bands")

per_run = compare.run_values(df, metric, use, assign)
variants = compare.variant_table(df, metric, use, assign)
comps = compare.comparisons(df, metric, use, assign, test=test)

st.subheader(f"{use.capitalize()} {metric}")
a, b = st.columns([3, 2])
a.dataframe(per_run, hide_index=True)
b.dataframe(variants, hide_index=True)
st.plotly_chart(charts.variant_bar_figure(variants, per_run, metric, use), key="bars")

st.subheader("Verdicts")
better = "higher" if compare.higher_is_better(metric) else "lower"
st.caption(f"{better.capitalize()} {metric} is better. A difference is a verdict only when p < 0.05; "
           "with 1 run on a side there is no test.")
if not comps:
    st.info("Assign at least two variants to compare them.")
for c in comps:
    line = (f"**{c['a']}** vs **{c['b']}**: diff {_fmt(c['diff'])}, p = {_fmt(c['p_value'], 3)} "
            f"({c['test']}) → ")
    if c["verdict"] == compare.WITHIN_NOISE:
        st.info(line + "within noise")
    else:
        st.success(line + f"**{c['verdict']}** is better")

summary = compare.summarize(df, metric, use=use, runs=assign, test=test)
d1, d2, d3 = st.columns(3)
d1.download_button("Tidy table (CSV)", df.to_csv(index=False), "scalars.csv", "text/csv", key="dl_tidy")
d2.download_button("Summary (CSV)", per_run.merge(variants, on="variant", suffixes=("", "_variant")).to_csv(index=False),
                   "summary.csv", "text/csv", key="dl_summary")
d3.download_button("Summary (JSON)", json.dumps(summary, indent=2), "summary.json", "application/json", key="dl_json")
