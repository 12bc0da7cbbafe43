"""Real browser: the explorer draws curves and a properties table, reacts to input; the benchmark shows stored results."""
from playwright.sync_api import expect

from tests.e2e.conftest import open_page, rerun, screenshot


def test_explorer_and_benchmark_pages(page, app_url):
    open_page(page, app_url, "")  # the default page is served at the root
    page.get_by_role("heading", name="Activation explorer").wait_for()
    # Plotly drew the curves: one legend entry per default activation, rendered as SVG text.
    # The f(x) chart by its key (the signal-propagation tab's chart is in the page too, and may be
    # drawn first); plotly draws after Streamlit's run has ended, so wait for the drawn legend.
    curves = page.locator(".st-key-curves0 .js-plotly-plot")
    expect(curves.locator(".legendtext").first).to_have_text("relu")
    legend = curves.locator(".legendtext").all_text_contents()
    assert legend[:3] == ["relu", "gelu", "tanh"]
    # then one entry per shaded zone kind, each in its activation's colour (relu is dead left of 0)
    assert "dead:relu" in legend[3:]
    table = page.locator("[data-testid='stDataFrame']").first
    table.wait_for()
    # Dead zones are shaded: plotly draws vrects as layer-below shape paths.
    assert curves.locator(".layer-below .shapelayer path").count() >= 3
    screenshot(page, "explorer")

    page.get_by_role("tab", name="Softmax / Gumbel-Softmax").click()  # tabs switch in the browser: no rerun
    box = page.get_by_label("Logits (comma-separated)")
    box.fill("1, nope, 3")
    rerun(page, lambda: box.press("Enter"))
    page.get_by_text("logit 'nope' is not a number").wait_for()
    box.fill("3, 1, 0.2, -1, 0.5")
    rerun(page, lambda: box.press("Enter"))
    assert page.get_by_text("logit 'nope' is not a number").count() == 0
    page.get_by_text("Gumbel-Softmax samples").first.wait_for()
    assert page.get_by_text("class 4").count() >= 1  # the bars follow the five typed logits
    screenshot(page, "explorer-softmax")

    open_page(page, app_url, "benchmark")
    page.get_by_role("heading", name="Activation benchmark").wait_for()
    page.get_by_text("activations_cpu.json").first.wait_for()
    expect(page.locator(".js-plotly-plot", has_text="% of the bandwidth limit, forward").first).to_be_visible()
    screenshot(page, "benchmark")
