"""`from actlab import watch` is the function, whatever was imported before it (a fresh interpreter each)."""
import subprocess
import sys

import pytest

BEFORE = ["", "import actlab.watcher", "from actlab.watcher.watcher import Watcher", "import actlab.train.mnist",
          "from actlab.watcher import ActLabCallback"]


@pytest.mark.parametrize("before", BEFORE)
def test_from_actlab_import_watch_is_the_function(before):
    code = (f"{before}\nfrom actlab import watch, Watcher, ActLabCallback\nimport actlab, types\n"
            "assert callable(watch) and not isinstance(watch, types.ModuleType), watch\n"
            "assert actlab.watch is watch and Watcher.__name__ == 'Watcher' and ActLabCallback.__name__ == 'ActLabCallback'\n"
            "import actlab.watcher.watcher as W; assert W.Watcher is Watcher\n"
            "from actlab.watcher.plugins import WatchPlugin\nprint('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


def test_unknown_name_is_an_attribute_error():
    import actlab

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = actlab.nope
