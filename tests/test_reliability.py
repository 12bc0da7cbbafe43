"""Reliability: SIGKILL mid-run, SIGTERM, NaN loss, concurrent reader/writer, then resume."""
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from core.runs import RunStore
from core.train.loop import load_checkpoint
from core.train.mnist import train_mnist

ROOT = Path(__file__).resolve().parent.parent


def _spawn(tmp_path, name, *extra):
    argv = [sys.executable, "-m", "core", "train", "mnist", "--name", name, "--runs-dir", str(tmp_path / "runs"),
            "--checkpoints-dir", str(tmp_path / "ck"), "--hidden", "32", "--batch-size", "500", "--log-every", "2",
            "--epochs", "1000", "--no-progress", *extra]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
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
    r = store.open(name)
    try:
        return len(r.scalars()[0])
    finally:
        r.close()


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
    assert st.state == "failed" and "nan" in st.reason and "step 12" in st.reason
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
    from core import UserError

    with pytest.raises(UserError):
        RunStore(tmp_path).create(bad, {})
    assert not any(tmp_path.iterdir())
