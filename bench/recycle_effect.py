"""Does recycling (ReDo) help? `python bench/recycle_effect.py [--seeds 3] [--epochs 5] [--recycle-every 63]
[--out bench/results/recycle_effect_cpu.json]`.

The MNIST stress preset (Adam lr 2e-2, fc1 bias -1: it kills most ReLU units within a few hundred
steps) on the bundled digits, each seed twice: as it is, and with `--recycle-every N` (tau-dormant
units, tau 0.1, incoming rows redrawn, outgoing columns and their Adam state zeroed). Both arms run
the same steps on the same batches. Printed and written as JSON:
- final dead fraction of act1: `dead/act1` over the last window (train mode) and `dead_exact/act1`
  (eval mode, 1,000 fixed test digits, at the end: the cleaner figure, since a recycle restarts the
  train-mode window);
- final test accuracy;
- for each figure, recycled vs plain with core/compare.py's statistics (diff, bootstrap CI, p,
  verdict). Whatever the outcome, it is reported as measured.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from actlab.analysis.compare import compare_pair
from actlab.store.runs import RunStore
from actlab.train.mnist import PRESETS, train_mnist


def final(store: RunStore, name: str) -> dict:
    with store.open(name) as r:
        df, _ = r.scalars()
        events = r.events()
    last = df.dropna(subset=["value"]).sort_values("step").groupby("key")["value"].last()
    return {"dead": float(last["dead/act1"]), "dead_exact": float(last["dead_exact/act1"]),
            "acc_test": float(last["acc/test"]), "steps": int(df["step"].max()),
            "recycles": len([e for e in events if e["kind"] == "recycle"]),
            "units_recycled": int(sum(e["units"] or 0 for e in events if e["kind"] == "recycle"))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--recycle-every", type=int, default=63, help="steps (63 = one epoch of the bundled digits)")
    p.add_argument("--tau", type=float, default=0.1)
    p.add_argument("--log-every", type=int, default=21)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.seeds < 1 or args.epochs < 1 or args.recycle_every < 1 or args.log_every < 1:
        p.error("--seeds, --epochs, --recycle-every and --log-every must be >= 1")
    if not 0 <= args.tau <= 1:
        p.error("--tau must be in [0, 1]")
    tmp = Path(tempfile.mkdtemp(prefix="actlab-recycle-"))
    store = RunStore(tmp / "runs")
    arms = {"plain": {}, "recycled": {"recycle_every": args.recycle_every, "recycle_tau": args.tau}}
    rows = {a: [] for a in arms}
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        for arm, extra in arms.items():
            name = f"stress-{arm}-seed{seed}"
            train_mnist({**PRESETS["stress"], **extra, "seed": seed, "epochs": args.epochs, "log_every": args.log_every,
                         "runs_dir": str(store.root), "checkpoints_dir": str(tmp / "ck"), "name": name, "progress": False})
            f = final(store, name)
            rows[arm].append({"seed": seed, **f})
            print(f"{name:<24} dead/act1 {f['dead']:.3f}  dead_exact/act1 {f['dead_exact']:.3f}  "
                  f"acc/test {f['acc_test']:.4f}  recycles {f['recycles']} ({f['units_recycled']} units)", flush=True)
    comparisons = {}
    for key, higher in (("dead_exact", False), ("dead", False), ("acc_test", True)):
        a = [r[key] for r in rows["recycled"]]
        b = [r[key] for r in rows["plain"]]
        c = compare_pair("recycled", a, "plain", b, higher_better=higher)
        comparisons[key] = c
        lo, hi = c["diff_ci95"]
        print(f"{key:<11} recycled {sum(a) / len(a):.4f} vs plain {sum(b) / len(b):.4f}: diff {c['diff']:+.4f} "
              f"(95% CI {lo:+.4f} to {hi:+.4f}), p {c['p_value']:.4g} ({c['test']}), {c['verdict']}")
    lower = all(r["dead_exact"] < p["dead_exact"] for r, p in zip(rows["recycled"], rows["plain"]))
    print(f"recycled run ends with a lower dead_exact/act1 than its plain twin in every seed: {lower}")
    print(f"wall time {time.perf_counter() - t0:.1f} s")
    if args.out:
        out = {"kind": "bench:recycle_effect", "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
               "command": "python bench/recycle_effect.py " + " ".join(sys.argv[1:] if argv is None else argv),
               "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "device": "cpu"},
               "config": {"preset": PRESETS["stress"], "epochs": args.epochs, "seeds": args.seeds, "data": "bundled",
                          "recycle_every": args.recycle_every, "tau": args.tau, "log_every": args.log_every},
               "runs": rows, "comparisons": comparisons, "lower_dead_in_every_seed": lower}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=2, default=float))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
