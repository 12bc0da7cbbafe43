"""The watcher's plug-in contract, its grouped settings and its typed flush records."""
import dataclasses
import math
import warnings

import numpy as np
import pytest
import torch
from actlab import UserError
from actlab.store.runs import RunStore
from actlab.watcher import (
    FlushRecord,
    LayerStats,
    NonFiniteGuard,
    NonFiniteValue,
    ProbeConfig,
    RecycleConfig,
    Recycler,
    StoreConfig,
    Watcher,
    WatchPlugin,
    watch,
)
from torch import nn


def half_dead():
    fc = nn.Linear(4, 8)
    with torch.no_grad():
        fc.weight.zero_()
        fc.bias.copy_(torch.tensor([-1.0, 1.0] * 4))
    return nn.Sequential(fc, nn.ReLU())


class Recorder(WatchPlugin):
    def __init__(self):
        self.calls = []

    def on_start(self, watcher):
        self.calls.append(("start", watcher.step_count))

    def on_step(self, watcher, step):
        self.calls.append(("step", step))

    def before_write(self, watcher, record):
        self.calls.append(("before_write", record.step))

    def on_flush(self, watcher, record):
        self.calls.append(("flush", record.step))
        self.record = record

    def on_close(self, watcher, status):
        self.calls.append(("close", status))


def test_hooks_fire_in_order_with_typed_records(runs_dir):
    m, rec = half_dead(), Recorder()
    with watch(m, run="order", log_every=2, verbose=False, plugins=[rec]) as w:
        for _ in range(3):
            m(torch.randn(5, 4))
            w.step(loss=torch.tensor(2.0))
    assert rec.calls == [("start", 0), ("step", 1), ("step", 2), ("before_write", 2), ("flush", 2), ("step", 3),
                         ("before_write", 3), ("flush", 3), ("close", "finished")]
    r = rec.record
    assert isinstance(r, FlushRecord) and r.step == 3 and r.scalars["loss/train"] == 2.0
    layer = r.layers["1"]
    assert isinstance(layer, LayerStats) and layer.dead == 0.5 and layer.alive.tolist() == [False, True] * 4
    assert layer.activity is not None and r.histograms["pre/1"].counts.sum() == 5 * 8
    assert len(r.histograms["pre/1"].edges) == 65
    assert "watch/overhead_pct" in r.scalars and r.scalars["dead/1"] == 0.5
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.step = 4  # frozen


def test_a_plugin_that_raises_is_disabled_once_and_training_goes_on(runs_dir):
    class Broken(WatchPlugin):
        def __init__(self):
            self.n = 0

        def on_flush(self, watcher, record):
            self.n += 1
            raise RuntimeError("plug-in bug")

    m, broken, after = half_dead(), Broken(), Recorder()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with watch(m, run="broken", log_every=1, verbose=False, plugins=[broken, after]) as w:
            for _ in range(3):
                m(torch.randn(2, 4))
                w.step()
    assert broken.n == 1  # disabled after the first raise
    assert [c for c in after.calls if c[0] == "flush"] == [("flush", 1), ("flush", 2), ("flush", 3)]
    msgs = [str(c.message) for c in caught if "plug-in Broken" in str(c.message)]
    assert len(msgs) == 1 and "plug-in bug" in msgs[0]
    r = RunStore(runs_dir).open("broken")
    assert r.status().state == "finished"
    (ev,) = [e for e in r.events() if e["kind"] == "plugin_disabled"]
    assert ev["step"] == 1 and "Broken raised in on_flush" in ev["reason"] and ev["details"]["hook"] == "on_flush"


def test_add_event_reaches_the_store_and_the_record(runs_dir):
    class Marker(WatchPlugin):
        def on_flush(self, watcher, record):
            watcher.add_event("note", reason="hello", layer="1", threshold=0.5)

    m, rec = half_dead(), Recorder()
    with watch(m, run="ev", log_every=2, verbose=False, plugins=[Marker(), rec]) as w:
        for _ in range(2):
            m(torch.randn(2, 4))
            w.step()
    assert [(e.kind, e.step) for e in rec.record.events] == [("note", 2)]  # later plug-ins see it
    (ev,) = RunStore(runs_dir).open("ev").events()
    assert (ev["kind"], ev["step"], ev["layer"], ev["reason"], ev["details"]) == ("note", 2, "1", "hello",
                                                                                 {"threshold": 0.5})
    assert w.events[0].details == {"threshold": 0.5}


def test_non_finite_guard_stops_before_the_bad_interval_is_written(runs_dir):
    m = half_dead()
    w = watch(m, run="nan", log_every=2, verbose=False, plugins=[NonFiniteGuard()])
    with pytest.raises(NonFiniteValue, match="loss/train became nan at step 4"), w:
        for i in range(6):
            m(torch.randn(2, 4))
            w.step(loss=torch.tensor(float("nan") if i == 3 else 1.0))
    r = RunStore(runs_dir).open("nan")
    assert r.status().state == "failed" and "became nan" in r.status().reason
    assert r.scalars(keys=["loss/train"])[0].step.tolist() == [2]


def test_grouped_settings_build_a_watcher_directly(runs_dir):
    m = half_dead()
    w = Watcher(m, ProbeConfig(log_every=1, tau=0.2, histograms=False), StoreConfig(run="direct"), verbose=False)
    m(torch.randn(2, 4))
    rec = w.step()
    w.close()
    assert rec.histograms == {} and w.config.probe.tau == 0.2 and w.config.store.run == "direct"
    meta = RunStore(runs_dir).open("direct").meta
    assert "recycle" in meta["layers"]["1"]  # the default plug-ins include the recycler
    assert any(isinstance(p, Recycler) for p in w.plugins.plugins)


@pytest.mark.parametrize("kwargs, message", [
    ({"log_every": 0}, "log_every"), ({"log_every": 2.5}, "log_every"), ({"stats_every": 0}, "stats_every"),
    ({"tau": 2}, "tau"), ({"tau": "x"}, "tau"), ({"eps": -1}, "eps"), ({"eps": math.nan}, "eps"),
    ({"bins": 0}, "bins"), ({"hist_range": (1, 1)}, "hist_range"), ({"hist_range": "ab"}, "hist_range"),
    ({"window": 0}, "window"), ({"window": "epoch"}, "window"),
    ({"run": "../x"}, "may not contain"), ({"start_step": -1}, "start_step"), ({"config": [1]}, "config"),
    ({"recycle_every": 0}, "recycle_every"), ({"recycle_tau": 1.5}, "recycle_tau"),
    ({"recycle_mode": "all"}, "recycle_mode"),
])
def test_bad_settings_are_one_clear_error_and_nothing_is_hooked(runs_dir, kwargs, message):
    m = half_dead()
    with pytest.raises(UserError, match=message):
        watch(m, verbose=False, **kwargs)
    assert not m[1]._forward_hooks and RunStore(runs_dir).names() == []


def test_unknown_keyword_and_non_plugin_are_refused(runs_dir):
    m = half_dead()
    with pytest.raises(TypeError, match="log_evry"):
        watch(m, log_evry=3)
    with pytest.raises(TypeError, match="not a WatchPlugin"):
        watch(m, plugins=[object()])
    assert RunStore(runs_dir).names() == []


def test_configs_are_frozen_and_keyword_only():
    with pytest.raises(TypeError):
        ProbeConfig(50)
    c = RecycleConfig(every=10.0)
    assert c.every == 10 and isinstance(c.every, int)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.every = 3
    assert ProbeConfig(exclude="backbone").exclude == ("backbone",)
    assert np.isclose(ProbeConfig(hist_range=[-1, 1]).hist_range, (-1.0, 1.0)).all()
