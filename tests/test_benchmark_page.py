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
    time_fig, pct_fig = charts(at)[:2]
    assert time_fig["data"][0]["y"] == [r["forward_ms"] for r in stored["results"]]
    assert pct_fig["data"][0]["y"][0] == pytest.approx(100.0)  # the copy is its own reference


def test_quick_run_adds_a_live_table():
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.select_slider(key="numel").set_value(1 << 14).run()
    at.button(key="run").click().run()
    assert not at.exception and not at.error
    live = at.dataframe[1].value
    assert list(live["name"]) == ["clone", *A.names(vector=False)]
    assert (live["forward_ms"] > 0).all()
    assert live["pct_of_copy"].iloc[0] == pytest.approx(100.0)
