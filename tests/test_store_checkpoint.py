"""A trainer's writer never checkpoints the WAL inside a commit: a thread of its own does
(core/store/checkpoint.py). Rows reach the database file, the thread stops with the writer, and a
removed run folder is never created again by it."""
import gc
import shutil
import sqlite3
import time

import pytest
from actlab.store import checkpoint
from actlab.store.runs import RunStore


def wait_for(cond, timeout=20.0):
    """Poll a state (never a fixed sleep): True once `cond()` holds, False at the timeout."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


@pytest.fixture
def fast_checkpoints(monkeypatch):
    monkeypatch.setattr(checkpoint, "EVERY_S", 0.02)


def db_alone(run_dir, tmp_path):
    """A copy of metrics.db without its WAL: what the checkpoints have copied back."""
    copy = tmp_path / "alone.db"
    shutil.copyfile(run_dir / "metrics.db", copy)
    return sqlite3.connect(copy)


def test_commits_leave_checkpoints_to_the_thread_which_copies_every_row_back(tmp_path, fast_checkpoints):
    w = RunStore(tmp_path / "runs").create("r", {})
    assert w.con.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    for step in range(1, 41):
        w.log_flush(step, {"loss/train": 1.0 / step}, units=[("act", [0.5, 1.0])])
    ck = w._checkpointer
    start = ck.done
    assert wait_for(lambda: ck.done >= start + 2)  # a checkpoint that began after the last commit
    con = db_alone(w.dir, tmp_path)
    assert con.execute("SELECT COUNT(*) FROM scalars WHERE key = 'loss/train'").fetchone()[0] == 40
    assert con.execute("SELECT COUNT(*) FROM unit_activity").fetchone()[0] == 40
    w.close()
    assert not ck.alive


def test_a_removed_database_is_not_created_again_by_the_thread(tmp_path, monkeypatch):
    """Its connection opens read-write only: a new empty metrics.db would pass for the run (the
    watcher's store guard reopens a run whose file it finds)."""
    monkeypatch.setattr(checkpoint, "EVERY_S", 0.5)  # the first try comes after the files are gone
    w = RunStore(tmp_path / "runs").create("r", {})
    for suffix in ("", "-wal", "-shm"):
        (w.dir / f"metrics.db{suffix}").unlink(missing_ok=True)
    ck = w._checkpointer
    assert wait_for(lambda: ck.attempts >= 2)
    assert ck.done == 0 and not (w.dir / "metrics.db").exists()
    w.close()
    assert not ck.alive


def test_a_writer_never_closed_takes_its_thread_with_it(tmp_path, fast_checkpoints):
    w = RunStore(tmp_path / "runs").create("r", {})
    ck = w._checkpointer
    assert wait_for(lambda: ck.done >= 1)
    del w
    gc.collect()
    assert wait_for(lambda: not ck.alive)


def test_readers_and_other_writers_keep_sqlites_own_checkpoints(tmp_path):
    store = RunStore(tmp_path / "runs")
    store.create("r", {}).close()
    from actlab.store.writer import RunWriter

    w = RunWriter(store.path("r"), "r")  # a mirror's or a grid's writer: no thread
    assert w._checkpointer is None and w.con.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
    w.close()
