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


def test_bandwidth_shares_count_the_bytes_moved():
    # clone's forward: 2 tensors in 1 ms. relu: forward 1.25 ms (2 tensors) -> 80 %; forward+backward
    # 5 ms for 5 tensors (read x, write y, read grad, read saved input, write grad) -> 2.5 / 5 = 50 %.
    rows = [{"name": "clone", "forward_ms": 1.0, "forward_backward_ms": 1.1, "pct_of_copy_backward": 91.0},
            {"name": "relu", "forward_ms": 1.25, "forward_backward_ms": 5.0, "pct_of_copy_backward": 22.0}]
    bench.add_bandwidth(rows)
    assert rows[1]["pct_of_copy"] == pytest.approx(80.0) and rows[1]["pct_of_bandwidth_fwd_bwd"] == pytest.approx(50.0)
    assert rows[0]["pct_of_copy"] == 100.0 and rows[0]["pct_of_bandwidth_fwd_bwd"] is None
    assert "pct_of_copy_backward" not in rows[0] and "pct_of_copy_backward" not in rows[1]
    with pytest.raises(UserError, match="clone"):
        bench.add_bandwidth([{"name": "relu", "forward_ms": 1.0, "forward_backward_ms": 2.0}])


def test_old_result_files_get_the_new_columns_and_broken_rows_are_one_line_errors(tmp_path):
    old = {"meta": {}, "results": [{"name": "clone", "forward_ms": 2.0, "forward_backward_ms": 2.0},
                                   {"name": "gelu", "forward_ms": 4.0, "forward_backward_ms": 10.0}]}
    p = tmp_path / "old.json"
    p.write_text(json.dumps(old))
    rows = bench.load_result(p)["results"]
    assert rows[1]["pct_of_copy"] == pytest.approx(50.0) and rows[1]["pct_of_bandwidth_fwd_bwd"] == pytest.approx(50.0)
    old["results"][1].pop("forward_backward_ms")
    p.write_text(json.dumps(old))
    with pytest.raises(UserError, match="lacks its times"):
        bench.load_result(p)
    old["results"] = old["results"][1:]
    p.write_text(json.dumps(old))
    with pytest.raises(UserError, match="clone"):
        bench.load_result(p)


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
    assert printed["meta"]["command"].startswith("actlab bench activations")
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


def test_cli_table_prints_both_bandwidth_shares():
    r = subprocess.run([sys.executable, "-m", "actlab", "bench", "activations", "--numel", "2048", "--repeats", "1",
                        "--only", "relu", "--threads", "1"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "% bw fwd" in lines[2] and "% bw f+b" in lines[2]
    clone, relu = lines[3].split(), lines[4].split()
    assert clone[0] == "clone" and clone[-2] == "100.0" and clone[-1] == "-"  # no backward share for the copy
    assert relu[0] == "relu" and float(relu[-1]) > 0
