import os
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Tests never reach a hub: everything they load ships in a package or is made here.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# The frozen-backbone feature cache never writes into the user's cache dir from tests.
os.environ.setdefault("ACTLAB_CACHE_DIR", tempfile.mkdtemp(prefix="actlab-test-cache-"))


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    d = tmp_path / "runs"
    monkeypatch.setenv("ACTLAB_RUNS_DIR", str(d))
    return d
