"""Claims page through AppTest: one row per claim with its status, the FFN chart from the result file."""
import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

from tests.test_claims import bench_result, ffn_result, write

PAGE = str(Path(__file__).resolve().parent.parent / "dashboard" / "views" / "claims.py")


def test_rows_and_statuses_from_result_files(tmp_path, monkeypatch):
    d = tmp_path / "res"
    write(d, "activations_cpu.json", bench_result("cpu", 1.0, 1.5, 1.2))
    write(d, "ffn_sparsity_cpu.json", ffn_result(0.001, 0.87))
    write(d, "mnist_bundled_cpu.json", "{torn")
    monkeypatch.setenv("ACTLAB_RESULTS_DIR", str(d))
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table.columns) == ["claim", "source", "measured", "machine", "status"]
    assert len(table) == 5
    assert list(table["source"]) == ["002 activation survey", "003 Transformer MLP note", "003 Transformer MLP note",
                                     "004 MNIST note", "000/001 bi-encoder notes"]
    assert table["claim"][1].startswith("ReLU computes more than 6×") and table["claim"][2].startswith("ReLU in the")
    status = list(table["status"])
    assert status[0] == "needs sigmoid_derivative.json"
    assert status[1:3] == ["refuted", "confirmed"]
    assert status[3].startswith("needs full MNIST") and status[4].startswith("needs a fine-tuned grid")
    assert "sigmoid takes 1.50×" in table["measured"][1]
    # The torn MNIST file is named on the page, not hidden.
    assert any("mnist_bundled_cpu.json: not valid JSON" in e.value for e in at.error)
    # Reproduce commands are shown per claim.
    assert any("actlab claims measure ffn-sparsity" in c.value for c in at.code)
    (fig,) = [json.loads(el.proto.spec) for el in at.get("plotly_chart")]
    assert [t["name"] for t in fig["data"]] == ["gelu (original)", "relu (relufied)"]
    assert fig["data"][0]["x"] == ["layer0"] and fig["data"][0]["y"] == [0.001] and fig["data"][1]["y"] == [0.87]


def test_empty_results_dir_says_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("ACTLAB_RESULTS_DIR", str(tmp_path / "none"))
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert table["status"].str.startswith("needs").all() and (table["measured"] == "not measured").all()
    assert any("No FFN sparsity result yet" in i.value for i in at.info)
    assert not at.get("plotly_chart")


def test_committed_results_render():
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert len(table) == 5 and (table["measured"] != "not measured").all()
    assert set(table["status"]) & {"confirmed", "refuted"}
