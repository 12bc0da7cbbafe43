"""Charts as files: HTML (plotly.js inlined, so it opens offline) and PNG (kaleido driving a local
Chrome/Chromium; nothing is downloaded)."""
from __future__ import annotations

import importlib.util
import shutil

import plotly.graph_objects as go

_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def figure_html(fig: go.Figure) -> str:
    return fig.to_html(include_plotlyjs=True, full_html=True)


def png_export_problem() -> str | None:
    """Why server-side PNG export cannot work here, or None when it can."""
    if importlib.util.find_spec("kaleido") is None:
        return "PNG export needs the kaleido package (pip install 'kaleido>=1.0')"
    if not any(shutil.which(b) for b in _BROWSERS):
        return "PNG export needs Chrome or Chromium on the server (kaleido drives it; it is not downloaded)"
    return None


def figure_png(fig: go.Figure, scale: float = 2.0) -> bytes:
    problem = png_export_problem()
    if problem:
        raise RuntimeError(problem)
    return fig.to_image(format="png", scale=scale)
