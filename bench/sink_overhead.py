"""What sinks cost a training loop: `python bench/sink_overhead.py [--steps 600] [--rounds 3] [--out bench/results/sink_overhead_cpu.json]`.

A small MLP trained on CPU under watch(log_every=10), four arms that alternate round by round (so
a change in the machine's load hits each alike), best round of each:
  none         watch() with no sink
  tensorboard  sinks=["tensorboard:<tmp>"]
  tb+mlflow    sinks=["tensorboard:<tmp>", "mlflow:sqlite:///<tmp>/mlflow.db"]
  slow         a sink whose every write takes 0.2 s (a tracker server that answers slowly): the
               training steps must not wait for it
Reports per arm the loop's wall seconds, the training thread's CPU seconds (what the steps
themselves cost: on a shared machine the wall clock also holds other tenants' time) and the whole
process's (the sinks' threads included), each as a ratio to `none`, and the watcher's own
watch/overhead_pct (share of wall time inside the watcher, the sinks' hand-off included).
Prints measured figures only; nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from actlab import argtypes as T
from actlab.sinks import Sink
from actlab.store.runs import RunStore
from actlab.watcher import watch


class SlowSink(Sink):
    name, package = "slow", "numpy"

    def _open(self, run):
        pass

    def _write(self, item):
        time.sleep(0.2)


def train(tmp: Path, arm: str, steps: int, i: int) -> tuple[float, float, float, float]:
    sinks = {"none": [], "tensorboard": [f"tensorboard:{tmp / 'tb'}"],
             "tb+mlflow": [f"tensorboard:{tmp / 'tb'}", f"mlflow:sqlite:///{tmp / 'mlflow.db'}"],
             "slow": [SlowSink()]}[arm]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(128, 64), torch.randint(0, 10, (128,))
    run = f"{arm.replace('+', '-')}-{i}"
    w = watch(model, run=run, log_every=10, runs_dir=tmp / "runs", sinks=sinks, verbose=False)
    t, c, pc = time.perf_counter(), time.thread_time(), time.process_time()
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        w.step(loss=loss)
    # The loop only (close() waits for the sinks to drain, after training). torch runs on this one
    # thread (set_num_threads(1)), so its CPU time is the training's; the sinks' threads add to the process's.
    sec, cpu, proc = time.perf_counter() - t, time.thread_time() - c, time.process_time() - pc
    w.close()
    with RunStore(tmp / "runs").open(run) as r:
        df, _ = r.scalars(keys=["watch/overhead_pct"])
    return sec, cpu, proc, float(df["value"].mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=T.positive_int, default=600)
    ap.add_argument("--rounds", type=T.positive_int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    arms = ["none", "tensorboard", "tb+mlflow", "slow"]
    secs = {a: [] for a in arms}
    cpus = {a: [] for a in arms}
    procs = {a: [] for a in arms}
    pct = {a: [] for a in arms}
    with tempfile.TemporaryDirectory() as tmp:
        train(Path(tmp), "tb+mlflow", 20, -1)  # creates the MLflow store's tables once, outside the timing
        for i in range(args.rounds):
            for a in arms:
                s, c, pc, p = train(Path(tmp), a, args.steps, i)
                secs[a].append(s)
                cpus[a].append(c)
                procs[a].append(pc)
                pct[a].append(p)
    best = {a: min(v) for a, v in secs.items()}
    out = {"kind": "bench:sink_overhead", "steps": args.steps, "log_every": 10, "rounds": args.rounds,
           "seconds": {a: round(v, 3) for a, v in best.items()},
           "ratio_to_none": {a: round(best[a] / best["none"], 3) for a in arms},
           "train_thread_cpu_s": {a: round(min(v), 3) for a, v in cpus.items()},
           "train_thread_cpu_ratio_to_none": {a: round(min(cpus[a]) / min(cpus["none"]), 3) for a in arms},
           "process_cpu_s": {a: round(min(v), 3) for a, v in procs.items()},
           "watch_overhead_pct_mean": {a: round(sum(v) / len(v), 2) for a, v in pct.items()},
           "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "python": sys.version.split()[0],
           "torch": torch.__version__, "load_average_1m_at_end": round(os.getloadavg()[0], 1),
           "command": "python bench/sink_overhead.py " + " ".join(sys.argv[1:])}
    print(json.dumps(out, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
