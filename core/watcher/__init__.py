"""Watch any PyTorch model: the one import a user needs.

    from actlab import watch
    with watch(model, run="my-run", log_every=50) as w:
        for x, y in loader:
            loss = ...; loss.backward(); opt.step(); opt.zero_grad()
            w.step(loss=loss, acc=acc)            # floats or tensors; tensors stay on the device

    from actlab import ActLabCallback         # Trainer(..., callbacks=[ActLabCallback(run=...)])

The watcher itself is watcher.py (probes, the store, the flush); its settings are config.py, its
typed flush records records.py, and everything else plugs in through plugins.py (the recycler,
recycler.py; the non-finite guard, guards.py). The Hugging Face Trainer callback is hf_callback.py,
imported on first access, so that `import actlab.watcher` does not import transformers (about 1 s of
every `train mnist` start, by `python -X importtime`).
"""
from .config import ProbeConfig, RecycleConfig, StoreConfig, WatchConfig
from .guards import NonFiniteGuard, NonFiniteValue
from .plugins import WatchPlugin
from .records import Event, FlushRecord, Histogram, LayerStats
from .recycler import Recycler
from .watcher import Watcher, default_plugins, find_layers, format_table, watch


def __getattr__(name):
    if name == "ActLabCallback":
        from .hf_callback import ActLabCallback

        return ActLabCallback
    raise AttributeError(f"module 'actlab.watcher' has no attribute {name!r}")


__all__ = [
    "ActLabCallback",
    "Event",
    "FlushRecord",
    "Histogram",
    "LayerStats",
    "NonFiniteGuard",
    "NonFiniteValue",
    "ProbeConfig",
    "RecycleConfig",
    "Recycler",
    "StoreConfig",
    "WatchConfig",
    "WatchPlugin",
    "Watcher",
    "default_plugins",
    "find_layers",
    "format_table",
    "watch",
]
