"""Real browser: start a small run from the monitor form, watch the dead-fraction chart grow, recycle
a layer from the page, see the event marker, stop the run.

The live panel is a fragment that redraws every refresh, so each chart element is replaced every
two seconds. The test therefore reads charts only through page.evaluate (one atomic look at the
DOM), and pauses the page's own Auto-refresh before it clicks inside the panel or scrolls to a chart.
"""
import os
import signal

from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.e2e.conftest import open_expander, open_page, poll, rerun, screenshot, set_auto_refresh, wait_until

RUN = "browser-run"
DEAD_CHART_JS = """() => [...document.querySelectorAll('.js-plotly-plot')]
  .find(e => e.layout && e.layout.title && String(e.layout.title.text || '').includes('Dead fraction'))"""
# Each poll records the number of dead/act1 points the chart shows; true once it drew 3 different counts.
DEAD_POINTS_GREW_JS = """() => {
  const el = (%s)();
  const t = el && el.data.find(d => String(d.name).endsWith('dead/act1'));
  const seen = (window.__deadCounts = window.__deadCounts || []);
  if (t && t.x.length > 0 && seen[seen.length - 1] !== t.x.length) seen.push(t.x.length);
  return seen.length >= 3;
}""" % DEAD_CHART_JS
EVENT_STEPS_JS = """() => {
  const el = (%s)();
  const t = el && el.data.find(d => d.name === '%s events');
  return t ? Array.from(t.x) : [];
}""" % (DEAD_CHART_JS, RUN)


def _fill(page, label, value):
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Tab")


def test_start_run_and_watch_dead_fraction_grow(page, app_url, e2e_runs_dir):
    open_page(page, app_url, "monitor")
    open_expander(page, "Start a run")  # open by itself only while the store is empty
    _fill(page, "Run name (optional)", RUN)
    _fill(page, "Hidden sizes", "256")
    _fill(page, "Epochs", 500)  # long enough to still be running; stopped below
    _fill(page, "Log every (steps)", 5)
    page.get_by_role("button", name="Start training").click()
    page.get_by_text(f"started {RUN}").wait_for(timeout=30_000)
    try:
        _watch(page, e2e_runs_dir)
        _recycle_from_the_page(page, e2e_runs_dir)
        _stop_from_the_page(page, e2e_runs_dir)
    finally:
        _kill_trainer(e2e_runs_dir)  # never leave a 500-epoch trainer behind, even on failure


def _watch(page, runs_dir):
    try:
        page.wait_for_function(DEAD_POINTS_GREW_JS, polling=500, timeout=120_000)
    except PlaywrightTimeout:
        screenshot(page, "monitor-failed")
        counts = page.evaluate("() => window.__deadCounts")
        titles = page.evaluate("() => [...document.querySelectorAll('.js-plotly-plot')]"
                               ".map(e => JSON.stringify(e.layout && e.layout.title))")
        log = runs_dir / RUN / "train.log"
        raise AssertionError(f"dead-fraction points over refreshes: {counts}; charts: {titles}; "
                             f"train.log: {log.read_text()[-1500:] if log.exists() else 'missing'}") from None
    counts = page.evaluate("() => window.__deadCounts")
    assert counts[-1] > counts[0], counts
    assert (runs_dir / RUN / "metrics.db").exists()
    screenshot(page, "monitor")


def _recycle_from_the_page(page, runs_dir):
    """Click the layer's recycle button: the trainer applies it at its next flush, and the event
    shows up as a marker on the dead-fraction chart."""
    from actlab.store.runs import RunStore

    set_auto_refresh(page, False)
    open_expander(page, f"Act on {RUN}")  # open by itself only when the run has alerts
    button = page.get_by_role("button", name="Recycle dead units of act1")

    def recycle_commands():
        return [c for c in RunStore(runs_dir).open(RUN).commands() if c["kind"] == "recycle"]

    # The click's effect is a command row in the run's store. A fragment tick already queued when
    # auto-refresh went off can redraw the panel under the click and swallow it (seen 1 run in 13
    # under load); the store says whether it landed, and only a click that did not land is repeated.
    for _ in range(3):
        rerun(page, button.click)
        if poll(recycle_commands, 10):
            break
    commands = wait_until(recycle_commands, 60, "the recycle command in the run's store")
    assert [c["args"] for c in commands] == [{"layer": "act1", "dead": True}], commands

    # The trainer applies the command at its next flush and writes the event; the chart marks it.
    (ev,) = wait_until(lambda: [e for e in RunStore(runs_dir).open(RUN).events() if e["kind"] == "recycle"],
                       90, "the trainer's recycle event in the run's store")
    assert ev["layer"] == "act1" and ev["units"] >= 0
    set_auto_refresh(page, True)  # the marker needs the panel's refreshes again
    try:
        page.wait_for_function(f"() => ({EVENT_STEPS_JS})().includes({ev['step']})", polling=500, timeout=90_000)
    except PlaywrightTimeout:
        raise AssertionError(f"no marker at the recycle's step {ev['step']}; markers at "
                             f"{page.evaluate(EVENT_STEPS_JS)}") from None
    # Every marker is one of the run's events (the overhead budget may have added its own).
    steps = {e["step"] for e in RunStore(runs_dir).open(RUN).events()}
    assert set(page.evaluate(EVENT_STEPS_JS)) <= steps

    set_auto_refresh(page, False)  # a still chart to photograph
    page.evaluate(f"() => ({DEAD_CHART_JS})().scrollIntoView({{block: 'center'}})")  # one atomic step
    page.screenshot(path=str(screenshot(page, "monitor-recycle")), full_page=False)


def _stop_from_the_page(page, runs_dir):
    from actlab.store.runs import RunStore

    page.get_by_role("button", name="Stop").first.click()  # auto-refresh is still off
    wait_until(lambda: RunStore(runs_dir).open(RUN).status().state == "stopped", 90, "the trainer to stop")
    set_auto_refresh(page, True)  # the badge follows the trainer's state on the next refreshes
    page.locator("[data-testid='stMarkdownContainer']", has_text=RUN).get_by_text("stopped").first.wait_for()


def _kill_trainer(runs_dir):
    from actlab.store.runs import RunStore

    store = RunStore(runs_dir)
    if store.exists(RUN):
        st = store.open(RUN).status()
        if st.state == "running" and st.pid:
            try:
                os.kill(st.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
