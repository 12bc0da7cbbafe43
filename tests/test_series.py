"""actlab.store.series: downsampling in the query (min/max per bucket) keeps spikes, reads at chart resolution."""
import numpy as np
import pytest

from actlab.store import blocks, series
from actlab.store.runs import RunStore


def _run(tmp_path, values: dict[str, np.ndarray], name="r", start=0):
    store = RunStore(tmp_path)
    w = store.create(name, {})
    n = len(next(iter(values.values())))
    for s in range(n):
        w.log_scalars(start + s, {k: v[s] for k, v in values.items()}, epoch=(start + s) / 100, wall_time=1000.0 + s)
    w.close()
    return store


def _local_extremes(vals, radius):
    """Rows that are the strict max (or min) of every row within `radius` steps either side."""
    out = set()
    for i in range(len(vals)):
        win = vals[max(0, i - radius):i + radius + 1]
        if (vals[i] == win.max() and (win == vals[i]).sum() == 1) or (vals[i] == win.min() and (win == vals[i]).sum() == 1):
            out.add(i)
    return out


@pytest.mark.parametrize("pyramid", [True, False])
def test_query_keeps_every_spike_and_only_real_rows(tmp_path, pyramid):
    rng = np.random.default_rng(1)
    a = rng.normal(size=6000)
    a[[7, 2500, 5999]] = [40.0, -35.0, 30.0]  # spikes, one at the very end
    store = _run(tmp_path, {"a": a, "b": np.linspace(0, 1, 6000)})
    r = store.open("r")
    if not pyramid:  # a run written before the pyramid existed
        r.close()
        import sqlite3
        c = sqlite3.connect(store.path("r") / "metrics.db")
        c.execute("DROP TABLE scalar_blocks")
        c.commit(), c.close()
    assert blocks.has_blocks(r.con) is pyramid
    for lo, hi, points in [(0, 5999, 100), (13, 4777, 37), (2400, 2600, 30), (0, 5999, 700)]:
        s, v = series.query(r.con, ["a"], lo, hi, points)["a"]
        assert len(s) <= 2 * points + 2 and np.all(np.diff(s) >= 0)
        assert s.min() >= lo and s.max() <= hi
        assert np.allclose(a[s], v)  # every point is a real row at its real step
        assert s[0] == lo and s[-1] == hi  # first and last row in range
        radius = -(-(hi - lo + 1) // points) * (2 if pyramid else 1)
        must = {i for i in _local_extremes(a[lo:hi + 1], radius)}
        assert must <= set((s - lo).tolist()), sorted(must - set((s - lo).tolist()))[:5]
    whole = series.query(r.con, ["a", "b", "missing"], points=50)
    assert set(whole) == {"a", "b"}
    s, v = whole["a"]
    assert {7, 2500, 5999} <= set(s.tolist()) and v.max() == 40.0 and v.min() == -35.0
    assert series.query(r.con, ["a"], 10, 5) == {}
    r.close()


def test_writer_pyramid_equals_a_rebuild_and_skips_non_finite(tmp_path):
    rng = np.random.default_rng(2)
    a = rng.normal(size=3000)
    a[100] = np.nan
    store = _run(tmp_path, {"a": a, "c": rng.normal(size=3000)})
    import sqlite3
    con = sqlite3.connect(store.path("r") / "metrics.db")
    incremental = sorted(con.execute("SELECT * FROM scalar_blocks").fetchall())
    assert blocks.build_blocks(con, chunk=777) == 5999  # the NaN row (stored NULL) is not folded
    rebuilt = sorted(con.execute("SELECT * FROM scalar_blocks").fetchall())
    con.close()
    assert incremental == rebuilt
    assert incremental[12][:4] == ("a", 1, 12, 7)  # steps 96..103 minus the NaN at 100


def test_resuming_a_run_from_before_the_pyramid_builds_it(tmp_path):
    import sqlite3
    store = _run(tmp_path, {"a": np.arange(500.0)})
    c = sqlite3.connect(store.path("r") / "metrics.db")
    c.execute("DROP TABLE scalar_blocks")
    c.commit(), c.close()
    w = store.create("r", {}, resume=True)
    w.log_scalars(500, {"a": 1000.0})
    w.close()
    r = store.open("r")
    s, v = series.query(r.con, ["a"], points=20)["a"]
    assert v.max() == 1000.0 and v.min() == 0.0 and s[-1] == 500
    r.close()


def test_follower_holds_chart_resolution_and_reads_only_new_rows(tmp_path):
    store = RunStore(tmp_path)
    w = store.create("f", {})
    for s in range(0, 20000, 2):
        w.log_scalars(s, {"loss/train": 1.0 / (1 + s), "dead/act1": 0.9 if s == 9000 else 0.1}, epoch=s / 1000,
                      wall_time=5000.0 + s)
    for s in range(0, 600):
        w.log_histogram(s, "pre/act1", [0.0, 1.0, 2.0], [s, 1])
    f = series.SeriesFollower(store, "f", points=50, max_blobs=100)
    f.poll()
    df = f.scalars
    per_key = df.groupby("key").size()
    assert per_key.max() <= 2 * 50 + 2 and set(per_key.index) == {"loss/train", "dead/act1"}
    dead = df[df["key"] == "dead/act1"]
    assert 0.9 in dead["value"].tolist() and dead.loc[dead["value"] == 0.9, "step"].tolist() == [9000]
    # epoch and wall time are placed by interpolation on the run's clock
    assert np.allclose(dead["epoch"], dead["step"] / 1000) and np.allclose(dead["wall_time"], 5000 + dead["step"])
    assert len(f.histograms) == 100 and f.histograms[-1]["step"] == 599 and f.histograms[-1]["counts"] == [599, 1]
    # Refresh: only the rows written since, appended; the last value is the true last value.
    for s in range(20000, 20010, 2):
        w.log_scalars(s, {"loss/train": 7.0, "dead/act1": 0.2})
    assert f.poll() == 10
    assert f.scalars[f.scalars["key"] == "loss/train"]["value"].iloc[-1] == 7.0
    # Many new rows: re-bucketed in memory, the spike still there.
    for s in range(20010, 30000, 2):
        w.log_scalars(s, {"loss/train": 0.5, "dead/act1": 0.1})
    f.poll()
    per_key = f.scalars.groupby("key").size()
    assert per_key.max() <= 2 * 50 + 4
    dead = f.scalars[f.scalars["key"] == "dead/act1"]
    assert dead["value"].max() == 0.9 and dead["step"].max() == 29998
    assert f.poll() == 0
    w.close()


def test_pyramid_follows_replaced_values_and_a_resume_trim(tmp_path):
    import sqlite3
    store = RunStore(tmp_path)
    w = store.create("r", {})
    for s in range(300):
        w.log_scalars(s, {"a": 100.0 if s == 70 else float(s % 7), "b": 1.0})
    w.log_scalars(70, {"a": 2.5})  # the spike is replaced: it must leave the pyramid too
    w.close()
    r = store.open("r")
    s, v = series.query(r.con, ["a"], 0, 299, 10)["a"]
    assert v.max() == 6.0 and 100.0 not in v
    r.close()
    w = store.create("r", {}, resume=True, resume_step=150)  # rows after step 150 are superseded
    w.log_scalars(151, {"a": -9.0})
    w.close()
    con = sqlite3.connect(store.path("r") / "metrics.db")
    live = sorted(con.execute("SELECT * FROM scalar_blocks").fetchall())
    blocks.build_blocks(con)
    assert live == sorted(con.execute("SELECT * FROM scalar_blocks").fetchall())
    con.close()
    r = store.open("r")
    s, v = series.query(r.con, ["a"], points=10)["a"]
    assert s.max() == 151 and v.min() == -9.0
    r.close()


def test_blocks_narrower_than_a_keys_log_interval_are_not_kept_and_queries_still_see_everything(tmp_path):
    rng = np.random.default_rng(5)
    a = rng.normal(size=600)
    a[[3, 300, 599]] = [50.0, -40.0, 30.0]
    store = RunStore(tmp_path)
    w = store.create("r", {})
    for i, v in enumerate(a):  # every 50 steps, as watch(log_every=50) writes
        w.log_scalars(50 * i, {"sparse": v, **({"dense": float(i)} if i < 100 else {})})
    w.close()
    r = store.open("r")
    levels = dict(r.con.execute("SELECT level, COUNT(*) FROM scalar_blocks WHERE key = 'sparse' GROUP BY level"))
    assert levels.get(1, 0) <= 1 and levels.get(2, 0) <= 1  # only the first row's (its gap was not known yet)
    assert levels[3] > 1 and blocks.min_level(r.con, "sparse") == 3
    for lo, hi, points in [(0, 29950, 100), (0, 29950, 700), (1000, 20000, 40), (14000, 16000, 10)]:
        s, v = series.query(r.con, ["sparse"], lo, hi, points)["sparse"]
        assert np.allclose(a[s // 50], v) and s[0] >= lo and s[-1] <= hi
        inside = [i for i in (3, 300, 599) if lo <= 50 * i <= hi]
        assert {50 * i for i in inside} <= set(s.tolist())  # every spike in range is drawn
    r.close()


def _blocks(con, with_n=True, low=1):
    cols = "*" if with_n else "key, level, block, min_step, min_value, max_step, max_value"
    return sorted(con.execute(f"SELECT {cols} FROM scalar_blocks WHERE level >= ?", (low,)).fetchall())


def _rebuilt(con, with_n=True, low=1):
    """The pyramid rebuilt from the raw rows, on a copy of the database."""
    import sqlite3
    copy = sqlite3.connect(":memory:")
    con.backup(copy)
    blocks.build_blocks(copy)
    return _blocks(copy, with_n, low)


def test_rows_that_move_no_extreme_write_nothing_and_the_pyramid_is_exact_mid_run(tmp_path):
    rng = np.random.default_rng(7)
    store = RunStore(tmp_path)
    w = store.create("r", {})
    upserts = []
    w.con.set_trace_callback(lambda sql: upserts.append(sql) if sql.startswith("INSERT INTO scalar_blocks") else None)
    for i in range(1200):  # a flush every 50 steps: levels 3..7, as a watch writes them
        w.log_scalars(50 * i, {"loss": float(rng.normal()), "lr": 1e-3})
        if i in (37, 600, 1199):  # mid-run, before the writer closes: every extreme is on disk already
            assert _blocks(w.con, False, low=3) == _rebuilt(w.con, False, low=3)
    # lr never moves an extreme after its first row in a block; the loss rarely does
    assert len(upserts) < 0.3 * 1200 * 5 * 2, len(upserts)
    upserts.clear()
    w.log_scalars(50 * 1200, {"lr": 1e-3})  # inside every open block's range: counted only
    assert upserts == []
    w.close()
    import sqlite3
    con = sqlite3.connect(store.path("r") / "metrics.db")
    assert _blocks(con, low=3) == _rebuilt(con, low=3)  # the counts too, once the writer closed
    con.close()


def test_a_writer_on_a_resumed_run_never_trusts_blocks_it_did_not_write(tmp_path):
    store = RunStore(tmp_path)
    w = store.create("r", {})
    for s in range(0, 1000, 10):
        w.log_scalars(s, {"a": -5.0 if s == 500 else 1.0})
    w.close()
    w = store.create("r", {}, resume=True)
    for s in range(1000, 1100, 10):  # inside the blocks of the first writer, with extremes it never saw
        w.log_scalars(s, {"a": 10.0 if s == 1050 else -1.0})
    assert _blocks(w.con, False, low=2) == _rebuilt(w.con, False, low=2)
    w.close()
    import sqlite3
    con = sqlite3.connect(store.path("r") / "metrics.db")
    assert _blocks(con, low=2) == _rebuilt(con, low=2)
    con.close()


def test_open_blocks_count_every_row_once_when_a_keys_lowest_level_rises():
    ob, out, closed = blocks.OpenBlocks(), [], []
    for s in range(4):  # one upsert per level for the first row, then rows inside its range: counted
        ob.fold("k", 1, s, 1.0, out, closed)
    assert [r[1] for r in out] == list(blocks.LEVELS) and closed == []
    ob.fold("k", 2, 4, 1.0, out, closed)  # the key's gap became known (thinning): level 1 is left
    assert closed == [(3, "k", 1, 0)]  # level 1's block 0 holds 4 rows: 1 upserted, 3 counted
    ob.fold("k", 2, 5, 7.0, out, closed)  # a new max: one upsert per level, carrying the counted rows
    assert out[-6:] == [("k", lvl, 5 // 8 ** lvl, 5, 5, 7.0, 5, 7.0) for lvl in range(2, 8)]
    ob.fold("k", 2, 64, 1.0, out, closed)  # level 2's next block; inside the range of the others
    assert out[-1] == ("k", 2, 1, 1, 64, 1.0, 64, 1.0) and closed == [(3, "k", 1, 0)]  # old block: 0 pending
    assert sorted(ob.pending()) == [(1, "k", lvl, 0) for lvl in range(3, 8)] and ob.pending() == []
    ob.fold("k", 2, 65, 1.0, out, closed)  # inside every range: counted only
    assert sorted(ob.pending(["k"])) == [(1, "k", 2, 1)] + [(1, "k", lvl, 0) for lvl in range(3, 8)]
    assert ob.pending(["other"]) == [] and ob.pending() == []
