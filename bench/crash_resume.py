"""Crash and resume: `python bench/crash_resume.py [--kills 20] [--seed 0] [--out FILE]`.

One MNIST run (784-32-ReLU-10, batch 250: 16 steps an epoch on the bundled digits, a checkpoint
at every epoch end, a row of loss/train every 2 steps) runs as a real `python -m core train mnist`
process. It is SIGKILLed at a random moment, resumed with `--resume`, the resumed trainer is killed
in turn, and so on N times; the last resume runs two more epochs to the end. Each kill comes a
uniform random 0-1.5 s after that trainer has taken the run over (its pid is in the status row),
so kills land anywhere in a step, a store commit or a checkpoint write. The first trainer is only
armed once its first checkpoint exists (before that there is nothing to resume).

Printed, and written as JSON (--out):
- rows lost before the checkpoint: rows committed before a kill, at a step <= the checkpoint the
  next trainer resumed from, that are missing or changed at the end (target 0);
- tail rows: rows a killed trainer wrote after its checkpoint; the resumed trainer supersedes them;
- duplicate (step, key) pairs in scalars, histograms and unit_activity at the end (target 0);
- missing rows: loss/train and loss/test steps an uninterrupted run logs, absent at the end (target 0);
- PRAGMA integrity_check (target "ok") and the final status (target "finished");
- the largest |difference| from an uninterrupted run of the same config, for loss/train,
  acc/train, loss/test and acc/test (reported; resuming replays the same batches).
Exit code 1 when a target is missed.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from actlab.train.loop import load_checkpoint

STEPS_PER_EPOCH = 16  # 4,000 bundled training digits / batch 250
LOG_EVERY = 2
COMPARED = ("loss/train", "acc/train", "loss/test", "acc/test")


def trainer(tmp: Path, *args: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "actlab", "train", "mnist", "--runs-dir", str(tmp / "runs"),
            "--checkpoints-dir", str(tmp / "ck"), "--no-progress", *args]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def connect(tmp: Path, name: str) -> sqlite3.Connection | None:
    db = tmp / "runs" / name / "metrics.db"
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) if db.exists() else None


def owner_pid(tmp: Path, name: str) -> int | None:
    con = connect(tmp, name)
    if con is None:
        return None
    try:
        row = con.execute("SELECT pid FROM status WHERE id = 1").fetchone()
        return row[0] if row else None
    except sqlite3.Error:
        return None
    finally:
        con.close()


def rows(tmp: Path, name: str) -> dict[tuple[int, str], float | None]:
    con = connect(tmp, name)
    try:
        return {(s, k): v for s, k, v in con.execute("SELECT step, key, value FROM scalars")}
    finally:
        con.close()


def duplicates(con: sqlite3.Connection) -> dict[str, int]:
    return {t: con.execute(f"SELECT COUNT(*) FROM (SELECT 1 FROM {t} GROUP BY run, key, step HAVING COUNT(*) > 1)").fetchone()[0]
            for t in ("scalars", "histograms", "unit_activity")}


def ckpt_step(tmp: Path, name: str) -> int | None:
    p = tmp / "ck" / name / "last.pt"
    return int(load_checkpoint(p)["step"]) if p.exists() else None


def wait(pred, timeout: float, proc: subprocess.Popen) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    return False


def same(a, b) -> bool:
    return a == b or (a is None and b is None) or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0, help="seeds the kill moments")
    ap.add_argument("--max-delay", type=float, default=1.5, help="a kill comes uniform(0, this) s after takeover")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON result here")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    name = "crash"
    base = ["--hidden", "32", "--batch-size", "250", "--log-every", str(LOG_EVERY), "--seed", "0"]
    kills = []
    t0 = time.time()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        proc = trainer(tmp, "--name", name, "--epochs", "100000", *base)
        for k in range(args.kills):
            armed = wait(lambda: owner_pid(tmp, name) == proc.pid and (k > 0 or ckpt_step(tmp, name) is not None), 300, proc)
            if not armed:
                out = proc.communicate()[0].decode(errors="replace")
                print(f"trainer exited before kill {k + 1}: rc {proc.returncode}\n{out[-2000:]}")
                return 1
            time.sleep(rng.uniform(0, args.max_delay))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            before = rows(tmp, name)
            step = ckpt_step(tmp, name)
            kills.append({"kill": k + 1, "checkpoint_step": step, "last_step_logged": max(s for s, _ in before),
                          "rows": before, "tail_rows": sum(1 for s, _ in before if s > step)})
            print(f"kill {k + 1:>2}: checkpoint at step {step}, last row at step {kills[-1]['last_step_logged']}, "
                  f"{kills[-1]['tail_rows']} rows after the checkpoint", flush=True)
            final = k == args.kills - 1
            epochs = step // STEPS_PER_EPOCH + 2 if final else 100000
            proc = trainer(tmp, "--resume", name, "--epochs", str(epochs))
        out = proc.communicate(timeout=600)[0].decode(errors="replace")
        final_epochs = epochs
        end = rows(tmp, name)
        con = connect(tmp, name)
        try:
            dups = duplicates(con)
            integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
            state = con.execute("SELECT state, reason FROM status WHERE id = 1").fetchone()
        finally:
            con.close()
        # The same run, never interrupted.
        ref = trainer(tmp, "--name", "reference", "--epochs", str(final_epochs), *base)
        ref.communicate(timeout=600)
        reference = rows(tmp, "reference")

    lost = 0
    for kill in kills:
        for (s, key), v in kill["rows"].items():
            if s <= kill["checkpoint_step"] and ((s, key) not in end or not same(end[(s, key)], v)):
                lost += 1
    total = final_epochs * STEPS_PER_EPOCH
    expected = {(s, "loss/train") for s in range(LOG_EVERY, total + 1, LOG_EVERY)}
    expected |= {(e * STEPS_PER_EPOCH, "loss/test") for e in range(1, final_epochs + 1)}
    missing = sorted(expected - set(end))
    diff = {}
    for key in COMPARED:
        pairs = [(v, end.get((s, k))) for (s, k), v in reference.items() if k == key]
        diff[key] = max((abs(a - b) for a, b in pairs if a is not None and b is not None), default=None)
        diff[key + " (steps compared)"] = sum(1 for a, b in pairs if a is not None and b is not None)
    summary = {
        "kills": len(kills),
        "rows_lost_before_checkpoint": lost,
        "tail_rows_after_checkpoint": sum(k["tail_rows"] for k in kills),
        "duplicate_step_key_pairs": dups,
        "missing_rows": len(missing),
        "integrity_check": integrity,
        "final_status": state[0],
        "final_reason": state[1],
        "final_step": total,
        "max_abs_diff_vs_uninterrupted": diff,
        "wall_s": round(time.time() - t0, 1),
    }
    ok = (lost == 0 and sum(dups.values()) == 0 and not missing and integrity == "ok" and state[0] == "finished")
    print(json.dumps(summary, indent=2))
    print("PASS" if ok else "FAIL: " + out[-2000:])
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        result = {"meta": {"command": "python bench/crash_resume.py " + " ".join(sys.argv[1:]),
                           "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                           "machine": platform.machine(), "cpus": os.cpu_count(), "seed": args.seed,
                           "max_delay_s": args.max_delay, "targets": "0 lost, 0 duplicates, 0 missing, ok, finished"},
                  "summary": summary,
                  "per_kill": [{k: v for k, v in kill.items() if k != "rows"} for kill in kills],
                  "missing": [list(m) for m in missing[:50]]}
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
