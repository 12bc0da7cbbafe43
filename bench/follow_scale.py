"""Following a TensorBoard folder live: `python bench/follow_scale.py [--points 1000000] [--out bench/results/follow_scale_cpu.json]`.

Writes one event file of --points scalar summaries (5 tags, torch SummaryWriter's record layout,
framed here: tensorboard's own writer would take minutes for a million points), then through
actlab.sources.tensorboard.TensorBoardFollower (what the monitor holds per TensorBoard run):
1. the first load, with the record CRCs checked and skipped, as MB/s of the file (best of
   --rounds; the two arms alternate round by round so a change in the machine's load hits both);
   Wall-clock and CPU-time MB/s are both reported: on a shared machine the wall clock includes
   time the other tenants held the cores;
2. refreshes: --appends times, a trainer appends 20 steps x 5 tags to the file and the follower
   reads them (each refresh reads only the appended bytes): median and worst seconds, and a
   refresh with nothing new.
Prints measured figures only; nothing here asserts a time. Targets: first load >= 100 MB/s with
the CRC skipped and >= 50 MB/s checked; every refresh <= 0.1 s.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from actlab import argtypes as T
from actlab.logs.tfrecord import masked_crc32c
from actlab.sources.tensorboard import TensorBoardFollower

KEYS = ["loss/train", "acc/train", "dead/fc1", "dead/fc2", "grad_norm/fc1.weight"]


def records(first_step: int, steps: int, rng) -> bytes:
    from tensorboard.compat.proto import event_pb2, summary_pb2

    V, S, E = summary_pb2.Summary.Value, summary_pb2.Summary, event_pb2.Event
    out = []
    for i in range(first_step, first_step + steps):
        for k, v in zip(KEYS, rng.random(len(KEYS)).tolist()):
            b = E(wall_time=1.7e9 + i * 0.01, step=i, summary=S(value=[V(tag=k, simple_value=v)])).SerializeToString()
            h = struct.pack("<Q", len(b))
            out.append(h + struct.pack("<I", masked_crc32c(h)) + b + struct.pack("<I", masked_crc32c(b)))
    return b"".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=T.positive_int, default=1_000_000)
    ap.add_argument("--rounds", type=T.positive_int, default=3)
    ap.add_argument("--appends", type=T.positive_int, default=20)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.points < len(KEYS):
        ap.error(f"--points must be at least {len(KEYS)} (one step of {len(KEYS)} tags)")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "tb" / "run"
        run.mkdir(parents=True)
        ev = run / "events.out.tfevents.1700000000.bench"
        from tensorboard.compat.proto import event_pb2

        head = event_pb2.Event(wall_time=1.7e9, file_version="brain.Event:2").SerializeToString()
        h = struct.pack("<Q", len(head))
        steps = args.points // len(KEYS)
        ev.write_bytes(h + struct.pack("<I", masked_crc32c(h)) + head + struct.pack("<I", masked_crc32c(head))
                       + records(0, steps, rng))
        mb = ev.stat().st_size / 1e6
        first = {True: [], False: []}
        cpu = {True: [], False: []}
        for _ in range(args.rounds):
            for crc in (True, False):
                f = TensorBoardFollower("tb:run", run, points=800, verify_crc=crc)
                t, c = time.perf_counter(), time.process_time()
                n = f.poll()
                first[crc].append(time.perf_counter() - t)
                cpu[crc].append(time.process_time() - c)
                assert n == steps * len(KEYS), (n, steps)  # every point read (the figure is of a full load)
        # Refreshes: the follower from the last round (CRC skipped) and one with the CRC checked.
        refresh = {}
        for crc in (True, False):
            f = TensorBoardFollower("tb:run", run, points=800, verify_crc=crc)
            f.poll()
            times, idle = [], []
            for a in range(args.appends):
                with open(ev, "ab") as fh:
                    fh.write(records(steps, 20, rng))
                steps += 20
                t = time.perf_counter()
                n = f.poll()
                times.append(time.perf_counter() - t)
                assert n == 20 * len(KEYS)
                t = time.perf_counter()
                f.poll()
                idle.append(time.perf_counter() - t)
            refresh[crc] = {"median_s": round(statistics.median(times), 4), "worst_s": round(max(times), 4),
                            "nothing_new_median_s": round(statistics.median(idle), 4),
                            "rows_on_page": len(f.scalars)}
    out = {"kind": "bench:follow_scale", "points": args.points, "file_mb": round(mb, 1),
           "first_load_crc_on_s": round(min(first[True]), 3), "first_load_crc_on_mb_per_s": round(mb / min(first[True]), 1),
           "first_load_crc_off_s": round(min(first[False]), 3), "first_load_crc_off_mb_per_s": round(mb / min(first[False]), 1),
           # CPU seconds of this (single-threaded) process: what the load costs on a shared machine
           # whose other tenants stretch the wall clock.
           "first_load_crc_on_cpu_mb_per_s": round(mb / min(cpu[True]), 1),
           "first_load_crc_off_cpu_mb_per_s": round(mb / min(cpu[False]), 1),
           "refresh_crc_on": refresh[True], "refresh_crc_off": refresh[False],
           "appends": args.appends, "rounds": args.rounds,
           "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "python": sys.version.split()[0],
           "load_average_1m_at_end": round(os.getloadavg()[0], 1),  # other tenants' work stretches the wall clock
           "command": "python bench/follow_scale.py " + " ".join(sys.argv[1:])}
    print(json.dumps(out, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
