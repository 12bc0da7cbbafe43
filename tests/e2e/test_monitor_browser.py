"""Real browser: start a small run from the monitor form and watch the dead-fraction chart grow."""
import time

from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.e2e.conftest import open_page, screenshot, wait_idle

DEAD_POINTS_JS = """() => {
  const el = [...document.querySelectorAll('.js-plotly-plot')]
    .find(e => e.layout && e.layout.title && String(e.layout.title.text || '').includes('Dead fraction'));
  if (!el) return -1;
  const t = el.data.find(d => String(d.name).endsWith('dead/act1'));
  return t ? t.x.length : 0;
}"""


def _fill(page, label, value):
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Tab")


def test_start_run_and_watch_dead_fraction_grow(page, app_url, e2e_runs_dir):
    open_page(page, app_url, "monitor")
    # On a loaded machine the first script run can start late: wait for the expander before asking
    # whether it is open (asking too early reads "closed" and the click below would close it).
    page.get_by_text("Start a run", exact=True).wait_for(timeout=60_000)
    wait_idle(page)
    # The form's expander starts open only while the store is empty; other e2e tests may have made runs.
    # Under load the field can be briefly inert while the page settles: give it a few seconds to show
    # before deciding that the expander is closed (clicking an open one would close it).
    try:
        page.get_by_label("Run name (optional)", exact=True).wait_for(state="visible", timeout=8_000)
    except PlaywrightTimeout:
        page.get_by_text("Start a run", exact=True).click()
    _fill(page, "Run name (optional)", "browser-run")
    _fill(page, "Hidden sizes", "256")
    _fill(page, "Epochs", 500)  # long enough to still be running; stopped below
    _fill(page, "Log every (steps)", 5)
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("started browser-run").wait_for(timeout=30_000)
    try:
        _watch_and_stop(page, e2e_runs_dir)
    finally:
        _kill_trainer(e2e_runs_dir)  # never leave a 500-epoch trainer behind, even on failure


def _kill_trainer(runs_dir):
    import os
    import signal

    from actlab.store.runs import RunStore

    store = RunStore(runs_dir)
    if store.exists("browser-run"):
        st = store.open("browser-run").status()
        if st.state == "running" and st.pid:
            try:
                os.kill(st.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


EVENTS_JS = """() => {
  const el = [...document.querySelectorAll('.js-plotly-plot')]
    .find(e => e.layout && e.layout.title && String(e.layout.title.text || '').includes('Dead fraction'));
  if (!el) return null;
  const t = el.data.find(d => d.name === 'browser-run events');
  return t ? Array.from(t.x) : [];
}"""


def _recycle_from_the_page(page, runs_dir):
    """Click the layer's recycle button: the trainer applies it at its next flush, and the event
    shows up as a marker on the dead-fraction chart."""
    from actlab.store.runs import RunStore

    page.get_by_text("Act on browser-run", exact=False).first.click()
    page.get_by_role("button", name="Recycle dead units of act1").click()
    store, deadline = RunStore(runs_dir), time.time() + 60
    while time.time() < deadline and not [e for e in store.open("browser-run").events() if e["kind"] == "recycle"]:
        time.sleep(0.5)
    (ev,) = [e for e in store.open("browser-run").events() if e["kind"] == "recycle"]
    assert ev["layer"] == "act1" and ev["units"] >= 0
    deadline, xs = time.time() + 60, None
    while time.time() < deadline:
        xs = page.evaluate(EVENTS_JS)
        if xs:
            break
        time.sleep(1)
    assert xs == [ev["step"]], xs
    page.get_by_text("Dead fraction per layer").first.scroll_into_view_if_needed()
    time.sleep(1)
    page.screenshot(path=str(screenshot(page, "monitor-recycle")), full_page=False)


def _watch_and_stop(page, e2e_runs_dir):

    counts, deadline = [], time.time() + 120
    while time.time() < deadline:
        n = page.evaluate(DEAD_POINTS_JS)
        if n > 0 and (not counts or n != counts[-1]):
            counts.append(n)
        if len(counts) >= 3:
            break
        time.sleep(1)
    if not (len(counts) >= 2 and counts[-1] > counts[0]):
        screenshot(page, "monitor-failed")
        titles = page.evaluate("() => [...document.querySelectorAll('.js-plotly-plot')].map(e => JSON.stringify(e.layout && e.layout.title))")
        log = (e2e_runs_dir / "browser-run" / "train.log")
        raise AssertionError(f"dead-fraction points over refreshes: {counts}; charts: {titles}; "
                             f"train.log: {log.read_text()[-1500:] if log.exists() else 'missing'}")
    assert (e2e_runs_dir / "browser-run" / "metrics.db").exists()
    screenshot(page, "monitor")
    _recycle_from_the_page(page, e2e_runs_dir)

    page.get_by_role("button", name="Stop").first.click()
    page.get_by_text("stopped").first.wait_for(timeout=60_000)
    wait_idle(page)
