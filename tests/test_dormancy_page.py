"""The monitor's "every definition" section under AppTest: what renders comes from the store."""
import numpy as np
import torch
from streamlit.testing.v1 import AppTest
from torch import nn

from actlab.store.runs import RunStore
from actlab.watcher import watch
from actlab.watcher.dormancy_plugin import DormancyPlugin
from tests.test_dormancy_plugin import _drive
from tests.test_monitor_page import PAGE, arr, chart, trace


def _page():
    at = AppTest.from_file(PAGE, default_timeout=90)
    at.run()
    assert not at.exception, at.exception
    return at


def _run(runs_dir, name="dorm", close=True):
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    w = watch(model, run=name, runs_dir=runs_dir, log_every=4, verbose=False,
              plugins=[DormancyPlugin(every=1, groups=4, n_boot=30)])
    _drive(w, model, [2 * torch.randn(16, 6) for _ in range(12)], opt)
    if close:
        w.close()
    return w


def test_small_multiples_rank_overlap_and_note(runs_dir):
    _run(runs_dir)
    df, _ = RunStore(runs_dir).open("dorm").scalars()
    at = _page()
    assert any("lose plasticity without any dead units" in i.value for i in at.info)
    for layer in ("1", "3"):
        fig = chart(at, f"chart_dorm_{layer}")
        redo = trace(fig, "redo")
        want = df[df.key == f"dormancy/redo/{layer}"].sort_values("step")
        assert arr(redo["x"]) == want.step.tolist() and arr(redo["y"]) == want.value.tolist()
        band = trace(fig, "redo interval")
        hi = df[df.key == f"dormancy_hi/redo/{layer}"].sort_values("step").value.tolist()
        assert arr(band["y"])[: len(hi)] == hi
    assert "saturated" in [t["name"] for t in chart(at, "chart_dorm_1")["data"]]  # tanh
    assert "saturated" not in [t["name"] for t in chart(at, "chart_dorm_3")["data"]]  # relu
    rank = trace(chart(at, "chart_rank"), "3")
    assert arr(rank["y"]) == df[df.key == "rank/3"].sort_values("step").value.tolist()
    ov = chart(at, "chart_overlap")["data"][0]
    assert "redo" in ov["x"] and len(ov["z"]) == len(ov["x"])
    i = ov["x"].index("redo")
    assert ov["z"][i][i] == 1.0


def test_definition_selector_filters_lines(runs_dir):
    _run(runs_dir)
    at = _page()
    sel = at.multiselect(key="mon_defs")
    assert "grama" in sel.value and "age" in sel.value
    sel.set_value(["grama"]).run()
    assert not at.exception, at.exception
    names = [t["name"] for t in chart(at, "chart_dorm_3")["data"] if t["name"] != "dorm events"]
    assert names == ["grama interval", "grama"]


def test_run_without_plugin_says_how(runs_dir):
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    with watch(model, run="plain", runs_dir=runs_dir, log_every=2, verbose=False) as w:
        for _ in range(4):
            model(torch.randn(5, 3)).sum().backward()
            w.step()
    at = _page()
    assert any("has no dormancy scores" in c.value for c in at.caption)


def test_recycle_by_definition_button_sends_by_and_convention(runs_dir):
    w = _run(runs_dir, "live", close=False)
    at = _page()
    at.selectbox(key="recycle_by_live").set_value("grama").run()
    at.radio(key="recycle_conv_live").set_value("cbp").run()
    button = next(b for b in at.button if b.label == "Recycle grama units of 3")
    button.click().run()
    assert not at.exception, at.exception
    cmd = RunStore(runs_dir).open("live").commands()[-1]
    assert cmd["args"]["by"] == "grama" and cmd["args"]["convention"] == "cbp" and cmd["state"] == "pending"
    w.close()
    assert np.isfinite(w.step_count)


def test_start_form_dormancy_box_reaches_the_trainer_argv(runs_dir, monkeypatch):
    from actlab.train import launcher

    calls = []

    def fake_start(task, fields, runs_dir, name=None, checkpoints_dir=None):
        calls.append(launcher.build_argv(task, fields))
        return f"{task}-x", 1
    monkeypatch.setattr(launcher, "start", fake_start)
    at = _page()
    at.selectbox(key="f_preset").set_value("stress")
    at.checkbox(key="f_dormancy").check()
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception, at.exception
    assert "--dormancy" in calls[-1] and "--preset" in calls[-1]
    at.radio(key="f_task").set_value("biencoder").run()
    at.checkbox(key="f_bi_dormancy").check()
    next(b for b in at.button if b.label == "Start training").click().run()
    assert "--dormancy" in calls[-1] and "biencoder" in calls[-1]
