"""ActLab: see what your activation functions do. UI-free: nothing here imports streamlit or plotly.

    from actlab import watch
    with watch(model, run="my-run") as w:
        ...; w.step(loss=loss)

`watch`, `Watcher` and `ActLabCallback` load on first access, so `import actlab` (and the CLI's
start-up) does not pay for torch or transformers until they are used. They live in the
subpackage `actlab.watcher`, named apart from the function so that `actlab.watch` is only ever
the function, whatever was imported first.
"""
import importlib

from .errors import UserError

__all__ = ["watch", "Watcher", "ActLabCallback", "UserError"]


def __getattr__(name):
    if name in ("watch", "Watcher", "ActLabCallback"):
        return getattr(importlib.import_module(".watcher", __name__), name)
    raise AttributeError(f"module 'actlab' has no attribute {name!r}")
