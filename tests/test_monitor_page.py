"""Monitor page under AppTest and its figure factories: assertions on the data the charts carry."""
import base64
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from actlab.store.runs import RunStore
from actlab.dashboard.charts import training as charts

PAGE = str(Path(__file__).resolve().parent.parent / "dashboard" / "views" / "monitor.py")


def arr(v):
    """Plotly 6 ships numpy arrays as {'dtype', 'bdata'}; lists stay lists."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"])).tolist()
    return list(v)


def chart(at, key):
    e = next(e for e in at.get("plotly_chart") if e.proto.id.endswith(key))
    return json.loads(e.proto.spec)


def trace(fig, name):
    return next(t for t in fig["data"] if t.get("name") == name)


DEAD = [0.5, 0.25, 0.125]


def _make_run(root, name="r1", state="finished"):
    w = RunStore(root).create(name, {"activation": "relu", "act_params": {}, "eps": 0.0}, kind="mnist")
    for i, step in enumerate([10, 20, 30]):
        w.log_scalars(step, {"loss/train": 2.0 - i * 0.5, "acc/train": 0.3 + 0.2 * i, "dead/act1": DEAD[i],
                             "grad_norm/fc1.weight": 1.0 + i}, epoch=step / 30)
        w.log_histogram(step, "pre/act1", np.linspace(-6, 6, 13), np.arange(12) + i, epoch=step / 30)
        w.log_unit_activity(step, "act1", [0.0, 0.5 + 0.1 * i, 1.0], epoch=step / 30)
    w.log_scalars(30, {"loss/test": 1.2, "acc/test": 0.7, "dead_exact/act1": 0.4}, epoch=1.0)
    if state != "running":
        w.set_status(state, "boom" if state == "failed" else None)
    return w


@pytest.fixture
def app(runs_dir):
    def make():
        at = AppTest.from_file(PAGE, default_timeout=60)
        at.run()
        assert not at.exception, at.exception
        return at
    return make


def test_no_runs_says_how_to_start(app):
    at = app()
    assert any("No runs" in i.value for i in at.info)


def test_auto_refresh_off_says_so(app, runs_dir):
    _make_run(runs_dir)
    at = app()
    assert not [c for c in at.caption if c.value.startswith("Auto-refresh is off")]
    at.toggle(key="mon_auto").set_value(False).run()
    assert [c for c in at.caption if c.value.startswith("Auto-refresh is off")]


def test_dead_fraction_trace_equals_the_store(app, runs_dir):
    _make_run(runs_dir).close()
    at = app()
    fig = chart(at, "chart_dead")
    t = trace(fig, "r1 dead/act1")
    assert arr(t["x"]) == [10, 20, 30] and arr(t["y"]) == DEAD
    assert arr(trace(fig, "r1 dead_exact/act1")["y"]) == [0.4]
    assert arr(trace(chart(at, "chart_loss"), "r1 loss/train")["y"]) == [2.0, 1.5, 1.0]
    assert arr(trace(chart(at, "chart_acc"), "r1 acc/test")["y"]) == [0.7]
    assert arr(trace(chart(at, "chart_grad"), "r1 grad_norm/fc1.weight")["y"]) == [1.0, 2.0, 3.0]
    assert any(":blue-badge[finished]" in m.value for m in at.markdown)


def test_histogram_and_activity_show_the_latest_step(app, runs_dir):
    _make_run(runs_dir).close()
    at = app()
    h = chart(at, "chart_hist")
    bars = h["data"][0]
    assert bars["type"] == "bar" and arr(bars["y"])  # density of the step-30 histogram
    counts = np.arange(12) + 2
    assert np.allclose(arr(bars["y"]), counts / counts.sum() / 1.0)
    fprime = trace(h, "relu f'(x)")
    assert set(np.round(arr(fprime["y"]), 6)) == {0.0, 1.0}
    assert any(s["type"] == "rect" and s["x1"] <= 0 for s in h["layout"]["shapes"])  # dead zone shaded left of 0
    heat = chart(at, "chart_activity")["data"][0]
    assert arr(heat["y"]) == [10, 20, 30]


def test_live_refresh_reads_only_new_rows(app, runs_dir):
    w = _make_run(runs_dir, "live", state="running")
    at = app()
    assert arr(trace(chart(at, "chart_dead"), "live dead/act1")["y"]) == DEAD
    assert any(":green-badge[running]" in m.value for m in at.markdown)
    w.log_scalars(40, {"dead/act1": 0.9})
    at.run()
    assert arr(trace(chart(at, "chart_dead"), "live dead/act1")["y"]) == DEAD + [0.9]
    f = next(iter(at.session_state["mon_followers"].values()))
    assert f.scalar_cursor == len(f.scalars)  # one row per id: nothing read twice
    assert any(b.label == "Stop" for b in at.button)
    w.close()


def test_smoothing_and_epoch_axis(app, runs_dir):
    _make_run(runs_dir).close()
    at = app()
    at.sidebar.radio(key="mon_x").set_value("epoch")
    at.sidebar.slider(key="mon_smoothing").set_value(0.5)
    at.run()
    t = trace(chart(at, "chart_loss"), "r1 loss/train")
    assert np.allclose(arr(t["x"]), [1 / 3, 2 / 3, 1.0])
    assert arr(t["y"])[0] == 2.0 and arr(t["y"])[1] != 1.5  # EMA, debiased at the start


def test_failed_run_shows_reason(app, runs_dir):
    _make_run(runs_dir, "bad", state="failed").close()
    at = app()
    assert any(":red-badge[failed]" in m.value for m in at.markdown)
    assert any("boom" in c.value for c in at.caption)


@pytest.mark.parametrize("field,value,msg", [("f_lr", "abc", "lr: expected a number"),
                                             ("f_hidden", "64 x", "hidden: expected an integer"),
                                             ("f_params", "alpha", "expected K=V"),
                                             ("f_name", "../x", "may not contain")])
def test_start_form_refuses_bad_input_and_starts_nothing(app, runs_dir, field, value, msg):
    at = app()
    at.text_input(key=field).set_value(value)
    at.button[0].click()  # the form's submit button
    at.run()
    assert any(msg in e.value for e in at.error), [e.value for e in at.error]
    assert RunStore(runs_dir).names() == []


def test_downsample_keeps_ends_and_caps_points():
    idx = charts.downsample(10_000, 500)
    assert len(idx) <= 500 and idx[0] == 0 and idx[-1] == 9_999
    assert charts.downsample(5, 500).tolist() == [0, 1, 2, 3, 4]


def test_scalar_figure_downsamples_long_series():
    import pandas as pd

    n = 5000
    df = pd.DataFrame({"run": "r", "step": np.arange(n), "epoch": np.arange(n) / n, "key": "dead/act1",
                       "value": np.linspace(0, 1, n), "wall_time": 100 + np.arange(n) * 0.1})
    fig = charts.dead_figure(df, x="wall_time", max_points=300)
    assert len(fig.data[0].x) <= 300 and fig.data[0].x[0] == 0.0 and fig.data[0].y[-1] == 1.0


def test_histogram_under_leaky_relu_has_no_dead_zone():
    fig = charts.histogram_figure({"key": "pre/act1", "step": 1, "edges": [-2, 0, 2], "counts": [1, 3]}, "leaky_relu",
                                  {"alpha": 0.1})
    assert list(fig.data[0].y) == [0.125, 0.375]
    assert min(fig.data[1].y) == pytest.approx(0.1) and not fig.layout.shapes
