"""Activation explorer: curves, derivatives, dead/saturated zones, the softmax family, signal propagation."""
import pandas as pd
import streamlit as st
import torch

from actlab import UserError
from actlab import activations as A
from actlab.analysis import propagation as P
from actlab.dashboard.charts import activation as charts

# Every tensor here is small (801-point curves, a 256-wide propagation net): on a small shared CPU,
# intra-op threads only spin against each other. Measured on the 2-core box under load: signal
# propagation for three activations 0.8 s on one thread, 5-7 s on two. Training runs in its own
# process (core.launcher) and keeps its own thread count.
torch.set_num_threads(1)

st.title("Activation explorer")


@st.cache_data(show_spinner=False)
def curves(name: str, x_range: tuple, n: int, params: tuple):
    x = torch.linspace(*x_range, n, dtype=torch.float64)
    y, dy, d2y = A.derivatives(name, x, **dict(params))
    return x.tolist(), y.tolist(), dy.tolist(), d2y.tolist()


@st.cache_data(show_spinner=False)
def props(name: str, eps: float, x_range: tuple, params: tuple):
    return A.properties(name, eps=eps, x_range=x_range, **dict(params))


@st.cache_data(show_spinner=False)
def propagation(name: str, depth: int, width: int, init: str, params: tuple):
    return P.signal_propagation(name, depth=depth, width=width, init=init, **dict(params))


def param_sliders(name: str, where) -> tuple:
    spec = A.get_spec(name)
    return tuple((k, where.slider(f"{name} · {k}", p.low, p.high, p.default, p.step, help=p.help, key=f"{name}.{k}"))
                 for k, p in spec.params.items())


curves_tab, softmax_tab, prop_tab = st.tabs(["Curves", "Softmax / Gumbel-Softmax", "Signal propagation"])

with curves_tab:
    left, right = st.columns([1, 3])
    # /explorer?act=relu (the monitor's alerts link here) opens on that activation.
    linked = st.query_params.get("act")
    default = [linked] if linked in A.names(vector=False) else ["relu", "gelu", "tanh"]
    chosen = left.multiselect("Activations", A.names(vector=False), default=default, key="chosen")
    x_range = left.slider("x range", -20.0, 20.0, (-6.0, 6.0), 0.5, key="x_range")
    eps = left.number_input("eps (dead: |f'| <= eps)", 0.0, 1.0, 0.0, 0.001, format="%.3f", key="eps",
                            help="A unit is dead where no gradient flows: |f'(x)| <= eps.")
    params = {n: param_sliders(n, left) for n in chosen}
    if x_range[0] >= x_range[1]:
        right.error("x range must have min < max")
    elif not chosen:
        right.info("Pick at least one activation.")
    else:
        data = {n: curves(n, x_range, 801, params[n]) for n in chosen}
        x = data[chosen[0]][0]
        properties = {n: props(n, eps, x_range, params[n]) for n in chosen}
        zones = {n: {"dead": p["dead_zone"], "saturated": p["saturation_zones"]} for n, p in properties.items()}
        with right:
            st.caption("Shaded: red = dead zone (|f'| <= eps), orange = saturated tail (|f'| <= 5% of its max).")
            for order, tab in enumerate(st.tabs(["f(x)", "f'(x)", "f''(x)"])):
                tab.plotly_chart(charts.curves_figure(x, {n: d[order + 1] for n, d in data.items()}, order, zones),
                                 key=f"curves{order}")
            table = pd.DataFrame([{
                "activation": n,
                **{k: v for k, v in params[n]},
                "output range": f"[{p['output_range'][0]:.3g}, {p['output_range'][1]:.3g}]",
                "monotonic": p["monotonic"], "smooth": p["smooth"], "zero-centred": p["zero_centred"],
                "E[f(z)], z~N(0,1)": round(p["mean_output_std_normal_input"], 4),
                "f' range": f"[{p['derivative_range'][0]:.3g}, {p['derivative_range'][1]:.3g}]",
                "dead zone": ", ".join(f"[{a:.2f}, {b:.2f}]" for a, b in p["dead_zone"]) or "none",
                "saturated": ", ".join(f"[{a:.2f}, {b:.2f}]" for a, b in p["saturation_zones"]) or "none",
            } for n, p in properties.items()])
            st.dataframe(table, hide_index=True, key="properties")
            st.download_button("Download curves (CSV)", charts.curves_table(x, data).to_csv(index=False),
                               "activation_curves.csv", "text/csv")

with softmax_tab:
    left, right = st.columns([1, 2])
    text = left.text_input("Logits (comma-separated)", "2.0, 1.0, 0.5, -1.0", key="logits")
    tau = left.slider("Temperature tau", 0.05, 5.0, 1.0, 0.05, key="tau")
    n_samples = left.number_input("Gumbel-Softmax samples N", 1, 20000, 1000, 100, key="n_samples")
    hard = left.checkbox("hard (straight-through one-hot)", key="hard")
    try:
        logits = P.parse_logits(text)
    except UserError as e:
        right.error(str(e))
    else:
        labels = [f"class {i}" for i in range(len(logits))]
        summary = P.gumbel_summary(logits, tau, int(n_samples), hard)
        with right:
            st.markdown(f"**softmax(z / tau)** at tau = {tau:g}")
            st.plotly_chart(charts.probs_figure(labels, {"softmax(z / tau)": P.softmax_probs(logits, tau)}), key="softmax")
            st.markdown(f"**{int(n_samples)} Gumbel-Softmax samples**: their mean against the true softmax(z). "
                        f"L1 distance {summary['l1_distance']:.4f}, mean sample entropy {summary['sample_entropy']:.3f}")
            st.plotly_chart(charts.probs_figure(labels, {"true softmax(z)": summary["true"],
                                                         "sample mean": summary["sample_mean"]}), key="gumbel")
            st.markdown("**As tau -> 0** samples turn one-hot (entropy -> 0) and their mean matches softmax(z)")
            taus = [0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0]
            st.plotly_chart(charts.tau_sweep_figure(P.tau_sweep(logits, taus, n=min(int(n_samples), 2000), hard=hard)),
                            key="tau_sweep")

with prop_tab:
    left, right = st.columns([1, 3])
    prop_chosen = left.multiselect("Activations", A.names(vector=False), default=["relu", "tanh", "selu"], key="prop_chosen")
    init = left.selectbox("Init", P.INITS, index=1, key="init")
    depth = left.slider("Layers L", 2, 100, 30, key="depth")
    width = left.select_slider("Width", [64, 128, 256, 512], 256, key="width")
    if not prop_chosen:
        right.info("Pick at least one activation.")
    else:
        # Registry defaults here: the propagation view compares activations, not their parameters.
        results = {n: propagation(n, depth, width, init, ()) for n in prop_chosen}
        with right:
            st.caption(f"A Gaussian batch through {depth} random Linear({width}, {width}) + activation layers, "
                       f"{init} init. Flat lines keep the signal; slopes on this log axis vanish or explode.")
            st.plotly_chart(charts.propagation_figure(results, "forward_std"), key="prop_forward")
            st.plotly_chart(charts.propagation_figure(results, "grad_norm"), key="prop_backward")
