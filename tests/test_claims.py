"""actlab.analysis.claims: rows from result files, and what a row says when a file is missing or malformed."""
import json
import shutil
from pathlib import Path

import pytest

from actlab.analysis import benchmark as bench
from actlab.analysis import claim_measures, claims
from actlab.cli import main

COMMITTED = Path(__file__).resolve().parent.parent / "bench" / "results"


def write(d: Path, name: str, data) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    p = d / name
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return p


def bench_result(device, relu, sigmoid, tanh):
    rows = [{"name": n, "forward_ms": ms, "forward_backward_ms": 2 * ms} for n, ms in
            (("clone", relu), ("relu", relu), ("sigmoid", sigmoid), ("tanh", tanh))]
    return {"meta": {"device": device, "device_name": "X", "dtype": "float32"}, "results": rows}


def ffn_result(gelu, relu):
    return {"kind": "claim:ffn_sparsity", "meta": {"backbone": "m", "n_texts": 10, "machine": {"device": "cpu"}},
            "results": [{"activation": "gelu", "original": True, "zero_frac": {"backbone.layer0.ffn": gelu},
                         "zero_frac_mean": gelu},
                        {"activation": "relu", "zero_frac": {"backbone.layer0.ffn": relu}, "zero_frac_mean": relu}]}


def mnist_result(data, accs):
    return {"kind": "claim:mnist", "meta": {"data": data, "n_train": 60000, "n_test": 10000, "machine": {"device": "cuda"}},
            "epochs": [{"epoch": i + 1, "acc/test": a} for i, a in enumerate(accs)]}


def grid_result(frozen, verdicts, data="demo"):
    return {"kind": "ablation-summary", "metric": "acc/top1",
            "variants": [{"variant": "a", "mean": 0.5}, {"variant": "b", "mean": 0.6}],
            "comparisons": [{"a": "a", "b": "b", "diff": -0.1, "p_value": 0.01 if v != "within noise" else 0.4,
                             "verdict": v} for v in verdicts],
            "grid": {"task": "biencoder", "seeds": 5, "variants": ["a", "b"], "machine": {"device": "cpu"},
                     "config": {"freeze_backbone": frozen, "backbone": "minilm", "data": data, "epochs": 3}}}


def by_id(rows):
    return {r["id"]: r for r in rows}


def test_no_results_every_row_says_what_would_produce_it(tmp_path):
    rows = claims.claim_rows(tmp_path / "nothing")
    assert [r["id"] for r in rows] == ["sigmoid_derivative", "relu_6x", "ffn_sparsity", "mnist_98", "head_ablation"]
    for r in rows:
        assert r["status"].startswith("needs") and r["measured"] == "not measured" and r["machine"] == "—"
        assert r["missing"] and all("actlab " in m for m in r["missing"])


def test_synthetic_results_settle_each_claim(tmp_path):
    d = tmp_path / "res"
    write(d, "sigmoid_derivative.json", claim_measures.measure_sigmoid_derivative())
    write(d, "activations_cpu.json", bench_result("cpu", 1.0, 1.5, 1.2))
    write(d, "gpu_activations.json", bench_result("cuda", 1.0, 7.0, 6.5))
    write(d, "ffn_sparsity_cpu.json", ffn_result(0.0, 0.9))
    write(d, "gpu_mnist_full.json", mnist_result("full", [0.95, 0.97] + [0.981] * 8))
    write(d, "biencoder_frozen_grid_cpu.json", grid_result(True, ["within noise"]))
    rows = by_id(claims.claim_rows(d))
    assert rows["sigmoid_derivative"]["status"] == "refuted"
    assert "peaks at 0.2500 (x = 0)" in rows["sigmoid_derivative"]["measured"]
    assert rows["relu_6x"]["status"] == "confirmed on cuda, refuted on cpu"
    assert "sigmoid takes 1.50× and tanh 1.20× relu's forward time" in rows["relu_6x"]["measured"] and not rows["relu_6x"]["missing"]
    assert rows["ffn_sparsity"]["status"] == "confirmed" and "relufied 90.0%" in rows["ffn_sparsity"]["measured"]
    assert rows["mnist_98"]["status"] == "confirmed" and "first ≥ 98% at epoch 3" in rows["mnist_98"]["measured"]
    # Frozen, no difference: not enough to refute a claim about fine-tuned encoders.
    assert rows["head_ablation"]["status"].startswith("needs a fine-tuned grid on real data")

    write(d, "gpu_activations.json", bench_result("cuda", 1.0, 2.0, 2.0))
    write(d, "ffn_sparsity_cpu.json", ffn_result(0.0, 0.3))
    write(d, "gpu_mnist_full.json", mnist_result("full", [0.97] * 10))
    write(d, "gpu_biencoder_grid.json", grid_result(False, ["within noise"]))
    assert by_id(claims.claim_rows(d))["head_ablation"]["status"].startswith("needs")  # demo data only
    write(d, "gpu_biencoder_grid.json", grid_result(False, ["within noise"], data="/data/arguana"))
    rows = by_id(claims.claim_rows(d))
    assert [rows[k]["status"] for k in ("relu_6x", "ffn_sparsity", "mnist_98", "head_ablation")] == ["refuted"] * 4
    write(d, "gpu_biencoder_grid.json", grid_result(False, ["b"]))
    assert by_id(claims.claim_rows(d))["head_ablation"]["status"] == "confirmed"


def test_bundled_mnist_alone_is_not_the_claim(tmp_path):
    d = tmp_path / "res"
    write(d, "mnist_bundled_cpu.json", {**mnist_result("bundled", [0.99] * 10), "meta": {
        "data": "bundled", "n_train": 4000, "n_test": 1000, "machine": {"device": "cpu", "cpu_count": 2}}})
    row = by_id(claims.claim_rows(d))["mnist_98"]
    assert row["status"] == "needs full MNIST (60,000/10,000 digits) and a GPU"
    assert "4000 train / 1000 test of the 5,000" in row["measured"] and "not full MNIST" in row["measured"]
    assert row["machine"].startswith("cpu (") and "2 cores" in row["machine"]


@pytest.mark.parametrize("name, content, problem", [
    ("mnist_bundled_cpu.json", "{not json", "not valid JSON"),
    ("mnist_bundled_cpu.json", "[1, 2]", "not a JSON object"),
    ("mnist_bundled_cpu.json", {"kind": "claim:mnist", "meta": {}}, "malformed (KeyError"),
    ("mnist_bundled_cpu.json", {"kind": "claim:mnist", "meta": {}, "epochs": [{"acc/test": "x"}]}, "malformed (ValueError"),
    ("ffn_sparsity_cpu.json", {"kind": "claim:ffn_sparsity", "meta": {}, "results": [{"activation": "relu"}]}, "malformed"),
    ("activations_cpu.json", {"meta": {}, "results": [{"name": "clone"}]}, "malformed"),
    ("activations_gelu.json", {"meta": {}, "results": [{"name": "gelu", "forward_ms": 1, "forward_backward_ms": 2}]},
     "does not time all of relu, sigmoid and tanh"),
    ("sigmoid_derivative.json", {"kind": "claim:sigmoid_derivative", "x": [0], "y": [], "dy": []}, "differ in length"),
    ("biencoder_frozen_grid_cpu.json", {"kind": "ablation-summary", "grid": {"task": "mnist"}}, "not biencoder"),
])
def test_malformed_result_files_are_named_not_crashes(tmp_path, name, content, problem):
    d = tmp_path / "res"
    write(d, name, content)
    rows = claims.claim_rows(d)
    hit = [r for r in rows if any(name in p and problem in p for p in r["problems"])]
    assert len(hit) == 1, [r["problems"] for r in rows]
    assert hit[0]["status"].startswith("needs") and hit[0]["measured"] == "not measured"


def test_a_committed_grid_folder_of_logs_gives_verdicts(tmp_path):
    d = tmp_path / "res"
    g = d / "heads_gpu"
    for v, accs in (("with_relu", (0.50, 0.52, 0.51)), ("without_relu", (0.70, 0.71, 0.72))):
        for s, a in enumerate(accs, 1):
            write(g, f"{v}_seed{s}.log", f"epoch=1 step=5 acc/top1={a - 0.1:.4f}\nepoch=2 step=10 acc/top1={a:.4f}\n")
    write(g, ".grid.json", {"kind": "ablation-logs", "task": "biencoder", "seeds": 3,
                            "machine": {"device": "cuda", "device_name": "H"},
                            "config": {"freeze_backbone": False, "backbone": "minilm", "data": "/arguana", "epochs": 2}})
    row = by_id(claims.claim_rows(d))["head_ablation"]
    assert row["files"] == ["heads_gpu/"] and row["status"] == "confirmed"
    assert "better: without_relu" in row["measured"] and row["machine"].startswith("cuda (H")
    write(g, ".grid.json", {"kind": "something else"})
    row = by_id(claims.claim_rows(d))["head_ablation"]
    assert row["status"].startswith("needs") and "heads_gpu/: grid folder not readable" in row["problems"][0]


def test_a_stray_file_is_reported_once(tmp_path):
    d = tmp_path / "res"
    write(d, "notes.json", {"hello": 1})
    assert claims.unassigned_problems(d) == ["notes.json: no `kind` field and not a `bench activations` result"]
    write(d, "crash_resume.json", {"meta": {}, "summary": {"kills": 20}})  # another bench's result: not a claim's
    assert len(claims.unassigned_problems(d)) == 1
    assert all(not r["problems"] for r in claims.claim_rows(d))


def test_benchmark_page_lists_only_benchmark_files(tmp_path):
    d = tmp_path / "res"
    write(d, "a.json", bench_result("cpu", 1, 2, 3))
    write(d, "b.json", ffn_result(0, 1))
    write(d, "c.json", "{torn")
    assert [p.name for p in bench.list_results(d)] == ["a.json", "c.json"]


def test_committed_results_give_every_row(monkeypatch):
    """The rows the Claims page shows from the files committed in bench/results."""
    rows = by_id(claims.claim_rows(COMMITTED))
    assert rows["sigmoid_derivative"]["status"] == "refuted"
    assert "activations_cpu.json" in rows["relu_6x"]["files"] and rows["relu_6x"]["status"] == "refuted"
    assert set(rows["head_ablation"]["files"]) >= {"biencoder_frozen_grid_cpu.json", "biencoder_heads_h100/"}
    for r in rows.values():
        assert not r["problems"], r["problems"]
        assert r["files"], f"{r['id']} has no committed result file"
        assert r["measured"] != "not measured"
    assert "not full MNIST" in rows["mnist_98"]["measured"]
    assert rows["ffn_sparsity"]["status"] in ("confirmed", "refuted")


def test_cli_list_json_and_bad_measure_input(tmp_path, capsys):
    d = tmp_path / "res"
    shutil.copy(COMMITTED / "activations_cpu.json", d.mkdir(parents=True) or d / "activations_cpu.json")
    assert main(["claims", "list", "--results-dir", str(d), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert by_id(rows)["relu_6x"]["files"] == ["activations_cpu.json"]
    for argv, problem in ((["mnist", "--data", "cifar"], "--data for mnist must be bundled or full"),
                          (["mnist", "--epochs", "0"], "--epochs must be at least 1")):
        rc = main(["claims", "measure", *argv, "--out", str(tmp_path / "x.json")])
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith("error: ") and problem in err
        assert not (tmp_path / "x.json").exists()
