"""The activation benchmark: structure of a result, errors, the CLI, the stored CPU result."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from actlab import UserError
from actlab.analysis import benchmark as bench
from actlab import activations as A
from actlab.dashboard.charts import activation as charts

ROOT = Path(__file__).resolve().parent.parent


def test_result_structure_and_copy_reference():
    seen = []
    r = bench.bench_activations("cpu", numel=4096, repeats=2, warmup=1, only=["relu", "gelu"],
                                progress=lambda i, n, name: seen.append((i, n, name)))
    assert [row["name"] for row in r["results"]] == ["clone", "relu", "gelu"]
    assert r["results"][0]["pct_of_copy"] == pytest.approx(100.0)
    for row in r["results"]:
        assert row["forward_ms"] > 0 and row["forward_backward_ms"] > 0
        assert row["elements_per_s"] == pytest.approx(4096 / (row["forward_ms"] / 1e3))
        assert row["gb_per_s"] == pytest.approx(2 * 4096 * 4 / (row["forward_ms"] / 1e3) / 1e9)
    assert r["meta"]["numel"] == 4096 and r["meta"]["device"] == "cpu"
    assert seen[0] == (0, 3, "clone") and seen[-1] == (3, 3, "done")


def test_bfloat16_and_parametrised_module():
    r = bench.bench_activations("cpu", numel=1024, dtype="bfloat16", repeats=1, warmup=1, only=["prelu"])
    assert r["meta"]["dtype"] == "bfloat16" and r["results"][1]["name"] == "prelu"


@pytest.mark.parametrize("kwargs, message", [
    (dict(dtype="float16"), "unknown dtype"),
    (dict(numel=0), "numel"),
    (dict(repeats=0), "repeats"),
    (dict(only=["softmax"]), "not a scalar activation"),
    (dict(device="tpu"), "unknown device"),
])
def test_bad_input(kwargs, message):
    with pytest.raises(UserError, match=message):
        bench.bench_activations(**{"numel": 64, "repeats": 1, **kwargs})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_cuda_without_cuda_is_a_clear_cli_error():
    r = subprocess.run([sys.executable, "-m", "actlab", "bench", "activations", "--device", "cuda"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [
        "error: --device cuda: CUDA is not available on this machine (torch.cuda.is_available() is False)"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_benchmark_runs():
    r = bench.bench_activations("cuda", numel=1 << 20, repeats=3, only=["relu", "gelu"])
    assert r["meta"]["device"] == "cuda" and all(row["forward_ms"] > 0 for row in r["results"])


def test_cli_json_and_out_file(tmp_path):
    out = tmp_path / "r.json"
    r = subprocess.run([sys.executable, "-m", "actlab", "bench", "activations", "--numel", "2048", "--repeats", "2",
                        "--only", "relu,tanh", "--threads", "1", "--out", str(out), "--json"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    printed = json.loads(r.stdout)
    assert [row["name"] for row in printed["results"]] == ["clone", "relu", "tanh"]
    assert printed["meta"]["command"].startswith("python -m core bench activations")
    assert bench.load_result(out) == printed


def test_stored_cpu_result_covers_every_scalar_activation():
    stored = bench.load_result(ROOT / "bench" / "results" / "activations_cpu.json")
    assert [r["name"] for r in stored["results"]] == ["clone", *A.names(vector=False)]
    assert stored["meta"]["device"] == "cpu"


def test_load_result_rejects_other_json(tmp_path):
    p = tmp_path / "x.json"
    p.write_text('{"rows": []}')
    with pytest.raises(UserError, match="not a `bench activations"):
        bench.load_result(p)
    p.write_text("{")
    with pytest.raises(UserError, match="cannot read"):
        bench.load_result(p)


def test_bench_figure_data():
    rows = [{"name": "clone", "pct_of_copy": 100.0}, {"name": "relu", "pct_of_copy": 90.0}]
    fig = charts.bench_figure(rows, "pct_of_copy")
    assert list(fig.data[0].x) == ["clone", "relu"] and list(fig.data[0].y) == [100.0, 90.0]


def test_compile_path_on_cpu():
    # Needs a C++ compiler for inductor; the benchmark turns its absence into a UserError.
    try:
        r = bench.bench_activations("cpu", numel=1024, compile=True, repeats=1, warmup=1, only=["relu"])
    except UserError as e:
        pytest.skip(f"torch.compile unavailable here: {e}")
    assert r["meta"]["compile"] is True and [row["name"] for row in r["results"]] == ["clone", "relu"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_compiled_benchmark_runs():
    r = bench.bench_activations("cuda", numel=1 << 20, compile=True, repeats=3, only=["relu", "prelu"])
    assert r["meta"]["compile"] is True and all(row["forward_ms"] > 0 for row in r["results"])


def test_list_results_skips_other_benches_but_lists_broken_files(tmp_path):
    import json as _json

    (tmp_path / "a.json").write_text(_json.dumps({"meta": {}, "results": []}))
    (tmp_path / "crash_resume.json").write_text(_json.dumps({"meta": {}, "summary": {"kills": 20}}))
    (tmp_path / "broken.json").write_text("{not json")
    assert [p.name for p in bench.list_results(tmp_path)] == ["a.json", "broken.json"]
