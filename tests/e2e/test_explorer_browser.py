"""Real browser: the explorer draws curves and a properties table, reacts to input; the benchmark shows stored results."""
from tests.e2e.conftest import open_page, screenshot, wait_idle


def test_explorer_and_benchmark_pages(page, app_url):
    open_page(page, app_url, "")  # the default page is served at the root
    page.get_by_role("heading", name="Activation explorer").wait_for()
    # Plotly drew the curves: one legend entry per default activation, rendered as SVG text.
    page.locator(".js-plotly-plot").first.wait_for()
    legend = page.locator(".js-plotly-plot").first.locator(".legendtext").all_text_contents()
    assert legend[:3] == ["relu", "gelu", "tanh"]
    # then one entry per shaded zone kind, each in its activation's colour (relu is dead left of 0)
    assert "dead:relu" in legend[3:]
    table = page.locator("[data-testid='stDataFrame']").first
    table.wait_for()
    # Dead zones are shaded: plotly draws vrects as layer-below shape paths.
    assert page.locator(".js-plotly-plot").first.locator(".layer-below .shapelayer path").count() >= 3
    screenshot(page, "explorer")

    page.get_by_role("tab", name="Softmax / Gumbel-Softmax").click()
    box = page.get_by_label("Logits (comma-separated)")
    box.fill("1, nope, 3")
    box.press("Enter")
    wait_idle(page)
    page.get_by_text("logit 'nope' is not a number").wait_for()
    box.fill("3, 1, 0.2, -1, 0.5")
    box.press("Enter")
    wait_idle(page)
    assert page.get_by_text("logit 'nope' is not a number").count() == 0
    page.get_by_text("Gumbel-Softmax samples").first.wait_for()
    assert page.get_by_text("class 4").count() >= 1  # the bars follow the five typed logits
    screenshot(page, "explorer-softmax")

    open_page(page, app_url, "benchmark")
    page.get_by_role("heading", name="Activation benchmark").wait_for()
    page.get_by_text("activations_cpu.json").first.wait_for()
    page.locator(".js-plotly-plot").first.wait_for()
    assert "% of copy bandwidth" in page.locator(".js-plotly-plot").nth(1).text_content()
    screenshot(page, "benchmark")
