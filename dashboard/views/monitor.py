"""Training monitor: start/stop MNIST and bi-encoder runs, and follow any run live (ours, or one a
user loop writes through core.watch): loss, accuracy, dead and tau-dormant units per layer.

A thin view: core.launcher starts and stops trainers, core.series.SeriesFollower reads each run at
chart resolution (min/max per bucket, never the whole run) and then only the rows after the last
ones seen (kept per run in st.session_state), dashboard.charts.training draws.
"""
import uuid
from pathlib import Path

import streamlit as st


from actlab import UserError, paths
from actlab.train import launcher
from actlab.train.config import TASKS as TRAIN_TASKS, form_value
from actlab.activations import RELU_LIKE
from actlab.store.runs import RunStore
from actlab.store.series import SeriesFollower
from actlab.dashboard import sources
from actlab.dashboard.charts import training as charts
from actlab.dashboard.views.dormancy_panel import dormancy_panel
from actlab.store.audit import attach_audits
from actlab.watcher.budget import overhead_caption
from actlab.watcher.dormancy import RECYCLE_BY

BADGE = {"running": ("green", "running"), "finished": ("blue", "finished"), "stopped": ("orange", "stopped"),
         "failed": ("red", "failed"), "stale": ("gray", "stale / crashed")}

st.title("Training monitor")

with st.sidebar:
    # Read at run time (not at import) so tests and the e2e server can point it at a temp folder.
    runs_dir = st.text_input("Runs folder", str(paths.runs_dir()), key="mon_runs_dir")
    auto = st.toggle("Auto-refresh", value=True, key="mon_auto")
    interval = st.select_slider("Refresh every (s)", [1, 2, 5, 10, 30], value=2, key="mon_interval")
    smoothing = st.slider("EMA smoothing", 0.0, 0.99, 0.0, 0.01, key="mon_smoothing")
    x_axis = st.radio("x-axis", list(charts.X_AXES), format_func=charts.X_AXES.get, horizontal=True, key="mon_x")
    tb_text, mlflow_uri = sources.sidebar()
store = RunStore(runs_dir)
if not auto:  # also the state the browser tests wait on before they click inside the live panel
    st.caption("Auto-refresh is off: the runs below redraw only when you act on them.")


def form_widget(col, o):
    """One start-form widget for an option; its value goes through config.form_value."""
    f = o.form
    if f.widget == "select":
        choices = list(f.options) if f.options is not None else o.launch_choices()
        shown = (lambda v: f.format.get(v, v)) if f.format else str
        return col.selectbox(f.label, choices, index=choices.index(f.default), key=f.key, help=f.help, format_func=shown)
    if f.widget == "number":
        low = 0 if f.zero_is_none else int(o.launch.low)
        high = int(o.launch.high) if o.launch.high is not None else 10**9
        return col.number_input(f.label, low, high, f.default, key=f.key, help=f.help)
    if f.widget == "check":
        return col.checkbox(f.label, f.default, key=f.key, help=f.help)
    return col.text_input(f.label, f.default, key=f.key, help=f.help, placeholder=f.placeholder)


with st.expander("Start a run", expanded=not store.names()):
    st.caption("Runs from your own loop (`with watch(model, run=...)`) need no form: they show up below while they train.")
    task = st.radio("Task", ["mnist", "biencoder"], horizontal=True, key="f_task",
                    format_func={"mnist": "MNIST MLP", "biencoder": "Bi-encoder (argument retrieval)"}.get)
    spec = TRAIN_TASKS[task]
    with st.form("start_form"):
        # The fields come from the one declaration of each option (actlab.train.config, `form=`).
        values, options = {}, spec.form_options()
        for row in range(0, len(options), 4):
            for col, o in zip(st.columns(4), options[row:row + 4]):
                values[o.key] = form_widget(col, o)
        name = st.text_input("Run name (optional)", "", key="f_name")
        submitted = st.form_submit_button("Start training")
    if submitted:
        try:
            fields = {o.key: form_value(o, values[o.key]) for o in options}
            run, pid = launcher.start(task, fields, runs_dir, name=name.strip() or None)
            # Selected once its metrics.db exists (the trainer takes a few seconds to start).
            st.session_state["mon_pending"] = run
            st.success(f"started {run} (pid {pid}); log: {store.path(run) / 'train.log'}")
        except UserError as e:
            st.error(str(e))

# Points per series: about one min and one max per pixel column of a half-width chart.
CHART_POINTS = 700


def follower(name: str) -> SeriesFollower:
    cache = st.session_state.setdefault("mon_followers", {})
    key = (str(Path(runs_dir).resolve()), name)
    if key not in cache:
        cache[key] = SeriesFollower(store, name, points=CHART_POINTS)
    return cache[key]


def live_panel():  # long: one fragment lays out the whole live view (runs, charts, actions); its owners may split it
    import pandas as pd

    # Inside the fragment, so a run started from the form shows up without a full rerun.
    ext = sources.runs(tb_text, mlflow_uri)  # TensorBoard / MLflow runs, listed beside ours
    all_runs = store.names() + list(ext)
    if not all_runs:
        st.info(f"No runs in {runs_dir} yet. Start one above, with `actlab train mnist`, or from your own "
                "loop with `with watch(model, run=...)` (README: Watch your own model).")
        return
    pending = st.session_state.get("mon_pending")
    chosen = [r for r in st.session_state.get("mon_runs", []) if r in all_runs]
    if pending in all_runs:
        chosen = [pending] + [r for r in chosen if r != pending]
        del st.session_state["mon_pending"]
    if "mon_runs" not in st.session_state and not chosen:
        chosen = all_runs[:1]
    st.session_state["mon_runs"] = chosen
    selected = st.multiselect("Runs", all_runs, key="mon_runs")
    followers = []
    for run in selected:
        try:
            f = sources.follower(run, ext[run], CHART_POINTS) if run in ext else follower(run)
            f.poll()
        except UserError as e:
            st.error(str(e))
            continue
        followers.append(f)
    if not followers:
        st.info("Pick one or more runs.")
        return
    control = {f.name: control_state(f.name) for f in followers if not sources.is_external(f)}
    for f in followers:
        color, label = BADGE.get(f.status.state, ("gray", f.status.state))
        c1, c2, c3 = st.columns([3, 5, 1])
        c1.markdown(f"**{f.name}** :{color}-badge[{label}]")
        last = f.scalars.dropna(subset=["value"]).groupby("key")["value"].last() if len(f.scalars) else {}
        shown = " · ".join(f"{k} {last[k]:.4g}" for k in ("loss/train", "acc/test", "acc/top1", "mrr", "ndcg@10/test", "samples_per_s") if k in last)
        if "watch/overhead_pct" in last:  # the watcher's own host time over wall time, last interval
            events = control.get(f.name, {}).get("events", [])
            shown += " · " + overhead_caption(last["watch/overhead_pct"], f.config or {}, events)
        c2.caption(shown + (f" — {f.status.reason}" if f.status.reason else ""))
        if f.status.state == "running" and not sources.is_external(f) and c3.button("Stop", key=f"stop_{f.name}"):
            try:
                launcher.stop(f.name, runs_dir)
                st.toast(f"sent SIGTERM to {f.name}: it checkpoints, then stops")
            except UserError as e:
                st.error(str(e))
    df = pd.concat([f.scalars for f in followers], ignore_index=True)
    if sources.only_foreign_keys(df, followers):  # TensorBoard / MLflow runs with none of our keys
        sources.other_scalars(df, followers, x_axis, smoothing)
        return
    # Audit rows ride on their recycle (attach_audits), not as markers of their own.
    events = [e for c in control.values() for e in c["events"] if e["kind"] != "recycle_audit"]
    tau = st.session_state.get("mon_tau", 0.1)
    for f in followers:
        if f.name in control:
            act_panel(f, control[f.name], tau)
    c1, c2 = st.columns(2)
    c1.plotly_chart(charts.loss_figure(df, x_axis, smoothing, events=events), key="chart_loss")
    c2.plotly_chart(charts.accuracy_figure(df, x_axis, smoothing, events=events), key="chart_acc")
    tau = st.select_slider("τ for τ-dormant", TAUS, value=0.1, key="mon_tau", help=TAU_HELP)
    c1, c2 = st.columns(2)
    c1.plotly_chart(charts.dead_figure(df, x_axis, smoothing, events=events), key="chart_dead")
    c2.plotly_chart(charts.dormant_figure(dormant_frame(followers, df, tau), x_axis, smoothing, tau=tau, events=events),
                    key="chart_dormant")
    st.caption("dead/<layer>: fraction of units with f' ≤ eps on every training sample of the window (train "
               "mode); dashed dead_exact/<layer>: eval mode on a fixed probe set, at epoch ends. "
               "τ-dormant: mean |output| ÷ the layer's mean ≤ τ (Sokar et al., ICML 2023).")
    st.plotly_chart(charts.grad_norm_figure(df, x_axis, smoothing, events=events), key="chart_grad")
    sources.other_scalars(df, followers, x_axis, smoothing)

    f = followers[0] if len(followers) == 1 else next((x for x in followers if x.name == st.session_state.get("mon_detail_run")), followers[0])
    if len(followers) > 1:
        st.selectbox("Run for the layer views", [x.name for x in followers], key="mon_detail_run")
    layers = sorted(set(f.layers) | {h["key"].removeprefix("pre/") for h in f.histograms})
    if not layers:
        return
    c1, c2, c3 = st.columns([2, 2, 1])
    layer = c1.selectbox("Layer", layers, key="mon_layer")
    cfg = f.config
    # Older runs lack the per-layer map; their config's activation is the best guess.
    act = f.layers.get(layer, {"activation": cfg.get("activation", "relu"), "params": cfg.get("act_params") or {}})
    definition = layer_definition(act)
    text = DEFINITION_TEXT["fallback" if act.get("dead") is False else definition]
    c1.markdown(text.format(tau=tau, cls=act.get("class") or act.get("activation") or "?"))
    order = c3.radio("Sort units", ["quiet", "activity", "index"], key="mon_order",
                     format_func={"quiet": "by when they went quiet", "activity": "by activity", "index": "by index"}.get)
    hists = [h for h in f.histograms if h["key"] == f"pre/{layer}"]
    c1, c2b = st.columns(2)
    if hists:
        steps = [h["step"] for h in hists]
        # Follow the newest step unless the user picked an older one.
        step = c2.select_slider("Step", steps, value=steps[-1], key=f"mon_step_{f.name}_{layer}_{len(steps)}") if len(steps) > 1 else steps[0]
        hist = next(h for h in hists if h["step"] == step)
        if act.get("activation"):
            c1.plotly_chart(charts.histogram_figure(hist, act["activation"], act.get("params") or {}, cfg.get("eps", 0.0)),
                            key="chart_hist")
        else:
            c1.info(f"{layer}: no registry curve for this class, so no f' overlay.")
    if definition == "dead":
        rows, threshold, zmax, label = [u for u in f.units if u["key"] == layer], 0.0, 1.0, "active"
    else:
        rows, threshold, zmax, label = [u for u in f.units if u["key"] == f"score/{layer}"], tau, 2.0, "τ-score"
    c2b.plotly_chart(charts.activity_heatmap(rows, order=order, threshold=threshold, zmax=zmax, label=label),
                     key="chart_activity")
    dormancy_panel(f, df, store, x_axis, events)


def control_state(name: str) -> dict:
    """Events, commands and the full-resolution tail the alert rules read (small tables: read whole)."""
    with store.open(name) as r:
        return {"events": attach_audits(r.events()), "commands": r.commands(), "tail": r.tail(),
                "branchable": r.meta.get("kind", "") in launcher.BRANCHABLE}


def act_panel(f, control: dict, tau: float):
    """Diagnosis alerts, recycle buttons per layer and counterfactual branches for one run."""
    import pandas as pd

    from actlab.watcher.diagnosis import diagnose

    alerts = diagnose(control["tail"], f.config, f.layers, f.status.reason)
    for a in alerts:
        box = st.error if a.severity == "error" else st.warning
        causes = "".join(f"\n- {c}" for c in a.causes[:4])
        link = f"\n\n[See {a.activation} and its f′ in the explorer]({a.explorer_url})" if a.explorer_url else ""
        box(f"**{f.name}**: {a.message}\n\nLikely causes:{causes}{link}")
        if a.actions and control["branchable"]:
            cols = st.columns(len(a.actions))
            for col, action in zip(cols, a.actions):
                if col.button(action["label"], key=f"alert_{f.name}_{a.kind}_{a.layer}_{action['kind']}"):
                    start_branch(f.name, action["overrides"])
    recyclable = {n: v for n, v in f.layers.items() if not str(v.get("recycle", "cannot")).startswith("cannot")}
    with st.expander(f"Act on {f.name}: recycle units, branch a counterfactual", expanded=bool(alerts)):
        if f.status.state != "running":
            st.caption(f"{f.name} is {f.status.state}: recycling acts on a running trainer only.")
        elif not recyclable:
            st.caption("No layer of this run can be recycled: " + "; ".join(
                f"{n}: {v.get('recycle', 'cannot recycle: an older run without the pair map')}" for n, v in f.layers.items()))
        else:
            st.caption(f"The trainer applies a command at its next flush (every {f.config.get('log_every', '?')} steps): "
                       "incoming weights redrawn, outgoing weights and their optimizer state zeroed (ReDo).")
            c1, c2 = st.columns(2)
            by = c1.selectbox("Recycle by", ["layer"] + list(RECYCLE_BY), key=f"recycle_by_{f.name}",
                              format_func=lambda b: "the layer's own figure (dead or τ-dormant)" if b == "layer" else b,
                              help="grama, utility and age need the dormancy plug-in on the run (docs/dormancy.md)")
            conv = c2.radio("Optimizer state", ["redo", "cbp"], horizontal=True, key=f"recycle_conv_{f.name}",
                            format_func={"redo": "ReDo: zero Adam's moments, keep the step",
                                         "cbp": "continual backprop: also reset the step, mean into the next bias"}.get)
            cols = st.columns(min(4, len(recyclable)))
            for i, (layer, meta) in enumerate(recyclable.items()):
                dead = layer_definition(meta) == "dead"
                label = f"Recycle dead units of {layer}" if dead else f"Recycle τ-dormant units of {layer} (τ = {tau:g})"
                if by != "layer":
                    label = f"Recycle {by} units of {layer}"
                if cols[i % len(cols)].button(label, key=f"recycle_{f.name}_{layer}", help=meta.get("recycle")):
                    args = {"layer": layer, "dead": True} if dead else {"layer": layer, "tau": float(tau)}
                    if by != "layer":
                        args = {"layer": layer, "by": by, "tau": float(tau)}
                    if conv != "redo":
                        args["convention"] = conv
                    try:
                        # One id per click: a rerun of the page never sends the command twice.
                        cmd = store.send_command(f.name, "recycle", args, command_id=uuid.uuid4().hex)
                        st.toast(f"queued: recycle {layer} (command {cmd['id'][:8]})")
                    except UserError as e:
                        st.error(str(e))
        if control["commands"]:
            cmds = pd.DataFrame(control["commands"])[["id", "kind", "args", "state", "applied_step", "result"]]
            cmds["args"] = cmds["args"].map(lambda a: ", ".join(f"{k}={v}" for k, v in a.items()))
            st.dataframe(cmds, hide_index=True)
        if control["branchable"]:
            c1, c2 = st.columns([3, 1])
            change = c1.selectbox("Branch here: a new run from the latest checkpoint, with", list(BRANCHES),
                                  key=f"branch_change_{f.name}", format_func=BRANCHES.get)
            if c2.button("Branch here", key=f"branch_{f.name}"):
                start_branch(f.name, branch_overrides(change, f.config))


BRANCHES = {"recycle": "recycling (ReDo) every log interval", "leaky_relu": "LeakyReLU instead", "half_lr": "half the learning rate"}


def branch_overrides(change: str, config: dict) -> dict:
    if change == "recycle":
        return {"recycle_every": int(config.get("log_every") or 50)}
    if change == "leaky_relu":
        return {"activation": "leaky_relu"}
    return {"lr": float(config.get("lr", 1e-3)) / 2}


def start_branch(run: str, overrides: dict):
    try:
        name, pid = launcher.branch(run, runs_dir, overrides)
    except UserError as e:
        st.error(str(e))
        return
    # Both runs drawn together: the branch joins the selection beside the original.
    st.session_state["mon_pending"] = name
    st.success(f"started {name} (pid {pid}) from {run}'s latest checkpoint with {overrides}; {run} goes on untouched")


TAUS = [0.0, 0.025, 0.05, 0.1, 0.2, 0.3]
TAU_HELP = ("A unit is τ-dormant when its mean |activation output| over the window, divided by the layer's mean of "
            "that figure over its units, is at most τ (Sokar et al., \"The Dormant Neuron Phenomenon in Deep "
            "Reinforcement Learning\", ICML 2023). The paper uses τ = 0, 0.025 and 0.1.")
DEFINITION_TEXT = {
    "dead": "**Definition: dead** ({cls} is ReLU-like: f′ = 0 on an interval). A unit is dead when f′ ≤ eps on "
            "every sample of the window; the heatmap shows per-unit activity.",
    "dormant": "**Definition: τ-dormant, τ = {tau:g}** ({cls}: f′ is almost never exactly 0, so dead/ stays near 0). "
               "The heatmap shows each unit's τ-score; ≤ τ is dormant.",
    "fallback": "**Definition: τ-dormant, τ = {tau:g}** ({cls}: a subclass or a class not in the map, so its f′ is "
                "not vouched for and there is no dead/). The heatmap shows each unit's τ-score; ≤ τ is dormant.",
}


def layer_definition(act: dict) -> str:
    """The figure a layer leads with: run.json's `definition` (watch runs), else by activation name."""
    if act.get("definition") in ("dead", "dormant"):
        return act["definition"]
    return "dead" if act.get("activation") in RELU_LIKE else "dormant"


def dormant_frame(followers, df, tau: float):
    """dormant/<layer> at the chosen tau: recomputed from the stored per-unit scores where the run has
    them; otherwise the stored dormant/ keys (written at the run's own tau)."""
    import pandas as pd

    parts = []
    for f in followers:
        stored = f.scalars[f.scalars["key"].str.startswith("dormant/")] if len(f.scalars) else f.scalars
        scores = charts.dormant_from_scores(f.units, tau, run=f.name)
        # The run's own tau: its dormant/ keys are exact (every axis); another tau: from the scores.
        use_stored = len(stored) and (float(f.config.get("tau", 0.1)) == float(tau) or not len(scores))
        parts.append(stored if use_stored else scores)
    return pd.concat(parts, ignore_index=True) if parts else df.iloc[0:0]


st.fragment(run_every=interval if auto else None)(live_panel)()
