"""bench/watch_overhead.py runs and prints parseable ratio lines (no timing is asserted)."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_watch_overhead_prints_ratio_lines():
    r = subprocess.run([sys.executable, "bench/watch_overhead.py", "--only", "mlp", "--rounds", "2", "--block", "3",
                        "--warmup", "0", "--log-every", "2"], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    m = re.search(r"mlp: ratio watched/unwatched = ([0-9.]+).*watch/overhead_pct \(median of (\d+) flushes\) = ([0-9.]+)%",
                  r.stdout)
    assert m, r.stdout
    assert float(m.group(1)) > 0 and int(m.group(2)) >= 2 and float(m.group(3)) > 0
