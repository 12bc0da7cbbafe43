"""Log parser throughput: `python bench/parse_speed.py [--mb 100]`.

1. Writes a ~100 MB key=value text log (about 2M lines, the ablation runner's format with an eval
   line every 10 epochs and some chatter) to a temp dir and reports MB/s through core.logs
   (target >= 20 MB/s on a 2-core machine), plus the line-by-line path for comparison.
2. Writes the same scalars as one TensorBoard event file and prints the read time of our path
   (core.logs.parse_bytes) against plain tbparse, as a ratio.
Prints measured figures only; nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from core import logs  # noqa: E402


def write_text_log(path: Path, target_mb: float) -> int:
    rng = np.random.default_rng(0)
    lines, size, i = [], 0, 0
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


def write_tfevents(dirpath: Path, df) -> Path:
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    w = EventFileWriter(str(dirpath))
    for step, key, value in zip(df["step"].to_numpy(), df["key"].to_numpy(), df["value"].to_numpy()):
        s = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=key, simple_value=float(value))])
        w.add_event(event_pb2.Event(wall_time=1.7e9 + float(step), step=int(step), summary=s))
    w.close()
    return next(dirpath.glob("events.out.tfevents.*"))


def best_of(fn, n=3):
    times, out = [], None
    for _ in range(n):
        out = None  # free the previous result outside the timed region
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=100.0)
    ap.add_argument("--tb-points", type=int, default=200_000, help="scalars written to the event file")
    args = ap.parse_args()
    print(f"cpus: {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        log = tmp / "with_relu_seed1.log"
        t = time.perf_counter()
        n_lines = write_text_log(log, args.mb)
        mb = log.stat().st_size / 1e6
        print(f"wrote {mb:.1f} MB, {n_lines:,} metric lines in {time.perf_counter() - t:.1f}s")
        data = log.read_bytes()

        def fast():
            logs._CACHE.clear()  # measure parsing, not the content-hash cache
            return logs.parse_bytes(log.name, data)

        sec, parsed = best_of(fast, 2)
        print(f"text, template path: {sec:.2f}s  {mb / sec:.1f} MB/s  ({len(parsed.df):,} scalars, "
              f"{parsed.n_unparsed} lines not understood)  target >= 20 MB/s")
        t = time.perf_counter()
        logs.parse_bytes(log.name, data)
        print(f"text, cached re-open: {time.perf_counter() - t:.3f}s (content hash + cache hit)")
        sub = data[: len(data) // 20]
        sub = sub[: sub.rfind(b"\n") + 1]
        t = time.perf_counter()
        logs.parse_text(sub.decode(), "slice.log", fast=False)
        sl = time.perf_counter() - t
        print(f"text, line-by-line path (5% slice): {len(sub) / 1e6 / sl:.1f} MB/s")

        tb_df = parsed.df.iloc[: args.tb_points]
        tb_dir = tmp / "tb"
        tb_dir.mkdir()
        t = time.perf_counter()
        ev = write_tfevents(tb_dir, tb_df)
        print(f"wrote TensorBoard file: {len(tb_df):,} scalars, {ev.stat().st_size / 1e6:.1f} MB in "
              f"{time.perf_counter() - t:.1f}s")
        ev_bytes = ev.read_bytes()

        def ours():
            logs._CACHE.clear()
            return logs.parse_bytes(f"tb/{ev.name}", ev_bytes)

        ours_s, ours_log = best_of(ours, 2)
        try:
            from tbparse import SummaryReader
        except ImportError:
            print("tbparse not installed: no comparison")
            return

        def plain():
            return SummaryReader(str(ev), pivot=False).scalars

        tbp_s, tbp = best_of(plain, 2)
        assert len(tbp) == len(ours_log.df) == len(tb_df), (len(tbp), len(ours_log.df), len(tb_df))
        print(f"tensorboard, ours (EventAccumulator, size_guidance 0): {ours_s:.2f}s; tbparse: {tbp_s:.2f}s; "
              f"ratio ours/tbparse = {ours_s / tbp_s:.2f} (both kept all {len(tbp):,} points)")


if __name__ == "__main__":
    main()
