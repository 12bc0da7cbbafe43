"""`actlab dashboard`: the Streamlit app from wherever actlab is installed (a clone or site-packages)."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from .. import argtypes as T


def app_path() -> Path:
    spec = importlib.util.find_spec("actlab.dashboard")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("error: actlab.dashboard is not installed (pip install -e . from a clone)")
    return Path(next(iter(spec.submodule_search_locations))) / "app.py"


def streamlit_argv(args) -> list[str]:
    # The monitor can start training processes, so the app listens on this machine only, as the
    # clone's .streamlit/config.toml says; an installed copy has no such file in the cwd.
    return [sys.executable, "-m", "streamlit", "run", str(app_path()),
            "--server.address", args.address, "--server.port", str(args.port),
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.maxUploadSize", "200"]


def run(args) -> int:
    return subprocess.call(streamlit_argv(args))


def add_cli(sub) -> None:
    p = sub.add_parser("dashboard", help="start the dashboard (Streamlit) on http://localhost:8501")
    p.add_argument("--port", type=T.port, default=8501)
    p.add_argument("--address", default="127.0.0.1",
                   help="listen address; keep 127.0.0.1 and reach a remote box through an SSH tunnel")
    p.set_defaults(func=run)
