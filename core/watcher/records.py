"""Typed records of what one flush measured: what plug-ins receive (`WatchPlugin.on_flush`).

    FlushRecord   step, epoch, wall_time, scalars (every schema key written), layers, histograms, events
    LayerStats    one hooked layer's window figures, per-unit arrays on the host (numpy)
    Histogram     the pre-activation histogram of one layer over the flush interval's sampled batches
    Event         something the watcher or a plug-in did (a recycle, a refusal, a budget change)

All frozen: a plug-in reads them, it never edits what the next plug-in sees. Per-unit arrays are
numpy arrays fetched in the flush's one device->host copy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class LayerStats:
    """One layer at a flush (definitions: core/watcher/probes.py).
    `dead`/`alive` are None where dead/ is not defined for the layer's class; `zero_frac` and
    `activity` are None when no batch of the interval was sampled; `revived` is None before the
    layer's first window closed."""
    name: str
    dormant: float  # share of units whose tau-score is <= tau
    score: np.ndarray  # per unit: mean |output| over the window / the layer's mean over units
    dead: float | None = None
    alive: np.ndarray | None = None  # per unit: alive on some sample of the window (bool)
    revived: int | None = None  # units dead in the previous window and alive in this one
    zero_frac: float | None = None
    activity: np.ndarray | None = None  # per unit: share of sampled samples where the unit is alive
    sampled_batches: int = 0
    sampled_samples: float = 0.0
    window_samples: float = 0.0

    @classmethod
    def from_probe(cls, name: str, d: dict) -> LayerStats:
        """From one layer's entry of `ActivationProbes.flush()`."""
        sampled = int(d.get("sampled_batches", 0))
        zero = d.get("zero_frac")
        return cls(name=name, dormant=float(d["dormant"]), score=np.asarray(d["score"]),
                   dead=float(d["dead"]) if "dead" in d else None, alive=d.get("alive"),
                   revived=int(d["revived"]) if "revived" in d else None,
                   zero_frac=float(zero) if sampled and zero is not None and not math.isnan(zero) else None,
                   activity=np.asarray(d["activity"]) if sampled and d.get("activity") is not None else None,
                   sampled_batches=sampled, sampled_samples=float(d.get("sampled_samples", 0.0)),
                   window_samples=float(d.get("window_samples", 0.0)))


@dataclass(frozen=True, eq=False)
class Histogram:
    key: str  # pre/<layer>
    edges: tuple[float, ...]
    counts: np.ndarray


@dataclass(frozen=True)
class Event:
    """One row of the run's events table (drawn as a marker on every chart of the run)."""
    step: int
    kind: str
    layer: str | None = None
    units: int | None = None
    reason: str | None = None
    command_id: str | None = None
    details: dict = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class FlushRecord:
    """What one flush fetched and wrote. `scalars` holds every schema key of the flush (dead/<layer>,
    dormant/<layer>, zero_frac/<layer>, revived/<layer>, grad_norm/<param>, the loop's scalars
    such as loss/train, and watch/overhead_pct). `events` lists the events added since the previous
    flush, and the ones plug-ins add while this flush is handed round."""
    step: int
    epoch: float | None
    wall_time: float
    scalars: dict[str, float]
    layers: dict[str, LayerStats]
    histograms: dict[str, Histogram] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)


__all__ = ["Event", "FlushRecord", "Histogram", "LayerStats"]
