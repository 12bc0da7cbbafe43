"""Real browser: upload two logs through the page's file input and read the verdict."""
from pathlib import Path

from tests.e2e.conftest import open_page, rerun, screenshot

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "logs"


def test_upload_two_logs_shows_verdict(page, app_url):
    open_page(page, app_url, "compare")
    page.get_by_text("Upload two or more logs").wait_for()
    # Two variants, one seed each: the runner's format, the variant read from the file name.
    files = [{"name": "with_relu_seed1.log", "mimeType": "text/plain",
              "buffer": (FIX / "with_relu_seed1.log").read_bytes()},
             {"name": "without_relu_seed1.log", "mimeType": "text/plain",
              "buffer": (FIX / "with_relu_seed2.log").read_bytes()}]
    rerun(page, lambda: page.locator("[data-testid='stFileUploader'] input[type='file']").set_input_files(files))
    verdict = page.locator("[data-testid='stAlertContentInfo']", has_text="could not be tested")
    verdict.first.wait_for()
    text = verdict.first.inner_text()
    # One run a side is never a verdict: the page says so rather than inventing a p-value.
    assert "with_relu vs without_relu could not be tested (one run on each side gives no p-value" in text
    # The charts drew from the uploads (plotly renders titles as SVG text).
    page.get_by_text("acc/top1 per run").first.wait_for()
    page.get_by_text("final acc/top1 per variant").first.wait_for()
    screenshot(page, "compare")
