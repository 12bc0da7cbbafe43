"""actlab.paths: the one reader of ActLab's folder settings, read at call time."""
from pathlib import Path

from actlab import paths
from actlab.store.runs import RunStore

ROOT = Path(__file__).resolve().parent.parent


def test_runs_dir_follows_the_environment_after_import(monkeypatch, tmp_path):
    monkeypatch.delenv("ACTLAB_RUNS_DIR", raising=False)
    assert paths.runs_dir() == Path("runs")
    monkeypatch.setenv("ACTLAB_RUNS_DIR", str(tmp_path / "a"))
    assert paths.runs_dir() == tmp_path / "a"
    assert RunStore().root == tmp_path / "a"  # the store's default is read when it is built
    monkeypatch.setenv("ACTLAB_RUNS_DIR", "")  # an empty setting is no setting
    assert paths.runs_dir() == Path("runs")


def test_checkpoints_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("ACTLAB_CHECKPOINTS_DIR", raising=False)
    assert paths.checkpoints_dir() == Path("checkpoints")
    assert paths.checkpoints_dir(beside=tmp_path / "x" / "runs") == (tmp_path / "x" / "checkpoints").resolve()
    monkeypatch.setenv("ACTLAB_CHECKPOINTS_DIR", str(tmp_path / "ck"))
    assert paths.checkpoints_dir() == tmp_path / "ck"
    assert paths.checkpoints_dir(beside=tmp_path / "x" / "runs") == tmp_path / "ck"


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("ACTLAB_CACHE_DIR", str(tmp_path / "c"))
    assert paths.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("ACTLAB_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert paths.cache_dir() == tmp_path / "xdg" / "actlab"
    from actlab.models.biencoder import feature_cache_dir
    from actlab.models.data import cache_dir
    from actlab.models.text_data import user_cache_dir

    assert cache_dir() == user_cache_dir() == tmp_path / "xdg" / "actlab"
    assert feature_cache_dir() == tmp_path / "xdg" / "actlab" / "features"


def test_results_dir_in_a_clone_and_in_an_installed_copy(monkeypatch, tmp_path):
    monkeypatch.delenv("ACTLAB_RESULTS_DIR", raising=False)
    assert paths.repo_root() == ROOT  # the tests run against the clone (editable install)
    assert paths.results_dir() == ROOT / "bench" / "results"
    monkeypatch.setattr(paths, "repo_root", lambda: None)  # as from site-packages
    assert paths.results_dir() == Path("bench") / "results"
    monkeypatch.setenv("ACTLAB_RESULTS_DIR", str(tmp_path))
    assert paths.results_dir() == tmp_path


def test_no_other_module_reads_the_folder_settings():
    """paths.py is the only place that reads these variables (tests and bench scripts set them)."""
    names = ("ACTLAB_RUNS_DIR", "ACTLAB_CHECKPOINTS_DIR", "ACTLAB_CACHE_DIR", "ACTLAB_RESULTS_DIR", "XDG_CACHE_HOME")
    readers = sorted(str(p.relative_to(ROOT)) for folder in ("core", "dashboard") for p in (ROOT / folder).rglob("*.py")
                     if any(f'"{n}"' in p.read_text() for n in names))
    assert readers == ["core/paths.py"]
