"""Log parser throughput: `python bench/parse_speed.py [--mb 100] [--out bench/results/parse_speed_cpu.json]`.

Writes inputs of about --mb MB each to a temp dir and reads them through core.logs.parse_bytes,
the loader's entry point (content-hash cache cleared before every timed read):
1. a key=value text log (the ablation runner's format, an eval line every 1000 lines, some
   chatter), plus the line-by-line path on a 5% slice for comparison;
2. the same kind of metrics as a CSV export and as JSON lines;
3. one TensorBoard event file of scalar summaries (torch's SummaryWriter layout), read with the
   record CRCs checked (the default) and skipped (verify_crc=False), beside tbparse on the same
   file, as MB/s and as ratios ours / tbparse. The TensorBoard arms alternate round by round, so
   a change in the machine's load hits all of them alike; each figure is the best round.
Prints measured figures only; nothing here asserts a time. Targets (2-core machine): text
>= 60 MB/s; TensorBoard >= 200 MB/s with the CRC skipped and >= tbparse with it checked.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import struct
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import numpy as np

from actlab import argtypes as T
from actlab import logs
from actlab.logs.tfrecord import masked_crc32c

KEYS = ["loss/train", "acc/top1", "acc/top5", "acc/top10", "mrr"]


def write_text_log(path: Path, target_mb: float) -> int:
    rng = np.random.default_rng(0)
    size, i = 0, 0
    with open(path, "w") as f:
        while size < target_mb * 1e6:
            block = []
            for _ in range(10000):
                i += 1
                acc = min(0.999, 0.1 + i / 3e6 + rng.normal(0, 0.01))
                block.append(f"epoch={i // 100} step={i * 40} loss/train={1 / (1 + i / 1e4):.4f} acc/top1={acc:.4f} "
                             f"acc/top5={min(0.999, acc + 0.2):.4f} acc/top10={min(0.999, acc + 0.3):.4f} mrr={acc * 0.9:.4f}")
                if i % 1000 == 0:
                    block.append(f"[12:00:{i % 60:02d}] INFO step {i * 40}: val/acc = {acc:.4f}")
                if i % 50000 == 0:
                    block.append("saving checkpoint")
            text = "\n".join(block) + "\n"
            f.write(text)
            size += len(text)
    return i


def write_table(path: Path, target_mb: float, jsonl: bool) -> int:
    """Lightning-style metrics: step, epoch and five metrics a row, as CSV or JSON lines."""
    rng = np.random.default_rng(1)
    size, i = 0, 0
    with open(path, "w") as f:
        if not jsonl:
            f.write("step,epoch," + ",".join(KEYS) + "\n")
        while size < target_mb * 1e6:
            n = 20000
            step = np.arange(i, i + n) * 40
            vals = rng.random((n, len(KEYS))).round(6)
            if jsonl:
                lines = [json.dumps({"step": int(s), "epoch": int(s // 4000), **dict(zip(KEYS, v.tolist()))})
                         for s, v in zip(step, vals)]
            else:
                lines = [f"{s},{s // 4000}," + ",".join(map(repr, v.tolist())) for s, v in zip(step, vals)]
            text = "\n".join(lines) + "\n"
            f.write(text)
            size += len(text)
            i += n
    return i


def write_tfevents(path: Path, target_mb: float) -> int:
    """Scalar events as torch's SummaryWriter writes them (one value per event), framed here
    rather than through tensorboard's writer, which would take minutes for 100 MB."""
    from tensorboard.compat.proto import event_pb2, summary_pb2

    def record(b: bytes) -> bytes:
        h = struct.pack("<Q", len(b))
        return h + struct.pack("<I", masked_crc32c(h)) + b + struct.pack("<I", masked_crc32c(b))

    V, S, E = summary_pb2.Summary.Value, summary_pb2.Summary, event_pb2.Event
    rng = np.random.default_rng(2)
    out = [record(E(wall_time=1.7e9, file_version="brain.Event:2").SerializeToString())]
    size, i, points = 0, 0, 0
    while size < target_mb * 1e6:
        for k, v in zip(KEYS, rng.random(len(KEYS)).tolist()):
            r = record(E(wall_time=1.7e9 + i * 0.01, step=i * 40,
                         summary=S(value=[V(tag=k, simple_value=v)])).SerializeToString())
            out.append(r)
            size += len(r)
            points += 1
        i += 1
    path.write_bytes(b"".join(out))
    return points


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def read(name: str, data: bytes, **kw):
    logs._CACHE.clear()  # measure parsing, not the content-hash cache
    return logs.parse_bytes(name, data, **kw)


def best_of(fn, n: int):
    times, out = [], None
    for _ in range(n):
        out = None  # free the previous result outside the timed region
        sec, out = timed(fn)
        times.append(sec)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=T.positive_float, default=100.0, help="size of each input")
    ap.add_argument("--rounds", type=T.positive_int, default=3, help="timed reads per arm (best is reported)")
    ap.add_argument("--tbparse-rounds", type=T.non_negative_int, default=2, help="0: no tbparse")
    ap.add_argument("--out", default=None, help="result JSON, e.g. bench/results/parse_speed_cpu.json")
    args = ap.parse_args()
    load0 = os.getloadavg()
    print(f"cpus: {os.cpu_count()}, load average {load0[0]:.2f}")
    res: dict = {"kind": "bench:parse_speed", "mb_target": args.mb}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        log = tmp / "with_relu_seed1.log"
        n_lines = write_text_log(log, args.mb)
        data = log.read_bytes()
        mb = len(data) / 1e6
        sec, parsed = best_of(lambda: read(log.name, data), args.rounds)
        print(f"text: {mb:.1f} MB, {n_lines:,} metric lines: {sec:.2f}s  {mb / sec:.1f} MB/s  "
              f"({len(parsed.df):,} scalars, {parsed.n_unparsed} lines not understood)")
        cached, _ = timed(lambda: logs.parse_bytes(log.name, data))
        sub = data[: len(data) // 20]
        sub = sub[: sub.rfind(b"\n") + 1]
        slow, _ = timed(lambda: logs.parse_text(sub.decode(), "slice.log", fast=False))
        print(f"text, cached re-open: {cached:.3f}s; line-by-line path (5% slice): {len(sub) / 1e6 / slow:.1f} MB/s")
        res["text"] = {"mb": round(mb, 1), "seconds": round(sec, 3), "mb_per_s": round(mb / sec, 1),
                       "scalars": len(parsed.df), "cached_reopen_s": round(cached, 4),
                       "line_by_line_mb_per_s": round(len(sub) / 1e6 / slow, 1)}
        parsed = data = None

        for kind, fname in (("csv", "metrics.csv"), ("jsonl", "metrics.jsonl")):
            p = tmp / fname
            rows = write_table(p, args.mb, jsonl=kind == "jsonl")
            blob = p.read_bytes()
            mb = len(blob) / 1e6
            sec, parsed = best_of(lambda: read(fname, blob), args.rounds)
            print(f"{kind}: {mb:.1f} MB, {rows:,} rows: {sec:.2f}s  {mb / sec:.1f} MB/s  ({len(parsed.df):,} scalars"
                  f"{'; ' + '; '.join(parsed.warnings) if parsed.warnings else ''})")
            res[kind] = {"mb": round(mb, 1), "seconds": round(sec, 3), "mb_per_s": round(mb / sec, 1),
                         "scalars": len(parsed.df), "warnings": parsed.warnings}
            parsed = blob = None

        ev = tmp / "tb" / "events.out.tfevents.1700000000.bench"
        ev.parent.mkdir()
        points = write_tfevents(ev, args.mb)
        blob = ev.read_bytes()
        mb = len(blob) / 1e6
        print(f"tensorboard: {mb:.1f} MB, {points:,} scalars")
        try:
            from tbparse import SummaryReader
        except ImportError:
            SummaryReader = None
            print("tbparse not installed: no comparison")
        arms = {"crc_on": lambda: read(f"tb/{ev.name}", blob, verify_crc=True),
                "crc_off": lambda: read(f"tb/{ev.name}", blob, verify_crc=False)}
        if SummaryReader is not None and args.tbparse_rounds:
            arms["tbparse"] = lambda: SummaryReader(str(ev), pivot=False).scalars
        best = {k: float("inf") for k in arms}
        for r in range(max(args.rounds, args.tbparse_rounds)):
            for k, fn in arms.items():
                if (k == "tbparse" and r >= args.tbparse_rounds) or (k != "tbparse" and r >= args.rounds):
                    continue
                sec, out = timed(fn)
                n = len(out) if k == "tbparse" else len(out.df)
                assert n == points, (k, n, points)  # every point, none sampled away
                best[k] = min(best[k], sec)
                out = None
        tb = {"mb": round(mb, 1), "points": points}
        for k, sec in best.items():
            tb[f"{k}_seconds"], tb[f"{k}_mb_per_s"] = round(sec, 3), round(mb / sec, 1)
        line = (f"tensorboard, ours: CRC checked {mb / best['crc_on']:.1f} MB/s ({best['crc_on']:.2f}s), "
                f"CRC skipped {mb / best['crc_off']:.1f} MB/s ({best['crc_off']:.2f}s)")
        if "tbparse" in best:
            tb["ratio_crc_on_vs_tbparse"] = round(best["tbparse"] / best["crc_on"], 2)
            tb["ratio_crc_off_vs_tbparse"] = round(best["tbparse"] / best["crc_off"], 2)
            line += (f"; tbparse {mb / best['tbparse']:.2f} MB/s ({best['tbparse']:.1f}s); ours / tbparse: "
                     f"{tb['ratio_crc_on_vs_tbparse']:.1f}x checked, {tb['ratio_crc_off_vs_tbparse']:.1f}x skipped "
                     f"(all {points:,} points in each)")
        print(line)
        res["tensorboard"] = tb
    load1 = os.getloadavg()
    print(f"load average after: {load1[0]:.2f}")
    res.update({"machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                "load_average": [round(load0[0], 2), round(load1[0], 2)], "python": platform.python_version(),
                "numpy": np.__version__, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "command": "python bench/parse_speed.py " + " ".join(sys.argv[1:])})
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
