"""Ablation grids: every variant x seed as its own run, one text log per run, and a summary.

`actlab ablate biencoder --variants all --seeds 3 [train options]`
`actlab ablate mnist --activations relu,gelu --norms none,layernorm --seeds 3 [...]`

Runs go to the run store as `<grid>-<variant>-seed<N>`; the text logs go to
`<runs-dir>/ablations/<grid>/<variant>_seed<N>.log`, one `key=value` line per epoch, which
core.logs reads back on the compare page. The summary is mean ± std of each run's final value,
computed by core.compare from the run store.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import pandas as pd

from ..errors import UserError
from ..store.runs import RunStore

VERDICT_KEY = {"biencoder": "acc/top1", "mnist": "acc/test"}
SUMMARY_KEYS = {"biencoder": ["ndcg@10/test", "acc/top1", "acc/top5", "acc/top10", "mrr", "loss/train"],
                "mnist": ["acc/test", "loss/test", "loss/train"]}


def parse_list(value: str, known: list[str], what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if value.strip() == "all":
        return list(known)
    if not items:
        raise UserError(f"--{what} is empty; choose from {', '.join(known)} or all")
    bad = [v for v in items if v not in known]
    if bad:
        raise UserError(f"unknown {what[:-1] if what.endswith('s') else what} {bad[0]!r}; known: {', '.join(known)}")
    return list(dict.fromkeys(items))


def grid_dir(runs_dir: str | Path, grid: str) -> Path:
    return Path(runs_dir) / "ablations" / grid


def _store_scalars(runs_dir: str | Path, assignments: pd.DataFrame) -> pd.DataFrame | None:
    store = RunStore(runs_dir)
    frames = []
    for name in assignments["run"]:
        if store.exists(name):
            with store.open(name) as r:
                frames.append(r.scalars()[0])
    return pd.concat(frames, ignore_index=True) if frames else None


def summarize_runs(runs_dir: str | Path, assignments: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per variant: n and, per key, mean and std of each run's final value."""
    from . import compare

    df = _store_scalars(runs_dir, assignments)
    if df is None:
        return pd.DataFrame(columns=["variant", "n"])
    out = None
    for key in keys:
        if key not in set(df["key"]):
            continue
        t = compare.variant_table(df, key, "final", assignments)[["variant", "n", "mean", "std"]]
        t = t.rename(columns={"mean": f"{key} mean", "std": f"{key} std"})
        out = t if out is None else out.merge(t.drop(columns="n"), on="variant", how="outer")
    return out if out is not None else pd.DataFrame(columns=["variant", "n"])


def format_summary(table: pd.DataFrame, keys: list[str]) -> str:
    """Markdown table: variant | n | key mean ± std ... (std is blank for a single seed)."""
    keys = [k for k in keys if f"{k} mean" in table.columns]
    lines = ["| variant | n | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for row in table.to_dict("records"):
        cells = []
        for k in keys:
            m, s = row[f"{k} mean"], row[f"{k} std"]
            cells.append(f"{m:.4f} ± {s:.4f}" if pd.notna(s) else f"{m:.4f}")
        lines.append(f"| {row['variant']} | {int(row['n'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_grid(task: str, runs: list[dict], runs_dir: str, grid: str, train_fn) -> pd.DataFrame:
    """`runs`: dicts with variant, seed and the full config for `train_fn(config) -> run name`."""
    out_dir = grid_dir(runs_dir, grid)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, r in enumerate(runs, 1):
        print(f"[{i}/{len(runs)}] {task} {r['variant']} seed {r['seed']}", flush=True)
        name = train_fn(r["config"])
        rows.append({"run": name, "variant": r["variant"], "seed": r["seed"]})
        # A SIGTERM/Ctrl-C stops the trainer gracefully (status "stopped"): stop the grid too,
        # and summarise what finished rather than start the next run.
        if RunStore(runs_dir).summary(name)["status"] == "stopped":
            print(f"run {name} was stopped; not starting the remaining {len(runs) - i} run(s)", flush=True)
            break
    return pd.DataFrame(rows, columns=["run", "variant", "seed"])


def execute(task: str, args, runs: list[dict], train_fn) -> tuple[pd.DataFrame, list[dict]]:
    """Run the grid on the backend the flags ask for: in this process one run after another, up to
    N processes at once (--parallel, ablation_parallel.py), or Ray tasks (--backend ray,
    ablation_ray.py). Returns the assignments (run, variant, seed) and one outcome per started run
    (status, reason, attempts)."""
    store = RunStore(args.runs_dir)
    taken = [r["config"]["name"] for r in runs if store.exists(r["config"]["name"])]
    if taken:  # before the first run starts, not when the grid reaches it
        raise UserError(f"run {taken[0]!r} already exists in {args.runs_dir}; pick another --grid")
    if args.backend == "ray":
        from .ablation_ray import run_ray

        outcomes = run_ray(task, runs, args.runs_dir, address=args.address, device=args.device)
    else:
        from .ablation_parallel import default_parallel, run_parallel

        n = args.parallel or default_parallel(args.device)
        if n == 1:
            assignments = run_grid(task, runs, args.runs_dir, args.grid, train_fn)
            return assignments, _outcomes(args.runs_dir, assignments)
        grid_dir(args.runs_dir, args.grid).mkdir(parents=True, exist_ok=True)
        outcomes, _ = run_parallel(task, runs, args.runs_dir, n, args.device)
    assignments = pd.DataFrame([{k: o[k] for k in ("run", "variant", "seed")} for o in outcomes],
                               columns=["run", "variant", "seed"])
    return assignments, outcomes


def _outcomes(runs_dir, assignments: pd.DataFrame) -> list[dict]:
    store = RunStore(runs_dir)
    out = []
    for row in assignments.to_dict("records"):
        st = store.summary(row["run"])
        out.append({**row, "status": st["status"], "reason": st["reason"], "attempts": 1})
    return out


def check_backend(args) -> None:
    """Flag combinations, before any run starts."""
    if args.backend != "ray" and args.address is not None:
        raise UserError("--address is for --backend ray")
    if args.backend == "ray" and args.parallel is not None:
        raise UserError("--parallel is for the local backend; Ray runs as many runs at once as the cluster's "
                        "GPUs (or CPUs) allow")


def format_outcomes(outcomes: list[dict]) -> str:
    """The lines under the summary: runs that failed (with why), were stopped, or were retried."""
    lines = []
    for label, pick in (("failed", lambda o: o["status"] == "failed"), ("stopped", lambda o: o["status"] == "stopped"),
                        ("retried", lambda o: o.get("attempts", 1) > 1)):
        hits = [o for o in outcomes if pick(o)]
        if hits:
            lines.append(f"{label}: {len(hits)} run(s)")
            for o in hits:
                why = (f"{o['attempts']} attempts" + (f", {o['retry']}" if o.get("retry") else "")) if label == "retried" \
                    else (o["reason"] or "")
                lines.append(f"  {o['run']}: {why}")
    return "\n".join(lines)


def _grid_name(task: str, given: str | None) -> str:
    from ..store.runs import validate_run_name

    return validate_run_name(given) if given else f"{task}-{time.strftime('%Y%m%d-%H%M%S')}"


def _check_names(runs: list[dict]) -> None:
    """Every run name of the grid before the first run starts, not after hours of training."""
    from ..store.runs import validate_run_name

    for r in runs:
        validate_run_name(r["config"]["name"])


def verdict_summary(runs_dir: str | Path, assignments: pd.DataFrame, metric: str) -> dict | None:
    """core.compare's summary (variants, pairwise tests, verdicts) of the grid's final `metric`."""
    from . import compare

    df = _store_scalars(runs_dir, assignments)
    if df is None or metric not in set(df["key"]):
        return None
    return compare.summarize(df, metric, use="final", runs=assignments)


def format_verdicts(summary: dict) -> str:
    lines = []
    for c in summary["comparisons"]:
        adjusted = c.get("p_adjusted") is not None
        p = c["p_adjusted"] if adjusted else c.get("p_value")
        p_txt = "n/a" if p is None else f"{'Holm ' if adjusted else ''}p = {p:.3g}"
        verdict = c["verdict"] if c["verdict"] == "within noise" else f"{c['verdict']} is better"
        diff = "n/a" if c["diff"] is None else f"{c['diff']:+.4f}"
        lines.append(f"{c['a']} vs {c['b']}: diff {diff}, {p_txt} -> {verdict}")
    return "\n".join(lines)


def machine() -> dict:
    """Where a figure was measured, for result files."""
    import torch

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    return {"device": dev, "device_name": torch.cuda.get_device_name() if dev == "cuda" else
            (platform.processor() or platform.machine()), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version()}


def _finish(task: str, args, assignments: pd.DataFrame, outcomes: list[dict], started: float | None = None) -> int:
    keys = SUMMARY_KEYS[task]
    # Failed runs are named below the table, not averaged into it.
    failed = {o["run"] for o in outcomes if o["status"] == "failed"}
    ok = assignments[~assignments["run"].isin(failed)]
    table = summarize_runs(args.runs_dir, ok, keys)
    text = format_summary(table, keys)
    out_dir = grid_dir(args.runs_dir, args.grid)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.md").write_text(text + "\n")
    # Hidden, so core.logs reading this folder does not take it for a run's log.
    assignments.to_csv(out_dir / ".runs.csv", index=False)
    print(f"\nsummary over seeds (final values), logs in {out_dir}:\n{text}")
    if format_outcomes(outcomes):
        print(format_outcomes(outcomes))
    summary = verdict_summary(args.runs_dir, ok, VERDICT_KEY[task])
    if summary is not None:
        print(f"\nverdicts on final {summary['metric']} (alpha {summary['alpha']}, {summary['test']}):\n"
              + format_verdicts(summary))
        better = sorted({c["verdict"] for c in summary["comparisons"] if c["verdict"] != "within noise"})
        summary["verdict"] = ("no difference larger than the seed noise" if not better
                              else "better in at least one pair: " + ", ".join(better))
        print(f"verdict: {summary['verdict']}")
        if summary.get("summary"):  # core.compare's plain paragraph (CIs, seeds that would settle a gap)
            print(summary["summary"])
        summary["kind"] = "ablation-summary"  # how core.claims tells it from other result files
        summary["grid"] = {"task": task, "name": args.grid, "seeds": int(args.seeds),
                           "variants": list(dict.fromkeys(assignments["variant"])),
                           "config": {k: v for k, v in vars(args).items() if k != "func" and not callable(v)},
                           "command": "actlab " + " ".join(sys.argv[1:]) if sys.argv[1:] else None,
                           "wall_s": round(time.time() - started, 1) if started else None,
                           "backend": args.backend, "runs": outcomes,
                           "machine": machine(), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        payload = json.dumps(summary, indent=2, default=str) + "\n"
        (out_dir / ".summary.json").write_text(payload)  # hidden from core.logs, like .runs.csv
        if getattr(args, "out", None):
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(payload)
    return 1 if failed else 0


# -- bi-encoder ------------------------------------------------------------------------------
def run_biencoder_grid(args) -> int:
    from ..models.biencoder import PRESETS
    from ..train.biencoder import config_from_args, train_biencoder

    variants = parse_list(args.variants, list(PRESETS), "variants")
    if args.seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {args.seeds}")
    started = time.time()
    args.grid = _grid_name("biencoder", args.grid)
    base = config_from_args(args)
    out_dir = grid_dir(args.runs_dir, args.grid)
    runs = []
    for v in variants:
        for seed in range(1, args.seeds + 1):
            runs.append({"variant": v, "seed": seed, "config": {
                **base, "head": v, "seed": seed, "variant": v, "name": f"{args.grid}-{v}-seed{seed}",
                "text_log": str(out_dir / f"{v}_seed{seed}.log")}})
    _check_names(runs)
    check_backend(args)
    return _finish("biencoder", args, *execute("biencoder", args, runs, train_biencoder), started)


# -- MNIST MLP -------------------------------------------------------------------------------
def run_mnist_grid(args) -> int:
    from ..activations import names
    from ..models.mlp import NORMS

    acts = parse_list(args.activations, names(vector=False), "activations")
    norms = parse_list(args.norms, list(NORMS), "norms")
    if args.seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {args.seeds}")
    started = time.time()
    args.grid = _grid_name("mnist", args.grid)
    out_dir = grid_dir(args.runs_dir, args.grid)
    runs = []
    for act in acts:
        for norm in norms:
            v = act if norm == "none" else f"{act}+{norm}"
            for seed in range(1, args.seeds + 1):
                cfg = {"activation": act, "norm": norm, "seed": seed, "epochs": args.epochs, "max_steps": args.max_steps,
                       "runs_dir": args.runs_dir, "name": f"{args.grid}-{v}-seed{seed}", "device": args.device}
                runs.append({"variant": v, "seed": seed, "config": cfg, "log": out_dir / f"{v}_seed{seed}.log"})
    _check_names(runs)
    check_backend(args)
    from ..train.mnist import train_mnist

    assignments, outcomes = execute("mnist", args, runs, train_mnist)
    logs = {r["config"]["name"]: r["log"] for r in runs}
    for name in assignments["run"]:
        if RunStore(args.runs_dir).exists(name):
            write_epoch_log(args.runs_dir, name, logs[name])
    return _finish("mnist", args, assignments, outcomes, started)


def write_epoch_log(runs_dir, name: str, path: Path, eval_key: str = "acc/test") -> None:
    """The text log from the store, for trainers that do not write one: a line at each evaluation
    (once per epoch, or where --max-steps cut it short) with the latest value of every summary and
    dead-unit key up to that step."""
    import math

    with RunStore(runs_dir).open(name) as r:
        df = r.scalars()[0]
    df = df[df["value"].notna()]
    wanted = df["key"].isin([k for keys in SUMMARY_KEYS.values() for k in keys]) | df["key"].str.startswith("dead/")
    df = df[wanted]
    lines = []
    for row in df[df["key"] == eval_key].itertuples(index=False):
        upto = df[df["step"] <= row.step].drop_duplicates("key", keep="last")
        pairs = " ".join(f"{k}={v:.4f}" for k, v in zip(upto["key"], upto["value"]))
        epoch = math.ceil(row.epoch - 1e-9) if row.epoch is not None and math.isfinite(row.epoch) else 0
        lines.append(f"epoch={epoch} step={int(row.step)} {pairs}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(lines) + ("\n" if lines else ""))
