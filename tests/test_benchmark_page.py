"""Benchmark page through AppTest: stored result table and charts, and a quick live run."""
import pytest
import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

from actlab import activations as A
from actlab.analysis import benchmark as bench

PAGE = str(Path(__file__).resolve().parent.parent / "dashboard" / "views" / "benchmark.py")


def charts(at):
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def test_stored_result_has_one_row_per_activation():
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    stored = bench.load_result(bench.list_results()[0])
    table = at.dataframe[0].value
    assert list(table["name"]) == [r["name"] for r in stored["results"]]
    assert list(table["name"])[1:] == A.names(vector=False)
    time_fig, pct_fig, fb_fig = charts(at)[:3]
    assert time_fig["data"][0]["y"] == [r["forward_ms"] for r in stored["results"]]
    assert pct_fig["data"][0]["y"][0] == pytest.approx(100.0)  # the copy is its own reference
    # Forward + backward as a share of the bandwidth limit: 5 tensors' bytes in the time the copy
    # needs for 2, computed from the stored times (older files have no such column).
    t_copy = stored["results"][0]["forward_ms"]
    want = [None] + [250 * t_copy / r["forward_backward_ms"] for r in stored["results"][1:]]
    assert fb_fig["data"][0]["y"][0] is None and fb_fig["data"][0]["y"][1:] == pytest.approx(want[1:])
    assert "forward + backward (5 tensors moved)" in fb_fig["layout"]["title"]["text"]
    assert list(table["% bandwidth fwd+bwd"])[1:] == pytest.approx(want[1:])
    assert "pct_of_copy_backward" not in table.columns
    assert any("5 in all" in c.value for c in at.caption)


def test_quick_run_adds_a_live_table():
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.select_slider(key="numel").set_value(1 << 14).run()
    at.button(key="run").click().run()
    assert not at.exception and not at.error
    live = at.dataframe[1].value
    assert list(live["name"]) == ["clone", *A.names(vector=False)]
    assert (live["forward_ms"] > 0).all()
    assert live["% bandwidth fwd"].iloc[0] == pytest.approx(100.0)
    assert live["% bandwidth fwd+bwd"].iloc[1:].gt(0).all() and live["% bandwidth fwd+bwd"].isna().iloc[0]
