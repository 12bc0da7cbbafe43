"""`ablate --parallel N`: runs as separate processes, failures named, a signal stops every run."""
import argparse
import os
import signal
import subprocess
import sys
import time

import pytest
from actlab.analysis import ablation
from actlab.analysis.ablation_parallel import child_env, run_parallel, visible_gpus
from actlab.cli import main
from actlab.store.runs import RunStore


def job(runs_dir, grid, variant, seed, **extra):
    cfg = {"activation": variant, "norm": "none", "seed": seed, "epochs": 1, "max_steps": 6, "log_every": 3,
           "runs_dir": str(runs_dir), "name": f"{grid}-{variant}-seed{seed}", "device": "cpu", "probe_size": 200, **extra}
    return {"variant": variant, "seed": seed, "config": cfg}


def test_a_failing_run_is_named_and_the_others_finish(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ACTLAB_CHECKPOINTS_DIR", str(tmp_path / "ckpt"))
    runs = tmp_path / "runs"
    jobs = [job(runs, "g", "relu", 1), job(runs, "g", "gelu", 1, fault_nan_at_step=2),  # NaN loss: the trainer fails it
            job(runs, "g", "tanh", 1, hidden="not a list")]  # dies before its run exists
    outcomes, stopped = run_parallel("mnist", jobs, str(runs), 2, device="cpu")
    assert not stopped
    by = {o["run"]: o for o in outcomes}
    assert [o["run"] for o in outcomes] == ["g-relu-seed1", "g-gelu-seed1", "g-tanh-seed1"]
    assert by["g-relu-seed1"]["status"] == "finished"
    assert by["g-gelu-seed1"]["status"] == "failed" and "loss became nan" in by["g-gelu-seed1"]["reason"]
    assert by["g-tanh-seed1"]["status"] == "failed" and "exit code" in by["g-tanh-seed1"]["reason"]
    store = RunStore(runs)
    assert store.summary("g-relu-seed1")["last"]["acc/test"] > 0
    assert store.summary("g-gelu-seed1")["status"] == "failed"
    # The grid's summary: failed runs named with their reasons, left out of the statistics.
    args = argparse.Namespace(runs_dir=str(runs), grid="g", seeds=1, backend="local", out=None)
    assignments = ablation.pd.DataFrame([{k: o[k] for k in ("run", "variant", "seed")} for o in outcomes])
    rc = ablation._finish("mnist", args, assignments, outcomes)
    out = capsys.readouterr().out
    assert rc == 1
    assert "| relu | 1 |" in out and "| gelu |" not in out
    assert "failed: 2 run(s)" in out and "g-gelu-seed1: loss became nan" in out and "g-tanh-seed1: trainer process exit code" in out


def test_cpu_threads_are_split_and_gpus_pinned(monkeypatch):
    assert visible_gpus("cpu") == []
    env = child_env(None, 3)
    assert env["OMP_NUM_THREADS"] == "3" and env["MKL_NUM_THREADS"] == "3"
    assert child_env("5", 1)["CUDA_VISIBLE_DEVICES"] == "5"


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA")
def test_gpus_round_robin():
    from actlab.analysis.ablation_parallel import ParallelGrid

    gpus = visible_gpus()
    grid = ParallelGrid("mnist", "runs", len(gpus) * 2)
    slots = [grid.slots.get() for _ in range(len(gpus) * 2)]
    assert slots == gpus * 2


@pytest.mark.parametrize("argv, message", [
    (["--parallel", "0"], "argument --parallel: expected a positive integer"),
    (["--parallel", "-3"], "argument --parallel: expected a positive integer"),
    (["--address", "auto"], "--address is for --backend ray"),
    (["--backend", "ray", "--parallel", "2"], "--parallel is for the local backend"),
    (["--backend", "dask"], "argument --backend: invalid choice"),
])
def test_bad_backend_flags_are_one_line(tmp_path, capsys, argv, message):
    rc = main(["ablate", "mnist", "--activations", "relu", "--seeds", "1", "--runs-dir", str(tmp_path / "runs"), *argv])
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # nothing ran


def _wait(pred, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_sigterm_stops_every_run_and_summarises(tmp_path):
    runs = tmp_path / "runs"
    env = {**os.environ, "ACTLAB_CHECKPOINTS_DIR": str(tmp_path / "ckpt")}
    proc = subprocess.Popen([sys.executable, "-m", "actlab", "ablate", "mnist", "--activations", "relu,gelu,tanh",
                             "--seeds", "1", "--epochs", "50", "--device", "cpu", "--runs-dir", str(runs), "--grid", "s",
                             "--parallel", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    store = RunStore(runs)

    def two_running_with_steps():
        names = [n for n in ("s-relu-seed1", "s-gelu-seed1") if store.exists(n)]
        return len(names) == 2 and all(store.summary(n)["status"] == "running" and store.summary(n)["last"]
                                       for n in names)
    try:
        _wait(two_running_with_steps, 240, "two runs to train")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert [store.summary(n)["status"] for n in ("s-relu-seed1", "s-gelu-seed1")] == ["stopped", "stopped"]
    assert not store.exists("s-tanh-seed1")
    assert "grid stopped: 1 run(s) not started" in out
    assert "stopped: 2 run(s)" in out and "| relu | 1 |" in out and "| gelu | 1 |" in out
    assert "Traceback" not in err


@pytest.mark.parametrize("backend", [[], ["--parallel", "2"], ["--backend", "ray"]])
def test_a_grid_whose_run_exists_is_refused_before_any_run(tmp_path, capsys, backend):
    runs = tmp_path / "runs"
    RunStore(runs).create("g-gelu-seed1", {}).close()
    rc = main(["ablate", "mnist", "--activations", "relu,gelu", "--seeds", "1", "--runs-dir", str(runs), "--grid", "g",
               *backend])
    err = capsys.readouterr().err
    assert rc == 2 and "run 'g-gelu-seed1' already exists" in err and len(err.strip().splitlines()) == 1
    assert RunStore(runs).names() == ["g-gelu-seed1"]  # relu never started
