"""The watcher's settings: small frozen groups with keyword-only fields, validated when built.

    ProbeConfig(log_every=50, tau=0.1, ...)      what is measured and how often (watcher + probes)
    StoreConfig(run="my-run", runs_dir="runs")   where the run is written
    RecycleConfig(every=1000, tau=0.1)           the recycler plug-in (recycler.py)

`watch(model, **kwargs)` routes today's keyword arguments onto these (`split_kwargs`), so each
setting is declared once, here. A bad value is a `UserError` naming the setting.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass

from ..errors import UserError
from ..store.runs import check_lookup_name, validate_run_name


def _set(obj, name, value):
    object.__setattr__(obj, name, value)  # normalising a frozen dataclass's field in __post_init__


def _int_at_least(name: str, value, low: int) -> int:
    """A whole number (an int, a numpy int, or a float like 10.0, as configs and argparse give them)."""
    try:
        v = int(value)
        ok = not isinstance(value, (bool, str)) and v == value and v >= low
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise UserError(f"{name} must be a whole number >= {low}, got {value!r}")
    return v


def _unit(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if not 0.0 <= v <= 1.0:
        raise UserError(f"{name} must be in [0, 1], got {value}")
    return v


@dataclass(frozen=True, kw_only=True)
class ProbeConfig:
    """What the probes measure. `log_every`: steps between flushes (one device->host fetch each).
    `stats_every`: histograms, per-unit activity and the zero fraction on one training batch in this
    many. `window`: None closes the dead/dormant window at every flush, an int after that many
    steps, "manual" only at `end_window()`. `modules`/`auto`/`exclude`/`extra`: which layers
    (core/watcher/layers.py)."""
    log_every: int = 50
    stats_every: int = 16
    tau: float = 0.1
    eps: float = 0.0
    histograms: bool = True
    bins: int = 64
    hist_range: tuple[float, float] = (-6.0, 6.0)
    grads: bool = True
    window: int | str | None = None
    modules: dict | None = None
    auto: bool = True
    exclude: tuple[str, ...] = ()
    extra: dict | None = None
    # Probe speed (core/watcher/reductions.py): elements binned per histogram (0 = all), and the
    # torch.compile'd window sum ("auto": on CUDA only).
    hist_sample: int = 1 << 14
    fused: str | bool = "auto"

    def __post_init__(self):
        _set(self, "log_every", _int_at_least("log_every", self.log_every, 1))
        _set(self, "hist_sample", _int_at_least("hist_sample", self.hist_sample, 0))
        if self.fused not in ("auto", "on", "off", True, False):
            raise UserError(f"fused must be 'auto', 'on' or 'off', got {self.fused!r}")
        _set(self, "stats_every", _int_at_least("stats_every", self.stats_every, 1))
        _set(self, "bins", _int_at_least("bins", self.bins, 1))
        _set(self, "tau", _unit("tau", self.tau))
        eps = float(self.eps)
        if not (math.isfinite(eps) and eps >= 0):
            raise UserError(f"eps must be a number >= 0, got {self.eps!r}")
        _set(self, "eps", eps)
        try:
            lo, hi = (float(v) for v in self.hist_range)
        except (TypeError, ValueError):
            lo = hi = float("nan")
        if not lo < hi:
            raise UserError(f"hist_range must be (low, high) with low < high, got {self.hist_range!r}")
        _set(self, "hist_range", (lo, hi))
        w = self.window
        if w not in (None, "manual") and not (isinstance(w, int) and not isinstance(w, bool) and w >= 1):
            raise UserError(f"window must be None, 'manual' or a number of steps >= 1, got {w!r}")
        if isinstance(self.exclude, str):
            _set(self, "exclude", (self.exclude,))
        _set(self, "exclude", tuple(self.exclude))
        _set(self, "histograms", bool(self.histograms))
        _set(self, "grads", bool(self.grads))


@dataclass(frozen=True, kw_only=True)
class StoreConfig:
    """Where and how the run is written. `run`: its name (default watch-<date>-<time>); `runs_dir`:
    default actlab.paths.runs_dir(), read when the run is created; `config`: extra entries for
    run.json; `resume`: continue an existing run from `start_step` (what a crashed process wrote
    after it is superseded). A failing store never stops training (safe_store.py): `lock_timeout`
    is how long a write waits for another process's lock before it counts as a failure, and
    `retry_after` how many seconds pass between tries while the store fails."""
    run: str | None = None
    runs_dir: str | os.PathLike | None = None
    kind: str = "watch"
    config: dict | None = None
    resume: bool = False
    start_step: int = 0
    lock_timeout: float = 30.0
    retry_after: float = 5.0

    def __post_init__(self):
        if self.run is None:
            _set(self, "run", time.strftime("watch-%Y%m%d-%H%M%S"))
        # A resumed run may carry a name an older version allowed; a new one must pass the strict check.
        (check_lookup_name if self.resume else validate_run_name)(self.run)
        _set(self, "start_step", _int_at_least("start_step", self.start_step, 0))
        if self.config is not None and not isinstance(self.config, dict):
            raise UserError(f"config must be a dict of run settings, got {type(self.config).__name__}")
        for name in ("lock_timeout", "retry_after"):
            v = getattr(self, name)
            try:
                ok = math.isfinite(float(v)) and float(v) >= 0 and not isinstance(v, bool)
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise UserError(f"{name} must be a number of seconds >= 0, got {v!r}")
            _set(self, name, float(v))


@dataclass(frozen=True, kw_only=True)
class RecycleConfig:
    """The recycler plug-in. `every`: recycle on a schedule, at the first flush this many steps after
    the last recycle (None: only when asked, by the dashboard or `actlab runs recycle`); `tau`:
    which units (None: the probe's tau); `mode`: "tau" (tau-dormant) or "dead"; `pairs`:
    {layer: (incoming, outgoing)} by hand (core/watcher/recycle.py); `by`: recycle by any dormancy
    definition instead (grama/utility/age need the dormancy plug-in: watch() adds it);
    `convention`: the optimizer-state convention, "redo" or "cbp" (docs/dormancy.md)."""
    every: int | None = None
    tau: float | None = None
    mode: str = "tau"
    pairs: dict | None = None
    by: str | None = None  # a dormancy definition (dormancy.RECYCLE_BY); None: from `mode`
    convention: str = "redo"  # optimizer state: "redo" or "cbp" (core/watcher/recycle.py)

    def __post_init__(self):
        from .dormancy import RECYCLE_BY, check_convention, check_definition

        if self.by is not None:
            check_definition(self.by, "recycle_by", RECYCLE_BY)
        check_convention(self.convention, "recycle_convention")
        if self.every is not None:
            _set(self, "every", _int_at_least("recycle_every", self.every, 1))
        if self.mode not in ("tau", "dead"):
            raise UserError(f"recycle_mode must be 'tau' or 'dead', got {self.mode!r}")
        if self.tau is not None:
            _set(self, "tau", _unit("recycle_tau", self.tau))


def _fields(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


# watch()'s keyword -> (group, field). The recycler's settings carry a recycle_ prefix there.
_RECYCLE_KW = {f"recycle_{f}": f for f in _fields(RecycleConfig)}


def split_kwargs(kwargs: dict) -> tuple[ProbeConfig, StoreConfig, RecycleConfig, dict]:
    """watch()'s flat keywords -> (ProbeConfig, StoreConfig, RecycleConfig, the rest)."""
    probe, store, recycle, rest = {}, {}, {}, {}
    probe_f, store_f = _fields(ProbeConfig), _fields(StoreConfig)
    for k, v in kwargs.items():
        if k in probe_f:
            probe[k] = v
        elif k in store_f:
            store[k] = v
        elif k in _RECYCLE_KW:
            recycle[_RECYCLE_KW[k]] = v
        else:
            rest[k] = v
    return ProbeConfig(**probe), StoreConfig(**store), RecycleConfig(**recycle), rest


def known_kwargs() -> list[str]:
    return sorted(_fields(ProbeConfig) | _fields(StoreConfig) | set(_RECYCLE_KW))


@dataclass(frozen=True, kw_only=True)
class WatchConfig:
    """What a Watcher was built with (`watcher.config`): plug-ins read `.probe` and `.store`."""
    probe: ProbeConfig
    store: StoreConfig


__all__ = ["ProbeConfig", "RecycleConfig", "StoreConfig", "WatchConfig", "known_kwargs", "split_kwargs"]
