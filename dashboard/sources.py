"""The monitor's external runs (TensorBoard folders, an MLflow tracking URI) as page pieces, so
views/monitor.py only places them: the sidebar inputs, the listing, one follower per run kept in
the session, and the chart of the scalars the standard charts do not draw."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from actlab import paths, sources
from actlab.dashboard.charts import training as charts

TB_HELP = ("Folders holding TensorBoard event files, one per line; every sub-folder with event files is a run "
           "(TensorBoard's own layout). Followed live: each refresh reads only what was appended. "
           "Also from ACTLAB_TB_DIRS.")
MLFLOW_HELP = ("An MLflow tracking URI (sqlite:///path/mlflow.db, http://host:5000, ...): its runs are listed "
               "beside ours. Also from ACTLAB_MLFLOW_URI.")


def sidebar() -> tuple[str, str]:
    """Call inside `with st.sidebar:`. The text of the two inputs."""
    tb_text = st.text_area("TensorBoard folders", "\n".join(paths.tb_dirs()), key="mon_tb_dirs", help=TB_HELP,
                           placeholder="one folder per line", height=68)
    uri = st.text_input("MLflow tracking URI", paths.mlflow_uri(), key="mon_mlflow_uri", help=MLFLOW_HELP,
                        placeholder="sqlite:///mlflow.db")
    # Kept outside the widgets' state, which Streamlit drops on other pages: the compare page lists these too.
    st.session_state["ext_tb_text"], st.session_state["ext_mlflow_uri"] = tb_text, uri
    return tb_text, uri


@st.cache_data(ttl=5, show_spinner=False)
def _discover(tb_text: str, uri: str) -> tuple[dict, list[str]]:
    # Listing an MLflow server on every 2 s refresh of every open page is wasteful; 5 s is fresh enough.
    return sources.discover(sources.parse_dirs(tb_text), uri)


def runs(tb_text: str, uri: str) -> dict[str, tuple]:
    """{name: spec} of the external runs; what could not be read is shown, one line each."""
    if not sources.parse_dirs(tb_text) and not uri.strip():
        return {}
    specs, errors = _discover(tb_text, uri)
    for e in errors:
        st.error(e)
    # A run being followed stays listed after it vanishes (deleted folder or MLflow run), so its
    # chart and the note saying where its series ended stay on the page.
    roots = [Path(d).expanduser().resolve() for d in sources.parse_dirs(tb_text)]
    for name, spec in st.session_state.get("mon_ext_followers", {}):
        kept = (spec[0] == "mlflow" and spec[1] == uri.strip()) or \
            (spec[0] == "tensorboard" and any(Path(spec[1]).resolve().is_relative_to(r) for r in roots))
        if kept and name not in specs:
            specs[name] = spec
    return specs


def follower(name: str, spec: tuple, points: int):
    cache = st.session_state.setdefault("mon_ext_followers", {})
    key = (name, spec)
    if key not in cache:
        cache[key] = sources.open_follower(name, spec, points)
    return cache[key]


def is_external(f) -> bool:
    return getattr(f, "kind", None) in ("tensorboard", "mlflow")


def only_foreign_keys(df, followers) -> bool:
    """Every run shown is external and none of its keys is one the standard charts draw: then
    those charts would all be empty, and the page shows only the runs' own scalars."""
    return bool(followers) and all(map(is_external, followers)) and len(charts.unplotted_keys(df)) == df["key"].nunique()


def other_scalars(df, followers, x_axis: str, smoothing: float) -> None:
    """The external runs' scalars that no standard chart draws (their own key names), keys picked
    by the user, on the same x-axis, smoothing and downsampling as the charts above."""
    ext = [f.name for f in followers if is_external(f)]
    if not ext:
        return
    d = df[df["run"].isin(ext)]
    keys = charts.unplotted_keys(d)
    if not keys:
        return
    for f in followers:
        if is_external(f) and f.notes:
            st.caption(f"{f.name}: " + "; ".join(f.notes))
    chosen = st.multiselect("Scalars of the TensorBoard / MLflow runs", keys, default=keys[:4], key="mon_ext_keys")
    if chosen:
        st.plotly_chart(charts.scalar_figure(d, chosen, x_axis, smoothing, "Scalars"), key="chart_ext")


@st.cache_data(ttl=10, show_spinner="Reading TensorBoard / MLflow runs...")
def _load(specs: tuple):
    return sources.load_runs(dict(specs))


def compare_picker():
    """Compare page: pick TensorBoard / MLflow runs (the folders and URI set on the monitor, or
    ACTLAB_TB_DIRS / ACTLAB_MLFLOW_URI); their full series as a LoadResult, or None."""
    tb_text = st.session_state.get("ext_tb_text", "\n".join(paths.tb_dirs()))
    uri = st.session_state.get("ext_mlflow_uri", paths.mlflow_uri())
    specs = runs(tb_text, uri)
    if not specs:
        return None
    picked = st.multiselect("TensorBoard / MLflow runs", list(specs), key="ext_runs",
                            help="From the TensorBoard folders and MLflow URI set on the monitor's sidebar "
                                 "(or ACTLAB_TB_DIRS / ACTLAB_MLFLOW_URI).")
    return _load(tuple((n, specs[n]) for n in picked)) if picked else None
