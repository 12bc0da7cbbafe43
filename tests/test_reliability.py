"""Reliability: SIGKILL mid-run, SIGTERM, NaN loss, concurrent reader/writer, then resume."""
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from actlab.store.runs import RunStore
from actlab.train.loop import load_checkpoint
from actlab.train.mnist import train_mnist

ROOT = Path(__file__).resolve().parent.parent


def _spawn(tmp_path, name, *extra):
    argv = [sys.executable, "-m", "actlab", "train", "mnist", "--name", name, "--runs-dir", str(tmp_path / "runs"),
            "--checkpoints-dir", str(tmp_path / "ck"), "--hidden", "32", "--batch-size", "500", "--log-every", "2",
            "--epochs", "1000", "--no-progress", *extra]
    env = dict(os.environ)
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait_for(pred, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError("timed out")


def _n_rows(store, name):
    if not store.exists(name):
        return 0
    with store.open(name) as r:
        return len(r.scalars()[0])


def _ckpt_step(tmp_path, name):
    p = tmp_path / "ck" / name / "last.pt"
    return load_checkpoint(p)["step"] if p.exists() else 0


def test_sigkill_keeps_logged_rows_marks_stale_and_resume_continues(tmp_path):
    store = RunStore(tmp_path / "runs")
    proc = _spawn(tmp_path, "killed")
    try:
        # Past at least two epoch checkpoints (8 steps each) so there is something to resume from.
        _wait_for(lambda: _ckpt_step(tmp_path, "killed") >= 16)
        seen = _n_rows(store, "killed")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    r = store.open("killed")
    df, _ = r.scalars()
    assert len(df) >= seen > 0  # every row committed before the kill is readable
    assert df["value"].notna().sum() > 0 and df["key"].notna().all()
    st = r.status()
    assert st.state == "stale" and "gone" in st.reason
    ckpt_step = _ckpt_step(tmp_path, "killed")
    last_step = int(df.step.max())
    assert ckpt_step <= last_step

    name = train_mnist({"resume": "killed", "runs_dir": str(tmp_path / "runs"), "checkpoints_dir": str(tmp_path / "ck"),
                        "epochs": ckpt_step // 8 + 1, "progress": False})
    r2 = store.open(name)
    assert r2.status().state == "finished"
    assert _ckpt_step(tmp_path, "killed") == (ckpt_step // 8 + 1) * 8  # continued, not restarted at 0
    steps = r2.scalars(keys=["loss/train"])[0].step
    assert steps.max() == (ckpt_step // 8 + 1) * 8
    # One value per (step, key): what the killed trainer wrote after its checkpoint was superseded.
    df2 = r2.scalars()[0]
    assert not df2.duplicated(["step", "key"]).any()
    assert set(steps) == set(range(2, steps.max() + 1, 2))  # and nothing is missing
    kept = df[df.step <= ckpt_step].set_index(["step", "key"])["value"]
    assert kept.equals(df2[df2.step <= ckpt_step].set_index(["step", "key"])["value"].reindex(kept.index))


def test_sigterm_checkpoints_and_marks_stopped(tmp_path):
    store = RunStore(tmp_path / "runs")
    proc = _spawn(tmp_path, "termed")
    try:
        _wait_for(lambda: _n_rows(store, "termed") > 20)
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=60)[0].decode()
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    st = store.open("termed").status()
    assert st.state == "stopped" and "SIGTERM" in st.reason
    last = store.open("termed").scalars(keys=["loss/train"])[0].step.max()
    assert _ckpt_step(tmp_path, "termed") >= last  # the checkpoint holds the last logged step


def test_nan_loss_fails_with_reason_and_keeps_last_good_checkpoint(tmp_path):
    name = train_mnist({"name": "nan", "runs_dir": str(tmp_path / "runs"), "checkpoints_dir": str(tmp_path / "ck"),
                        "hidden": [16], "batch_size": 500, "log_every": 2, "epochs": 5, "fault_nan_at_step": 11,
                        "progress": False})
    r = RunStore(tmp_path / "runs").open(name)
    st = r.status()
    assert st.state == "failed" and st.reason == "loss became nan at step 12"
    ckpt = load_checkpoint(tmp_path / "ck" / "nan" / "last.pt")
    assert ckpt["step"] == 8  # end of epoch 1: the last good one
    assert all(v.isfinite().all() for v in ckpt["model"].values())
    assert r.scalars(keys=["loss/train"])[0].step.max() == 10  # nothing logged from the bad interval


def test_huge_lr_diverges_to_failed_not_a_crash(tmp_path):
    name = train_mnist({"name": "lr", "runs_dir": str(tmp_path / "runs"), "checkpoints_dir": str(tmp_path / "ck"),
                        "hidden": [16], "batch_size": 500, "log_every": 1, "epochs": 20, "lr": 1e30,
                        "optimizer": "sgd", "progress": False})
    st = RunStore(tmp_path / "runs").open(name).status()
    assert st.state == "failed" and "became" in st.reason


def test_reader_polling_while_writer_writes_never_sees_errors_or_torn_rows(tmp_path):
    store = RunStore(tmp_path / "runs")
    w = store.create("live", {"x": 1})
    keys = [f"k{i}" for i in range(20)]
    errors, seen = [], []
    done = threading.Event()

    def write():
        for step in range(300):
            w.log_scalars(step, {k: step + i for i, k in enumerate(keys)}, epoch=step / 10)
            w.log_histogram(step, "pre/a", [0, 1, 2], [step, step])
        done.set()

    def read():
        r = store.open("live")
        cursor = 0
        try:
            while True:
                finished = done.is_set()
                df, cursor = r.scalars(after_id=cursor)
                seen.append(df)
                for h in r.histograms("pre/a")[-1:]:
                    assert h["counts"] == [h["step"], h["step"]]
                if finished:
                    break
        except Exception as e:  # noqa: BLE001 - the test is that nothing is raised
            errors.append(e)

    t_w, t_r = threading.Thread(target=write), threading.Thread(target=read)
    t_r.start(); t_w.start(); t_w.join(); t_r.join(60)
    import pandas as pd

    all_rows = pd.concat(seen)
    assert not errors
    # Every step appears whole (all 20 keys) and exactly once across the incremental reads.
    per_step = all_rows.groupby("step")["key"].count()
    assert len(per_step) == 300 and (per_step == 20).all()
    assert (all_rows["value"] == all_rows["step"] + all_rows["key"].str[1:].astype(int)).all()
    w.close()


@pytest.mark.parametrize("bad", ["/", "..", "a/b", "x\x00y", "", ".hidden"])
def test_bad_run_names_are_refused(tmp_path, bad):
    from actlab import UserError

    with pytest.raises(UserError):
        RunStore(tmp_path).create(bad, {})
    assert not any(tmp_path.iterdir())


def _tiny(tmp_path, **kw):
    return {"runs_dir": str(tmp_path / "runs"), "checkpoints_dir": str(tmp_path / "ck"), "hidden": [16],
            "batch_size": 500, "log_every": 2, "progress": False, **kw}


def test_resume_supersedes_what_the_crashed_trainer_wrote_after_its_checkpoint(tmp_path):
    """The `--resume` row of issue 9: 2-14 loss/train steps used to be stored twice."""
    store = RunStore(tmp_path / "runs")
    train_mnist(_tiny(tmp_path, name="r", epochs=1))  # checkpoint at step 8
    before = store.open("r").scalars()[0]
    # What a trainer killed after that checkpoint leaves behind: rows at later steps, including a
    # step the resumed trainer will not log again (11) and blobs.
    w = RunStore(tmp_path / "runs").create("r", {}, resume=True)
    w.log_scalars(10, {"loss/train": 99.0, "acc/train": 0.0})
    w.log_scalars(11, {"loss/train": 98.0})
    w.log_histogram(10, "pre/act1", [0, 1], [5])
    w.log_unit_activity(10, "act1", [0.5])
    w.close()
    train_mnist(_tiny(tmp_path, resume="r", epochs=2))
    r = store.open("r")
    df = r.scalars()[0]
    assert not df.duplicated(["step", "key"]).any()
    loss = df[df.key == "loss/train"].set_index("step")["value"]
    assert list(loss.index) == [2, 4, 6, 8, 10, 12, 14, 16]  # 11 is gone, 10 is the resumed value
    assert 0 < loss[10] < 5
    merged = before.merge(df, on=["step", "key"], suffixes=("_before", "_after"))
    assert len(merged) == len(before) and (merged.value_before == merged.value_after).all()  # nothing before it lost
    hists = [(h["step"], h["key"]) for h in r.histograms()]
    units = [(u["step"], u["key"]) for u in r.unit_activity()]
    assert len(hists) == len(set(hists)) and len(units) == len(set(units))
    assert (10, "act1") in units and [u for u in r.unit_activity() if u["step"] == 10][0]["values"] != [0.5]
    assert r.status().state == "finished"


def test_inf_loss_fails_with_reason_too(tmp_path, monkeypatch):
    import torch.nn.functional as F

    real = F.cross_entropy
    calls = {"n": 0}

    def exploding(*a, **kw):  # the 6th training batch's loss is +inf (a log step: log_every 2)
        out = real(*a, **kw)
        if kw.get("reduction", "mean") == "mean":
            calls["n"] += 1
            if calls["n"] == 6:
                return out * float("inf")
        return out

    monkeypatch.setattr("actlab.train.mnist.F.cross_entropy", exploding)
    train_mnist(_tiny(tmp_path, name="inf", epochs=3))
    st = RunStore(tmp_path / "runs").open("inf").status()
    assert st.state == "failed" and st.reason == "loss became inf at step 6"
    assert not (tmp_path / "ck" / "inf" / "last.pt").exists()  # no good checkpoint yet: none written


WRITER = """
import sys
from actlab.store.runs import RunStore
store, name = RunStore(sys.argv[1]), sys.argv[2]
w = store.create(name, {"writer": name}, kind="mnist")
for step in range(1, 301):  # what a trainer does at each log step, one transaction per call
    w.log_scalars(step, {f"k{i}": step + i for i in range(20)}, epoch=step / 10)
    w.log_histogram(step, "pre/act1", [0, 1, 2], [step, step])
    w.log_unit_activity(step, "act1", [0.5, 0.0])
    if step == 150:  # and a resume half-way: the tail after step 100 is superseded, then rewritten
        w.close()
        w = store.create(name, {"writer": name}, kind="mnist", resume=True, resume_step=100)
        for again in range(101, 151):
            w.log_scalars(again, {f"k{i}": again + i for i in range(20)}, epoch=again / 10)
w.set_status("finished")
w.close()
"""


def test_four_writers_and_a_reader_never_see_database_is_locked(tmp_path):
    """Several trainers in one runs folder while the dashboard's reader polls every run. The writers
    are processes using the trainers' RunWriter calls (no model: SQLite locking is what is tested)."""
    from actlab.store.runs import RunFollower

    store = RunStore(tmp_path / "runs")
    names = [f"w{i}" for i in range(4)]
    env = dict(os.environ)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "runs"), n], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for n in names]
    errors, polls, followers = [], 0, {}
    try:
        deadline = time.time() + 180
        while time.time() < deadline and any(p.poll() is None for p in procs):
            try:
                for n in store.names():
                    f = followers.setdefault(n, RunFollower(store, n))
                    f.poll()
                    store.summary(n)
                    polls += 1
            except Exception as e:  # noqa: BLE001 - the test is that nothing is raised
                errors.append(repr(e))
        outs = [p.communicate(timeout=60)[0].decode() for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert not errors, errors[:3]
    assert polls >= 8, outs  # the reader really read while they wrote
    for n, p, out in zip(names, procs, outs):
        assert p.returncode == 0 and "locked" not in out and "Traceback" not in out, out
        f = followers[n]
        f.poll()
        assert f.status.state == "finished"
        df = store.open(n).scalars()[0]
        # The follower, which read along (and through the resume), holds exactly what the store holds.
        assert len(df) == 300 * 20 and not df.duplicated(["step", "key"]).any()
        assert len(f.scalars) == len(df) and not f.scalars.duplicated(["step", "key"]).any()
        assert (df["value"] == df["step"] + df["key"].str[1:].astype(int)).all()


def test_biencoder_nan_loss_fails_with_reason_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    import math

    import torch.nn.functional as F

    from actlab.train.biencoder import train_biencoder
    from tests.test_train_biencoder import write_pairs

    real, calls = F.cross_entropy, {"n": 0}

    def poisoned(*a, **kw):  # 5 steps an epoch: from step 7 on (the second epoch), the loss is NaN
        calls["n"] += 1
        out = real(*a, **kw)
        return out * float("nan") if calls["n"] >= 7 else out

    monkeypatch.setattr("actlab.train.biencoder.F.cross_entropy", poisoned)
    pairs = write_pairs(tmp_path / "pairs.jsonl")
    with pytest.raises(Exception, match="loss became nan at step"):
        train_biencoder({"backbone": "tiny", "data": str(pairs), "batch_size": 8, "log_every": 2, "epochs": 3,
                         "name": "bnan", "runs_dir": str(tmp_path / "runs"), "checkpoints_dir": str(tmp_path / "ck"),
                         "progress": False})
    st = RunStore(tmp_path / "runs").open("bnan").status()
    assert st.state == "failed" and st.reason == "loss became nan at step 8"  # the first log step after 7
    ckpt = load_checkpoint(tmp_path / "ck" / "bnan" / "last.pt")
    assert ckpt["epoch"] == 1 and ckpt["step"] == 5  # the last good one
    assert all(math.isfinite(float(v.float().abs().sum())) for v in ckpt["model"].values())
