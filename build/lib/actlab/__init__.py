"""ActLab: see what your activation functions do. UI-free: nothing here imports streamlit or plotly.

    from actlab import watch
    with watch(model, run="my-run") as w:
        ...; w.step(loss=loss)

`watch`, `Watcher` and `ActLabCallback` load on first access, so `import actlab` (and the CLI's
start-up) does not pay for torch or transformers until they are used.
"""
from .errors import UserError

__all__ = ["watch", "Watcher", "ActLabCallback", "UserError"]


def __getattr__(name):
    if name in ("watch", "Watcher", "ActLabCallback"):
        from . import watch as _watch_pkg

        return getattr(_watch_pkg, name)
    raise AttributeError(f"module 'actlab' has no attribute {name!r}")
