"""Explorer page through AppTest: assertions on the figure data and table the page shows."""
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest


PAGE = str(Path(__file__).resolve().parent.parent / "dashboard" / "views" / "explorer.py")


@pytest.fixture(scope="module")
def base():
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    return at


def fresh():
    return AppTest.from_file(PAGE, default_timeout=60).run()


def chart(at, key):
    # Plotly charts have no typed accessor in AppTest; the proto carries the figure JSON.
    for el in at.get("plotly_chart"):
        if f"-{key}-" in el.proto.id or el.proto.id.endswith(key):
            return json.loads(el.proto.spec)
    raise AssertionError(f"no chart {key!r}; ids {[el.proto.id for el in at.get('plotly_chart')]}")


def trace(fig, name):
    return next(t for t in fig["data"] if t["name"] == name)


def test_relu_curve_is_max_0_x_and_derivative_is_step(base):
    f = trace(chart(base, "curves0"), "relu")
    x, y = np.array(f["x"]), np.array(f["y"])
    assert x[0] == -6.0 and x[-1] == 6.0
    np.testing.assert_allclose(y, np.maximum(0, x))
    df = trace(chart(base, "curves1"), "relu")
    np.testing.assert_allclose(np.array(df["y"])[np.abs(x) > 1e-9], (x[np.abs(x) > 1e-9] > 0).astype(float))


def test_dead_zone_shape_for_relu_spans_negative_x(base):
    shapes = chart(base, "curves0")["layout"].get("shapes", [])
    dead = [s for s in shapes if s["name"] == "dead:relu"]
    assert len(dead) == 1 and dead[0]["x0"] == -6.0 and abs(dead[0]["x1"]) < 1e-6
    tanh_sat = sorted((s["x0"], s["x1"]) for s in shapes if s["name"] == "saturated:tanh")
    assert tanh_sat[0][0] == -6.0 and tanh_sat[1][1] == 6.0
    assert not any(s["name"].startswith("dead:tanh") for s in shapes)


def test_properties_table_lists_chosen_activations(base):
    table = base.dataframe[0].value
    assert list(table["activation"]) == ["relu", "gelu", "tanh"]
    row = table.set_index("activation")
    assert row.loc["relu", "dead zone"] == "[-6.00, -0.00]"
    assert row.loc["tanh", "zero-centred"] and not row.loc["relu", "zero-centred"]


def test_changing_selection_slider_and_range_changes_the_curve():
    at = fresh()
    at.multiselect(key="chosen").set_value(["leaky_relu", "sigmoid"]).run()
    at.slider(key="x_range").set_value((-2.0, 3.0)).run()
    at.slider(key="leaky_relu.alpha").set_value(0.2).run()
    assert not at.exception
    f = trace(chart(at, "curves0"), "leaky_relu")
    x = np.array(f["x"])
    assert x[0] == -2.0 and x[-1] == 3.0
    np.testing.assert_allclose(f["y"], np.where(x > 0, x, 0.2 * x))
    assert list(at.dataframe[0].value["activation"]) == ["leaky_relu", "sigmoid"]
    assert at.dataframe[0].value["alpha"].iloc[0] == 0.2
    # Leaky ReLU is never dead, whatever the slope.
    assert not any(s["name"] == "dead:leaky_relu" for s in chart(at, "curves0")["layout"].get("shapes", []))


def test_eps_turns_sigmoid_tails_dead():
    at = fresh()
    at.multiselect(key="chosen").set_value(["sigmoid"]).run()
    assert not [s for s in chart(at, "curves0")["layout"].get("shapes", []) if s["name"] == "dead:sigmoid"]
    at.number_input(key="eps").set_value(0.01).run()
    assert [s for s in chart(at, "curves0")["layout"].get("shapes", []) if s["name"] == "dead:sigmoid"]


def test_empty_selection_shows_hint():
    at = fresh()
    at.multiselect(key="chosen").set_value([]).run()
    assert any("Pick at least one" in i.value for i in at.info)


def test_softmax_bars_sum_to_one_and_sample_mean_is_close(base):
    bars = chart(base, "softmax")["data"][0]
    assert sum(bars["y"]) == pytest.approx(1.0)
    expected = np.exp([2.0, 1.0, 0.5, -1.0]) / np.exp([2.0, 1.0, 0.5, -1.0]).sum()
    np.testing.assert_allclose(bars["y"], expected)
    true, mean = chart(base, "gumbel")["data"]
    np.testing.assert_allclose(true["y"], expected)
    assert sum(mean["y"]) == pytest.approx(1.0)
    sweep = chart(base, "tau_sweep")["data"]
    assert sweep[1]["y"] == sorted(sweep[1]["y"])  # entropy rises with tau


def test_temperature_sharpens_softmax():
    at = fresh()
    at.slider(key="tau").set_value(0.1).run()
    assert max(chart(at, "softmax")["data"][0]["y"]) > 0.99


def test_bad_logits_show_error():
    at = fresh()
    at.text_input(key="logits").set_value("1, two, 3").run()
    assert not at.exception
    assert [e.value for e in at.error] == ["logit 'two' is not a number"]


def test_hard_samples_mean_is_a_frequency():
    at = fresh()
    at.checkbox(key="hard").check().run()
    mean = chart(at, "gumbel")["data"][1]["y"]
    n = 1000
    assert all(abs(v * n - round(v * n)) < 1e-6 for v in mean)


def test_propagation_plots_per_layer_log_y(base):
    fig = chart(base, "prop_forward")
    assert [t["name"] for t in fig["data"]] == ["relu", "tanh", "selu"]
    assert fig["data"][0]["x"] == list(range(1, 31)) and fig["layout"]["yaxis"]["type"] == "log"
    assert len(chart(base, "prop_backward")["data"][0]["y"]) == 30


def test_csv_download_table_matches_the_curves(base):
    import io

    import pandas as pd

    from actlab.dashboard.charts import activation as charts

    assert [b.proto.label for b in base.get("download_button")] == ["Download curves (CSV)"]
    x = np.linspace(-1, 1, 5)
    data = {"relu": (x, np.maximum(0, x), (x > 0) * 1.0, np.zeros(5))}
    table = pd.read_csv(io.StringIO(charts.curves_table(x, data).to_csv(index=False)))
    assert list(table.columns) == ["x", "relu_f", "relu_df", "relu_d2f"]
    np.testing.assert_allclose(table["relu_f"], [0, 0, 0, 0.5, 1])


def test_curves_figure_hover_and_zones_from_data():
    from actlab.dashboard.charts import activation as charts

    fig = charts.curves_figure([0, 1], {"a": [1, 2]}, order=1, zones={"a": {"dead": [(0.0, 0.5)], "saturated": []}})
    assert list(fig.data[0].y) == [1, 2] and "f'(x)" in fig.data[0].hovertemplate
    assert [(s.x0, s.x1, s.name) for s in fig.layout.shapes] == [(0.0, 0.5, "dead:a")]


def test_act_query_parameter_opens_on_that_activation():
    """The monitor's alerts link to /explorer?act=<name>; an unknown name falls back to the default set."""
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.query_params["act"] = "leaky_relu"
    at.run()
    assert not at.exception
    assert at.multiselect(key="chosen").value == ["leaky_relu"]
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.query_params["act"] = "not_an_activation"
    at.run()
    assert at.multiselect(key="chosen").value == ["relu", "gelu", "tanh"]
