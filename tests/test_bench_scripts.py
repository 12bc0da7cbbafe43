"""The bench/ scripts: the GPU suite's no-CUDA path, and bad input to each script (exit 2, one line)."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args, env=None):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, **(env or {})))


def test_gpu_suite_without_cuda_says_so_in_one_line_and_exits_0(tmp_path):
    p = _run("bench/gpu_suite.py", "--out-dir", str(tmp_path), env={"CUDA_VISIBLE_DEVICES": ""})
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("no CUDA device found")
    for figure in ("% of copy bandwidth", "probes on/off", "98% test accuracy", "probe overhead", "MiniLM"):
        assert figure in lines[0]
    assert list(tmp_path.iterdir()) == []  # nothing measured, nothing written


@pytest.mark.parametrize("args,message", [
    (["bench/mnist_speed.py", "--epochs", "0"], "error: --epochs"),
    (["bench/monitor_scale.py", "--rows", "3", "--keys", "10"], "error: need --rows"),
    (["bench/page_render.py", "--pages", "explorer,nope"], "error: unknown page 'nope'"),
    (["bench/parse_speed.py", "--mb", "0"], "parse_speed.py: error: argument --mb"),
])
def test_bench_scripts_reject_bad_input(args, message):
    p = _run(*args)
    assert p.returncode == 2 and p.stderr.strip().splitlines()[-1].startswith(message), p.stderr


def test_committed_monitor_scale_results_keep_spikes_at_chart_resolution():
    for rows in (1_000_000, 10_000_000):
        r = json.loads((ROOT / "bench" / "results" / f"monitor_scale_{rows}.json").read_text())
        assert r["kind"] == "bench:monitor_scale" and r["rows"] == rows and r["spike_kept"] and r["dead_jump_kept"]
        assert r["rows_held"] <= r["keys"] * (2 * r["points"] + 4)  # chart resolution, not the run


def test_committed_parse_speed_result_has_every_input_and_the_tbparse_ratios():
    r = json.loads((ROOT / "bench" / "results" / "parse_speed_cpu.json").read_text())
    assert r["kind"] == "bench:parse_speed" and r["mb_target"] >= 100
    for kind in ("text", "csv", "jsonl", "tensorboard"):
        assert r[kind]["mb"] >= 100
    assert {"crc_on_mb_per_s", "crc_off_mb_per_s", "tbparse_mb_per_s", "ratio_crc_on_vs_tbparse",
            "ratio_crc_off_vs_tbparse"} <= set(r["tensorboard"])


def test_parse_speed_runs_small(tmp_path):
    out = tmp_path / "p.json"
    p = _run("bench/parse_speed.py", "--mb", "0.3", "--rounds", "1", "--tbparse-rounds", "1", "--out", str(out))
    assert p.returncode == 0, p.stderr
    r = json.loads(out.read_text())
    assert r["kind"] == "bench:parse_speed" and r["tensorboard"]["points"] > 0
    assert "ours / tbparse" in p.stdout


def test_gpu_suite_section_records_an_error_and_keeps_the_other_figures(tmp_path):
    spec = importlib.util.spec_from_file_location("gpu_suite", ROOT / "bench" / "gpu_suite.py")
    gpu_suite = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_suite)

    result, out = {}, tmp_path / "gpu.json"
    gpu_suite.section(result, "broken", out)(lambda: 1 / 0)
    gpu_suite.section(result, "fine", out)(lambda: {"x": 1})
    saved = json.loads(out.read_text())
    assert saved["broken"]["error"].startswith("ZeroDivisionError") and saved["fine"] == {"x": 1}
    assert set(saved["section_s"]) == {"broken", "fine"}
