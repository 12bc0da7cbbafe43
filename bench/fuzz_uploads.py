"""Adversarial uploads through the page's parser entry point:
`python bench/fuzz_uploads.py --n 1000 [--seed 0] [--out bench/results/fuzz_uploads.json]`.

Each input (bench/fuzz_cases.py: mutated real logs, structural attacks, random bytes) goes through
core.logs.loader.load_bytes, or load_paths for folders, in a worker subprocess. Workers take
inputs in batches (one interpreter start per input would dominate on 2 cores) but announce each
input before parsing it, so a hang or a crash is pinned on that input: the parent kills the worker
after --timeout seconds of silence and starts a fresh one for the rest of the batch.
Memory is the peak RSS during that one input (VmHWM, reset before each via /proc/self/clear_refs),
against a budget of 10x the input's size + 400 MB.

Counts: parsed / refused cleanly / tracebacks / hangs (and crashes) / over budget. Exits 1 on any
traceback, hang, crash or input over its memory budget.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BUDGET_BASE = 400 * 2**20
BUDGET_PER_BYTE = 10


def budget(size: int) -> int:
    return BUDGET_PER_BYTE * size + BUDGET_BASE


# ----------------------------------------------------------------------------------------------
# worker side
def _peak_reset():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _rss(field: str = "VmRSS:") -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field))


def _trim():
    """Hand freed heap back to the OS, so the next input's peak starts from a true baseline."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _peak_rss() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _run_one(case) -> tuple[str, str]:
    from actlab import UserError
    from actlab.logs import loader

    if case.files or case.links:
        with tempfile.TemporaryDirectory() as tmp:
            top = Path(tmp) / case.name
            for rel, blob in case.files:
                (top / rel).parent.mkdir(parents=True, exist_ok=True)
                (top / rel).write_bytes(blob)
            for rel, target in case.links:
                (top / rel).parent.mkdir(parents=True, exist_ok=True)
                os.symlink(target, top / rel)
            try:
                res = loader.load_paths([str(top)])
            except UserError as e:
                return "refused", str(e)[:200]
    else:
        res = loader.load_bytes(case.name, case.data)
    loader._CACHE.clear()  # a cached result would carry one input's memory into the next
    if res.logs:
        return "parsed", f"{len(res.logs)} logs, {len(res.errors)} errors"
    return "refused", (res.errors[0][1] if res.errors else "nothing loaded")[:200]


def worker(seed: int):
    import gc
    import traceback

    from fuzz_cases import make_case

    import actlab.logs  # noqa: F401  (imported before the first reset, so it is not charged to input 0)
    base = _rss()
    for line in sys.stdin:
        i = int(line)
        case = make_case(seed, i)
        gc.collect()
        _trim()
        if _rss() > base + (150 << 20) + case.size:
            # What a big input left behind (arena fragments) would be charged to the next ones.
            print(json.dumps({"recycle": i}), flush=True)
            return
        _peak_reset()
        print(json.dumps({"start": i}), flush=True)
        t = time.perf_counter()
        try:
            status, detail = _run_one(case)
        except BaseException as e:  # noqa: BLE001  (what we are counting)
            lines = traceback.format_exception(e)
            ours = [ln for ln in lines if "/core/" in ln or "/bench/" in ln]
            status, detail = "traceback", ("".join(ours[-4:]) + lines[-1])[-1500:]
        sec = time.perf_counter() - t
        print(json.dumps({"done": i, "status": status, "detail": detail, "sec": round(sec, 3),
                          "peak_rss": _peak_rss(), "size": case.size, "kind": case.kind}), flush=True)


# ----------------------------------------------------------------------------------------------
# parent side
def run_batch(seed: int, ids: list[int], timeout: float, results: dict, bar, lock):
    todo = list(ids)
    while todo:
        p = subprocess.Popen([sys.executable, __file__, "--worker", "--seed", str(seed)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
        p.stdin.write("".join(f"{i}\n" for i in todo))
        p.stdin.close()
        current, lines = None, []
        reader = threading.Thread(target=lambda: lines.extend(iter(p.stdout.readline, "")), daemon=True)
        # Lines are read on a thread so the parent can time out a worker that says nothing.
        reader.start()
        seen, deadline = 0, time.monotonic() + timeout + 60  # +60: the first input pays for imports
        while True:
            time.sleep(0.05)
            while seen < len(lines):
                msg = json.loads(lines[seen])
                seen += 1
                if "recycle" in msg:
                    current = None
                    continue
                if "start" in msg:
                    current, deadline = msg["start"], time.monotonic() + timeout
                else:
                    with lock:
                        results[msg["done"]] = msg
                        bar.update(1)
                    todo.remove(msg["done"])
                    # The next input is built before it is announced; a big one takes a few seconds.
                    current, deadline = None, time.monotonic() + timeout

            if not reader.is_alive() and seen >= len(lines):
                break
            if time.monotonic() > deadline:
                p.kill()
                break
        p.wait()
        recycled = seen and "recycle" in json.loads(lines[seen - 1])
        if current is None and todo and not recycled:
            current = todo[0]  # died or stalled before announcing its next input: that one is to blame
        if current is not None:
            from fuzz_cases import make_case
            c = make_case(seed, current)
            status = "hang" if time.monotonic() > deadline else "crash"
            with lock:
                results[current] = {"done": current, "status": status, "kind": c.kind, "size": c.size,
                                    "detail": f"worker {'killed after' if status == 'hang' else 'died at'} "
                                              f"{timeout:.0f} s (exit {p.returncode})", "sec": timeout,
                                    "peak_rss": 0}
                bar.update(1)
            todo.remove(current)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="write the result JSON here")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds one input may take")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        worker(a.seed)
        return 0
    from tqdm import tqdm

    ids = list(range(a.n))
    batches = [ids[k::a.workers] for k in range(a.workers)]
    results, lock = {}, threading.Lock()
    t0 = time.perf_counter()
    with tqdm(total=a.n, desc="fuzz uploads", unit="input") as bar:
        threads = [threading.Thread(target=run_batch, args=(a.seed, b, a.timeout, results, bar, lock)) for b in batches if b]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    wall = time.perf_counter() - t0
    rows = [results[i] | {"ratio": round(results[i]["peak_rss"] / budget(results[i]["size"]), 3)} for i in ids]
    counts = {s: sum(r["status"] == s for r in rows) for s in ("parsed", "refused", "traceback", "hang", "crash")}
    over = [r for r in rows if r["ratio"] > 1]
    worst_mem = max(rows, key=lambda r: r["ratio"])
    slowest = max(rows, key=lambda r: r["sec"])
    failures = [r for r in rows if r["status"] in ("traceback", "hang", "crash")] + over
    summary = {**counts, "over_memory_budget": len(over), "worst_memory_ratio": worst_mem["ratio"],
               "worst_memory_input": {k: worst_mem[k] for k in ("done", "kind", "size", "peak_rss")},
               "slowest_s": slowest["sec"], "slowest_input": {k: slowest[k] for k in ("done", "kind", "size")},
               "largest_input_bytes": max(r["size"] for r in rows), "wall_s": round(wall, 1)}
    print(f"{a.n} inputs (seed {a.seed}) in {wall:.0f} s: {counts['parsed']} parsed, {counts['refused']} refused "
          f"cleanly, {counts['traceback']} tracebacks, {counts['hang']} hangs, {counts['crash']} crashes; "
          f"worst memory ratio {worst_mem['ratio']:.2f} of 10x size + 400 MB (input {worst_mem['done']}, "
          f"{worst_mem['kind']}, {worst_mem['size']:,} bytes), {len(over)} over; slowest {slowest['sec']:.1f} s "
          f"({slowest['kind']})")
    for r in failures[:20]:
        print(f"  FAIL input {r['done']} {r['kind']} ({r['size']:,} bytes): {r['status']} ratio {r['ratio']}: "
              f"{r['detail'][-600:]}")
    if a.out:
        by_kind: dict = {}
        for r in rows:
            k = by_kind.setdefault(r["kind"].split("+")[0], {"n": 0, "parsed": 0, "refused": 0, "max_ratio": 0.0})
            k["n"] += 1
            k[r["status"]] = k.get(r["status"], 0) + 1
            k["max_ratio"] = max(k["max_ratio"], r["ratio"])
        out = {"kind": "bench:fuzz_uploads",
               "meta": {"command": "python bench/fuzz_uploads.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seed": a.seed, "n": a.n,
                        "timeout_s": a.timeout, "workers": a.workers, "budget": "10 x size + 400 MB peak RSS",
                        "machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
                        "platform": platform.platform()},
               "summary": summary, "by_kind": dict(sorted(by_kind.items())),
               "failures": [{k: r[k] for k in ("done", "kind", "size", "status", "ratio", "detail")} for r in failures]}
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
