"""Plug-ins: everything the watcher does beyond probes, the store and the flush.

One behaviour per class (the recycler, the non-finite guard, the overhead budget, a tracker sink),
hooks named for when they fire, every hook a no-op by default:

    class MyPlugin(WatchPlugin):
        def on_start(self, watcher): ...                 # hooks installed, run created
        def on_step(self, watcher, step): ...            # every w.step(): counters only, no GPU sync
        def before_write(self, watcher, record): ...     # a flush was fetched, nothing of it written yet
        def on_flush(self, watcher, record): ...         # after each flush was fetched and written
        def on_close(self, watcher, status): ...         # the run ends: finished / failed / stopped
        def on_log(self, watcher, step, values, epoch): ...  # w.log() wrote values outside a flush (optional)
        def layer_notes(self, watcher) -> dict: ...      # {layer: {column: text}} for the watch table

    with watch(model, plugins=[MyPlugin()]) as w: ...

`on_flush` runs inside `w.step()`, after the optimizer step and before the next forward, so a
plug-in may edit weights there (the recycler does). A plug-in reads `watcher.config`
(`.probe`, `.store`), `watcher.layers` (name -> Target), `watcher.store` (the run's writer; None on
DDP ranks other than 0) and `watcher.probes`, and writes with `watcher.add_event(kind, **details)`
(an events-table row, drawn as a marker on every chart). `layer_notes` runs once, before the run
is created, so its columns reach run.json (the recycler's "recycle" column does).

A plug-in never stops training: one that raises is disabled for the rest of the run, with one
warning and a "plugin_disabled" event. The one exception is a guard whose job is to stop the run
(the non-finite guard): it sets `may_stop = True`, and what it raises propagates from `w.step()`.
"""
from __future__ import annotations

import warnings

HOOKS = ("on_start", "on_step", "before_write", "on_flush", "on_close")
# Hooks a plug-in may leave out even when it does not subclass WatchPlugin.
OPTIONAL_HOOKS = ("on_log",)


class WatchPlugin:
    """Base class: override the hooks you need (see the module docstring)."""

    may_stop = False  # True only for a guard whose exceptions are meant to end the run

    def on_start(self, watcher) -> None:
        pass

    def on_step(self, watcher, step: int) -> None:
        pass

    def before_write(self, watcher, record) -> None:
        pass

    def on_flush(self, watcher, record) -> None:
        pass

    def on_close(self, watcher, status: str) -> None:
        pass

    def on_log(self, watcher, step: int, values: dict[str, float], epoch: float | None) -> None:
        """Values written by `w.log()` (evaluation metrics, plug-ins' scores), not part of a flush
        record; the tracker sinks mirror them."""

    def layer_notes(self, watcher) -> dict[str, dict[str, str]]:
        return {}

    @property
    def name(self) -> str:
        return type(self).__name__


def _overrides(plugin, hook: str) -> bool:
    base = getattr(WatchPlugin, hook, None)
    return getattr(type(plugin), hook, None) is not base


class PluginSet:
    """The watcher's plug-ins, called in order. Only plug-ins that override a hook are called for it
    (w.step() stays a counter for a watch whose plug-ins have no on_step)."""

    def __init__(self, plugins=()):
        self.plugins = list(plugins)
        for p in self.plugins:
            if not all(callable(getattr(p, h, None)) for h in HOOKS):
                raise TypeError(f"{type(p).__name__} is not a WatchPlugin: it needs the hooks {', '.join(HOOKS)} "
                                "(subclass actlab.watcher.WatchPlugin)")
        self.disabled: dict[int, str] = {}  # id(plugin) -> why
        self._by_hook = {h: [p for p in self.plugins if callable(getattr(p, h, None)) and _overrides(p, h)]
                         for h in HOOKS + OPTIONAL_HOOKS}

    def call(self, hook: str, watcher, *args) -> None:
        for p in self._by_hook[hook]:
            if id(p) in self.disabled:
                continue
            try:
                getattr(p, hook)(watcher, *args)
            except Exception as e:
                if getattr(p, "may_stop", False):
                    raise
                self.disable(p, hook, e, watcher)

    def layer_notes(self, watcher) -> dict[str, dict[str, str]]:
        notes: dict[str, dict[str, str]] = {}
        for p in self.plugins:
            if not hasattr(p, "layer_notes"):
                continue
            try:
                for layer, cols in (p.layer_notes(watcher) or {}).items():
                    notes.setdefault(layer, {}).update(cols)
            except Exception as e:
                if getattr(p, "may_stop", False):
                    raise
                self.disable(p, "layer_notes", e, None)
        return notes

    def disable(self, plugin, hook: str, error: Exception, watcher) -> None:
        name = getattr(plugin, "name", type(plugin).__name__)
        why = f"{type(error).__name__}: {error}"[:300]
        self.disabled[id(plugin)] = why
        warnings.warn(f"actlab watch: plug-in {name} raised in {hook} ({why}); it is disabled for the rest "
                      "of the run, training goes on", RuntimeWarning, stacklevel=3)
        if watcher is not None:
            try:
                watcher.add_event("plugin_disabled", reason=f"{name} raised in {hook}: {why}",
                                  plugin=name, hook=hook)
            except Exception:  # noqa: BLE001, S110 -- the store may be what failed; the warning told the user
                pass


__all__ = ["HOOKS", "PluginSet", "WatchPlugin"]
