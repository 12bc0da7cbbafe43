"""The overhead budget plug-in: over budget, the watcher samples less and says so (events, monitor)."""
import json
import math
from pathlib import Path

import pytest
import torch
from actlab import UserError
from actlab.store.runs import RunStore
from actlab.watcher import watch
from actlab.watcher.budget import OverheadBudget, overhead_caption
from streamlit.testing.v1 import AppTest
from torch import nn

PAGE = str(Path(__file__).resolve().parent.parent / "dashboard" / "views" / "monitor.py")


def train(runs_dir, run, steps=10, **kw):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    with watch(m, run=run, runs_dir=runs_dir, log_every=1, verbose=False, **kw) as w:
        for _ in range(steps):
            m(torch.randn(4, 4)).sum().backward()
            w.step()
    return w


def test_over_budget_samples_less_step_by_step_and_says_so(tmp_path):
    # A budget no watcher can meet, judged at every flush (the first one, warm-up, never).
    w = train(tmp_path, "tight", budget=None, plugins=[OverheadBudget(1e-9, min_seconds=0, min_flushes=1)])
    assert w.probes.stats_every == 1024
    with RunStore(tmp_path).open("tight") as r:
        evs = [e for e in r.events() if e["kind"] == "budget"]
        hist_steps = sorted({h["step"] for h in r.histograms("pre/1")})
    # Flush 2 doubles both (stats 16 -> 32, histograms every 2nd flush), flush 3 again, ... until the caps.
    assert [(e["step"], e["details"]["stats_every"], e["details"]["hist_every"]) for e in evs] == [
        (2, 32, 2), (3, 64, 4), (4, 128, 8), (5, 256, 16), (6, 512, 32), (7, 1024, 64), (8, 1024, 64)]
    assert "statistics on 1 batch in 32 (was 16)" in evs[0]["reason"]
    assert "at its limits" in evs[-1]["reason"]  # said once, not at flushes 9 and 10
    assert hist_steps == [1, 2, 4]  # the flushes that still drew a histogram


def test_within_budget_nothing_changes(tmp_path):
    # The watcher's share of the wall time cannot pass 100 %.
    w = train(tmp_path, "loose", budget=None, plugins=[OverheadBudget(1.0, min_seconds=0, min_flushes=1)])
    assert w.probes.stats_every == 16 and w.probes.histograms
    with RunStore(tmp_path).open("loose") as r:
        assert [e for e in r.events() if e["kind"] == "budget"] == []
        assert sorted({h["step"] for h in r.histograms("pre/1")}) == list(range(1, 11))


def test_default_budget_is_recorded_and_none_turns_it_off(tmp_path):
    w = train(tmp_path, "default", steps=2)
    assert [p.budget for p in w.plugins.plugins if isinstance(p, OverheadBudget)] == [0.03]
    w2 = train(tmp_path, "tighter", steps=2, budget=0.02)
    w3 = train(tmp_path, "off", steps=2, budget=None)
    assert not any(isinstance(p, OverheadBudget) for p in w3.plugins.plugins)
    store = RunStore(tmp_path)
    got = {}
    for name in ("default", "tighter", "off"):
        with store.open(name) as r:
            got[name] = r.config["overhead_budget"]
    assert got == {"default": 0.03, "tighter": 0.02, "off": None} and w2.closed


@pytest.mark.parametrize("bad", [0, -0.1, 1.5, "x", True, math.nan])
def test_bad_budget_is_one_clear_error(tmp_path, bad):
    m = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    with pytest.raises(UserError, match="budget must be"):
        watch(m, runs_dir=tmp_path, budget=bad, verbose=False)
    assert RunStore(tmp_path).names() == []


def test_overhead_caption_words():
    ev = [{"kind": "recycle", "step": 5}, {"kind": "budget", "step": 40, "details": {"stats_every": 32, "hist_every": 2}},
          {"kind": "budget", "step": 80, "details": {"stats_every": 64, "hist_every": 4}}]
    assert overhead_caption(3.64, {"overhead_budget": 0.03}, []) == "monitoring costs 3.6 % (budget 3 %)"
    assert overhead_caption(5.0, {"overhead_budget": 0.02}, ev) == (
        "monitoring costs 5.0 % (budget 2 %); sampling lowered 2 time(s) (last at step 80: statistics on 1 batch "
        "in 64, histograms on 1 flush in 4)")
    assert overhead_caption(1.0, {}, []) == "monitoring costs 1.0 %"  # a run from before budgets
    assert overhead_caption(None, {"overhead_budget": 0.03}, ev) == ""


def test_monitor_shows_the_budget_and_the_automatic_change(runs_dir):
    w = RunStore(runs_dir).create("b", {"overhead_budget": 0.02}, kind="watch")
    w.log_scalars(10, {"loss/train": 1.0, "watch/overhead_pct": 5.0})
    w.log_event(10, "budget", None, None, "monitoring cost 5.0 % ...", None,
                {"stats_every": 32, "hist_every": 2, "overhead_pct": 5.0, "budget_pct": 2.0})
    w.set_status("finished")
    w.close()
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    (cap,) = [c.value for c in at.caption if "monitoring costs" in c.value]
    assert "monitoring costs 5.0 % (budget 2 %)" in cap
    assert "sampling lowered 1 time(s) (last at step 10: statistics on 1 batch in 32, histograms on 1 flush in 2)" in cap
    loss = json.loads(next(e for e in at.get("plotly_chart") if e.proto.id.endswith("chart_loss")).proto.spec)
    (marks,) = [t for t in loss["data"] if t.get("name") == "b events"]  # the change is a marker on the chart
    assert "budget" in marks["hovertext"][0] and "step 10" in marks["hovertext"][0]
