"""Real-browser harness: Debian chromium driven by playwright against `streamlit run`.

Each page's browser test lives in its own file here and uses the `page` and `app_url` fixtures;
`screenshot(page, name)` writes docs/screenshots/<name>.png for the README.
"""
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("ACTLAB_CHROMIUM", "/usr/bin/chromium")
SHOTS = ROOT / "docs" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def e2e_runs_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("e2e_runs")


@pytest.fixture(scope="session")
def app_url(e2e_runs_dir):
    port = _free_port()
    env = dict(os.environ, ACTLAB_RUNS_DIR=str(e2e_runs_dir), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    log = open(e2e_runs_dir / "streamlit.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("streamlit did not come up: " + (e2e_runs_dir / "streamlit.log").read_text()[-2000:])
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:  # a loaded box can leave SIGTERM's shutdown hanging: no test lost
        proc.kill()
        proc.wait(timeout=30)


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("ACTLAB_REQUIRE_BROWSER"):
            pytest.fail(f"{CHROMIUM} is missing and ACTLAB_REQUIRE_BROWSER is set")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


# Streamlit's app root carries the script's run state (data-test-script-state: initial before the
# first run, then running / notRunning, for whole-page and fragment runs alike). The tests wait on
# that state, never on an element a rerun replaces. The observer counts finished runs, so a test can
# wait for the run that its own click started rather than for a page that merely looks quiet.
COUNT_RUNS_JS = """
window.__actlabRunsDone = 0;
new MutationObserver(ms => {
  for (const m of ms)
    if (m.target.getAttribute('data-test-script-state') === 'notRunning' && m.oldValue !== 'notRunning')
      window.__actlabRunsDone++;
}).observe(document, {attributes: true, subtree: true, attributeOldValue: true,
                      attributeFilter: ['data-test-script-state']});
"""
IDLE_JS = """() => {
  const app = document.querySelector("[data-testid='stApp']");
  return !!app && app.getAttribute('data-test-script-state') === 'notRunning';
}"""


# Assertions wait as long as actions do: on the loaded 2-core box a chart can take seconds to draw.
expect.set_options(timeout=60_000)


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    ctx.add_init_script(COUNT_RUNS_JS)
    pg = ctx.new_page()
    pg.set_default_timeout(60_000)
    yield pg
    ctx.close()


def open_page(page, app_url: str, path: str):
    """Go to a dashboard page and wait until Streamlit has finished its first run of the script."""
    page.goto(f"{app_url}/{path}")
    wait_idle(page)


def wait_idle(page, timeout_s: float = 60):
    """Wait until no script run is in progress (a fresh page's 'initial' state does not count)."""
    page.wait_for_function(IDLE_JS, timeout=timeout_s * 1000)


def rerun(page, action, timeout_s: float = 60):
    """Do `action` (a click, a key press, a file upload) and wait until a script run that finished
    after it is over and none is in progress. Use it only where no auto-refresh runs in between."""
    done = page.evaluate("() => window.__actlabRunsDone")
    action()
    page.wait_for_function(f"() => window.__actlabRunsDone > {done} && ({IDLE_JS})()", timeout=timeout_s * 1000)


def wait_until(predicate, timeout_s: float, what: str):
    """Poll a state outside the page (the run store, a process) until `predicate()` is truthy."""
    deadline = time.time() + timeout_s
    while not (value := predicate()):
        if time.time() > deadline:
            raise AssertionError(f"waited {timeout_s:g} s for {what}")
        time.sleep(0.5)
    return value


def poll(predicate, timeout_s: float):
    """Like wait_until, but a state that never comes is an answer (falsy), not a failure."""
    try:
        return wait_until(predicate, timeout_s, "")
    except AssertionError:
        return None


def open_expander(page, label: str):
    """Open the st.expander whose header reads `label`, unless it is open already. Its <details>
    element's `open` flag is the state: while the opening animation runs the content is inert, so
    "is the field visible yet" is no answer (and a click on an open expander would close it)."""
    header = page.locator("summary", has_text=label).first
    details = page.locator("[data-testid='stExpander'] details").filter(has=header).first
    if details.get_attribute("open") is None:
        header.click()
    expect(details).to_have_attribute("open", "")


def set_auto_refresh(page, on: bool):
    """Monitor page: flip the sidebar's Auto-refresh toggle and wait until the page's whole rerun
    has drawn the new state (the page says "Auto-refresh is off" while it is off). Off, the live
    panel redraws only when the test acts on it, so its elements stay put."""
    paused = page.get_by_text("Auto-refresh is off", exact=False)
    if page.get_by_label("Auto-refresh").is_checked() != on:
        page.get_by_text("Auto-refresh", exact=True).click()  # in the sidebar, outside the live panel
    # The caption is written by the whole-page run that reads the toggle, and removed at the end
    # of such a run: seeing it appear or go means that run has drawn, whatever fragment ran meanwhile.
    paused.wait_for(state="detached" if on else "visible")
    wait_idle(page)


def screenshot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
