"""Run store: names, CLI list/show --json, incremental follower."""
import json

import pytest

from actlab import UserError
from actlab.cli import main
from actlab.store.runs import RunFollower, RunStore, validate_run_name


@pytest.mark.parametrize("bad", ["/", "..", ".", "", "a/b", "a\\b", "x\x00y", "../up", ".hidden"])
def test_bad_names_refused(bad):
    with pytest.raises(UserError):
        validate_run_name(bad)


def test_good_names_pass():
    assert validate_run_name("mnist-relu_seed.1") == "mnist-relu_seed.1"


def test_cli_bad_name_one_line_exit_2(tmp_path, capsys):
    assert main(["runs", "show", "../x", "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1
    assert main(["runs", "show", "ghost", "--runs-dir", str(tmp_path)]) == 2


def _make(root, name, state="finished"):
    w = RunStore(root).create(name, {"lr": 0.1, "activation": "relu"}, kind="mnist")
    w.log_scalars(1, {"loss/train": 2.0, "dead/act1": 0.1})
    w.log_scalars(2, {"loss/train": 1.5, "dead/act1": 0.2})
    w.set_status(state, "because" if state == "failed" else None)
    w.close()


def test_runs_list_and_show_json(tmp_path, capsys):
    _make(tmp_path, "a")
    _make(tmp_path, "b", "failed")
    assert main(["runs", "list", "--runs-dir", str(tmp_path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"]: r["status"] for r in rows} == {"a": "finished", "b": "failed"}
    assert main(["runs", "show", "b", "--runs-dir", str(tmp_path), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["status"] == "failed" and s["reason"] == "because"
    assert s["config"] == {"lr": 0.1, "activation": "relu"}
    assert s["last"] == {"dead/act1": 0.2, "loss/train": 1.5}
    assert main(["runs", "show", "a", "--runs-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "a: finished" in out and "loss/train" in out and "1.5" in out


def test_follower_reads_only_new_rows(tmp_path):
    store = RunStore(tmp_path)
    w = store.create("f", {})
    w.log_scalars(1, {"x": 1.0})
    w.log_histogram(1, "pre/a", [0, 1], [3])
    f = RunFollower(store, "f")
    assert f.poll() == 2 and f.scalars.value.tolist() == [1.0]
    assert f.poll() == 0
    w.log_scalars(2, {"x": 2.0, "y": 5.0})
    w.log_unit_activity(2, "a", [0.5, 0.0])
    assert f.poll() == 3
    assert f.scalars.value.tolist() == [1.0, 2.0, 5.0]
    assert f.units[0]["values"] == [0.5, 0.0] and f.status.state == "running"


def test_create_over_existing_run_refused_but_launcher_log_folder_allowed(tmp_path):
    _make(tmp_path, "dup")
    with pytest.raises(UserError, match="already exists"):
        RunStore(tmp_path).create("dup", {})
    (tmp_path / "fresh").mkdir()
    (tmp_path / "fresh" / "train.log").write_text("starting\n")
    RunStore(tmp_path).create("fresh", {}).close()
    assert (tmp_path / "fresh" / "train.log").read_text() == "starting\n"


def test_one_value_per_step_and_key_the_last_write_wins_and_followers_see_it(tmp_path):
    store = RunStore(tmp_path)
    w = store.create("u", {})
    w.log_scalars(1, {"x": 1.0, "y": 1.0})
    w.log_scalars(2, {"x": 2.0})
    f = RunFollower(store, "u")
    f.poll()
    w.log_scalars(2, {"x": 20.0})  # the same (step, key) again
    f.poll()
    df = store.open("u").scalars()[0]
    assert sorted(zip(df.step, df.key, df.value)) == [(1, "x", 1.0), (1, "y", 1.0), (2, "x", 20.0)]
    assert sorted(zip(f.scalars.step, f.scalars.key, f.scalars.value)) == sorted(zip(df.step, df.key, df.value))


def test_resume_supersedes_the_tail_in_one_step_and_followers_start_over(tmp_path):
    store = RunStore(tmp_path)
    w = store.create("s", {})
    for step in range(1, 7):
        w.log_scalars(step, {"x": float(step)})
        w.log_histogram(step, "pre/a", [0, 1], [step])
    w.close()
    f = RunFollower(store, "s")
    f.poll()
    assert len(f.scalars) == 6 and len(f.histograms) == 6
    w = store.create("s", {}, resume=True, resume_step=4)  # checkpoint at 4: 5 and 6 were the crashed tail
    f.poll()
    assert list(f.scalars.step) == [1, 2, 3, 4] and [h["step"] for h in f.histograms] == [1, 2, 3, 4]
    w.log_scalars(5, {"x": 50.0})  # SQLite may reuse the deleted rows' ids: the follower still sees it
    f.poll()
    assert list(zip(f.scalars.step, f.scalars.value)) == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0), (5, 50.0)]
    w.close()


def test_store_written_before_the_unique_index_is_migrated_last_value_wins(tmp_path):
    import sqlite3

    from actlab.store.runs import _SCHEMA

    d = tmp_path / "old"
    d.mkdir()
    (d / "run.json").write_text(json.dumps({"name": "old", "config": {}}))
    con = sqlite3.connect(d / "metrics.db")
    legacy = _SCHEMA.replace("CREATE UNIQUE INDEX IF NOT EXISTS scalars_key", "CREATE INDEX IF NOT EXISTS scalars_key")
    assert legacy != _SCHEMA  # the (key, step) index as stores before 2026-12 had it: not unique
    con.executescript(legacy)
    con.execute("INSERT INTO status VALUES (1, 'finished', NULL, 1, 0, 0)")
    # What a resume used to leave: step 4 twice, the resumed value written last.
    con.executemany("INSERT INTO scalars(run, step, epoch, key, value, wall_time) VALUES ('old', ?, 0, 'loss', ?, 0)",
                    [(2, 1.0), (4, 0.9), (4, 0.5), (6, 0.4)])
    con.commit()
    con.close()
    df = RunStore(tmp_path).open("old").scalars()[0]
    assert list(zip(df.step, df.value)) == [(2, 1.0), (4, 0.5), (6, 0.4)]
    w = RunStore(tmp_path).create("old", {}, resume=True, resume_step=4)
    w.log_scalars(6, {"loss": 0.3})
    w.close()
    df = RunStore(tmp_path).open("old").scalars()[0]
    assert list(zip(df.step, df.value)) == [(2, 1.0), (4, 0.5), (6, 0.3)]


def test_a_new_store_has_one_index_on_its_scalars_and_a_two_index_store_from_before_still_replaces(tmp_path):
    import sqlite3

    from actlab.store.runs import _SCHEMA

    store = RunStore(tmp_path)
    store.create("new", {}).close()
    con = sqlite3.connect(store.path("new") / "metrics.db")
    assert [(r[1], r[2]) for r in con.execute("PRAGMA index_list(scalars)")] == [("scalars_key", 1)]
    con.close()
    d = tmp_path / "before"  # the layout of stores from before 2026-12
    d.mkdir()
    (d / "run.json").write_text(json.dumps({"name": "before", "config": {}}))
    con = sqlite3.connect(d / "metrics.db")
    con.executescript(_SCHEMA.replace("CREATE UNIQUE INDEX IF NOT EXISTS scalars_key", "CREATE INDEX IF NOT EXISTS scalars_key"))
    con.execute("CREATE UNIQUE INDEX scalars_one_value ON scalars(run, key, step)")
    con.execute("INSERT INTO status VALUES (1, 'finished', NULL, 1, 0, 0)")
    con.commit()
    con.close()
    w = store.create("before", {}, resume=True)
    w.log_scalars(1, {"x": 1.0})
    w.log_scalars(1, {"x": 2.0})
    w.close()
    assert list(zip(*store.open("before").scalars()[0][["step", "value"]].to_numpy().T)) == [(1, 2.0)]
    con = sqlite3.connect(d / "metrics.db")
    assert sorted(r[1] for r in con.execute("PRAGMA index_list(scalars)")) == ["scalars_key", "scalars_one_value"]
    con.close()


def test_new_run_names_are_short_and_plain_old_ones_stay_readable(tmp_path):
    with pytest.raises(UserError, match="at most 100 characters"):
        RunStore(tmp_path).create("r" * 300, {})
    with pytest.raises(UserError, match="letters, digits"):
        RunStore(tmp_path).create("with space", {})
    assert not any(tmp_path.iterdir())
    # A run made before the character set was enforced still lists and shows.
    old = tmp_path / "old run"
    old.mkdir()
    (old / "run.json").write_text(json.dumps({"name": "old run", "config": {}}))
    import shutil

    _make(tmp_path, "plain")
    shutil.copy(tmp_path / "plain" / "metrics.db", old / "metrics.db")
    assert RunStore(tmp_path).summary("old run")["last"] == {"dead/act1": 0.2, "loss/train": 1.5}


def test_reader_is_a_context_manager_that_closes_on_error(tmp_path):
    _make(tmp_path, "r")
    store = RunStore(tmp_path)
    with store.open("r") as r:
        assert r.last()["loss/train"] == 1.5
        assert [row[:3] for row in r.key_rows("loss/train")] == [(1, None, 2.0), (2, None, 1.5)]
        assert r.max_step() == 2
    assert r._con is None  # closed on leaving the block
    with pytest.raises(RuntimeError), store.open("r") as r2:
        r2.status()
        raise RuntimeError("boom")
    assert r2._con is None  # and closed when the block raises


def test_no_sql_outside_the_store():
    """All SQL lives in core/store/: no other core or dashboard module talks to SQLite."""
    from pathlib import Path

    import re

    sql = re.compile(r"sqlite3|\.execute(many|script)?\(\s*f?[\"'](SELECT|INSERT|UPDATE|DELETE|CREATE|PRAGMA|BEGIN)", re.I)
    root = Path(__file__).resolve().parent.parent
    offenders = [str(p.relative_to(root)) for folder in ("core", "dashboard") for p in (root / folder).rglob("*.py")
                 if p.parent.name != "store" and sql.search(p.read_text())]
    assert offenders == []


def test_readers_are_closed_by_with_blocks():
    """A reader opened by hand and closed in a finally is what the context manager replaced."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    by_hand = re.compile(r"^\s*(\w+) = [^\n]*\.open\([^\n]*\)\n\s*try:\n", re.M)
    offenders = [str(p.relative_to(root)) for folder in ("core", "dashboard") for p in (root / folder).rglob("*.py")
                 if by_hand.search(p.read_text())]
    assert offenders == []


def test_a_flush_is_one_transaction_that_reads_back_like_separate_writes(tmp_path):
    store = RunStore(tmp_path)
    a, b = store.create("apart", {}), store.create("together", {})
    for step in (10, 20):
        a.log_scalars(step, {"loss/train": 1.0 / step, "dead/a": 0.25})
        a.log_histogram(step, "pre/a", [0, 1, 2], [step, 1])
        a.log_unit_activity(step, "a", [0.5, 0.0])
        a.log_unit_activity(step, "score/a", [0.2, 1.8])
        b.log_flush(step, {"loss/train": 1.0 / step, "dead/a": 0.25}, [("pre/a", [0, 1, 2], [step, 1])],
                    [("a", [0.5, 0.0]), ("score/a", [0.2, 1.8])])
    # A flush that fails part-way (a per-unit row that is not numbers) leaves nothing of itself.
    with pytest.raises(ValueError):
        b.log_flush(30, {"loss/train": 9.0}, [("pre/a", [0, 1, 2], [1, 1])], [("a", ["not a number"])])
    a.close(), b.close()
    got = {}
    for name in ("apart", "together"):
        with store.open(name) as r:
            df, _ = r.scalars()
            got[name] = (sorted(zip(df.step, df.key, df.value)), [(h["step"], h["counts"]) for h in r.histograms()],
                         sorted((u["step"], u["key"], u["values"]) for u in r.unit_activity()))
    assert got["apart"] == got["together"]
    assert max(s for s, _, _ in got["together"][0]) == 20
