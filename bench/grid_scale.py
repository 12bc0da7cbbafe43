"""Grid scale-out: `python bench/grid_scale.py [--epochs 2] [--seeds 2] [--parallel 2] [--out FILE]`.

One tiny grid, 5 activations x N seeds of the MNIST MLP (784-512-10, bundled digits, CPU), run
three ways, each as a real `python -m actlab ablate mnist` process with its own run store:
- sequential: one run after another in one process (the default on a CPU);
- --parallel N: up to N runs at once, one process each;
- --backend ray: Ray tasks on a local Ray cluster that the command starts (its start-up is in the time).

Printed, and written as JSON (--out): each arm's wall time and its ratio to sequential, and whether
the three agree: every run's final acc/test, loss/test and loss/train equal across the arms (the
same seeds give the same figures; the trainer uses one CPU thread in every arm), and the three
summary tables identical. Exit code 1 when they do not agree.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from actlab import argtypes as T
from actlab.analysis.ablation import machine
from actlab.store.runs import RunStore

ACTIVATIONS = "relu,leaky_relu,gelu,silu,tanh"
KEYS = ("acc/test", "loss/test", "loss/train")


def arm(tmp: Path, label: str, args, extra: list[str]) -> dict:
    d = tmp / label
    argv = [sys.executable, "-m", "actlab", "ablate", "mnist", "--activations", ACTIVATIONS, "--seeds", str(args.seeds),
            "--epochs", str(args.epochs), "--device", "cpu", "--runs-dir", str(d / "runs"), "--grid", "g", *extra]
    env = {**os.environ, "ACTLAB_CHECKPOINTS_DIR": str(d / "ck")}
    t0 = time.perf_counter()
    p = subprocess.run(argv, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"error: the {label} arm failed (exit {p.returncode}): {p.stderr.strip().splitlines()[-1:]}")
    store = RunStore(d / "runs")
    finals = {}
    for name in store.names():
        last = store.summary(name)["last"]
        finals[name] = {k: last.get(k) for k in KEYS}
    table = (d / "runs" / "ablations" / "g" / "summary.md").read_text()
    return {"wall_s": round(wall, 2), "runs": len(finals), "finals": finals, "summary": table,
            "command": " ".join(["python", "-m", "actlab", *argv[3:]]).replace(str(d), "<tmp>")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="grid_scale.py")
    ap.add_argument("--epochs", type=T.positive_int, default=2)
    ap.add_argument("--seeds", type=T.positive_int, default=2)
    ap.add_argument("--parallel", type=T.positive_int, default=2)
    ap.add_argument("--out", default=None, help="write the result JSON here")
    args = ap.parse_args(argv)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="grid-scale-") as tmp:
        arms = {"sequential": arm(Path(tmp), "sequential", args, []),
                f"parallel{args.parallel}": arm(Path(tmp), "parallel", args, ["--parallel", str(args.parallel)]),
                "ray": arm(Path(tmp), "ray", args, ["--backend", "ray"])}
    base = arms["sequential"]
    diff, agree = 0.0, True
    for label, a in arms.items():
        a["ratio_to_sequential"] = round(a["wall_s"] / base["wall_s"], 3)
        agree &= a["finals"].keys() == base["finals"].keys() and a["summary"] == base["summary"]
        for name, vals in a["finals"].items():
            for k, v in vals.items():
                ref = base["finals"].get(name, {}).get(k)
                agree &= v is not None and ref is not None
                if v is not None and ref is not None:
                    diff = max(diff, abs(v - ref))
    agree &= diff == 0.0
    for label, a in arms.items():
        print(f"{label:<12} {a['runs']:>3} runs  {a['wall_s']:8.1f} s  {a['ratio_to_sequential']:.2f}x sequential's time")
    print(f"arms agree: {agree} (largest |difference| of a final figure: {diff:.3g}; summary tables "
          f"{'identical' if all(a['summary'] == base['summary'] for a in arms.values()) else 'differ'})")
    print(base["summary"])
    result = {"kind": "bench:grid_scale", "grid": {"task": "mnist", "activations": ACTIVATIONS.split(","),
                                                   "seeds": args.seeds, "epochs": args.epochs, "device": "cpu"},
              "arms": {k: {kk: vv for kk, vv in v.items() if kk != "finals"} for k, v in arms.items()},
              "finals": base["finals"], "agree": bool(agree), "max_abs_diff": diff,
              "load_avg_before": [round(x, 2) for x in load_before],
              "load_avg_after": [round(x, 2) for x in os.getloadavg()], "machine": machine(),
              "command": "python bench/grid_scale.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
