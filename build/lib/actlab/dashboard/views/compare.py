"""Compare runs: uploaded logs (any common format) or store runs -> curves, per-variant stats, verdicts."""
import hashlib
import json

import streamlit as st


from actlab import UserError, paths
from actlab.analysis import compare
from actlab import logs
from actlab.store.runs import RunStore
from actlab.dashboard.charts import compare as charts
from actlab.dashboard.charts import export


@st.cache_data(show_spinner="Parsing logs...", max_entries=256)
def parse_upload(name: str, sha256: str, regex: str, _data: bytes) -> logs.LoadResult:
    # Keyed on the content hash, not the bytes: hashing a 200 MB argument on every rerun is slow.
    return logs.load_bytes(name, _data, regex or None)


st.title("Compare runs")
st.caption("Upload logs from anywhere (our key=value text, plain-text training logs, Keras model.fit output, "
           "JSON lines, CSV from Lightning/Keras/W&B/MLflow, trainer_state.json, TensorBoard event files, or a zip "
           "of a log folder, an mlruns/ folder or W&B run folders), "
           "or pick runs from the store. Is the difference between variants larger than the seed noise?")

c1, c2 = st.columns([3, 2])
with c1:
    uploads = st.file_uploader("Log files, or a .zip of a log folder", accept_multiple_files=True, key="uploads")
with c2:
    runs_dir = str(paths.runs_dir())
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
default, reason = compare.choose_metric(df, assign)
o1, o2, o3, o4 = st.columns(4)
metric = o1.selectbox("Metric", keys, index=keys.index(default), key="metric",
                      format_func=lambda k: f"{k} (from %)" if k in percent_keys else k)
use = o2.radio("Compare each run's", ["final", "best"], horizontal=True, key="use",
               help="best = max for accuracy-like keys, min for loss-like keys")
smoothing = o3.slider("EMA smoothing", 0.0, 0.99, 0.6, 0.01, key="smoothing")
test = o4.selectbox("Test", ["auto", "welch", "permutation"], key="test",
                    help="auto: Welch's t-test, or an exact permutation test when a variant has < 3 runs")
st.caption(("Default metric " + reason) if metric == default else
           f"Metric {metric}, chosen by you (the default would be {reason}).")

# The default goes in as None, so the summary (and its Markdown/JSON exports) keeps the reason it
# was picked rather than "chosen by the user".
summary = compare.summarize(df, None if metric == default else metric, use=use, runs=assign, test=test)
pairs = compare.pair_table(summary["comparisons"])
verdicts = [c for c in summary["comparisons"] if c["verdict"] != compare.WITHIN_NOISE]
st.subheader("Verdict")
(st.success if verdicts else st.info)(summary["summary"])
st.caption(f"Test: {summary['test']}; p adjusted by Holm over {len(pairs)} pairs, verdict when it is < "
           f"{summary['alpha']:g}. CI: {summary['ci_method']}. MDE and seeds needed: {summary['power_method']}. "
           "P(A beats B): the Mann-Whitney estimate over all pairs of runs, ties count half.")
figs = {}
if len(pairs):
    st.dataframe(pairs, hide_index=True, key="pairs_table")
    figs["forest"] = charts.forest_figure(pairs, metric, summary["higher_is_better"])
    st.plotly_chart(figs["forest"], key="forest")
else:
    st.info("Assign at least two variants to compare them: edit the variant column above.")

t1, t2 = st.tabs(["Per run", "Per variant"])
figs["curves"] = charts.curves_figure(df, metric, variant_of, smoothing)
figs["bands"] = charts.variant_band_figure(df, metric, variant_of, smoothing)
with t1:
    st.plotly_chart(figs["curves"], key="curves")
with t2:
    st.plotly_chart(figs["bands"], key="bands")

per_run = compare.run_values(df, metric, use, assign)
variants = compare.variant_table(df, metric, use, assign)
st.subheader(f"{use.capitalize()} {metric}")
a, b = st.columns([3, 2])
a.dataframe(per_run, hide_index=True)
b.dataframe(variants, hide_index=True)
figs["bars"] = charts.variant_bar_figure(variants, per_run, metric, use)
st.plotly_chart(figs["bars"], key="bars")

st.subheader("Export")
d1, d2, d3, d4 = st.columns(4)
d1.download_button("Pair table (CSV)", pairs.to_csv(index=False), "pairs.csv", "text/csv", key="dl_pairs")
d2.download_button("Summary (Markdown)", compare.summary_markdown(summary), "summary.md", "text/markdown", key="dl_md")
d3.download_button("Summary (JSON)", json.dumps(summary, indent=2), "summary.json", "application/json", key="dl_json")
d4.download_button("Tidy table (CSV)", df.to_csv(index=False), "scalars.csv", "text/csv", key="dl_tidy")
png_problem = export.png_export_problem()
cols = st.columns(len(figs))
for col, (name, fig) in zip(cols, figs.items()):
    # Deferred: built only when clicked (a PNG takes seconds: kaleido starts a browser).
    col.download_button(f"{name} (HTML)", lambda fig=fig: export.figure_html(fig), f"{name}.html", "text/html",
                        key=f"dl_html_{name}")
    col.download_button(f"{name} (PNG)", lambda fig=fig: export.figure_png(fig), f"{name}.png", "image/png",
                        key=f"dl_png_{name}", disabled=png_problem is not None, help=png_problem)
if png_problem:
    st.caption(png_problem + ". Each chart's camera icon (top right of the chart) saves a PNG from your browser.")
