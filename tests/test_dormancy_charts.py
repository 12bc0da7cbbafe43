"""Dormancy figures (dashboard/charts/dormancy.py): assertions on fig.data."""
import math

import numpy as np
import pandas as pd
from actlab.dashboard.charts import dormancy as C
from actlab.store.audit import attach_audits
from actlab.watcher.dormancy import DEFINITIONS


def _df(rows):
    return pd.DataFrame([{"run": "r", "step": s, "epoch": None, "key": k, "value": v, "wall_time": float(s)}
                         for s, k, v in rows])


DF = _df([(10, "dormancy/dead/fc1", 0.1), (20, "dormancy/dead/fc1", 0.3),
          (10, "dormancy_lo/dead/fc1", 0.05), (20, "dormancy_lo/dead/fc1", 0.2),
          (10, "dormancy_hi/dead/fc1", 0.2), (20, "dormancy_hi/dead/fc1", 0.4),
          (10, "dormancy/utility/fc1", 0.0), (20, "dormancy/utility/fc1", 0.01),
          (10, "dormancy/redo/fc2", 0.5), (10, "rank/fc1", 12.5), (20, "rank/fc1", 9.0), (20, "rank/fc2", 3.0),
          (10, "loss/train", 1.0)])


def test_layers_of():
    assert C.layers_of(DF) == ["fc1", "fc2"]
    assert C.layers_of(DF.iloc[0:0]) == []


def test_layer_figure_lines_and_band():
    fig = C.layer_figure(DF, "fc1")
    names = [t.name for t in fig.data]
    assert names == ["dead interval", "dead", "utility"]  # the band before its line; no band for utility
    band, dead, util = fig.data
    assert list(band.x) == [10, 20, 20, 10] and list(band.y) == [0.2, 0.4, 0.2, 0.05]
    assert list(dead.x) == [10, 20] and list(dead.y) == [0.1, 0.3]
    assert list(util.y) == [0.0, 0.01]
    only = C.layer_figure(DF, "fc1", definitions=["utility"])
    assert [t.name for t in only.data] == ["utility"]


def test_layer_figure_events_only_its_layer():
    events = [{"run": "r", "step": 15, "kind": "recycle", "layer": "fc1", "reason": "x", "wall_time": 15.0},
              {"run": "r", "step": 15, "kind": "recycle", "layer": "fc2", "reason": "y", "wall_time": 15.0},
              {"run": "r", "step": 20, "kind": "recycle_audit", "layer": "fc1", "reason": "z", "wall_time": 20.0}]
    fig = C.layer_figure(DF, "fc1", events=events)
    marks = [t for t in fig.data if t.name == "r events"]
    assert len(marks) == 1 and list(marks[0].x) == [15.0]


def test_rank_figure():
    fig = C.rank_figure(DF, ["fc1", "fc2"])
    assert [t.name for t in fig.data] == ["fc1", "fc2"]
    assert list(fig.data[0].y) == [12.5, 9.0] and list(fig.data[1].x) == [20]


def test_overlap_figure_drops_undefined_definitions():
    n = len(DEFINITIONS)
    m = np.full((n, n), np.nan)
    i, j = DEFINITIONS.index("dead"), DEFINITIONS.index("redo")
    m[i, i] = m[j, j] = 1.0
    m[i, j] = m[j, i] = 0.5
    fig = C.overlap_figure(m.ravel().tolist(), "fc1")
    hm = fig.data[0]
    assert list(hm.x) == ["dead", "redo"] and list(hm.y) == ["dead", "redo"]
    assert [list(r) for r in hm.z] == [[1.0, 0.5], [0.5, 1.0]]
    assert hm.text[0][1] == "0.50"


def test_audit_frame_and_join():
    events = [{"id": 1, "run": "r", "step": 100, "kind": "recycle", "layer": "fc1", "units": 4,
               "details": {"by": "grama", "convention": "cbp"}},
              {"id": 2, "run": "r", "step": 110, "kind": "recycle_audit", "layer": "fc1", "units": 4,
               "details": {"of_step": 100, "by": "grama", "flush": 1, "flagged_again": 0.25}},
              {"id": 3, "run": "r", "step": 120, "kind": "recycle_audit", "layer": "fc1", "units": 4,
               "details": {"of_step": 100, "by": "grama", "flush": 2, "flagged_again": 0.5}},
              {"id": 4, "run": "r", "step": 120, "kind": "recycle", "layer": "fc1", "units": 2,
               "details": {"mode": "dead"}}]
    joined = attach_audits(events)
    assert joined[0]["audit"] == [0.25, 0.5] and joined[0]["audit_by"] == "grama"
    assert joined[3]["audit"] == [] and joined[3]["audit_by"] == "dead"
    df = C.audit_frame(joined)
    assert df["by"].tolist() == ["grama", "dead"] and df["convention"].tolist() == ["cbp", "redo"]
    assert df.loc[0, "again@1"] == 0.25 and df.loc[0, "again@2"] == 0.5 and math.isnan(df.loc[1, "again@1"])


def test_event_markers_carry_the_audit():
    from actlab.dashboard.charts.training import loss_figure

    events = attach_audits([
        {"id": 1, "run": "r", "step": 10, "kind": "recycle", "layer": "fc1", "units": 4, "reason": "4 of 8 units",
         "details": {"by": "age"}, "wall_time": 10.0},
        {"id": 2, "run": "r", "step": 20, "kind": "recycle_audit", "layer": "fc1", "units": 4, "reason": "a",
         "details": {"of_step": 10, "by": "age", "flush": 1, "flagged_again": 0.5}, "wall_time": 20.0}])
    fig = loss_figure(DF, events=[e for e in events if e["kind"] != "recycle_audit"])
    marks = next(t for t in fig.data if t.name == "r events")
    assert marks.hovertext[0].endswith("4 of 8 units; flagged again by age: 50%")
