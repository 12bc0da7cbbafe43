"""The overhead budget plug-in: `watch(model, budget=0.03)` keeps the monitor cheap enough to leave on.

The watcher measures its own share of the training time at every flush (`watch/overhead_pct`: host
time in the hooks, the step counters and the flush, over the wall time since the previous flush).
When that share, over at least `min_seconds` and `min_flushes` flushes, exceeds the budget, the
plug-in samples less: the per-batch statistics (histogram, per-unit activity, zero fraction, the
f' test) on half as many batches (`stats_every` doubles) and histograms on half as many flushes.
Each change is an event ("budget"), drawn as a marker on every chart and shown on the monitor.
What it cannot lower (the per-forward window sums behind dead/ and dormant/, one fetch per flush)
stays; when sampling is at its limits it says so once. The first flush (warm-up: first
allocations, compilation) is never judged.
"""
from __future__ import annotations

import math

from ..errors import UserError
from .plugins import WatchPlugin

DEFAULT_BUDGET = 0.03


def check_budget(budget) -> float | None:
    """A share of the step time in (0, 1], or None for no budget."""
    if budget is None:
        return None
    try:
        b = float(budget)
    except (TypeError, ValueError):
        b = float("nan")
    if isinstance(budget, bool) or not (math.isfinite(b) and 0.0 < b <= 1.0):
        raise UserError(f"budget must be a share of the step time in (0, 1] (0.03 = 3 %) or None, got {budget!r}")
    return b


class OverheadBudget(WatchPlugin):
    def __init__(self, budget: float = DEFAULT_BUDGET, min_seconds: float = 30.0, min_flushes: int = 3,
                 max_stats_every: int = 1024, max_hist_every: int = 64):
        self.budget = check_budget(budget)
        self.min_seconds, self.min_flushes = float(min_seconds), max(1, int(min_flushes))
        self.max_stats_every, self.max_hist_every = int(max_stats_every), int(max_hist_every)
        self.hist_every = 1
        self._histograms = True  # whether the user wants histograms at all
        self._flush_no = 0
        self._last_wall: float | None = None
        self._busy = self._wall = 0.0
        self._judged = 0
        self._at_limit = False

    def on_start(self, watcher) -> None:
        self._histograms = bool(watcher.probes.histograms)

    def on_flush(self, watcher, record) -> None:
        self._flush_no += 1
        dt = record.wall_time - self._last_wall if self._last_wall is not None else 0.0
        self._last_wall = record.wall_time
        pct = record.scalars.get("watch/overhead_pct")
        if self._flush_no > 1 and pct is not None and math.isfinite(pct) and dt > 0:
            self._busy += pct / 100.0 * dt
            self._wall += dt
            self._judged += 1
        if self._judged >= self.min_flushes and self._wall >= self.min_seconds:
            share = self._busy / self._wall
            self._busy = self._wall = 0.0
            self._judged = 0
            if share > self.budget:
                self._sample_less(watcher, record.step, share)
        if self._histograms:  # histograms on every hist_every-th flush: decided for the coming interval
            watcher.probes.histograms = (self._flush_no + 1) % self.hist_every == 0

    def _sample_less(self, watcher, step: int, share: float):
        probes = watcher.probes
        stats_every = min(probes.stats_every * 2, max(self.max_stats_every, probes.stats_every))
        hist_every = min(self.hist_every * 2, self.max_hist_every) if self._histograms else self.hist_every
        cost = f"monitoring cost {share * 100:.1f} % of the step time, over the budget of {self.budget * 100:g} %"
        if (stats_every, hist_every) == (probes.stats_every, self.hist_every):
            if not self._at_limit:
                self._at_limit = True
                watcher.add_event("budget", step=step, reason=f"{cost}; sampling is at its limits (statistics on 1 "
                                  f"batch in {stats_every}, histograms on 1 flush in {hist_every}); the rest is "
                                  "the per-forward window sums and the flush (raise log_every to lower it)",
                                  overhead_pct=share * 100, budget_pct=self.budget * 100, stats_every=stats_every,
                                  hist_every=hist_every)
            return
        was = (probes.stats_every, self.hist_every)
        probes.stats_every, self.hist_every = stats_every, hist_every
        watcher.add_event("budget", step=step, reason=f"{cost}: statistics on 1 batch in {stats_every} (was "
                          f"{was[0]}), histograms on 1 flush in {hist_every} (was {was[1]})",
                          overhead_pct=share * 100, budget_pct=self.budget * 100, stats_every=stats_every,
                          hist_every=hist_every)


def overhead_caption(last_pct: float | None, config: dict, events: list[dict]) -> str:
    """The monitor's words for a run's cost: "monitoring costs 3.6 % (budget 3 %); sampling lowered at
    step 400: statistics on 1 batch in 32, histograms on 1 flush in 2"."""
    if last_pct is None or not math.isfinite(last_pct):
        return ""
    text = f"monitoring costs {last_pct:.1f} %"
    budget = config.get("overhead_budget")
    if isinstance(budget, (int, float)) and not isinstance(budget, bool):
        text += f" (budget {budget * 100:g} %)"
    changes = [e for e in events if e.get("kind") == "budget"]
    if changes:
        d = changes[-1].get("details") or {}
        text += (f"; sampling lowered {len(changes)} time(s) (last at step {changes[-1]['step']}: statistics on 1 batch in "
                 f"{d.get('stats_every', '?')}, histograms on 1 flush in {d.get('hist_every', '?')})")
    return text


__all__ = ["DEFAULT_BUDGET", "OverheadBudget", "check_budget", "overhead_caption"]
