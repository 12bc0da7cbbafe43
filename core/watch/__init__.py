"""Watch any PyTorch model: the one import a user needs.

    from actlab import watch
    with watch(model, run="my-run", log_every=50) as w:
        for x, y in loader:
            loss = ...; loss.backward(); opt.step(); opt.zero_grad()
            w.step(loss=loss, acc=acc)            # floats or tensors; tensors stay on the device

    from actlab import ActLabCallback         # Trainer(..., callbacks=[ActLabCallback(run=...)])

The watcher itself is watcher.py; the Hugging Face Trainer callback is hf_callback.py,
imported on first access, so that `import actlab.watch` does not import transformers (about 1 s of
every `train mnist` start, by `python -X importtime`).
"""
from .watcher import Watcher, find_layers, format_table, watch


def __getattr__(name):
    if name == "ActLabCallback":
        from .hf_callback import ActLabCallback

        return ActLabCallback
    raise AttributeError(f"module 'actlab.watch' has no attribute {name!r}")


__all__ = ["watch", "Watcher", "ActLabCallback", "find_layers", "format_table"]
