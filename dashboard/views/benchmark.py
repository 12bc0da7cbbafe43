"""Activation benchmark: stored `actlab bench activations` results, and a quick live run."""
import pandas as pd
import streamlit as st
import torch

from actlab import UserError, paths
from actlab.analysis import benchmark as bench
from actlab.dashboard.charts import activation as charts

st.title("Activation benchmark")
st.caption("Elementwise activations are memory-bound: a plain copy (`clone`) of the same tensor measures the "
           "bandwidth limit. Each share counts the bytes moved: a forward reads x and writes y (2 tensors); a "
           "forward+backward adds reading the gradient and the saved input and writing one gradient (5 in all). "
           "Near 100% means the kernels run at memory bandwidth. The copy's backward runs no kernel, so it has "
           "no backward share.")


def show(result: dict, key: str):
    m = result["meta"]
    st.markdown(f"**{m['device']}** ({m['device_name']}), {m['numel']:,} x {m['dtype']}, compile={m['compile']}, "
                f"torch {m['torch']}, {m.get('threads', '?')} threads, median of {m['repeats']} repeats")
    rows = result["results"]
    left, right = st.columns(2)
    left.plotly_chart(charts.bench_figure(rows, "forward_ms", "forward time (ms, lower is better)"), key=f"{key}_time")
    right.plotly_chart(charts.bench_figure(rows, "pct_of_copy", "% of the bandwidth limit, forward (2 tensors moved)"),
                       key=f"{key}_pct")
    st.plotly_chart(charts.bench_figure(rows, "pct_of_bandwidth_fwd_bwd",
                                        "% of the bandwidth limit, forward + backward (5 tensors moved)"), key=f"{key}_pct_fb")
    table = pd.DataFrame(rows)[["name", "forward_ms", "forward_backward_ms", "elements_per_s", "gb_per_s",
                                "pct_of_copy", "pct_of_bandwidth_fwd_bwd"]].rename(columns={
        "pct_of_copy": "% bandwidth fwd", "pct_of_bandwidth_fwd_bwd": "% bandwidth fwd+bwd"})
    st.dataframe(table, hide_index=True, key=f"{key}_table")


stored, live = st.tabs(["Stored results", "Run a quick benchmark"])

with stored:
    files = bench.list_results()
    if not files:
        st.info(f"No results in {paths.results_dir()}. Run `actlab bench activations --out "
                "bench/results/NAME.json`.")
    else:
        path = st.selectbox("Result file", files, format_func=lambda p: p.name, key="result_file")
        try:
            result = bench.load_result(path)
        except UserError as e:
            st.error(str(e))
        else:
            if cmd := result["meta"].get("command"):
                st.code(cmd, language="bash")
            show(result, "stored")

with live:
    devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    c1, c2, c3 = st.columns(3)
    device = c1.selectbox("Device", devices, key="device")
    numel = c2.select_slider("Elements", [1 << 14, 1 << 16, 1 << 18, 1 << 20], 1 << 16, key="numel")
    dtype = c3.selectbox("dtype", list(bench.DTYPES), key="dtype")
    if st.button("Run quick benchmark", key="run"):
        bar = st.progress(0.0, text="warming up")
        try:
            st.session_state["live_result"] = bench.bench_activations(
                device, numel, dtype, repeats=5, warmup=2,
                progress=lambda i, n, name: bar.progress(i / n, text=f"timing {name}"))
        except UserError as e:
            st.error(str(e))
        bar.empty()
    if "live_result" in st.session_state:
        show(st.session_state["live_result"], "live")
