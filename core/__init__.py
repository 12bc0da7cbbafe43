"""ActLab: see what your activation functions do. UI-free: nothing here imports streamlit or plotly.

    from actlab import watch
    with watch(model, run="my-run") as w:
        ...; w.step(loss=loss)

`watch`, `Watcher` and `ActLabCallback` load on first access, so `import actlab` (and the CLI's
start-up) does not pay for torch or transformers until they are used.
"""
import importlib
import sys
import types

from .errors import UserError

__all__ = ["watch", "Watcher", "ActLabCallback", "UserError"]
_LAZY = ("watch", "Watcher", "ActLabCallback")


def __getattr__(name):
    if name in _LAZY:
        # import_module, not `from . import watch`: that form asks this module for `watch` again.
        return getattr(importlib.import_module(".watch", __name__), name)
    raise AttributeError(f"module 'actlab' has no attribute {name!r}")


class _PublicFace(types.ModuleType):
    """`actlab.watch` names both the subpackage core/watch/ and the function users import. Once the
    subpackage is imported, Python binds it as this module's attribute `watch`, and
    `from actlab import watch` would hand out the package. The public names stay the function and
    the classes; `from actlab.watch.x import y` is unaffected (it goes through sys.modules)."""

    def __setattr__(self, name, value):
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _PublicFace
