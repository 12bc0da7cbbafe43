"""Explorer overlay zones keep each activation's own colour; charts export as HTML and PNG."""
import json

import pytest

from actlab.dashboard.charts.activation import color, curves_figure
from actlab.dashboard.charts.compare import forest_figure
from actlab.dashboard.charts.export import figure_html, figure_png, png_export_problem
from tests.test_compare_page import arr


def rgb(hex_color):
    h = hex_color.lstrip("#")
    return f"{int(h[0:2], 16)},{int(h[2:4], 16)},{int(h[4:6], 16)}"


def test_overlaid_zones_keep_their_activation_colour_and_strip():
    zones = {"relu": {"dead": [(-3.0, 0.0)], "saturated": []},
             "tanh": {"dead": [], "saturated": [(-3.0, -2.0), (2.0, 3.0)]},
             "sigmoid": {"dead": [], "saturated": [(-3.0, -2.5)]}}
    fig = curves_figure([-3, 0, 3], {"relu": [0, 0, 3], "tanh": [-1, 0, 1], "sigmoid": [0, 0.5, 1]}, 0, zones)
    line = {t.name: t.line.color for t in fig.data}
    shapes = fig.layout.shapes
    assert [(s.name, s.x0, s.x1) for s in shapes] == [("dead:relu", -3.0, 0.0), ("saturated:tanh", -3.0, -2.0),
                                                        ("saturated:tanh", 2.0, 3.0), ("saturated:sigmoid", -3.0, -2.5)]
    for s in shapes:
        act = s.name.split(":")[1]
        assert rgb(line[act]) in s.fillcolor  # the zone is tinted with its activation's line colour
    # overlapping zones (relu's dead and tanh's and sigmoid's saturated all start at -3) sit in their own strips
    strips = {s.name.split(":")[1]: (s.y0, s.y1) for s in shapes}
    assert strips == {"relu": (0.0, 1 / 3), "tanh": (1 / 3, 2 / 3), "sigmoid": (2 / 3, 1.0)}
    assert len({s.fillcolor for s in shapes if s.x0 == -3.0}) == 3  # three colours, not one blend
    assert [s.line.dash for s in shapes] == [None, "dot", "dot", "dot"]  # dead solid, saturated dotted
    assert [s.showlegend for s in shapes] == [True, True, False, True]  # one legend entry per zone kind


def test_single_activation_zone_spans_the_plot():
    fig = curves_figure([0, 1], {"relu": [0, 1]}, 0, {"relu": {"dead": [(-1.0, 0.0)], "saturated": []}})
    (s,) = fig.layout.shapes
    assert (s.y0, s.y1) == (0.0, 1.0) and rgb(color(0)) in s.fillcolor


def _forest():
    import pandas as pd

    pairs = pd.DataFrame({"a": ["x"], "b": ["y"], "diff": [0.02], "diff_lo": [0.01], "diff_hi": [0.03],
                          "p_adjusted": [0.01], "verdict": ["x"]})
    return forest_figure(pairs, "acc")


def test_html_export_holds_the_data_and_plotly_inline():
    html = figure_html(_forest())
    # plotly.js inlined (megabytes), no script fetched from the network: the file opens offline
    assert html.startswith("<!doctype html>") and "<script src=" not in html and len(html) > 1_000_000
    data, _ = json.JSONDecoder().raw_decode(html.split("Plotly.newPlot(")[1].split(",", 1)[1].strip())
    assert arr(data[0]["x"]) == [0.02] and arr(data[0]["y"]) == ["x − y"]


@pytest.mark.skipif(png_export_problem() is not None, reason=str(png_export_problem()))
def test_png_export():
    png = figure_png(_forest(), scale=1)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_png_export_says_what_is_missing(monkeypatch):
    monkeypatch.setattr("actlab.dashboard.charts.export.shutil.which", lambda _: None)
    problem = png_export_problem()
    assert problem is not None and "Chrome or Chromium" in problem
    with pytest.raises(RuntimeError, match="Chrome or Chromium"):
        figure_png(_forest())
