"""The non-finite guard plug-in: stop a run whose loss became NaN or inf, before anything of the bad
interval is written.

    watch(model, plugins=[NonFiniteGuard()])          # loss/train checked at every flush
    watch(model, check=lambda values, step: ...)      # today's form: your own check, may raise

It checks values the flush fetched anyway (never a sync of its own). Its exception propagates from
`w.step()`: this is the one plug-in meant to stop training (`may_stop`).
"""
from __future__ import annotations

import math

from .plugins import WatchPlugin


class NonFiniteValue(ArithmeticError):
    """A watched scalar became NaN or inf."""


class NonFiniteGuard(WatchPlugin):
    """`check(values, step)`: called with the flush's scalars before any is written; raise to stop.
    Default: raise NonFiniteValue when any of `keys` is present and not finite."""

    may_stop = True

    def __init__(self, check=None, keys: tuple[str, ...] = ("loss/train",)):
        self.check = check
        self.keys = tuple(keys)

    def before_write(self, watcher, record) -> None:
        if self.check is not None:
            self.check(record.scalars, record.step)
            return
        for k in self.keys:
            v = record.scalars.get(k)
            if v is not None and not math.isfinite(v):
                raise NonFiniteValue(f"{k} became {v} at step {record.step}")


__all__ = ["NonFiniteGuard", "NonFiniteValue"]
