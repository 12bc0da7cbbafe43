"""Where a watched step's extra time goes, timed in place: `python bench/watch_breakdown.py [--model mlp]
[--intervals 60] [--threads 1] [--out FILE]`.

Inside a training loop every op costs several times what it costs in a loop of its own (the step's
own work leaves the caches cold), so the parts are timed there, in a real watched loop (watch
defaults, a real run store). Prints medians over the intervals of: the hook's host time on a batch
that is not sampled and on a sampled one, w.step without a flush, the flush and its parts (binning
the interval's histogram subsamples, packing, the window math, the loop's scalars, the store's
check, the store write and its commit), and the step's time without the hooks' by position in the
interval: the step before a flush holds the gradient norms (read before its optimizer step), and
the step after one runs in caches the flush left cold. Models as in
bench/watch_overhead.py. Nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from actlab.watcher import watch, window

sys.path.insert(0, str(Path(__file__).resolve().parent))
from watch_overhead import CASES, one_model_args, one_model_setup, write_result  # noqa: E402


class _TimedConnection:
    """The writer's SQLite connection with its commit (`with con:` exit) timed."""

    def __init__(self, con, times: list):
        self._con, self._times = con, times

    def __enter__(self):
        return self._con.__enter__()

    def __exit__(self, *exc):
        t = time.perf_counter()
        try:
            return self._con.__exit__(*exc)
        finally:
            self._times.append(time.perf_counter() - t)

    def __getattr__(self, name):
        return getattr(self._con, name)


def _timed(obj, attr: str, times: list):
    f = getattr(obj, attr)

    def wrapper(*a, **kw):
        t = time.perf_counter()
        try:
            return f(*a, **kw)
        finally:
            times.append(time.perf_counter() - t)
    setattr(obj, attr, wrapper)


def breakdown(name: str, args, device) -> dict:
    model, step = CASES[name](device, args)
    w = watch(model, run=f"breakdown-{name}", log_every=args.log_every, runs_dir=tempfile.mkdtemp(), verbose=False)
    every, log_every = w.probes.stats_every, args.log_every
    parts = {k: [] for k in ("flush", "fold histograms", "pack", "window math", "loop scalars", "store check",
                             "store write", "commit")}
    for _ in range(10 * log_every):  # warm: shapes seen, the inlined path set, the store's caches full
        w.step(loss=step())
    _timed(w, "flush", parts["flush"])
    _timed(w.probes, "_fold_hist", parts["fold histograms"])
    _timed(window, "pack", parts["pack"])
    _timed(window, "score", parts["window math"])
    _timed(w, "_loop_scalars", parts["loop scalars"])
    if w.store is not None and w.store.writer is not None:
        _timed(w.store, "check", parts["store check"])
        writer = w.store.writer
        _timed(writer, "log_flush", parts["store write"])
        writer.con = _TimedConnection(writer.con, parts["commit"])
    hooks = {"not sampled": [], "sampled": []}
    w_step, by_pos = [], [[] for _ in range(log_every)]
    for _ in range(args.intervals * log_every):
        pos = w.step_count % log_every
        sampled = pos % every == 0  # the probes sample the 1st, (k+1)-th, ... forward of an interval
        h0 = w.probes.hook_seconds
        t0 = time.perf_counter()
        loss = step()
        t1 = time.perf_counter()
        w.step(loss=loss)
        t2 = time.perf_counter()
        hook = w.probes.hook_seconds - h0
        hooks["sampled" if sampled else "not sampled"].append(hook)
        by_pos[pos].append(t1 - t0 - hook)  # the step without the hooks' own time
        if pos != log_every - 1:
            w_step.append(t2 - t1)
    w.close()

    def us(v: list) -> float | None:
        return 1e6 * statistics.median(v) if v else None
    steps = [us(v) for v in by_pos]
    base = statistics.median(steps[2:-2])
    res = {"hook per forward, not sampled": us(hooks["not sampled"]), "hook per forward, sampled": us(hooks["sampled"]),
           "w.step without a flush": us(w_step), **{k: us(v) for k, v in parts.items()},
           "step before the flush, over the median step": steps[-1] - base,
           "step after a flush, over the median step": steps[0] - base,
           "median step, hooks' own time taken out": base}
    print(f"{name}: medians over {args.intervals} intervals of {log_every} steps (us; hooks summed over the model's layers)")
    for k, v in res.items():
        print(f"  {k:45s} {'-' if v is None else f'{v:8.1f}'}")
    return res


def main() -> int:
    ap = argparse.ArgumentParser()
    one_model_args(ap)
    ap.add_argument("--intervals", type=int, default=60)
    ap.add_argument("--log-every", type=int, default=50)
    args = ap.parse_args()
    if args.intervals < 1 or args.log_every < 4:
        ap.error("--intervals must be >= 1 and --log-every >= 4")
    device = one_model_setup(ap, args)
    res = breakdown(args.model, args, device)
    if args.out:
        write_result(args.out, "bench:watch_breakdown", device, model=args.model, us=res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
