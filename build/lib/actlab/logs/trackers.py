"""Experiment trackers' run folders, each folder one run, found in a folder or a zip by their layout:

  MLflow   mlruns/<experiment>/<run id>/meta.yaml, metrics/<key> ("<timestamp ms> <value> <step>" lines;
           a key with "/" is a sub-folder), params/<name>, tags/mlflow.runName
  W&B      wandb/[offline-]run-<time>-<id>/files/wandb-history.jsonl (one JSON object per log call),
           else run-<id>.wandb (the transaction log an offline run leaves: core/logs/wandb_log.py),
           wandb-summary.json (final values; read only when there is no history), config.yaml

The run is named by MLflow's run name or W&B's run folder; a `seed` param or config value is the seed.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import PurePosixPath

import numpy as np
import pandas as pd

from .names import infer_variant_seed
from .parsed import LoadResult, LogParseError, ParsedLog
from .tabular import _flatten, _wide_to_scalars
from ..store.runs import SCALAR_COLUMNS

_MLFLOW_METRIC = re.compile(r"^(?P<run>(?:.*/)?[^/]+)/metrics/(?P<key>.+)$")
_WANDB_FILE = re.compile(r"^(?P<run>(?:.*/)?(?:offline-)?run-[^/]+)/(?:files/(?P<file>wandb-history\.jsonl|wandb-summary\.json|config\.yaml)"
                         r"|run-[^/]+\.wandb)$")
_WANDB_RUN_DIR = re.compile(r"^(?:offline-)?run-(?:\d{8}_\d{6}-)?(?P<id>\w+)$")


def find_runs(paths: list[str]) -> dict[str, tuple[str, list[str]]]:
    """{run folder: (kind, [member paths])} for the tracker runs among `paths` (posix, relative)."""
    have = set(paths)
    runs: dict[str, tuple[str, list[str]]] = {}
    for p in paths:
        m = _MLFLOW_METRIC.match(p)
        if m and f"{m['run']}/meta.yaml" in have:
            runs.setdefault(m["run"], ("mlflow", []))[1].append(p)
            continue
        m = _WANDB_FILE.match(p)
        if m:
            runs.setdefault(m["run"], ("wandb", []))[1].append(p)
    runs = {r: v for r, v in runs.items() if v[0] == "mlflow" or any(p.endswith((".jsonl", ".json", ".wandb")) for p in v[1])}
    for root, (kind, members) in runs.items():
        # Everything else in the run folder (artifacts, output.log, metadata) belongs to this run
        # and is not read as a run of its own.
        members += [p for p in paths if p.startswith(root + "/") and p not in members]
        if kind == "mlflow" and str(PurePosixPath(root).parent / "meta.yaml") in have:
            members.append(str(PurePosixPath(root).parent / "meta.yaml"))  # the experiment's, not a log
    return runs


def load_runs(runs: dict[str, tuple[str, list[str]]], blobs: dict[str, bytes], prefix: str = "") -> LoadResult:
    """Each tracker run as one ParsedLog; a run that cannot be read is an error naming its folder."""
    res = LoadResult()
    for root, (kind, members) in runs.items():
        shown = f"{prefix}/{root}" if prefix else root
        files = {p[len(root) + 1:]: blobs[p] for p in members if p in blobs and p.startswith(root + "/")}
        try:
            log = (parse_mlflow_run if kind == "mlflow" else parse_wandb_run)(root, files)
            log.name = shown
            res.logs.append(log)
        except LogParseError as e:
            res.errors.append((shown, e.problem))
    return res


def _text(files: dict, name: str) -> str:
    return files.get(name, b"").decode("utf-8", "replace").strip()


def _int(s) -> int | None:
    try:
        f = float(s)
    except (TypeError, ValueError):
        return None
    return int(f) if math.isfinite(f) and f == int(f) else None


def _hint(name: str, seed) -> tuple[str, int | None]:
    variant, name_seed = infer_variant_seed(name)
    return variant, seed if seed is not None else name_seed


def parse_mlflow_run(root: str, files: dict[str, bytes]) -> ParsedLog:
    meta = _text(files, "meta.yaml")
    m = re.search(r"^run_name:\s*['\"]?([^'\"\n]+)", meta, re.M)
    name = _text(files, "tags/mlflow.runName") or (m.group(1).strip() if m else PurePosixPath(root).name)
    frames, bad = [], []
    for rel, data in files.items():
        if not rel.startswith("metrics/"):
            continue
        key = rel[len("metrics/"):]
        rows = []
        for no, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            parts = line.split()
            try:
                ts, value = float(parts[0]), float(parts[1])
                step = int(parts[2]) if len(parts) > 2 else len(rows)
            except (IndexError, ValueError):
                if line.strip():
                    bad.append((no, f"metrics/{key}: {line[:200]}"))
                continue
            if not -2**62 < step < 2**62:
                bad.append((no, f"metrics/{key}: step out of range: {line[:200]}"))
                continue
            rows.append((step, value, ts / 1000.0))
        if rows:
            st, v, w = zip(*rows)
            frames.append(pd.DataFrame({"run": name, "step": np.array(st, np.int64), "epoch": np.nan, "key": key,
                                        "value": np.array(v, float), "wall_time": np.array(w, float)}))
    if not frames:
        raise LogParseError(root, "MLflow run folder has no readable metrics/ files")
    log = ParsedLog(root, "mlflow-run", pd.concat(frames, ignore_index=True)[SCALAR_COLUMNS], bad[:200], len(bad))
    log.variant_hint = _hint(name, _int(_text(files, "params/seed")))
    return log


def _scalars_only(rec: dict) -> dict:
    """W&B history rows hold media ({"_type": "image-file", "width": ...}) and internals (_wandb):
    neither is a metric."""
    out = {}
    for k, v in rec.items():
        if isinstance(v, dict) and "_type" in v:
            continue
        if k.startswith("_") and k not in ("_step", "_timestamp"):
            continue
        out[k] = v
    return _flatten(out)


def _is_wandb_log(rel: str) -> bool:
    return "/" not in rel and rel.startswith("run-") and rel.endswith(".wandb")


def parse_wandb_run(root: str, files: dict[str, bytes]) -> ParsedLog:
    parts = [p for p in PurePosixPath(root).parts if p not in ("wandb", "files", "latest-run")]
    run_dir = parts[-1] if parts else root
    m = _WANDB_RUN_DIR.match(run_dir)
    # relu_seed1/wandb/run-.../ names the run by the folder above; else the run id does.
    name = "/".join(parts[:-1]) or (m.group("id") if m else run_dir)
    recs, bad = [], []
    history = files.get("files/wandb-history.jsonl")
    if history is not None:
        for no, line in enumerate(history.decode("utf-8", "replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                if not isinstance(r, dict):
                    raise ValueError
                recs.append(_scalars_only(r))
            except (ValueError, RecursionError):
                bad.append((no, line[:300]))
        fmt = "wandb-run"
    elif any(_is_wandb_log(p) for p in files):
        from .wandb_log import history as wandb_history

        for p in sorted(p for p in files if _is_wandb_log(p)):
            rows, warnings = wandb_history(files[p], f"{root}/{p}")
            recs += [_scalars_only(r) for r in rows]
            bad += [(0, w) for w in warnings]
        fmt = "wandb-run:log"
    elif "files/wandb-summary.json" in files:
        try:
            r = json.loads(_text(files, "files/wandb-summary.json") or "null")
        except (ValueError, RecursionError):
            raise LogParseError(root, "files/wandb-summary.json is not valid JSON") from None
        if isinstance(r, dict):
            recs.append(_scalars_only(r))
        fmt = "wandb-run:summary"
    else:
        raise LogParseError(root, "W&B run folder has neither files/wandb-history.jsonl nor wandb-summary.json")
    df = _wide_to_scalars(pd.DataFrame(recs), name) if recs else None
    if df is None or not len(df):
        raise LogParseError(root, "W&B run holds no numeric metrics")
    log = ParsedLog(root, fmt, df.reset_index(drop=True)[SCALAR_COLUMNS], bad[:200], len(bad))
    cfg = _text(files, "files/config.yaml")
    s = re.search(r"^seed:[ \t]*\n(?:[ \t]+.*\n)*?[ \t]+value:[ \t]*(\S+)", cfg + "\n", re.M)
    log.variant_hint = _hint(name, _int(s.group(1)) if s else None)
    return log
