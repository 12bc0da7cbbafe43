"""The dormancy plug-in's flush: one device->host fetch, then every definition scored on the host."""
from __future__ import annotations

import numpy as np
import torch

from . import dormancy as D
from ._dist import dist


# Under DDP: per-sample sums add up over the ranks; the trackers' state is taken from rank 0, so every
# rank computes the same masks (a recycle by them must change every replica alike); the singular
# values stay local (only rank 0 writes them).
_SUMMED = ("abs", "active", "sat", "grad", "n", "gn", "norm", "sum")
_SHARED = ("util", "util_age", "last", "ring")


def _fetch(plugin) -> dict[str, dict[str, np.ndarray]]:
    """Every layer's sums and state in ONE copy (shapes are known on the host)."""
    groups: dict[str, list] = {"summed": [], "shared": [], "local": []}
    layout = []
    for name, a in plugin.acc.items():
        if a.batches == 0:
            continue
        svals = torch.linalg.svdvals(a.rank_rows.double()).float() if a.rank_rows is not None and a.rank_rows.numel() \
            else torch.zeros(0, device=a.device)
        fields = {"abs": a.abs, "active": a.active, "sat": a.sat, "grad": a.grad, "n": a.n, "gn": a.gn,
                  "norm": a.norm, "sum": a.sum, "util": a.util.util, "util_age": a.util.age, "last": a.age.last,
                  "ring": a.age.ring, "svals": svals}
        for k, t in fields.items():
            g = "summed" if k in _SUMMED else "shared" if k in _SHARED else "local"
            groups[g].append(t.reshape(-1).float())
            layout.append((g, name, k, tuple(t.shape)))
    if not layout:
        return {}
    dev = next(t for ts in groups.values() for t in ts).device
    flat = {g: torch.cat([t.to(dev) for t in ts]) if ts else torch.zeros(0, device=dev) for g, ts in groups.items()}
    d = dist()
    if d is not None and d.get_world_size() > 1:
        d.all_reduce(flat["summed"], op=d.ReduceOp.SUM)
        d.broadcast(flat["shared"], src=0)
    sizes = [flat[g].numel() for g in groups]
    host = torch.cat(list(flat.values())).cpu().numpy().astype(np.float64)
    offsets = dict(zip(groups, np.cumsum([0] + sizes[:-1])))
    out: dict[str, dict[str, np.ndarray]] = {}
    for g, name, k, shape in layout:
        n = int(np.prod(shape)) if shape else 1
        i = int(offsets[g])
        out.setdefault(name, {})[k] = host[i:i + n].reshape(shape)
        offsets[g] += n
    return out


def _sample_masks(f: dict, s: D.DormancySettings, dead_defined: bool, tau: float) -> dict:
    """{definition: flag function over (resampled) group sums}; only the definitions defined here."""
    fns = {}
    if dead_defined:
        fns["dead"] = lambda g: D.dead_mask(g["active"])
    # n and gn are sample counts, (1,) for the whole window or (n_boot, 1) for resamples.
    fns["redo"] = lambda g: D.redo_mask(g["abs"] / np.maximum(g["n"], 1e-12), tau)
    if f["gn"].sum() > 0:
        fns["grama"] = lambda g: D.grama_mask(g["grad"] / np.maximum(g["gn"], 1e-12), s.grama_tau)
    fns["overactive"] = lambda g: D.overactive_mask(g["abs"] / np.maximum(g["n"], 1e-12), s.overactive)
    if f["zones"]:
        fns["saturated"] = lambda g: D.saturated_mask(g["sat"], g["n"], s.saturated)
    return fns


def score_layers(plugin, step: int) -> tuple[dict[str, float], dict, dict]:
    """(scalars, {layer: {definition: mask}}, {layer: flattened Jaccard matrix})."""
    s = plugin.settings
    w = plugin.watcher
    tau = float(getattr(w, "tau", s.tau)) if s.tau == D.DormancySettings.tau else s.tau
    fetched = _fetch(plugin)
    values: dict[str, float] = {}
    masks: dict = {}
    overlaps: dict = {}
    steps = max(step - plugin._last_flush, 0)
    for name, f in fetched.items():
        if f["n"].sum() <= 0:
            continue
        a = plugin.acc[name]
        f["zones"] = a.zones
        L = getattr(w.probes, "layers", {}).get(name)
        dead_defined = L is not None and getattr(L, "rule", None) is not None
        fns = _sample_masks(f, s, dead_defined, tau)
        full = {"abs": f["abs"].sum(0), "active": f["active"].sum(0), "sat": f["sat"].sum(0),
                "grad": f["grad"].sum(0), "n": f["n"].sum(keepdims=True), "gn": f["gn"].sum(keepdims=True)}
        layer_masks = {d: fn(full) for d, fn in fns.items()}
        if plugin._out_weight_abs(name, a.units) is not None:
            layer_masks["utility"] = a.util.flagged(f["util"], f["util_age"], steps)
        layer_masks["age"] = D.FiringAge.flagged(f["last"], f["ring"], step, s.age_percentile, s.maturity)
        groups = {k: f[k] for k in ("abs", "active", "sat", "grad") if (k != "sat" or a.zones) and (k != "grad" or "grama" in fns)}
        groups["n"], groups["gn"] = f["n"][:, None], f["gn"][:, None]
        resampled = D.resample_groups(groups, s.n_boot, seed=step)  # once per layer, for every definition
        for d in D.DEFINITIONS:
            if d not in layer_masks:
                continue
            values[f"dormancy/{d}/{name}"] = float(layer_masks[d].mean())
            if d in fns:
                lo, hi = D.percentile_interval(fns[d](resampled), s.level)
                values[f"dormancy_lo/{d}/{name}"], values[f"dormancy_hi/{d}/{name}"] = lo, hi
        sv = f["svals"]
        if sv.size:
            p = sv / sv.sum() if sv.sum() > 0 else sv
            p = p[p > 0]
            values[f"rank/{name}"] = float(np.exp(-(p * np.log(p)).sum())) if p.size else 0.0
        if f["norm"][1] > 0:
            values[f"feature_norm/{name}"] = float(f["norm"][0] / f["norm"][1])
        masks[name] = layer_masks
        plugin.mean_act[name] = f["sum"] / max(float(f["n"].sum()), 1e-12)
        # The diagonal is 1 for every definition defined here (also when it flags nothing), NaN elsewhere:
        # that is how a reader tells "not defined for this layer" from "both sets empty".
        overlaps[name] = [(1.0 if i == j else D.jaccard(layer_masks[i], layer_masks[j]))
                          if i in layer_masks and j in layer_masks else float("nan")
                          for i in D.DEFINITIONS for j in D.DEFINITIONS]
    return values, masks, overlaps
