"""Real browser: the monitor follows a TensorBoard folder that a separate process is writing with
SummaryWriter, and each point the writer has flushed is on the chart within two refreshes.

The writer logs a point every 0.3 s and, after each flush, appends the step to a progress file, so
every refresh of the page has new points to draw (each refresh re-renders the chart). The page's
renders are recorded in the browser by polling (one atomic look at the DOM each time, as in
test_monitor_browser.py). The check: take the newest step the writer reports as flushed, then
among the next two distinct renders of the chart, one must already include it.
"""
import subprocess
import sys
import time

from tests.e2e.conftest import open_page, screenshot

WRITER = """
import sys, time
from pathlib import Path
from torch.utils.tensorboard import SummaryWriter
w = SummaryWriter(sys.argv[1])
progress = Path(sys.argv[2])
for step in range(2000):  # ~10 minutes at most; the test stops it long before
    w.add_scalar("train/loss", 1.0 / (step + 1), step)
    w.flush()
    with progress.open("a") as f:
        f.write(f"{step}\\n")
    time.sleep(0.3)
"""
# The chart of the TensorBoard run's own keys; its train/loss trace's newest step, or -1.
MAX_STEP_JS = """() => {
  const el = [...document.querySelectorAll('.js-plotly-plot')]
    .find(e => e.layout && e.layout.title && String(e.layout.title.text || '').includes('Scalars'));
  const t = el && el.data.find(d => String(d.name).endsWith('train/loss'));
  return t && t.x.length ? Math.max(...Array.from(t.x)) : -1;
}"""
# Each call records the chart's newest step when it changed (one entry per render that brought points).
RECORD_JS = """() => {
  const m = (%s)();
  const seen = (window.__renders = window.__renders || []);
  if (m >= 0 && seen[seen.length - 1] !== m) seen.push(m);
  return seen.length >= %%d;
}""" % MAX_STEP_JS


def latest_flushed(progress) -> int:
    lines = progress.read_text().split() if progress.exists() else []
    return int(lines[-1]) if lines else -1


def test_monitor_follows_a_tensorboard_folder_written_by_another_process(page, app_url, tmp_path):
    root = tmp_path / "tbe2e"
    progress = tmp_path / "progress.txt"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(root / "run"), str(progress)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while latest_flushed(progress) < 0:  # the writer's first flush (torch import takes a while under load)
            assert writer.poll() is None and time.time() < deadline, writer.stderr.read().decode()[-2000:] if writer.poll() is not None else "writer slow"
            time.sleep(0.2)
        page.set_viewport_size({"width": 1400, "height": 4000})  # the chart is drawn once in view: all of them are
        open_page(page, app_url, "monitor")
        # An empty runs folder: the page preselects the first run, and the e2e runs folder holds the
        # other tests' runs before the TensorBoard one (in a full e2e run this test saw only those).
        runs = page.get_by_label("Runs folder", exact=True)
        runs.fill(str(tmp_path / "no-runs"))
        runs.press("Enter")
        page.get_by_text("No runs in", exact=False).first.wait_for()
        box = page.get_by_label("TensorBoard folders", exact=True)
        box.fill(str(root))
        box.press("Tab")  # a text area commits on blur
        page.get_by_text("tb:tbe2e/run", exact=True).first.wait_for(timeout=60_000)
        page.wait_for_function(RECORD_JS % 1, polling=200, timeout=60_000)
        for _ in range(3):  # three checks, each over fresh renders
            want = latest_flushed(progress)
            page.evaluate("() => { window.__renders = []; }")
            page.wait_for_function(RECORD_JS % 2, polling=200, timeout=60_000)
            renders = page.evaluate("() => window.__renders")
            assert max(renders[:2]) >= want, (want, renders)
        screenshot(page, "monitor-tensorboard")
        assert writer.poll() is None  # still writing: these were live reads
    finally:
        writer.kill()
        writer.wait(timeout=30)
