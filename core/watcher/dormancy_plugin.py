"""The dormancy plug-in: every definition of core/watcher/dormancy.py on a live run, side by side.

    with watch(model, plugins=[DormancyPlugin()]) as w: ...      # or watch(model, dormancy=True)

On sampled steps only (one in `every`, by default the probes' `stats_every`) it hooks the activation
layers' forward pass, and puts a gradient tensor hook on the activation output (GraMa); on the other
steps no hook of its own is installed at all. The hooks keep per-unit sums ON the device, dealt into
`groups` groups of probe samples (sample r goes to group r mod groups) for the bootstrap:
sum |h|, samples active (f' > eps, the probes' rule), samples in the registry's saturation tails,
sum |dL/dh|; plus the continual-backprop utility and the firing ages, and the last sampled batch's
rows for the effective rank. A flush fetches all of it in one copy and writes

    dormancy/<definition>/<layer>       flagged fraction (the definitions in dormancy.DEFINITIONS)
    dormancy_lo/<definition>/<layer>    bootstrap interval over the probe-sample groups
    dormancy_hi/<definition>/<layer>      (sample-based definitions; utility and age carry state)
    rank/<layer>  feature_norm/<layer>  effective rank and mean ||h|| of the sampled activations
    unit activity overlap/<layer>       the Jaccard matrix between definitions, row-major, in
                                        DEFINITIONS order (NaN: a definition not defined there)

It also keeps each definition's flagged set for `mask(layer, by)` (recycling by any definition) and
audits every recycle: the fraction of the recycled units flagged again at each of the next
`AUDIT_FLUSHES` flushes, written as "recycle_audit" events (core/store/audit.py joins them to
their recycle).
"""
from __future__ import annotations

import time

import numpy as np
import torch

from . import dormancy as D

from .plugins import WatchPlugin

AUDIT_FLUSHES = 5
_SAMPLE_BASED = ("dead", "redo", "grama", "overactive", "saturated")


def _rows(t: torch.Tensor) -> torch.Tensor:
    """(samples, units): conv maps average each channel over space; tokens are samples."""
    if t.dim() >= 4:
        return t.flatten(2).mean(2)
    if t.dim() == 1:
        return t.unsqueeze(0)
    return t.reshape(-1, t.shape[-1])


class _Acc:
    """One layer's device-side sums since the last flush, and its state across flushes."""

    def __init__(self, units: int, device, s: D.DormancySettings, start_step: int, zones):
        g = s.groups
        z = lambda *shape: torch.zeros(*shape, device=device)
        self.units, self.device, self.zones = units, device, zones
        self.abs, self.active, self.sat, self.grad = z(g, units), z(g, units), z(g, units), z(g, units)
        self.n, self.gn, self.norm = z(g), z(g), z(2)
        self.sum = z(units)  # signed sum of h: the mean continual backprop moves into the next bias
        self.rank_rows: torch.Tensor | None = None
        self.util = D.ContributionUtility(units, device, s.eta, s.rho, s.maturity)
        self.age = D.FiringAge(units, device, s.age_history, start_step)
        self.batches = self.grad_batches = 0
        self._gid: dict[int, torch.Tensor] = {}

    def gid(self, rows: int, groups: int) -> torch.Tensor:
        g = self._gid.get(rows)
        if g is None:
            g = self._gid[rows] = torch.arange(rows, device=self.device) % groups
        return g

    def clear(self):
        for t in (self.abs, self.active, self.sat, self.grad, self.n, self.gn, self.norm, self.sum):
            t.zero_()
        self.rank_rows = None
        self.batches = self.grad_batches = 0


class DormancyPlugin(WatchPlugin):
    def __init__(self, settings: D.DormancySettings | None = None, every: int | None = None,
                 gradients: bool = True, **kwargs):
        self.settings = settings if settings is not None else D.DormancySettings(**kwargs)
        if every is not None and not (isinstance(every, int) and every >= 1):
            from ..errors import UserError

            raise UserError(f"every must be a number of steps >= 1, got {every!r}")
        self.every, self.gradients = every, bool(gradients)
        self.acc: dict[str, _Acc] = {}
        self.pairs: dict = {}
        self.masks: dict[str, dict[str, np.ndarray]] = {}  # last flush: layer -> definition -> flagged
        self.mean_act: dict[str, np.ndarray] = {}  # last flush: layer -> mean h per unit
        self.last: dict[str, float] = {}  # last flush's scalars
        self.audits: list[dict] = []
        self._handles: list = []
        self._step = 0
        self._last_flush = 0
        self._computed_at: int | None = None
        self._pending: dict[str, float] = {}
        self._overlaps: dict[str, list] = {}

    # ---------------------------------------------------------------- hooks on sampled steps only
    def on_start(self, watcher):
        self.watcher = watcher
        self.every = self.every or int(getattr(watcher.probes, "stats_every", 16))
        self._step = self._last_flush = int(watcher.step_count)
        from ..activations import get_spec, properties

        self.pairs = self._find_pairs(watcher)
        self._zones, seen = {}, {}
        for name, t in watcher.layers.items():
            key = (t.activation, tuple(sorted((t.params or {}).items())))
            if key not in seen:  # one curve per activation, not per layer (a BERT has 12 alike)
                seen[key] = [] if t.activation is None or get_spec(t.activation).vector else \
                    [tuple(z) for z in properties(t.activation, **t.params)["saturation_zones"]]
            self._zones[name] = seen[key]
        self._arm(self._step)

    @staticmethod
    def _find_pairs(watcher) -> dict:
        """The recycler's (incoming, outgoing) pairs, so utility reads the weights a recycle would touch."""
        for p in getattr(getattr(watcher, "plugins", None), "plugins", []):
            if isinstance(getattr(p, "pairs", None), dict) and p.pairs:
                return p.pairs
        from .recycle import find_pairs

        return find_pairs(watcher.model, list(watcher.layers.values()))

    def on_step(self, watcher, step: int):
        self._step = int(step)
        self._arm(self._step)

    def _arm(self, step: int):
        """Hooks on for the step about to run when it is a sampled one, off otherwise."""
        want = step % self.every == 0
        if want and not self._handles:
            self._handles = [t.module.register_forward_hook(self._forward_hook(n))
                             for n, t in self.watcher.layers.items()]
        elif not want and self._handles:
            self._remove()

    def _remove(self):
        for h in self._handles:
            h.remove()
        self._handles = []

    def _forward_hook(self, name: str):
        def hook(module, inputs, output):
            t0 = time.perf_counter()
            try:
                self._on_forward(name, module, inputs, output)
            finally:
                # The watcher's own-cost figure (watch/overhead_pct) counts these hooks with the probes'.
                self.watcher.probes.hook_seconds += time.perf_counter() - t0
        return hook

    def _on_forward(self, name, module, inputs, output):
        probes = self.watcher.probes
        if not module.training or not getattr(probes, "enabled", True) or not isinstance(output, torch.Tensor):
            return
        t = self.watcher.layers[name]
        if t.role == "pre":
            x, y = output.detach(), None
        else:
            x, y = (inputs[0].detach() if inputs else None), output.detach()
        if not (isinstance(x, torch.Tensor) and x.is_floating_point() and x.dim() >= 1):
            return
        with torch.no_grad():
            self._record(name, t, x, y, probes)
        if self.gradients:
            self._hook_gradient(name, t, inputs, output, probes)

    def _hook_gradient(self, name, t, inputs, output, probes):
        """GraMa reads dL/dz at the pre-activation z (what reaches the incoming weights: 0 for a dead
        ReLU unit). An in-place activation has overwritten z: then dL/dh at the output, times h > 0
        for ReLU (its f'), as the nearest available figure."""
        z = output if t.role == "pre" else (inputs[0] if inputs else None)
        gate = None
        if t.role != "pre" and (z is None or z is output or not isinstance(z, torch.Tensor)):
            z = output
            gate = (output.detach() > 0) if t.activation == "relu" else None
        if not (isinstance(z, torch.Tensor) and z.requires_grad):
            return
        # The hook returns None: the gradient flows on untouched (tests check bit-identical weights).
        z.register_hook(self._grad_hook(name, self._mask_rows(probes, z), gate))

    @staticmethod
    def _mask_rows(probes, t: torch.Tensor) -> torch.Tensor | None:
        m = getattr(probes, "mask", None)
        if m is not None and t.dim() == 3 and tuple(m.shape) == tuple(t.shape[:2]):
            return m.reshape(-1).to(torch.float32)
        return None

    def _acc_for(self, name: str, units: int, device) -> _Acc | None:
        a = self.acc.get(name)
        if a is None:
            a = self.acc[name] = _Acc(units, device, self.settings, self._last_flush, self._zones.get(name, []))
        return a if a.units == units else None  # a shared module called on another width: keep the first

    def _record(self, name, t, x, y, probes):
        L = getattr(probes, "layers", {}).get(name)
        if y is None:
            y = L.fn(x) if L is not None else x
        h = _rows(y).float()
        a = self._acc_for(name, h.shape[1], h.device)
        if a is None:
            return
        s = self.settings
        w = self._mask_rows(probes, y)
        gid = a.gid(h.shape[0], s.groups)
        weights = w if w is not None else torch.ones(h.shape[0], device=h.device)
        habs = _rows(y.abs()).float() * weights[:, None]
        a.abs.index_add_(0, gid, habs)
        a.n.index_add_(0, gid, weights)
        if L is not None and getattr(L, "rule", None) is not None:
            alive = probes._alive_elem(L, x)  # f' > eps, the probes' own rule for this layer
            act = (_rows(alive.float()) > 0).float() * weights[:, None]
            a.active.index_add_(0, gid, act)
        if a.zones:
            a.sat.index_add_(0, gid, _rows(D.in_zones(x, a.zones).float()) * weights[:, None])
        fired = ((_rows((y > 0).float()) * weights[:, None]) > 0).any(0)
        a.age.update(fired, self._step)
        mean_abs = habs.sum(0) / weights.sum().clamp_min(1.0)
        out_abs = self._out_weight_abs(name, a.units)
        if out_abs is not None:
            a.util.update(mean_abs, out_abs, steps=self.every)
        hr = h if w is None else h * w[:, None]
        a.sum += hr.sum(0)
        a.norm[0] += hr.norm(dim=1).sum()
        a.norm[1] += weights.sum()
        a.rank_rows = hr[: s.rank_rows].clone()
        a.batches += 1

    def _out_weight_abs(self, name: str, units: int) -> torch.Tensor | None:
        """sum_k |w_out[k, i]| per unit, from the layer the units feed (core/watcher/recycle.py's pair)."""
        pair = self.pairs.get(name)
        out = getattr(pair, "outgoing", None)
        if out is None:
            return None
        w = out.weight.detach().abs()
        col = w.sum(0) if w.dim() == 2 else w.transpose(0, 1).flatten(1).sum(1)
        if col.numel() != units:
            col = col.reshape(units, -1).sum(1) if col.numel() % units == 0 else None
        return col

    def _grad_hook(self, name: str, w: torch.Tensor | None, gate: torch.Tensor | None):
        def hook(grad):
            a = self.acc.get(name)
            if a is None:
                return
            with torch.no_grad():
                g = grad.detach().abs()
                g = _rows(g * gate if gate is not None else g).float()
                if g.shape[1] != a.units:
                    return
                weights = w if w is not None and w.numel() == g.shape[0] else torch.ones(g.shape[0], device=g.device)
                gid = a.gid(g.shape[0], self.settings.groups)
                a.grad.index_add_(0, gid, g * weights[:, None])
                a.gn.index_add_(0, gid, weights)
                a.grad_batches += 1
            return
        return hook

    # ---------------------------------------------------------------- flush
    def before_write(self, watcher, record):
        # Into the flush's own scalars: written in the watcher's transaction, seen by every sink.
        record.scalars.update(self.compute(int(record.step)))

    def on_flush(self, watcher, record):
        self.compute(int(record.step))
        self._write(int(record.step), getattr(record, "epoch", None))

    def on_close(self, watcher, status: str):
        self._remove()

    def compute(self, step: int) -> dict[str, float]:
        """Fetch the device sums once, score every definition, audit recycles. Idempotent per step."""
        if self._computed_at == step:
            return self._pending
        from .dormancy_flush import score_layers

        values, masks, overlaps = score_layers(self, step)
        self.masks.update(masks)
        self._overlaps = overlaps
        self._audit(step, masks)
        self._computed_at, self._pending, self.last = step, values, values
        self._last_flush = step
        for a in self.acc.values():
            a.clear()
        return values

    def _write(self, step: int, epoch):
        """The overlap rows; the scalars went into the flush's record (before_write)."""
        writer = self.watcher.store
        if writer is not None:
            for layer, flat in self._overlaps.items():
                writer.log_unit_activity(step, f"overlap/{layer}", flat, epoch=epoch)
        self._overlaps = {}

    # ---------------------------------------------------------------- recycling by any definition
    def mask(self, layer: str, by: str) -> np.ndarray | None:
        """The units `by` flagged at the last flush (None: not defined for this layer)."""
        D.check_definition(by, "by", D.RECYCLE_BY)
        return self.masks.get(layer, {}).get(by)

    def recycled(self, step: int, layer: str, by: str, mask) -> None:
        """A recycle happened: reset the units' utility and age, and start auditing them."""
        m = np.asarray(mask, dtype=bool)
        a = self.acc.get(layer)
        if a is not None:
            a.util.reset(m)
            a.age.reset(m, step)
        if m.any():
            self.audits.append({"step": int(step), "layer": layer, "by": by, "units": m, "again": []})

    def _audit(self, step: int, masks: dict) -> None:
        """Each open audit: the share of its units this flush's masks flag again."""
        for au in self.audits:
            if len(au["again"]) >= AUDIT_FLUSHES or step <= au["step"]:
                continue
            now = masks.get(au["layer"], {}).get(au["by"])
            if now is None or now.shape != au["units"].shape:
                continue
            frac = float(now[au["units"]].mean())
            au["again"].append(frac)
            self._event(step, au, frac)
        self.audits = [au for au in self.audits if len(au["again"]) < AUDIT_FLUSHES]

    def _event(self, step: int, au: dict, frac: float):
        w = self.watcher
        k = len(au["again"])
        details = {"of_step": au["step"], "by": au["by"], "flush": k, "flagged_again": frac,
                   "again": list(au["again"]), "recycled_units": int(au["units"].sum())}
        reason = (f"audit {k}/{AUDIT_FLUSHES} of the step-{au['step']} recycle by {au['by']}: "
                  f"{frac:.0%} of its {details['recycled_units']} units flagged again")
        w.add_event("recycle_audit", step=step, layer=au["layer"], units=details["recycled_units"], reason=reason,
                    **details)
