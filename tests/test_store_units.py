"""Compact per-unit rows and thinning of old flushes (core/store/units.py)."""
import json
import math
import sqlite3

import numpy as np
import pytest
from actlab.store import units
from actlab.store.runs import RunStore


def test_activity_is_one_byte_a_unit_to_half_a_percent():
    rng = np.random.default_rng(0)
    a = rng.random(3072)
    b = units.encode(a)
    assert len(b) == 4 + 3072
    back = np.array(units.decode(b))
    assert np.abs(back - a).max() <= 0.5 / 200 + 1e-12
    assert units.decode(units.encode([0.0, 0.5, 0.25, 1.0])) == [0.0, 0.5, 0.25, 1.0]


def test_scores_are_two_bytes_a_unit_on_the_rows_range_with_nan_and_inf_kept():
    rng = np.random.default_rng(1)
    s = rng.gamma(2.0, 0.5, 3072)
    b = units.encode(s)
    assert len(b) == 4 + 16 + 2 * 3072
    back = np.array(units.decode(b))
    assert np.abs(back - s).max() <= (s.max() - s.min()) / 65534  # half a step, with room for rounding
    assert back.max() == s.max() and back.min() == s.min()  # the ends come back exactly
    # A unit at tau = 0.1 keeps its side of the threshold unless it is within one step of it.
    assert ((back <= 0.1) == (s <= 0.1)).all()
    nan = units.decode(units.encode([0.2, float("nan"), 3.0]))
    assert math.isnan(nan[1]) and nan[0] == pytest.approx(0.2, abs=1e-4) and nan[2] == 3.0
    assert units.decode(units.encode([1.0, float("inf")])) == [1.0, float("inf")]
    assert units.decode(units.encode([2.0, 2.0])) == [2.0, 2.0]


def test_a_finite_row_and_the_same_row_with_a_nan_encode_their_finite_values_alike():
    # Finite rows take a shorter path than rows with a NaN or an infinity: both must quantise alike.
    rng = np.random.default_rng(2)
    s = rng.gamma(2.0, 0.5, 1000)
    with_nan = s.copy()
    with_nan[int(np.argsort(s)[500])] = np.nan  # a middle value: the row's min and max stay
    a, b = np.array(units.decode(units.encode(s))), np.array(units.decode(units.encode(with_nan)))
    keep = ~np.isnan(with_nan)
    assert np.isnan(b[~keep]).all() and (a[keep] == b[keep]).all()
    act = rng.random(1000)
    act_nan = act.copy()
    act_nan[3] = np.nan  # no longer a u8 row: two bytes a unit, on the row's range
    assert len(units.encode(act)) == 4 + 1000 and len(units.encode(act_nan)) == 4 + 16 + 2000
    assert units.encode(np.array([])) == units.encode([]) and units.decode(units.encode([])) == []


def test_old_json_rows_still_read_and_bad_blobs_are_refused():
    assert units.decode(json.dumps([0.1234, 5.0])) == [0.1234, 5.0]
    with pytest.raises(ValueError, match="unknown encoding"):
        units.decode(b"xx")


def _log(w, steps, key="act1", n=8):
    for s in steps:
        w.log_unit_activity(s, key, np.full(n, 0.5))
        w.log_histogram(s, f"pre/{key}", [0, 1], [s])
        w.log_scalars(s, {"grad_norm/fc.weight": float(s), "loss/train": 1.0})


def test_thinning_keeps_recent_rows_whole_old_history_sparse_and_recycle_steps(tmp_path):
    store = RunStore(tmp_path)
    w = store.create("r", {})
    for s in range(10, 6010, 10):  # 600 flushes, every 10 steps; recycles at 1000 and 1500 (after their flush)
        _log(w, [s])
        if s in (1000, 1500):
            w.log_event(s, "recycle", "act1", 3, "test")
    w.close()
    r = store.open("r")
    for rows in (r.unit_activity("act1"), r.histograms("pre/act1")):
        steps = [u["step"] for u in rows]
        assert len(steps) <= units.MAX_ROWS
        assert steps == sorted(set(steps))
        assert steps[-units.RECENT:] == list(range(6000 - 10 * (units.RECENT - 1), 6010, 10))  # recent: all of them
        assert steps[0] == 10  # the span stays whole
        assert {1000, 1010, 1500, 1510} <= set(steps)  # each recycle step and the flush after it
        gaps = np.diff(steps[: -units.RECENT])
        assert gaps.max() > 10  # old history was thinned
    assert all(u["values"] == [0.5] * 8 for u in r.unit_activity("act1"))
    df, _ = r.scalars()
    grad = df[df.key == "grad_norm/fc.weight"]
    assert len(grad) <= units.MAX_ROWS and 1000 in set(grad.step) and 1010 in set(grad.step)
    assert len(df[df.key == "loss/train"]) == 600  # losses are never thinned
    # The chart of a thinned key still spans the run with its extremes (the pyramid keeps them).
    from actlab.store import series

    s, v = series.query(r.con, ["grad_norm/fc.weight"], points=20)["grad_norm/fc.weight"]
    assert s.min() == 10 and s.max() == 6000 and v.max() == 6000.0 and v.min() == 10.0
    r.close()


def test_a_resumed_writer_counts_the_rows_already_there(tmp_path):
    store = RunStore(tmp_path)
    w = store.create("r", {})
    _log(w, range(1, 201))
    w.close()
    w = store.create("r", {}, resume=True, resume_step=200)
    _log(w, range(201, 301))
    w.close()
    r = store.open("r")
    assert len(r.unit_activity("act1")) <= units.MAX_ROWS
    r.close()


def test_blob_rows_are_binary_in_the_database(tmp_path):
    store = RunStore(tmp_path)
    w = store.create("r", {})
    w.log_unit_activity(1, "score/a", np.linspace(0, 3, 3072))
    w.close()
    con = sqlite3.connect(tmp_path / "r" / "metrics.db")
    (v,) = con.execute("SELECT values_json FROM unit_activity").fetchone()
    con.close()
    assert isinstance(v, bytes) and len(v) == 4 + 16 + 2 * 3072  # was ~20 KB of JSON text


def test_thinner_refuses_a_bad_policy(tmp_path):
    con = sqlite3.connect(tmp_path / "x.db")
    with pytest.raises(ValueError, match="recent < max_rows"):
        units.Thinner(con, recent=10, max_rows=10)
    with pytest.raises(ValueError, match="cannot thin"):
        units.thin(con, "status", "k")
    con.close()


def test_store_size_bench_refuses_bad_counts_and_its_committed_result_is_a_100k_step_run():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    r = subprocess.run([sys.executable, "bench/monitor_scale.py", "--watch-shape", "bert-base", "--measure", "2"],
                       cwd=root, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "need --measure >= 3" in r.stderr
    res = json.loads((root / "bench" / "results" / "monitor_store_size_bert_base.json").read_text())
    assert res["kind"] == "bench:monitor_scale:store_size" and res["steps"] == 100_000 and res["flushes"] == 2000
    assert res["unit_rows_kept_per_key"] <= units.MAX_ROWS + 40  # thinned (+ the recycle steps it keeps)
    assert res["unit_row_bytes_per_flush_compact"] < res["unit_row_bytes_per_flush_json"] / 3
