"""Real browser: a tiny bi-encoder run made by the CLI shows up live on the monitor page."""
import os
import subprocess
import sys

from playwright.sync_api import expect

from tests.e2e.conftest import ROOT, open_page, screenshot, set_auto_refresh
from tests.test_train_biencoder import write_pairs

RUN = "e2e-biencoder"


def test_biencoder_run_on_monitor_page(page, app_url, e2e_runs_dir, tmp_path):
    pairs = write_pairs(tmp_path / "pairs.jsonl")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", ACTLAB_CHECKPOINTS_DIR=str(tmp_path / "ckpt"))
    done = subprocess.run(
        [sys.executable, "-m", "actlab", "train", "biencoder", "--backbone", "tiny", "--data", str(pairs),
         "--epochs", "2", "--batch-size", "8", "--lr", "1e-3", "--log-every", "2", "--head", "with_layernorm_relu",
         "--runs-dir", str(e2e_runs_dir), "--name", RUN, "--no-progress"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]

    open_page(page, app_url, "monitor")
    page.get_by_text("Training monitor").first.wait_for()
    set_auto_refresh(page, False)  # the run is finished: a still page, nothing redrawn under the clicks
    # The newest run is preselected; other e2e tests may have made newer ones, so pick ours if needed.
    if page.locator("strong", has_text=RUN).count() == 0:
        page.locator("[data-testid='stMultiSelect']").first.click()
        page.keyboard.type(RUN)
        page.keyboard.press("Enter")
        page.get_by_role("heading", name="Training monitor").click()  # closes the dropdown
    page.locator("strong", has_text=RUN).first.wait_for()
    page.get_by_text("finished").first.wait_for()
    # Its metrics: the loss in the run line and charts, and the head's ReLU probe as a layer view
    # (layers come from the pre/<layer> histograms the trainer wrote).
    page.locator("[data-testid='stCaptionContainer']", has_text="loss/train").first.wait_for()
    page.get_by_text("Dead fraction per layer").first.wait_for()
    layer = page.locator("[data-testid='stSelectbox']", has_text="Layer").first
    layer.wait_for()
    expect(layer.locator("input").first).to_have_value("head.2")
    screenshot(page, "monitor-biencoder")
