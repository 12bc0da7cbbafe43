"""A failing run store never stops training: the watcher stops writing, warns once, marks the run
(a "store_failure" event) and writes again when it can. Full disk, removed or read-only runs
folder, a store locked by another process."""
import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import warnings

import pytest
import torch
from actlab import UserError
from actlab.store.runs import RunStore
from actlab.store.writer import RunWriter
from actlab.watcher import watch
from torch import nn

WRITES = ("log_flush", "log_scalars", "log_histogram", "log_unit_activity", "log_event", "set_status")
STEPS = 30


def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))


def train(runs_dir, run, between=None, steps=STEPS, **kw):
    """Train to the end under watch(); `between(step)` runs after each step (breaks or mends the store).
    Returns (the steps done, the store warnings)."""
    m = model()
    opt = torch.optim.SGD(m.parameters(), lr=0.01)
    done = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with watch(m, run=run, runs_dir=runs_dir, log_every=2, verbose=False, retry_after=0, **kw) as w:
            for i in range(1, steps + 1):
                loss = m(torch.randn(8, 4)).pow(2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                w.step(loss=loss)
                done += 1
                if between is not None:
                    between(i)
    store_warnings = [str(c.message) for c in caught if "run store" in str(c.message)]
    return done, store_warnings


def steps_written(runs_dir, run):
    with RunStore(runs_dir).open(run) as r:
        return sorted(r.scalars(keys=["loss/train"])[0].step.tolist())


def failure_events(runs_dir, run):
    with RunStore(runs_dir).open(run) as r:
        return [e for e in r.events() if e["kind"] == "store_failure"]


@pytest.fixture
def broken_writes(monkeypatch):
    """`broken_writes(error)` makes every RunWriter write raise `error` until called with None."""
    state = {"error": None}
    for name in WRITES:
        real = getattr(RunWriter, name)

        def failing(self, *a, _real=real, **kw):
            if state["error"] is not None:
                raise state["error"]
            return _real(self, *a, **kw)
        monkeypatch.setattr(RunWriter, name, failing)

    def set_error(error):
        state["error"] = error
    return set_error


@pytest.mark.parametrize("error", [
    sqlite3.OperationalError("database or disk is full"),
    OSError(28, "No space left on device"),
    sqlite3.OperationalError("attempt to write a readonly database"),
], ids=["sqlite-full", "enospc", "read-only"])
def test_injected_store_failure_trains_to_the_end_and_marks_the_gap(tmp_path, broken_writes, error):
    def toggle(step):  # broken from after step 9 until after step 19
        if step == 9:
            broken_writes(error)
        elif step == 19:
            broken_writes(None)

    done, warned = train(tmp_path, "inj", toggle)
    assert done == STEPS
    assert len([m for m in warned if "failed" in m]) == 1 and str(error) in warned[0]
    written = steps_written(tmp_path, "inj")
    assert written == [2, 4, 6, 8] + list(range(20, STEPS + 1, 2))  # flushes 10..18 were lost, nothing else
    (ev,) = failure_events(tmp_path, "inj")
    assert ev["step"] == 20 and ev["details"]["from_step"] == 10 and ev["details"]["dropped"] > 0
    assert str(error) in ev["reason"]
    with RunStore(tmp_path).open("inj") as r:
        assert r.status().state == "finished"


def test_a_store_that_never_comes_back_still_trains_to_the_end(tmp_path, broken_writes):
    def toggle(step):
        if step == 5:
            broken_writes(sqlite3.OperationalError("database or disk is full"))

    done, warned = train(tmp_path, "gone", toggle)
    assert done == STEPS
    assert any("could not write the final status (finished)" in m for m in warned)
    assert steps_written(tmp_path, "gone") == [2, 4]


def test_run_folder_removed_mid_run_is_created_again(tmp_path):
    def remove(step):
        if step == 11:
            shutil.rmtree(tmp_path / "rm")

    done, warned = train(tmp_path, "rm", remove)
    assert done == STEPS and any("was removed" in m for m in warned)
    # Found at the next flush (12), created again at once (retry_after=0): the fresh database holds
    # every flush from there on, and the mark of what was lost (everything before the removal).
    assert steps_written(tmp_path, "rm") == list(range(12, STEPS + 1, 2))
    (ev,) = failure_events(tmp_path, "rm")
    assert ev["step"] == 12 and "was removed" in ev["reason"]
    with RunStore(tmp_path).open("rm") as r:
        assert r.status().state == "finished" and "recycle" in r.meta["layers"]["1"]


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores file modes")
def test_read_only_runs_folder_at_start_trains_without_a_store(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        done, warned = train(ro, "r", steps=6)
    finally:
        ro.chmod(0o755)
    assert done == 6 and any("failed while creating the run" in m for m in warned)


@pytest.mark.timeout(120)
def test_store_locked_longer_than_the_timeout_degrades_then_writes_again(tmp_path):
    holder = None
    code = ("import sqlite3, sys\n"
            "con = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "con.execute('BEGIN EXCLUSIVE')\n"
            "print('locked', flush=True)\n"
            "sys.stdin.readline()\n"
            "con.execute('COMMIT')\n")

    def lock(step):
        nonlocal holder
        if step == 5:
            holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "lk" / "metrics.db")],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert holder.stdout.readline().strip() == "locked"  # wait on the state, not a sleep
        elif step == 15:
            holder.stdin.write("\n")
            holder.stdin.flush()
            assert holder.wait(timeout=60) == 0

    try:
        done, warned = train(tmp_path, "lk", lock, lock_timeout=0.2)
    finally:
        if holder is not None and holder.poll() is None:
            holder.kill()
    assert done == STEPS and "database is locked" in warned[0]
    written = steps_written(tmp_path, "lk")
    assert written[:2] == [2, 4] and 6 not in written and written[-1] == STEPS
    (ev,) = failure_events(tmp_path, "lk")
    assert ev["details"]["from_step"] == 6


@contextlib.contextmanager
def small_tmpfs(path, size="4m"):
    path.mkdir()
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small file system needs root and mount(8)")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                       capture_output=True, text=True, check=False)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()[:200]}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path):
    """Write zeros until the file system is full (ENOSPC)."""
    with open(path, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


@pytest.mark.timeout(180)
def test_full_disk_trains_to_the_end_and_writes_again_once_space_is_back(tmp_path):
    with small_tmpfs(tmp_path / "mnt") as mnt:
        filler = mnt / "filler"

        def disk(step):
            if step == 7:  # between flushes: the disk fills while the loop trains
                fill(filler)
            elif step == 20:
                filler.unlink()

        done, warned = train(mnt / "runs", "full", disk)
        assert done == STEPS
        assert any("disk is full" in m or "No space left" in m for m in warned), warned
        written = steps_written(mnt / "runs", "full")
        assert written[:3] == [2, 4, 6] and written[-1] == STEPS and len(written) < STEPS // 2
        (ev,) = failure_events(mnt / "runs", "full")
        assert ev["details"]["dropped"] > 0
        with RunStore(mnt / "runs").open("full") as r:
            assert r.status().state == "finished"


@pytest.mark.parametrize("kwargs, message", [({"lock_timeout": -1}, "lock_timeout"),
                                             ({"retry_after": "soon"}, "retry_after"),
                                             ({"lock_timeout": float("inf")}, "lock_timeout")])
def test_bad_store_settings_are_one_clear_error(tmp_path, kwargs, message):
    with pytest.raises(UserError, match=message):
        watch(model(), runs_dir=tmp_path, verbose=False, **kwargs)
