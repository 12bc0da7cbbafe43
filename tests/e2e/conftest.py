"""Real-browser harness: Debian chromium driven by playwright against `streamlit run`.

Each page's browser test lives in its own file here and uses the `page` and `app_url` fixtures;
`screenshot(page, name)` writes docs/screenshots/<name>.png for the README.
"""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

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
    proc.wait(timeout=20)


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


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = ctx.new_page()
    pg.set_default_timeout(60_000)
    yield pg
    ctx.close()


def open_page(page, app_url: str, path: str):
    """Go to a dashboard page and wait until Streamlit has finished running its script."""
    page.goto(f"{app_url}/{path}")
    page.wait_for_selector("[data-testid='stApp']")
    wait_idle(page)


def wait_idle(page, timeout_s: float = 60):
    deadline = time.time() + timeout_s
    time.sleep(0.5)
    while time.time() < deadline:
        if page.locator("[data-testid='stStatusWidget']").count() == 0:
            return
        time.sleep(0.3)
    raise AssertionError("page still running after %ss" % timeout_s)


def screenshot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
