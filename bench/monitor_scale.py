"""Monitor at scale: `python bench/monitor_scale.py --rows 1000000 [--keys 10] [--out FILE]`.

Builds one run of N scalar rows (--keys keys, one row per key per step, with a loss spike and a
dead-rate jump in it) plus a histogram and a unit-activity row per layer every 100 steps, bulk
inserted with executemany in large transactions, then the min/max pyramid with
core/store/blocks.py's build_blocks (what the trainer's writer keeps incrementally). Then, as the
monitor page does for one browser tab:

  first poll   SeriesFollower.poll() on a fresh follower: every key at 700 points, newest blobs
  refresh      one more log interval written by a RunWriter, then poll() (median of --refreshes)

and prints both times, the peak Python memory of the polls (tracemalloc) and the rows the
follower holds. --old also times the previous whole-run RunFollower (slow on big runs).
Targets: first poll and refresh <= 0.15 s at 1M rows, <= 0.3 s at 10M. Nothing here asserts a time.

Store size: `python bench/monitor_scale.py --watch-shape bert-base [--flushes 2000] [--out FILE]`
watches a BERT-base-size model (BertConfig(): 12 layers x 3072 FFN units plus the pooler, random
weights, every parameter's gradient norm; watch defaults but stats_every=1, so every flush carries
the histograms and per-unit rows that a log_every=50 flush does) for --measure flushes and prints
the bytes each flush adds to metrics.db. It then replays those rows (keys, shapes and values of the
last measured flush) through the same RunWriter calls for --flushes flushes 50 steps apart, with a
recycle every 10k steps, and prints the size of the resulting database: the size of a
100k-step run at log_every=50 (target <= 100 MB), thinning included.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import numpy as np
import pandas  # noqa: F401  (loaded in the dashboard long before a poll: not part of its time)

from actlab.store import blocks, series, units
from actlab.store.runs import RunFollower, RunStore

KEYS = ["loss/train", "acc/train", "lr", "samples_per_s", "dead/act1", "zero_frac/act1", "revived/act1",
        "grad_norm/fc1.weight", "grad_norm/fc1.bias", "grad_norm/out.weight", "grad_norm/out.bias",
        "dead/act2", "zero_frac/act2", "revived/act2", "loss/test", "acc/test"]


def build(store: RunStore, name: str, rows: int, n_keys: int, chunk_steps: int = 50_000) -> dict:
    keys = KEYS[:n_keys] if n_keys <= len(KEYS) else KEYS + [f"extra/k{i}" for i in range(n_keys - len(KEYS))]
    steps = rows // len(keys)
    w = store.create(name, {"rows": rows}, kind="mnist", layers={"act1": {"activation": "relu", "params": {}}})
    con = w.con
    rng = np.random.default_rng(0)
    spike_step, jump_step = steps // 3, (2 * steps) // 3
    t = time.perf_counter()
    edges = json.dumps(np.linspace(-6, 6, 65).tolist())
    for s0 in range(0, steps, chunk_steps):
        s = np.arange(s0, min(steps, s0 + chunk_steps))
        base = 2.0 / np.sqrt(1 + s / 100) + rng.normal(0, 0.01, len(s))
        cols = {}
        for i, k in enumerate(keys):
            v = base * (1 + i / 10)
            if k == "loss/train":
                v = np.where(s == spike_step, 25.0, v)  # one-step spike: must survive downsampling
            if k.startswith("dead/"):
                v = np.where(s == jump_step, 0.95, 0.05 + 0.001 * rng.random(len(s)))
            cols[k] = v
        epoch = s / 1000.0
        wall = 1.7e9 + s * 0.01
        # Interleaved as the trainer writes them: all keys of a step, step after step.
        data = [(name, int(st), float(ep), k, float(cols[k][j]), float(wt))
                for j, (st, ep, wt) in enumerate(zip(s, epoch, wall)) for k in keys]
        blobs = [int(st) for st in s if st % 100 == 0]
        with con:
            con.executemany("INSERT INTO scalars(run, step, epoch, key, value, wall_time) VALUES (?,?,?,?,?,?)", data)
            con.executemany("INSERT INTO histograms(run, step, epoch, key, edges, counts, wall_time) VALUES (?,?,?,?,?,?,?)",
                            [(name, st, st / 1000, "pre/act1", edges, json.dumps(rng.integers(0, 500, 64).tolist()), 1.7e9)
                             for st in blobs])
            con.executemany("INSERT INTO unit_activity(run, step, epoch, key, values_json, wall_time) VALUES (?,?,?,?,?,?)",
                            [(name, st, st / 1000, "act1", json.dumps(np.round(rng.random(128), 4).tolist()), 1.7e9)
                             for st in blobs])
        print(f"  wrote {min(steps, s0 + chunk_steps) * len(keys):,} rows ({time.perf_counter() - t:.0f} s)", flush=True)
    t2 = time.perf_counter()
    blocks.build_blocks(con)
    print(f"  pyramid built from the raw rows in {time.perf_counter() - t2:.0f} s", flush=True)
    return {"writer": w, "keys": keys, "steps": steps, "spike_step": spike_step, "jump_step": jump_step,
            "build_s": time.perf_counter() - t}


def reuse(store: RunStore, name: str, rows: int, n_keys: int) -> dict:
    with store.open(name) as r:
        keys = series.keys(r.con)
        steps = r.max_step() + 1
    w = store.create(name, {"rows": rows}, kind="mnist", resume=True)
    base = rows // n_keys
    return {"writer": w, "keys": keys, "steps": steps, "spike_step": base // 3, "jump_step": (2 * base) // 3, "build_s": None}


def timed_poll(f) -> float:
    t = time.perf_counter()
    f.poll()
    return time.perf_counter() - t


def traced_poll(f) -> int:
    """Peak Python allocation of one poll; separate from the timing (tracing slows every allocation)."""
    tracemalloc.start()
    f.poll()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def db_bytes(path: Path) -> int:
    """metrics.db after a WAL checkpoint (what the run keeps on disk)."""
    import sqlite3

    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return sum(p.stat().st_size for p in path.parent.glob("metrics.db*"))


def table_bytes(path: Path) -> dict[str, int]:
    """Bytes per table and index (SQLite's dbstat), largest first; {} where dbstat is not built in."""
    import sqlite3

    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC").fetchall()
    except sqlite3.OperationalError:
        rows = []
    finally:
        con.close()
    return {n: int(b) for n, b in rows if b >= 1e5}


def watch_shape(args) -> dict:
    """Bytes per flush of a real bert-base-size watch, then the projected size of a long run."""
    import torch
    from transformers import BertConfig, BertModel
    from transformers.utils import logging as hf_logging

    from actlab.watcher import watch

    hf_logging.set_verbosity_error()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = BertModel(BertConfig()).train()
    ids = torch.randint(1, 30522, (1, 8))
    store = RunStore(args.dir or tempfile.mkdtemp())
    w = watch(model, run="measured", log_every=1, stats_every=1, runs_dir=store.root, verbose=False)
    db = store.path("measured") / "metrics.db"
    sizes = []
    for i in range(args.measure):
        out = model(input_ids=ids).last_hidden_state.float().pow(2).mean()
        out.backward()
        w.step(loss=out.detach())
        model.zero_grad(set_to_none=True)
        if i >= 1:  # the first flush also creates tables and indexes
            sizes.append(db_bytes(db))
    w.close()
    per_flush = (sizes[-1] - sizes[0]) / (len(sizes) - 1)
    with store.open("measured") as r:
        last = r.max_step()
        df, _ = r.scalars()
        scal = {k: float(v) for k, v in df[df.step == last][["key", "value"]].itertuples(index=False)}
        hists = [h for h in r.histograms() if h["step"] == last]
        rows = [u for u in r.unit_activity() if u["step"] == last]
    json_bytes = sum(len(json.dumps(np.round(np.asarray(u["values"], float), 4).tolist())) for u in rows)
    blob_bytes = sum(len(units.encode(u["values"])) for u in rows)
    layers = sorted({u["key"].removeprefix("score/") for u in rows if u["key"].startswith("score/")})
    print(f"measured: {len(scal)} scalar keys, {len(hists)} histograms, {len(rows)} per-unit rows "
          f"({', '.join(sorted({str(len(u['values'])) for u in rows}))} units) per flush")
    print(f"bytes per flush (measured over {len(sizes) - 1} flushes): {per_flush / 1e3:.1f} KB; per-unit rows "
          f"{blob_bytes / 1e3:.1f} KB compact vs {json_bytes / 1e3:.1f} KB as the JSON text used before")
    # Replay: the same rows for --flushes flushes, 50 steps apart (a 100k-step run at log_every=50).
    rw = store.create("projected", {})
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    for f in range(1, args.flushes + 1):
        step = 50 * f
        rw.log_scalars(step, {k: v * (1 + 0.01 * rng.standard_normal()) for k, v in scal.items()})
        for h in hists:
            rw.log_histogram(step, h["key"], h["edges"], h["counts"])
        for u in rows:
            rw.log_unit_activity(step, u["key"], u["values"])
        if step % 10_000 == 0:
            rw.log_event(step, "recycle", layers[0] if layers else None, 1, "bench: a recycle every 10k steps")
    rw.close()
    size = db_bytes(store.path("projected") / "metrics.db")
    breakdown = table_bytes(store.path("projected") / "metrics.db")
    with store.open("projected") as r:
        kept = len(r.unit_activity(rows[0]["key"])) if rows else 0
    print(f"projected run: {args.flushes} flushes ({50 * args.flushes:,} steps at log_every=50) -> metrics.db "
          f"{size / 1e6:.1f} MB (target <= 100 MB); {kept} of {args.flushes} flushes of each per-unit key kept "
          f"(replayed in {time.perf_counter() - t:.0f} s)")
    print("  where the bytes are: " + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in breakdown.items()))
    return {"kind": "bench:monitor_scale:store_size", "shape": f"BertConfig(): {len(layers)} hooked layers",
            "scalar_keys": len(scal), "histograms_per_flush": len(hists), "unit_rows_per_flush": len(rows),
            "bytes_per_flush": round(per_flush), "unit_row_bytes_per_flush_compact": blob_bytes,
            "unit_row_bytes_per_flush_json": json_bytes, "flushes": args.flushes, "steps": 50 * args.flushes,
            "projected_db_mb": round(size / 1e6, 1), "target_mb": 100,
            "projected_mb_by_table": {k: round(v / 1e6, 1) for k, v in breakdown.items()}, "unit_rows_kept_per_key": kept,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}",
            "python": platform.python_version(), "command": "python bench/monitor_scale.py " + " ".join(sys.argv[1:])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--watch-shape", choices=("bert-base",), default=None,
                    help="measure bytes per flush of a bert-base-size watch and project a long run's size")
    ap.add_argument("--measure", type=int, default=8, help="--watch-shape: flushes measured on the real model")
    ap.add_argument("--flushes", type=int, default=2000, help="--watch-shape: flushes of the projected run")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--keys", type=int, default=10)
    ap.add_argument("--points", type=int, default=700)
    ap.add_argument("--refreshes", type=int, default=9)
    ap.add_argument("--dir", default=None, help="where to build the run (default: a temp folder)")
    ap.add_argument("--reuse", action="store_true", help="reuse a run built before in --dir instead of rebuilding")
    ap.add_argument("--old", action="store_true", help="also time the whole-run RunFollower")
    ap.add_argument("--out", default=None, help="result JSON (default bench/results/monitor_scale_<rows>.json)")
    args = ap.parse_args()
    if args.watch_shape:
        if args.measure < 3 or args.flushes < 1:
            print("error: need --measure >= 3 and --flushes >= 1", file=sys.stderr)
            return 2
        result = watch_shape(args)
        out = Path(args.out) if args.out else ROOT / "bench" / "results" / "monitor_store_size_bert_base.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")
        return 0
    if args.rows < args.keys or args.keys < 1 or args.points < 1:
        print("error: need --rows >= --keys >= 1 and --points >= 1", file=sys.stderr)
        return 2
    store = RunStore(args.dir or tempfile.mkdtemp())
    name = f"scale{args.rows}"
    if store.exists(name) and args.reuse:
        print(f"reusing {store.path(name)}", flush=True)
        b = reuse(store, name, args.rows, args.keys)
    else:
        print(f"building {args.rows:,} scalar rows ({args.keys} keys) in {store.root} ...", flush=True)
        b = build(store, name, args.rows, args.keys)
    db = store.path(name) / "metrics.db"
    size_mb = sum(p.stat().st_size for p in db.parent.glob("metrics.db*")) / 1e6

    # A fresh process pays one-off costs (pandas/numpy code paths, SQLite page cache) that a running
    # dashboard paid long ago: measured once as `cold process`, then the figure that matters, a new
    # browser tab's follower on a warm server, after one poll of a different small run.
    cold = timed_poll(series.SeriesFollower(store, name, points=args.points))
    small = RunStore(tempfile.mkdtemp())
    sw = small.create("small", {})
    for s in range(100):
        sw.log_scalars(s, {k: 1.0 for k in KEYS[:3]})
    sw.close()
    series.SeriesFollower(small, "small", points=args.points).poll()
    f = series.SeriesFollower(store, name, points=args.points)
    first = timed_poll(f)
    first_peak = traced_poll(series.SeriesFollower(store, name, points=args.points))
    held = len(f.scalars)
    loss = f.scalars[f.scalars["key"] == "loss/train"]
    dead = f.scalars[f.scalars["key"] == "dead/act1"]
    spike_kept = bool(((loss["step"] == b["spike_step"]) & (loss["value"] == 25.0)).any())
    jump_kept = bool(((dead["step"] == b["jump_step"]) & (dead["value"] == 0.95)).any())

    w, step = b["writer"], b["steps"]
    refresh, refresh_peak = [], 0
    for i in range(args.refreshes):
        w.log_scalars(step + i, {k: 0.5 for k in b["keys"]}, epoch=(step + i) / 1000)
        w.log_histogram(step + i, "pre/act1", np.linspace(-6, 6, 65), np.ones(64))
        if i == args.refreshes - 1:
            refresh_peak = traced_poll(f)
        else:
            refresh.append(timed_poll(f))
    w.close()
    result = {
        "kind": "bench:monitor_scale", "rows": args.rows, "keys": args.keys, "steps_per_key": b["steps"], "points": args.points,
        "db_mb": round(size_mb, 1), "build_s": None if b["build_s"] is None else round(b["build_s"], 1),
        "first_poll_s": round(first, 4), "first_poll_cold_process_s": round(cold, 4), "refresh_s_median": round(statistics.median(refresh), 4),
        "refresh_s_max": round(max(refresh), 4),
        "peak_python_mb_first_poll": round(first_peak / 1e6, 2), "peak_python_mb_refresh": round(refresh_peak / 1e6, 2),
        "rows_held": held, "spike_kept": spike_kept, "dead_jump_kept": jump_kept,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}",
        "python": platform.python_version(), "command": "python bench/monitor_scale.py " + " ".join(sys.argv[1:]),
    }
    if args.old:
        old = RunFollower(store, name)
        t = time.perf_counter()
        old.poll()
        result["old_runfollower_first_poll_s"] = round(time.perf_counter() - t, 3)
    print(f"run: {args.rows:,} rows, {args.keys} keys, {b['steps']:,} steps, metrics.db {size_mb:.0f} MB")
    print(f"first poll {first:.3f} s  (a new tab on a warm server; {cold:.3f} s as the first thing a fresh process does)")
    print(f"  holds {held:,} rows; loss spike kept: {spike_kept}, dead jump kept: {jump_kept}")
    print(f"refresh {statistics.median(refresh):.3f} s  (median of {len(refresh)}; max {max(refresh):.3f} s)")
    print(f"peak memory {max(first_peak, refresh_peak) / 1e6:.1f} MB (Python allocations during a poll)")
    if "old_runfollower_first_poll_s" in result:
        print(f"old whole-run RunFollower first poll {result['old_runfollower_first_poll_s']:.3f} s")
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / f"monitor_scale_{args.rows}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
