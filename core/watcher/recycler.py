"""The recycler plug-in: scheduled recycling and the recycle commands of the control path.

At a flush, between optimizer steps, it applies the scheduled recycle (`RecycleConfig.every`),
then the commands the dashboard or `actlab runs recycle` queued in the store, and writes an event
for each: what changed, or why it could not be done. Under DDP rank 0 reads the commands and
broadcasts them; every rank applies them (the masks were all-reduced and the redraw is seeded by
step and layer, so the replicas stay equal). The mechanics of a recycle are core/watcher/recycle.py.
"""
from __future__ import annotations

import zlib

import torch

from ._dist import dist
from .config import RecycleConfig
from .plugins import WatchPlugin
from .dormancy import CONVENTIONS, RECYCLE_BY
from .recycle import RecyclePair, find_pairs, recycle_mask, recycle_units

# Definitions the probes' own masks answer; the others come from the dormancy plug-in.
_PROBE_BY = {"dead": "dead", "redo": "tau"}


class Recycler(WatchPlugin):
    """`optimizer`: the loop's optimizer, whose state for the recycled entries is reset; without it,
    the first optimizer over the model's parameters that steps is used."""

    def __init__(self, config: RecycleConfig | None = None, optimizer=None):
        self.config = config or RecycleConfig()
        self.optimizer = optimizer
        self.pairs: dict[str, RecyclePair | str] = {}
        self._last = 0
        self._opt_handle = None

    # ---------------------------------------------------------------- set-up
    def layer_notes(self, watcher) -> dict[str, dict[str, str]]:
        self.pairs = find_pairs(watcher.model, list(watcher.layers.values()), self.config.pairs)
        return {name: {"recycle": self.describe(name)} for name in watcher.layers}

    def describe(self, name: str) -> str:
        p = self.pairs.get(name)
        return p.describe() if isinstance(p, RecyclePair) else f"cannot recycle: {p}"

    def on_start(self, watcher) -> None:
        self._last = watcher.step_count
        recyclable = any(isinstance(p, RecyclePair) for p in self.pairs.values())
        if self.optimizer is None and recyclable:
            # Find the loop's optimizer at its first step. The hook is removed at the next flush, not
            # inside itself: torch is iterating over the global hooks then, and removing one while a
            # later one (the user's, another watch's) is still to come raises in the user's opt.step().
            from torch.optim.optimizer import register_optimizer_step_pre_hook

            ids = {id(p) for p in watcher.model.parameters()}

            def find(opt, args, kwargs):
                if self.optimizer is not None:
                    return
                groups = opt.param_groups
                if groups and groups[0]["params"] and id(groups[0]["params"][0]) in ids:
                    self.optimizer = opt
            self._opt_handle = register_optimizer_step_pre_hook(find)

    def _drop_hook(self):
        if self._opt_handle is not None:
            self._opt_handle.remove()
            self._opt_handle = None

    # ---------------------------------------------------------------- at each flush
    def on_flush(self, watcher, record) -> None:
        if self.optimizer is not None:
            self._drop_hook()
        step = record.step
        todo = []
        every = self.config.every
        if every and step - self._last >= every:
            self._last = step
            by, tau = self.config.by or ("dead" if self.config.mode == "dead" else "redo"), self._tau(watcher)
            todo += [(None, n, by, tau, f"scheduled every {every} steps", self.config.convention)
                     for n, p in self.pairs.items() if isinstance(p, RecyclePair)]
        for c in self._commands(watcher):
            a = c["args"] if isinstance(c["args"], dict) else {}
            if c["kind"] != "recycle":
                self._refuse(watcher, step, a.get("layer"), f"unknown command {c['kind']!r}", c["id"])
                continue
            try:
                tau = float(a.get("tau", watcher.config.probe.tau))
            except (TypeError, ValueError):
                tau = float("nan")
            if not 0.0 <= tau <= 1.0:
                self._refuse(watcher, step, a.get("layer"), f"tau must be in [0, 1], got {a.get('tau')!r}", c["id"])
                continue
            by = a.get("by") or ("dead" if a.get("dead") else "redo")
            conv = a.get("convention") or self.config.convention
            if by not in RECYCLE_BY or conv not in CONVENTIONS:
                bad = f"by: unknown definition {by!r}" if by not in RECYCLE_BY else f"convention: unknown {conv!r}"
                self._refuse(watcher, step, a.get("layer"), bad, c["id"])
                continue
            todo.append((c["id"], a.get("layer"), by, tau, "asked for", conv))
        for cid, name, by, tau, why, conv in todo:
            self._recycle_one(watcher, record, cid, name, by, tau, why, conv)

    def _tau(self, watcher) -> float:
        return watcher.config.probe.tau if self.config.tau is None else self.config.tau

    def _commands(self, watcher) -> list[dict]:
        cmds = watcher.store.pending_commands() if watcher.store is not None else []
        d = dist()
        if d is not None and watcher.world > 1:
            box = [cmds]
            d.broadcast_object_list(box, src=0)
            cmds = box[0]
        return cmds

    def _refuse(self, watcher, step, layer, reason, cid=None):
        watcher.add_event("refused", step=step, layer=layer, reason=reason, command_id=cid, command_state="refused")

    @staticmethod
    def _dormancy(watcher):
        """The run's dormancy plug-in (core/watcher/dormancy_plugin.py), if it has one."""
        return next((p for p in watcher.plugins.plugins if hasattr(p, "mask") and hasattr(p, "recycled")
                     and id(p) not in watcher.plugins.disabled), None)

    def _mask(self, watcher, record, name, by, tau):
        """(mask, None) or (None, why not)."""
        dorm = self._dormancy(watcher)
        if by in _PROBE_BY:
            stats = record.layers.get(name)
            if stats is None:
                return None, "no statistics for this layer yet (no training forward)"
            mask = recycle_mask(stats, _PROBE_BY[by], tau)
            if mask is None:
                return None, f"dead/ is not defined for {watcher.layers[name].cls}; recycle by redo (tau) instead"
            return mask, None
        if dorm is None:
            return None, f"recycle by {by} needs the dormancy plug-in: watch(..., dormancy=True)"
        dorm.compute(record.step)
        mask = dorm.mask(name, by)
        if mask is None:
            return None, f"{by} is not defined for {name} (docs/dormancy.md)"
        return torch.as_tensor(mask), None

    def _recycle_one(self, watcher, record, cid, name, by, tau, why, convention="redo"):
        step = record.step
        pair = self.pairs.get(name)
        if name not in watcher.layers:
            return self._refuse(watcher, step, name, f"no hooked layer {name!r}", cid)
        if not isinstance(pair, RecyclePair):
            return self._refuse(watcher, step, name, f"cannot recycle: {pair}", cid)
        mask, why_not = self._mask(watcher, record, name, by, tau)
        if mask is None:
            return self._refuse(watcher, step, name, why_not, cid)
        dorm = self._dormancy(watcher)
        mean_act = dorm.mean_act.get(name) if dorm is not None else None
        if convention == "cbp" and mean_act is None:
            return self._refuse(watcher, step, name, "the cbp convention moves the units' mean activation into the "
                                "next bias: it needs the dormancy plug-in (watch(..., dormancy=True))", cid)
        gen = torch.Generator().manual_seed(zlib.crc32(f"{step}:{name}".encode()))
        try:
            done = recycle_units(pair, mask, self.optimizer, watcher.model, gen, convention, mean_act)
        except (ValueError, RuntimeError) as e:
            return self._refuse(watcher, step, name, f"recycle failed: {e}", cid)
        watcher.probes.restart_window(name)  # the next window shows what the recycle did
        if dorm is not None:
            dorm.recycled(step, name, by, mask.cpu().numpy())  # utility/age reset, and the audit starts
        what = {"dead": "dead", "redo": f"τ-dormant (τ={tau:g})"}.get(by, f"flagged by {by}")
        reason = f"{done['units']} of {mask.numel()} units {what}, {why}, {convention} convention"
        reason += ("; optimizer state reset" if self.optimizer is not None
                   else "; no optimizer seen, so its state was NOT reset (pass watch(..., optimizer=opt))")
        watcher.log({f"recycled/{name}": done["units"]}, step=step)
        watcher.add_event("recycle", step=step, layer=name, units=done["units"], reason=reason, command_id=cid,
                          command_state="applied", pair=pair.describe(), by=by, tau=tau,
                          mode="dead" if by == "dead" else ("tau" if by == "redo" else by),
                          **{k: v for k, v in done.items() if k != "units"})

    # ---------------------------------------------------------------- end
    def on_close(self, watcher, status: str) -> None:
        self._drop_hook()
        if watcher.store is None:
            return
        for c in watcher.store.pending_commands():
            self._refuse(watcher, watcher.step_count, (c["args"] or {}).get("layer"),
                         f"the run ended ({status}) before the command was applied", c["id"])


__all__ = ["Recycler"]
