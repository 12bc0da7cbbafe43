"""`ablate ... --parallel N`: up to N runs of a grid at once, each in its own process.

concurrent.futures does the queueing: a pool of N threads, each of which starts one run as a
subprocess (`python -m actlab.analysis.ablation_worker`, the trainer the sequential grid calls
in-process) and waits for it. A slot is a GPU: with CUDA every process sees exactly one
(CUDA_VISIBLE_DEVICES, round-robin over the visible ones); on a CPU the threads are split between
the runs (OMP_NUM_THREADS). Each run's output goes to <runs_dir>/<run>/train.log, as the
launcher's runs do.

Ctrl-C / SIGTERM: every running trainer gets one SIGTERM (it checkpoints and marks its run
"stopped"), no further run starts, and the grid summarises what finished. A run that fails is
marked failed with its reason and the rest go on.
"""
from __future__ import annotations

import concurrent.futures as cf
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

from ..store.runs import RunStore, RunWriter

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def visible_gpus(device: str = "auto") -> list[str]:
    """The GPU ids a run may be pinned to (as CUDA_VISIBLE_DEVICES names them); none on a CPU."""
    if device == "cpu":
        return []
    try:
        import torch

        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # a broken driver is a CPU box for the grid
        n = 0
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [d.strip() for d in env.split(",") if d.strip()] if env else [str(i) for i in range(n)]
    return ids[:n]


def default_parallel(device: str = "auto") -> int:
    """One run per GPU; one at a time on a CPU."""
    return max(1, len(visible_gpus(device)))


def child_env(gpu: str | None, threads: int) -> dict:
    env = dict(os.environ)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    else:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    return env


def _last_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    errors = [ln for ln in lines if ln.startswith("error:") or "Error" in ln]
    return (errors or lines or [""])[-1][:300]


def outcome(runs_dir, job: dict, rc: int | None, log: Path | None = None) -> dict:
    """What became of one run: the store's status when the trainer recorded one; otherwise failed,
    with the exit code (or signal) and the last error line of its output, recorded in the store too."""
    name = job["config"]["name"]
    store = RunStore(runs_dir)
    st = store.summary(name) if store.exists(name) else None
    if st is not None and st["status"] in ("finished", "stopped", "failed"):
        status, reason = st["status"], st["reason"]
    else:
        how = f"killed by {signal.Signals(-rc).name}" if rc is not None and rc < 0 else f"exit code {rc}"
        line = _last_line(log) if log is not None else ""
        status, reason = "failed", f"trainer process {how}" + (f": {line}" if line else "")
        if st is not None:  # running or stale: the trainer died before it could say so
            w = RunWriter(store.path(name), name)
            try:
                w.set_status("failed", reason)
            finally:
                w.close()
    return {"run": name, "variant": job["variant"], "seed": job["seed"], "status": status, "reason": reason,
            "attempts": 1}


class ParallelGrid:
    def __init__(self, task: str, runs_dir: str, n: int, device: str = "auto"):
        self.task, self.runs_dir, self.n = task, runs_dir, n
        gpus = visible_gpus(device)
        self.slots: queue.Queue = queue.Queue()
        for i in range(n):
            self.slots.put(gpus[i % len(gpus)] if gpus else None)
        self.threads = max(1, (os.cpu_count() or 1) // n)
        self.procs: dict[str, subprocess.Popen] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self.stopping.set()
        with self.lock:
            for p in self.procs.values():
                try:
                    p.send_signal(sig)
                except ProcessLookupError:
                    pass

    def run_one(self, job: dict) -> dict | None:
        """Start one run when a slot is free and wait for it; None when the grid stopped first."""
        if self.stopping.is_set():
            return None
        slot = self.slots.get()
        try:
            if self.stopping.is_set():
                return None
            return self._spawn(job, slot)
        except Exception as e:  # our side failed (e.g. no process could start): this run only
            return {"run": job["config"]["name"], "variant": job["variant"], "seed": job["seed"],
                    "status": "failed", "reason": f"{e.__class__.__name__}: {e}"[:300], "attempts": 1}
        finally:
            self.slots.put(slot)

    def _spawn(self, job: dict, gpu: str | None) -> dict:
        cfg = {**job["config"], "progress": False}
        name = cfg["name"]
        run_dir = RunStore(self.runs_dir).path(name)
        run_dir.mkdir(parents=True, exist_ok=True)
        log = run_dir / "train.log"
        argv = [sys.executable, "-m", "actlab.analysis.ablation_worker", self.task, json.dumps(cfg, default=str)]
        with open(log, "ab") as out:
            # A session of its own: a Ctrl-C at the terminal reaches the grid, which sends each
            # trainer exactly one SIGTERM (a second signal would hard-stop it).
            p = subprocess.Popen(argv, env=child_env(gpu, self.threads), stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
        with self.lock:
            self.procs[name] = p
        if self.stopping.is_set():  # the stop came while it was starting
            p.send_signal(signal.SIGTERM)
        try:
            rc = p.wait()
        finally:
            with self.lock:
                self.procs.pop(name, None)
        return outcome(self.runs_dir, job, rc, log)


def run_parallel(task: str, runs: list[dict], runs_dir: str, n: int, device: str = "auto") -> tuple[list[dict], bool]:
    """Run the grid with up to `n` processes at once. Returns (outcomes of the runs that started, in
    grid order; whether a signal stopped the grid)."""
    from tqdm.auto import tqdm

    grid = ParallelGrid(task, runs_dir, n, device)
    old = {}

    def on_signal(signum, frame):
        # First signal: a graceful stop for every run. Another: passed on, so trainers hard-stop.
        print(f"\n{signal.Signals(signum).name}: stopping {len(grid.procs)} running run(s)", file=sys.stderr, flush=True)
        grid.stop()

    if threading.current_thread() is threading.main_thread():
        old = {s: signal.signal(s, on_signal) for s in STOP_SIGNALS}
    done: dict[str, dict] = {}
    try:
        with cf.ThreadPoolExecutor(max_workers=n, thread_name_prefix="grid") as pool:
            pending = {pool.submit(grid.run_one, job) for job in runs}
            with tqdm(total=len(runs), desc=f"grid ({n} at once)", unit="run", dynamic_ncols=True) as bar:
                while pending:
                    finished, pending = cf.wait(pending, timeout=0.5, return_when=cf.FIRST_COMPLETED)
                    for f in finished:
                        o = f.result()
                        if o is not None:
                            done[o["run"]] = o
                            bar.update(1)
                            failed = sum(v["status"] == "failed" for v in done.values())
                            if failed:
                                bar.set_postfix(failed=failed)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    ordered = [done[j["config"]["name"]] for j in runs if j["config"]["name"] in done]
    if grid.stopping.is_set() and len(ordered) < len(runs):
        print(f"grid stopped: {len(runs) - len(ordered)} run(s) not started", flush=True)
    return ordered, grid.stopping.is_set()
