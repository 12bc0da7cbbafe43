"""Every dormancy definition side by side, and recycling by each. `python bench/dormancy_definitions.py
[--seeds 3] [--steps 400] [--bert-steps 150] [--out bench/results/dormancy_definitions_cpu.json]`.

1. Definitions. Two models, each seed: the MNIST stress preset (`actlab train mnist --preset stress`:
   MLP 784-512-10, ReLU, fc1 bias -1, Adam lr 2e-2, bundled digits, batch 64) and a small BERT (2 layers, hidden 64, GELU FFN of
   256, random init, a synthetic task: does token 7 occur in 16 random tokens?), watched with the
   dormancy plug-in (core/watcher/dormancy_plugin.py, default settings, gradient scores on one step in
   4). Per layer and definition: the flagged fraction at every flush, and the mean Jaccard overlap
   of each pair of definitions' flagged sets over the flushes where either flags a unit.
2. Recycling. The MNIST stress preset again, recycling every `--recycle-every` steps by each of
   dead, redo, grama, utility, age (ReDo's optimizer-state convention), and not at all. Per
   variant: the final dead fraction of act1 (eval mode, 1,000 fixed test digits, measured 50 steps
   after the last recycle with the defaults: 450 steps, recycles at 100..400), test accuracy,
   and the audit: the fraction of the recycled units flagged again by the same definition 5
   flushes later (mean over the recycles). Each recycling variant against "none" with
   core/analysis/compare.py's statistics (diff, bootstrap CI, Welch or permutation p, Holm).
3. Overhead. The same stress run timed with watch alone and with watch + the plug-in, alternating,
   so the plug-in's cost is read against the watcher it rides on.

Everything printed is measured in this run; the JSON keeps the per-seed figures.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch import nn

from actlab.analysis import stats as S
from actlab.argtypes import positive_int
from actlab.analysis.compare import _verdict, compare_pair
from actlab.models.data import load_mnist
from actlab.models.mlp import MLP
from actlab.store.audit import attach_audits
from actlab.store.runs import RunStore
from actlab.watcher import watch
from actlab.watcher.dormancy import DEFINITIONS, RECYCLE_BY
from actlab.watcher.dormancy_plugin import DormancyPlugin

ROOT = Path(__file__).resolve().parents[1]
LOG_EVERY, EVERY, BATCH = 20, 4, 64


def _mnist(seed: int, data):
    torch.manual_seed(seed)
    # `actlab train mnist --preset stress`: hidden [512], default init, biases -1, Adam lr 2e-2, batch 64.
    model = MLP(784, [512], 10, "relu", None, "none", "default", 0.0, -1.0)
    return model, torch.optim.Adam(model.parameters(), lr=2e-2)


def _bert(seed: int):
    from transformers import BertConfig, BertModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=256, max_position_embeddings=32)

    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = BertModel(cfg, add_pooling_layer=False)
            self.head = nn.Linear(64, 2)

        def forward(self, ids):
            return self.head(self.bert(input_ids=ids).last_hidden_state[:, 0])

    model = Classifier()
    return model, torch.optim.AdamW(model.parameters(), lr=1e-3)


def _bert_batch(gen, n=64):
    ids = torch.randint(8, 100, (n, 16), generator=gen)
    hit = torch.rand(n, generator=gen) < 0.5
    ids[hit, torch.randint(1, 16, (int(hit.sum()),), generator=gen)] = 7
    ids[:, 0] = 1  # a [CLS]-like first token
    return ids, hit.long()


def _read(store: RunStore, name: str):
    r = store.open(name)
    try:
        df, _ = r.scalars()
        overlaps = {u["key"].removeprefix("overlap/"): u for u in r.unit_activity() if u["key"].startswith("overlap/")}
        ov_rows = [u for u in r.unit_activity() if u["key"].startswith("overlap/")]
        events = attach_audits(r.events())
    finally:
        r.close()
    return df, ov_rows, events, overlaps


def _curves(df) -> dict:
    out: dict = {}
    for key, g in df[df.key.str.startswith("dormancy/")].groupby("key"):
        _, d, layer = key.split("/", 2)
        g = g.sort_values("step")
        out.setdefault(layer, {})[d] = {"step": g.step.astype(int).tolist(), "flagged": g.value.round(4).tolist()}
    for key, g in df[df.key.str.startswith(("rank/", "feature_norm/"))].groupby("key"):
        kind, layer = key.split("/", 1)
        out.setdefault(layer, {})[kind] = g.sort_values("step").value.round(3).tolist()
    return out


def _overlap_means(ov_rows) -> dict:
    """Per layer, per pair: mean Jaccard over the flushes where it is defined (either set non-empty)."""
    n = len(DEFINITIONS)
    acc: dict = {}
    for u in ov_rows:
        m = np.asarray(u["values"], dtype=float).reshape(n, n)
        layer = u["key"].removeprefix("overlap/")
        for i, j in itertools.combinations(range(n), 2):
            if not np.isnan(m[i, j]):
                acc.setdefault(layer, {}).setdefault(f"{DEFINITIONS[i]}~{DEFINITIONS[j]}", []).append(m[i, j])
    return {layer: {k: {"mean": round(float(np.mean(v)), 3), "flushes": len(v)} for k, v in pairs.items()}
            for layer, pairs in acc.items()}


def run_definitions(kind: str, seed: int, steps: int, root: Path, data) -> dict:
    store = RunStore(root)
    name = f"{kind}-defs-s{seed}"
    model, opt = _mnist(seed, data) if kind == "mnist" else _bert(seed)
    gen = torch.Generator().manual_seed(seed)
    plugin = DormancyPlugin(every=EVERY)
    with watch(model, run=name, runs_dir=root, log_every=LOG_EVERY, verbose=False, optimizer=opt,
               plugins=[plugin]) as w:
        for _ in range(steps):
            if kind == "mnist":
                idx = torch.randint(0, len(data["x_train"]), (BATCH,), generator=gen)
                x, y = data["x_train"][idx], data["y_train"][idx]
            else:
                x, y = _bert_batch(gen)
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.step(loss=loss.detach())
    df, ov_rows, _, _ = _read(store, name)
    return {"curves": _curves(df), "overlap": _overlap_means(ov_rows), "final_containment": _containment(plugin.masks)}


def _containment(masks: dict) -> dict:
    """At the last flush, per layer: |A n B| / |A| (how much of A's flagged set B also flags) and |A|.
    Jaccard punishes a small set beside a large one; this says whether the small one sits inside."""
    out = {}
    for layer, m in masks.items():
        out[layer] = {"size": {d: int(v.sum()) for d, v in m.items()},
                      "in": {f"{a}~{b}": round(float((m[a] & m[b]).sum() / m[a].sum()), 3)
                             for a in m for b in m if a != b and m[a].sum()}}
    return out


def run_recycle(by: str | None, seed: int, steps: int, every: int, root: Path, data) -> dict:
    store = RunStore(root)
    name = f"mnist-recycle-{by or 'none'}-s{seed}"
    model, opt = _mnist(seed, data)
    gen = torch.Generator().manual_seed(seed)
    kw = {"recycle_every": every, "recycle_by": by} if by else {}
    with watch(model, run=name, runs_dir=root, log_every=LOG_EVERY, verbose=False, optimizer=opt,
               plugins=[DormancyPlugin(every=EVERY)], **kw) as w:
        for _ in range(steps):
            idx = torch.randint(0, len(data["x_train"]), (BATCH,), generator=gen)
            loss = nn.functional.cross_entropy(model(data["x_train"][idx]), data["y_train"][idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.step(loss=loss.detach())
        exact = w.exact_dead([data["x_test"]])
        model.eval()
        with torch.no_grad():
            acc = float((model(data["x_test"]).argmax(1) == data["y_test"]).float().mean())
        model.train()
    _, _, events, _ = _read(store, name)
    recycles = [e for e in events if e["kind"] == "recycle"]
    full = [e["audit"][4] for e in recycles if len(e.get("audit") or []) >= 5]
    return {"dead_exact": float(exact.get("dead_exact/act1", float("nan"))), "acc_test": acc,
            "recycles": len(recycles), "units_recycled": int(sum(e["units"] or 0 for e in recycles)),
            "again_at_5": float(np.mean(full)) if full else None, "audits_complete": len(full),
            "audit_curves": [e["audit"] for e in recycles]}


def time_overhead(steps: int, repeats: int, root: Path, data) -> dict:
    """Per step, watch alone vs watch + the plug-in (its default: sampled steps = the probes'
    stats_every, 16; and the bench's 1 in 4), alternating arms; the ratio per repeat, then the median.
    CPU time of this one-thread process (time.process_time) as well as wall time: on the shared box
    wall time mostly measures the other processes."""
    arms = {"watch": None, "watch+dormancy": {}, "watch+dormancy(every=4)": {"every": EVERY}}
    t: dict = {a: {"wall": [], "cpu": []} for a in arms}
    for r in range(repeats):
        for arm, kw in arms.items():
            model, opt = _mnist(100 + r, data)
            gen = torch.Generator().manual_seed(r)
            plugins = [DormancyPlugin(**kw)] if kw is not None else []
            with watch(model, run=f"time-{len(t[arm]['wall'])}-{abs(hash(arm)) % 10**6}", runs_dir=root,
                       log_every=50, verbose=False, optimizer=opt, plugins=plugins) as w:
                t0, c0 = time.perf_counter(), time.process_time()
                for _ in range(steps):
                    idx = torch.randint(0, len(data["x_train"]), (BATCH,), generator=gen)
                    loss = nn.functional.cross_entropy(model(data["x_train"][idx]), data["y_train"][idx])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    w.step(loss=loss.detach())
                t[arm]["wall"].append((time.perf_counter() - t0) / steps)
                t[arm]["cpu"].append((time.process_time() - c0) / steps)
    out: dict = {"log_every": 50, "steps": steps, "repeats": repeats,
                 "ms_per_step": {a: {k: [round(v * 1e3, 3) for v in vs] for k, vs in d.items()} for a, d in t.items()}}
    for arm in list(arms)[1:]:
        for k in ("cpu", "wall"):
            ratios = [a / b for a, b in zip(t[arm][k], t["watch"][k])]
            out[f"ratio_{k}[{arm}]"] = {"per_repeat": [round(x, 3) for x in ratios],
                                         "median": round(float(np.median(ratios)), 3)}
    return out


def compare_recycling(results: dict) -> list[dict]:
    """Each recycling definition against none: final dead fraction and test accuracy."""
    out = []
    for metric, higher in (("dead_exact", False), ("acc_test", True)):
        base = [r[metric] for r in results["none"]]
        comps = []
        for by in RECYCLE_BY:
            c = compare_pair(by, [r[metric] for r in results[by]], "none", base, higher_better=higher)
            comps.append(c)
        for c, adj in zip(comps, S.holm([c["p_value"] for c in comps])):
            c["p_adjusted"] = adj  # Holm over the five recycling variants of this metric
            c["verdict"] = _verdict(c, higher, 0.05)
            out.append({"metric": metric, **{k: (None if isinstance(v, float) and v != v else v) for k, v in c.items()}})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=positive_int, default=3)
    p.add_argument("--steps", type=positive_int, default=450)
    p.add_argument("--bert-steps", type=positive_int, default=150)
    p.add_argument("--recycle-every", type=positive_int, default=100)
    p.add_argument("--time-steps", type=positive_int, default=300)
    p.add_argument("--time-repeats", type=positive_int, default=5)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "dormancy_definitions_cpu.json"))
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    data = load_mnist("bundled")
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        defs = {kind: [run_definitions(kind, s, a.steps if kind == "mnist" else a.bert_steps, root, data)
                       for s in range(a.seeds)] for kind in ("mnist", "bert")}
        rec = {by or "none": [run_recycle(by, s, a.steps, a.recycle_every, root, data) for s in range(a.seeds)]
               for by in (None,) + RECYCLE_BY}
        overhead = time_overhead(a.time_steps, a.time_repeats, root, data)
    summary = {by: {k: (round(float(np.mean([r[k] for r in rs if r[k] is not None])), 4)
                        if any(r[k] is not None for r in rs) else None)
                    for k in ("dead_exact", "acc_test", "again_at_5", "recycles", "units_recycled")}
               for by, rs in rec.items()}
    out = {"kind": "bench:dormancy_definitions", "command": "python bench/dormancy_definitions.py " + " ".join(argv or []),
           "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                       "threads": 1},
           "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "settings": {**vars(a), "log_every": LOG_EVERY, "sampled_every": EVERY},
           "definitions": defs, "recycling": rec, "recycling_summary": summary,
           "recycling_vs_none": compare_recycling(rec), "overhead": overhead,
           "wall_s": round(time.perf_counter() - t_start, 1)}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1, default=float))
    _print(out)
    return 0


def _print(out: dict):
    for kind, seeds in out["definitions"].items():
        print(f"== {kind}: final flagged fraction per layer (mean over seeds)")
        for layer in seeds[0]["curves"]:
            row = []
            for d in DEFINITIONS:
                vals = [s["curves"][layer][d]["flagged"][-1] for s in seeds if d in s["curves"].get(layer, {})]
                row.append(f"{d} {np.mean(vals):.3f}" if vals else f"{d} -")
            print(f"  {layer:<50} " + "  ".join(row))
    for kind, seeds in out["definitions"].items():
        print(f"== {kind}: mean Jaccard overlap of the flagged sets (mean over flushes where either flags a unit, then seeds)")
        for layer in seeds[0]["overlap"]:
            pairs = {}
            for sd in seeds:
                for k, v in sd["overlap"].get(layer, {}).items():
                    pairs.setdefault(k, []).append(v["mean"])
            shown = [f"{k} {np.mean(v):.2f}" for k, v in pairs.items() if "overactive" not in k and "saturated" not in k]
            print(f"  {layer}: " + ", ".join(shown))
    print("== recycling (mean over seeds): dead_exact/act1, acc/test, flagged again 5 flushes later")
    for by, s in out["recycling_summary"].items():
        print(f"  {by:<8} dead {s['dead_exact']}  acc {s['acc_test']}  again@5 {s['again_at_5']}  recycles {s['recycles']}")
    for c in out["recycling_vs_none"]:
        print(f"  {c['metric']:<10} {c['a']:<8} - none: diff {c['diff']:+.4f}  p_adj {c['p_adjusted']}  {c['verdict']}")
    print("== overhead per step, (watch + dormancy) / watch alone, median over repeats:")
    for k, v in out["overhead"].items():
        if k.startswith("ratio_"):
            print(f"  {k:<40} {v['median']}  {v['per_repeat']}")
    print(f"wall {out['wall_s']} s")


if __name__ == "__main__":
    raise SystemExit(main())
