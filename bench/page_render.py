"""Page render time in a real browser: `python bench/page_render.py [--pages explorer,monitor,compare,benchmark]`.

The browser the e2e tests use (Debian /usr/bin/chromium driven by playwright, tests/e2e/conftest.py)
against `streamlit run dashboard/app.py`. For each page a fresh Streamlit server is started (not
timed), then:

  cold   the first visit, in a fresh browser profile: the page's script runs for the first time in
         that server (its imports, empty caches), from `page.goto` until the page's main plotly
         chart has drawn its SVG;
  warm   --warm more visits in the same browser (cached JS, a new Streamlit session each), median.

Also printed: when the page's title (its first element) appeared, which splits the browser loading
Streamlit's frontend and opening the session from the page's own script.

The monitor page reads a run made here (2,000 steps of a synthetic MNIST-like run); the compare
page's main chart needs logs, so its time includes uploading the two fixture logs the e2e test
uses. Target <= 1.5 s each. Prints measured times only; nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("ACTLAB_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
PAGES = {"explorer": "explorer", "monitor": "monitor", "compare": "compare", "benchmark": "benchmark"}
FIX = ROOT / "tests" / "fixtures" / "logs"


def make_run(runs_dir: Path) -> None:
    import numpy as np

    from actlab.store.runs import RunStore

    w = RunStore(runs_dir).create("render", {"activation": "relu"}, kind="mnist",
                                  layers={"act1": {"activation": "relu", "params": {}}})
    rng = np.random.default_rng(0)
    for s in range(0, 2000, 1):
        w.log_scalars(s, {"loss/train": 2 / (1 + s / 100), "acc/train": 1 - 1 / (1 + s / 50), "dead/act1": 0.1,
                          "zero_frac/act1": 0.5, "grad_norm/fc1.weight": 1.0 + rng.random()}, epoch=s / 63)
        if s % 50 == 0:
            w.log_histogram(s, "pre/act1", np.linspace(-6, 6, 65), rng.integers(0, 100, 64))
            w.log_unit_activity(s, "act1", rng.random(512))
    w.set_status("finished")
    w.close()


def serve(runs_dir: Path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, ACTLAB_RUNS_DIR=str(runs_dir), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true",
                             "--browser.gatherUsageStats", "false"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                return proc, url
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("error: streamlit did not come up within 90 s")


def visit(pg, url: str, page_name: str) -> tuple[float, float]:
    """(seconds until the main chart is drawn, seconds until the page's title is in)."""
    t = time.perf_counter()
    pg.goto(f"{url}/{PAGES[page_name]}")
    # The app shell: Streamlit's JS bundle loaded and the page's first element (its title) in.
    pg.locator("h1").first.wait_for(state="attached")
    shell = time.perf_counter() - t
    if page_name == "compare":
        pg.get_by_text("Upload two or more logs").wait_for()
        files = [{"name": n, "mimeType": "text/plain", "buffer": (FIX / src).read_bytes()}
                 for n, src in (("with_relu_seed1.log", "with_relu_seed1.log"),
                                ("without_relu_seed1.log", "with_relu_seed2.log"))]
        pg.locator("[data-testid='stFileUploader'] input[type='file']").set_input_files(files)
    # Plotly has drawn: the chart's SVG with at least one trace in it.
    pg.locator(".js-plotly-plot .main-svg .trace").first.wait_for(state="attached")
    return time.perf_counter() - t, shell


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", default=",".join(PAGES))
    ap.add_argument("--warm", type=int, default=3)
    ap.add_argument("--out", default=None, help="also write the figures as JSON here")
    args = ap.parse_args()
    pages = [p.strip() for p in args.pages.split(",") if p.strip()]
    bad = [p for p in pages if p not in PAGES]
    if bad or args.warm < 1:
        print(f"error: unknown page {bad[0]!r} (known: {', '.join(PAGES)})" if bad else "error: --warm must be >= 1",
              file=sys.stderr)
        return 2
    if not Path(CHROMIUM).exists():
        print(f"error: {CHROMIUM} not found (apt-get install -y chromium, or set ACTLAB_CHROMIUM)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    runs_dir = Path(tempfile.mkdtemp()) / "runs"
    make_run(runs_dir)
    results = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        for name in pages:
            proc, url = serve(runs_dir)
            try:
                ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
                pg = ctx.new_page()
                pg.set_default_timeout(120_000)
                cold, cold_shell = visit(pg, url, name)
                # Warm: the same browser (its HTTP cache holds Streamlit's and plotly's JS, as a
                # returning user's would), a new Streamlit session per visit, the server warm.
                warm_runs = [visit(pg, url, name) for _ in range(args.warm)]
                ctx.close()
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            warm = statistics.median(w for w, _ in warm_runs)
            warm_shell = statistics.median(sh for _, sh in warm_runs)
            results[name] = {"cold_s": round(cold, 3), "warm_s": round(warm, 3),
                             "cold_title_s": round(cold_shell, 3), "warm_title_s": round(warm_shell, 3)}
            print(f"{name:<10} cold {cold:.2f} s   warm {warm:.2f} s  (median of {args.warm})"
                  f"  {'ok' if max(cold, warm) <= 1.5 else 'over'} (target <= 1.5 s); page title shown after "
                  f"{cold_shell:.2f} / {warm_shell:.2f} s", flush=True)
        browser.close()
    print(f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    results["load"] = os.getloadavg()[0]
    if args.out:
        Path(args.out).write_text(json.dumps({"kind": "bench:page_render", "pages": results, "cpus": os.cpu_count(),
                                              "command": "python bench/page_render.py " + " ".join(sys.argv[1:])}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
