"""Acting on a run from the monitor and the CLI: recycle buttons, event markers on every chart,
diagnosis alerts with branch offers, and a real trainer process recycled while it runs."""
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from actlab.train import launcher
from actlab.store.runs import RunStore
from actlab.train.mnist import train_mnist
from actlab.watcher import watch
from tests.test_monitor_page import arr, chart, trace
from tests.test_recycle import _Dying, _train

ROOT = Path(__file__).resolve().parent.parent
PAGE = str(ROOT / "dashboard" / "views" / "monitor.py")


def _page():
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def test_recycle_button_queues_a_command_and_events_mark_every_chart(runs_dir):
    torch.manual_seed(0)
    model, x = _Dying(), torch.rand(32, 8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    store = RunStore(runs_dir)
    with watch(model, run="live", log_every=5, runs_dir=runs_dir, verbose=False) as w:
        _train(w, model, opt, 5, x)
        store.send_command("live", "recycle", {"layer": "act1", "dead": True}, command_id="first")
        _train(w, model, opt, 5, x)  # applied at step 10
        at = _page()
        for key in ("chart_loss", "chart_acc", "chart_dead", "chart_dormant", "chart_grad"):
            ev = trace(chart(at, key), "live events")
            assert arr(ev["x"]) == [10.0], key
            assert "recycle act1" in ev["hovertext"][0] and "28 of 32 units dead" in ev["hovertext"][0]
        button = next(b for b in at.button if b.label == "Recycle dead units of act1")
        button.click().run()
        assert not at.exception, at.exception
        cmds = store.open("live").commands()
        assert [c["state"] for c in cmds] == ["applied", "pending"]
        assert cmds[1]["args"] == {"layer": "act1", "dead": True}
        _train(w, model, opt, 5, x)
        assert [c["state"] for c in store.open("live").commands()] == ["applied", "applied"]


def _dying_mnist_run(root, name="dying", state_running=True):
    """A run shaped like the stress preset's: dead/act1 rising over the last three flushes."""
    w = RunStore(root).create(name, {"lr": 0.02, "init_bias": -1.0, "norm": "none", "activation": "relu",
                                     "optimizer": "adam", "log_every": 10}, kind="mnist",
                              layers={"act1": {"activation": "relu", "params": {}, "definition": "dead", "dead": True,
                                               "class": "ReLU", "recycle": "fc1 -> out"}})
    for step, dead in zip((10, 20, 30, 40), (0.1, 0.45, 0.6, 0.8)):
        w.log_scalars(step, {"loss/train": 1.0, "dead/act1": dead, "grad_norm/fc1.weight": 0.5}, epoch=step / 63)
    return w


def test_alert_names_the_layer_and_causes_and_offers_branches(runs_dir, monkeypatch):
    _dying_mnist_run(runs_dir)
    at = _page()
    warning = next(w.value for w in at.warning if "act1" in w.value)
    assert "80% of units dead" in warning and "45% -> 80%" in warning
    assert warning.index("negative bias init") < warning.index("learning rate")
    assert "](/explorer?act=relu)" in warning
    calls = []
    monkeypatch.setattr(launcher, "branch", lambda run, runs_dir, overrides, **kw: calls.append((run, overrides)) or ("b", 1))
    next(b for b in at.button if b.label == "Branch with recycling (ReDo)").click().run()
    next(b for b in at.button if b.label == "Branch with half the learning rate").click().run()
    at.selectbox(key="branch_change_dying").set_value("leaky_relu").run()
    next(b for b in at.button if b.label == "Branch here").click().run()
    assert not at.exception, at.exception
    assert calls == [("dying", {"recycle_every": 10}), ("dying", {"lr": 0.01}), ("dying", {"activation": "leaky_relu"})]


def test_branch_refused_for_a_run_without_our_checkpoint(runs_dir):
    m = _Dying()
    with watch(m, run="user", log_every=1, runs_dir=runs_dir, verbose=False) as w:
        m(torch.rand(2, 8))
        w.step(loss=1.0)
    with pytest.raises(Exception, match="no checkpoint of ours"):
        launcher.branch("user", runs_dir, {"recycle_every": 10})
    _dying_mnist_run(runs_dir, "nock")
    with pytest.raises(Exception, match="no checkpoint yet"):
        launcher.branch("nock", runs_dir, {"recycle_every": 10}, checkpoints_dir=str(runs_dir.parent / "ck"))
    with pytest.raises(Exception, match="may change"):
        launcher.branch("nock", runs_dir, {"hidden": [4]})


def _wait(pred, timeout=90.0, what=""):
    t0 = time.time()
    while time.time() - t0 < timeout:
        v = pred()
        if v is not None and v is not False:
            return v
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_branch_runs_from_the_checkpoint_with_the_change(runs_dir, tmp_path):
    """A branch starts at the checkpoint's step with the change and its own name; the original's rows
    stay exactly as they were."""
    ck = tmp_path / "ck"
    store = RunStore(runs_dir)
    train_mnist({"lr": 2e-2, "init_bias": -1.0, "hidden": [32], "epochs": 1, "log_every": 21, "runs_dir": str(runs_dir),
                 "checkpoints_dir": str(ck), "name": "orig", "progress": False})
    before, _ = store.open("orig").scalars()
    name, _ = launcher.branch("orig", runs_dir, {"recycle_every": 21, "lr": 1e-2, "epochs": 3}, name="orig-b",
                              checkpoints_dir=str(ck))
    _wait(lambda: store.exists(name) and store.open(name).status().state != "running", 120, "the branch to finish")
    r = store.open(name)
    assert r.status().state == "finished", (store.path(name) / "train.log").read_text()[-2000:]
    assert r.config["branch_of"] == {"run": "orig", "step": 63}
    assert r.config["recycle_every"] == 21 and r.config["lr"] == 1e-2 and r.config["init_bias"] == -1.0
    df, _ = r.scalars(keys=["loss/train"])
    assert df["step"].min() == 84 and df["step"].max() == 189
    # Scheduled recycling at every flush 21 steps after the last, counted from the branch point.
    assert [e["step"] for e in r.events() if e["kind"] == "recycle"] == [84, 105, 126, 147, 168, 189]
    after, _ = store.open("orig").scalars()
    assert after.equals(before) and store.open("orig").events() == []


def test_runs_recycle_on_a_real_running_trainer(runs_dir, tmp_path):
    """`runs recycle` against a live `train mnist --preset stress` process: applied at the next flush,
    recorded as an event, and the layer's dead rate drops in the window after it."""
    name, pid = launcher.start("mnist", {"preset": "stress", "hidden": [256], "epochs": 200, "log_every": 10},
                               runs_dir, name="live-stress", checkpoints_dir=str(tmp_path / "ck"))
    store = RunStore(runs_dir)
    try:
        def dead_rows():
            if not store.exists(name):
                return None
            df, _ = store.open(name).scalars(keys=["dead/act1"])
            return df if len(df) >= 6 and df["value"].iloc[-1] > 0.3 else None
        _wait(dead_rows, 120, "the stress run to kill units")
        r = subprocess.run([sys.executable, "-m", "actlab", "runs", "recycle", name, "--layer", "act1", "--dead",
                            "--wait", "60", "--runs-dir", str(runs_dir)], cwd=ROOT, capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "applied at step" in r.stdout
        (ev,) = [e for e in store.open(name).events() if e["kind"] == "recycle"]
        assert ev["units"] > 0 and ev["layer"] == "act1"
        after = _wait(lambda: (lambda d: d if len(d) else None)(
            store.open(name).scalars(keys=["dead/act1"])[0].query(f"step > {ev['step']}")), 60, "the next window")
        df, _ = store.open(name).scalars(keys=["dead/act1"])
        before = df[df["step"] == ev["step"]]["value"].iloc[0]
        assert after["value"].iloc[0] < before, (before, after["value"].tolist())
    finally:
        try:
            launcher.stop(name, runs_dir)
        except Exception:
            pass
        _wait(lambda: store.open(name).status().state != "running", 60, "the trainer to stop")
