"""bench/follow_scale.py: runs small, refuses bad input in one line, and the committed result holds
the figures docs/trackers.md quotes."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args):
    return subprocess.run([sys.executable, "bench/follow_scale.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def test_follow_scale_runs_small(tmp_path):
    out = tmp_path / "r.json"
    p = run("--points", "2000", "--rounds", "1", "--appends", "2", "--out", str(out))
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(out.read_text())
    assert r["kind"] == "bench:follow_scale" and r["points"] == 2000
    assert r["first_load_crc_on_mb_per_s"] > 0 and r["refresh_crc_off"]["worst_s"] >= r["refresh_crc_off"]["median_s"]


def test_follow_scale_bad_input():
    for args, msg in ((["--points", "0"], "argument --points"), (["--points", "3"], "--points must be at least 5")):
        p = run(*args)
        assert p.returncode == 2 and msg in p.stderr.strip().splitlines()[-1], p.stderr


def test_committed_follow_scale_result():
    r = json.loads((ROOT / "bench" / "results" / "follow_scale_cpu.json").read_text())
    assert r["kind"] == "bench:follow_scale" and r["points"] == 1_000_000
    for k in ("first_load_crc_on_mb_per_s", "first_load_crc_off_mb_per_s", "first_load_crc_on_cpu_mb_per_s",
              "first_load_crc_off_cpu_mb_per_s"):
        assert r[k] > 0
    assert r["refresh_crc_on"]["worst_s"] > 0 and r["refresh_crc_off"]["worst_s"] > 0


def test_sink_overhead_bench_small_and_bad_input(tmp_path):
    out = tmp_path / "s.json"
    p = subprocess.run([sys.executable, "bench/sink_overhead.py", "--steps", "20", "--rounds", "1", "--out", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(out.read_text())
    assert r["kind"] == "bench:sink_overhead" and set(r["seconds"]) == {"none", "tensorboard", "tb+mlflow", "slow"}
    # 2 flushes of a sink that takes 0.2 s a write: the loop did not wait for them (it may on close only).
    assert r["seconds"]["slow"] < r["seconds"]["none"] + 0.4 * 2
    p = subprocess.run([sys.executable, "bench/sink_overhead.py", "--steps", "0"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 2 and "argument --steps" in p.stderr.strip().splitlines()[-1]
