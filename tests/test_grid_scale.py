"""bench/grid_scale.py: bad input is one line; the committed CPU result has three arms that agree."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bad_input_is_one_line_exit_2():
    for bad in (["--epochs", "0"], ["--parallel", "-1"], ["--seeds", "x"]):
        p = subprocess.run([sys.executable, "bench/grid_scale.py", *bad], cwd=ROOT, capture_output=True, text=True,
                           timeout=120)
        assert p.returncode == 2 and p.stderr.strip().splitlines()[-1].startswith("grid_scale.py: error: argument")


def test_committed_cpu_result_has_three_arms_that_agree():
    r = json.loads((ROOT / "bench" / "results" / "grid_scale_cpu.json").read_text())
    assert r["kind"] == "bench:grid_scale" and r["agree"] is True and r["max_abs_diff"] == 0.0
    assert set(r["arms"]) == {"sequential", "parallel2", "ray"}
    n = len(r["grid"]["activations"]) * r["grid"]["seeds"]
    assert n == 10 and len(r["finals"]) == n
    for a in r["arms"].values():
        assert a["runs"] == n and a["summary"] == r["arms"]["sequential"]["summary"]
        assert a["ratio_to_sequential"] == round(a["wall_s"] / r["arms"]["sequential"]["wall_s"], 3)
    assert r["machine"]["device"] == "cpu" and r["machine"]["cpu_count"]
