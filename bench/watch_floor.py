"""What watching costs beside the least a hook can do, in one process: `python bench/watch_floor.py
[--model mlp] [--rounds 120] [--threads 1] [--out FILE]`.

Between processes the step-time ratio of bench/watch_overhead.py moves by about as much as the
parts of the watcher that are left to cut, so this bench compares them inside one process, where
the host's phase and the memory layout are shared. Each round times one block (one flush interval)
of each arm, in an order that rotates round by round:

  bare       `w.detached()`: no hook at all
  no-op hook a forward hook on each watched module that returns at once
  floor      a forward hook on each watched module that adds the per-unit sum of its output into
             a buffer (one BLAS product for a 2-D or 3-D fp32 output): the least an exact
             per-forward dead/dormant window needs
  opt hook   a global optimizer pre-hook that returns at once
  watch      the whole watcher, watch defaults: hooks, w.step(loss=...), a flush to a real store

Prints each arm's median over rounds of (arm block ÷ bare block), with its 95% bootstrap interval.
Models as in bench/watch_overhead.py. Nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from actlab.watcher import watch
from actlab.watcher.probe_layer import _unit_dims
from actlab.watcher.reductions import row_sum_into, set_grad, unit_sum
from torch.optim.optimizer import register_optimizer_step_pre_hook

sys.path.insert(0, str(Path(__file__).resolve().parent))
from watch_overhead import CASES, ci_text, device_name, median_ci, one_model_args, one_model_setup, write_result  # noqa: E402

ARMS = ("bare", "no-op hook", "floor", "opt hook", "watch")


def _floor_hook(acc: dict, name: str):
    """The watcher's own per-unit sum (core/watcher/reductions.py), and nothing else."""
    def hook(module, inputs, output):
        if not isinstance(output, torch.Tensor) or not output.is_floating_point():
            return
        y = output.detach()
        grad = torch.is_grad_enabled()
        set_grad(False)
        try:
            if y.dim() in (2, 3) and y.dtype == torch.float32 and y.is_contiguous():
                y2 = y.view(-1, y.shape[-1])
                ones = acc.get((name, "ones"))
                if ones is None or ones.shape[1] != y2.shape[0]:
                    ones = acc[(name, "ones")] = torch.ones(1, y2.shape[0], device=y.device)
                acc[name] = row_sum_into(acc.get(name), ones, y2)
            else:
                axis, dims = _unit_dims(y)
                s = unit_sum(y, dims, y.shape[axis])
                acc[name] = s if acc.get(name) is None else acc[name].add_(s)
        finally:
            set_grad(grad)
    return hook


def measure(name: str, args, device) -> dict:
    model, step = CASES[name](device, args)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    w = watch(model, run=f"floor-{name}", log_every=args.log_every, runs_dir=tempfile.mkdtemp(), verbose=False)
    modules = [t.module for t in w.layers.values()]
    acc: dict = {}

    def arm(which: str):
        if which == "watch":
            for _ in range(args.log_every):
                w.step(loss=step())
            return
        with w.detached():
            handles = []
            if which == "no-op hook":
                handles = [m.register_forward_hook(lambda m, i, o: None) for m in modules]
            elif which == "floor":
                handles = [m.register_forward_hook(_floor_hook(acc, str(k))) for k, m in enumerate(modules)]
            elif which == "opt hook":
                handles = [register_optimizer_step_pre_hook(lambda opt, a, kw: None)]
            try:
                for _ in range(args.log_every):
                    step()
            finally:
                for h in handles:
                    h.remove()

    for _ in range(args.warmup):
        for a in ARMS:
            arm(a)
    ratios = {a: [] for a in ARMS[1:]}
    for r in range(args.rounds):
        t = {}
        for a in ARMS[r % len(ARMS):] + ARMS[:r % len(ARMS)]:
            sync()
            t0 = time.perf_counter()
            arm(a)
            sync()
            t[a] = time.perf_counter() - t0
        for a in ARMS[1:]:
            ratios[a].append(t[a] / t["bare"])
    w.close()
    res = {"layers": len(modules), "rounds": args.rounds, "block": args.log_every, "arms": {}}
    for a in ARMS[1:]:
        med, ci = statistics.median(ratios[a]), median_ci(ratios[a])
        res["arms"][a] = {"ratio": med, "ratio_ci95": ci}
        print(f"{name}: {a:10s} ratio to bare = {med:.4f} ({ci_text(ci, len(ratios[a]))})")
    return res


def main() -> int:
    ap = argparse.ArgumentParser()
    one_model_args(ap)
    ap.add_argument("--rounds", type=int, default=120)
    ap.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    ap.add_argument("--log-every", type=int, default=50, help="the watcher's flush interval = steps per block")
    args = ap.parse_args()
    if args.rounds < 1 or args.log_every < 1 or args.warmup < 0:
        ap.error("--rounds and --log-every must be >= 1, --warmup >= 0")
    device = one_model_setup(ap, args)
    print(f"device={device} ({device_name(device)}) torch={torch.__version__} threads={torch.get_num_threads()} "
          f"model={args.model} block={args.log_every} rounds={args.rounds}")
    res = measure(args.model, args, device)
    if args.out:
        write_result(args.out, "bench:watch_floor", device, model=args.model, **res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
