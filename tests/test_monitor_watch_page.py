"""Monitor page with runs written by watch(): per-layer definition, tau selector, sorted heatmap, start form fixes."""
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest
from torch import nn

from actlab.train import launcher
from actlab.store.runs import RunStore
from actlab.cli.train import add_mnist as mnist_cli
from actlab.train.mnist import config_from_args
from actlab.watcher import watch
from actlab.dashboard.charts import training as charts
from tests.test_monitor_page import arr, chart, trace

PAGE = str(Path(__file__).resolve().parent.parent / "dashboard" / "views" / "monitor.py")


class TwoActs(nn.Module):
    """fc -> ReLU (units 0, 1 dead) and fc -> GELU with unit scales 1, 1, 1, 0.02 (unit 3 dormant at tau 0.1)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 4)
        with torch.no_grad():
            self.fc.weight.zero_()
            self.fc.bias.copy_(torch.tensor([-1.0, -1.0, 1.0, 1.0]))
        self.relu = nn.ReLU()
        self.gelu = nn.GELU()

    def forward(self, x):
        self.relu(self.fc(x))
        return self.gelu(torch.tensor([2.0, 2.0, 2.0, 0.04]) * torch.ones_like(x[:, :1]))


def make_watch_run(runs_dir, name="w1"):
    m = TwoActs()
    with watch(m, run=name, log_every=2, verbose=False) as w:
        for _ in range(6):
            m(torch.randn(8, 2))
            w.step(loss=1.0)
    return m


@pytest.fixture
def app(runs_dir):
    def make():
        at = AppTest.from_file(PAGE, default_timeout=60)
        at.run()
        assert not at.exception, at.exception
        return at
    return make


def test_watch_run_shows_definitions_and_tau_dormant(app, runs_dir):
    make_watch_run(runs_dir)
    at = app()
    assert any(":blue-badge[finished]" in m.value for m in at.markdown)
    pct = RunStore(runs_dir).open("w1").last()["watch/overhead_pct"]
    assert any(f"monitoring costs {pct:.1f} %" in c.value for c in at.caption)
    dead = chart(at, "chart_dead")
    assert arr(trace(dead, "w1 dead/relu")["y"]) == [0.5, 0.5, 0.5]
    dormant = chart(at, "chart_dormant")
    # gelu(2) = 1.954, gelu(0.04) = 0.0204: score of unit 3 = 0.0204 / mean = 0.014 -> dormant at tau 0.1 and 0.025.
    assert arr(trace(dormant, "w1 dormant/gelu")["y"]) == [0.25, 0.25, 0.25]
    assert arr(trace(dormant, "w1 dormant/relu")["y"]) == [0.5, 0.5, 0.5]
    at.select_slider(key="mon_tau").set_value(0.0)
    at.run()
    dormant = chart(at, "chart_dormant")
    assert arr(trace(dormant, "w1 dormant/gelu")["y"]) == [0.0, 0.0, 0.0]  # nobody is exactly 0
    assert arr(trace(dormant, "w1 dormant/relu")["y"]) == [0.5, 0.5, 0.5]  # dead ReLU units are
    assert "τ = 0" in dormant["layout"]["title"]["text"]
    at.selectbox(key="mon_layer").set_value("gelu")
    at.run()
    assert any("Definition: τ-dormant" in m.value for m in at.markdown)
    heat = chart(at, "chart_activity")["data"][0]
    assert heat["x"][0] == "u3"  # the dormant unit comes first
    at.selectbox(key="mon_layer").set_value("relu")
    at.run()
    assert any("Definition: dead" in m.value for m in at.markdown)
    heat = chart(at, "chart_activity")["data"][0]
    assert heat["x"][:2] == ["u0", "u1"] and np.allclose(np.array(heat["z"])[:, :2], 0.0)
    assert [h["name"] for h in RunStore(runs_dir).open("w1").config["watch"]["hooked"]] == ["relu", "gelu"]


def test_heatmap_sorts_units_by_when_they_went_quiet():
    rows = [{"step": s, "key": "act", "values": v} for s, v in
            [(1, [1.0, 1.0, 1.0, 1.0]), (2, [1.0, 0.0, 1.0, 0.5]), (3, [0.0, 0.0, 1.0, 0.2]), (4, [0.0, 0.0, 1.0, 0.0])]]
    fig = charts.activity_heatmap(rows, order="quiet")
    assert list(fig.data[0].x) == ["u1", "u0", "u3", "u2"]
    assert [row[0] for row in fig.data[0].z] == [1.0, 0.0, 0.0, 0.0]  # z columns follow the order
    # means 0.5, 0.25, 1.0, 0.425
    assert list(charts.activity_heatmap(rows, order="activity").data[0].x) == ["u1", "u3", "u0", "u2"]
    assert list(charts.activity_heatmap(rows, order="index").data[0].x) == ["u0", "u1", "u2", "u3"]


def test_dormant_from_scores_at_any_tau():
    units = [{"step": 5, "epoch": None, "key": "score/l", "values": [0.0, 0.02, 0.05, 1.9, 2.03]},
             {"step": 5, "epoch": None, "key": "l", "values": [1.0]}]
    for tau, want in [(0.0, 0.2), (0.025, 0.4), (0.1, 0.6)]:
        df = charts.dormant_from_scores(units, tau, run="r")
        assert df.key.tolist() == ["dormant/l"] and df.value.tolist() == [pytest.approx(want)]


@pytest.fixture
def captured(monkeypatch):
    calls = []

    def fake_start(task, fields, runs_dir, name=None, checkpoints_dir=None):
        calls.append((task, fields, launcher.build_argv(task, fields)))
        return name or f"{task}-x", 1234
    monkeypatch.setattr(launcher, "start", fake_start)
    return calls


def test_stress_preset_keeps_its_learning_rate(app, captured):
    at = app()
    at.selectbox(key="f_preset").set_value("stress")
    at.button[0].click()
    at.run()
    task, fields, argv = captured[-1]
    assert task == "mnist" and "--lr" not in argv and argv[argv.index("--preset") + 1] == "stress"
    import argparse

    p = argparse.ArgumentParser()
    mnist_cli(p.add_subparsers())
    cfg = config_from_args(p.parse_args(argv[argv.index("mnist"):]))
    assert cfg["lr"] == 2e-2  # the preset's, not the form's 1e-3
    at.text_input(key="f_lr").set_value("0.005")
    at.button[0].click()
    at.run()
    argv = captured[-1][2]
    assert argv[argv.index("--lr") + 1] == "0.005"  # a typed value still wins


def test_form_starts_a_biencoder_run(app, captured):
    at = app()
    at.radio(key="f_task").set_value("biencoder")
    at.run()
    at.selectbox(key="f_backbone").set_value("tiny")
    at.selectbox(key="f_head").set_value("with_relu")
    at.checkbox(key="f_freeze").check()
    at.number_input(key="f_bi_epochs").set_value(2)
    at.button[0].click()
    at.run()
    assert not at.error, [e.value for e in at.error]
    task, fields, argv = captured[-1]
    assert task == "biencoder"
    assert argv[argv.index("--backbone") + 1] == "tiny" and argv[argv.index("--head") + 1] == "with_relu"
    assert "--freeze-backbone" in argv and argv[argv.index("--epochs") + 1] == "2" and "--lr" not in argv


def test_biencoder_form_refuses_a_bad_learning_rate(app, captured):
    at = app()
    at.radio(key="f_task").set_value("biencoder")
    at.run()
    at.text_input(key="f_bi_lr").set_value("fast")
    at.button[0].click()
    at.run()
    assert any("lr: expected a number" in e.value for e in at.error) and not captured


def test_a_subclassed_activation_says_why_it_has_no_dead_figure(app, runs_dir):
    class MyReLU(nn.ReLU):
        pass

    m = nn.Sequential(nn.Linear(2, 3), MyReLU())
    with watch(m, run="sub", log_every=1, verbose=False) as w:
        m(torch.randn(4, 2))
        w.step()
    at = app()
    assert any("subclass or a class not in the map" in md.value for md in at.markdown)
    assert not any(t["name"].startswith("sub dead/") for t in chart(at, "chart_dead")["data"])
    assert [t["name"] for t in chart(at, "chart_dormant")["data"]] == ["sub dormant/1"]
