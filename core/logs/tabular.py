"""Tables: CSV (Lightning, Keras CSVLogger, W&B and MLflow exports) and JSON lines, one row per
logging call."""
from __future__ import annotations

import csv
import io
import json
import re

import numpy as np
import pandas as pd

from core.logs.names import _stem, infer_variant_seed
from core.logs.parsed import EPOCH_KEYS, MAX_UNPARSED_KEPT, STEP_KEYS, WALL_KEYS, LogParseError, ParsedLog, _empty
from core.runs import SCALAR_COLUMNS


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        k = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, k + "/"))
        else:
            out[k] = v
    return out


def _wide_to_scalars(wide: pd.DataFrame, run: str | pd.Series) -> pd.DataFrame:
    """One row per logging call, one column per metric (Lightning, Keras, W&B history, HF)."""
    lower = {c: str(c).strip().lower() for c in wide.columns}
    pick = lambda names: next((c for c in wide.columns if lower[c] in names), None)  # noqa: E731
    step_c, epoch_c, wall_c = pick(STEP_KEYS), pick(EPOCH_KEYS), pick(WALL_KEYS)
    num = wide.apply(pd.to_numeric, errors="coerce")
    n = len(wide)
    step = num[step_c] if step_c is not None else None
    epoch = num[epoch_c] if epoch_c is not None else pd.Series(np.nan, index=wide.index)
    if step is None or step.isna().all():
        step = epoch if epoch.notna().any() else pd.Series(np.arange(n), index=wide.index)
    # Lightning writes train and val on different rows; a row without a step takes the last one.
    step = step.ffill().fillna(0)
    wall = num[wall_c] if wall_c is not None else pd.Series(np.nan, index=wide.index)
    if wall.notna().any() and wall.max() > 1e11:  # milliseconds (MLflow)
        wall = wall / 1000.0
    skip = {step_c, epoch_c, wall_c, "_runtime"}
    metric_cols = [c for c in wide.columns if c not in skip and lower[c] not in ("_runtime", "run", "run_id", "name")
                   and num[c].notna().any()]
    frames = []
    for c in metric_cols:
        v = num[c]
        ok = v.notna()
        frames.append(pd.DataFrame({
            "run": run[ok].to_numpy(object) if isinstance(run, pd.Series) else run,
            "step": step[ok].to_numpy().astype(np.int64), "epoch": epoch[ok].to_numpy(float),
            "key": str(c).strip(), "value": v[ok].to_numpy(float), "wall_time": wall[ok].to_numpy(float)}))
    if not frames:
        return _empty()
    return pd.concat(frames, ignore_index=True)[SCALAR_COLUMNS]


def parse_csv(text: str, name: str = "<csv>") -> ParsedLog:
    first = text.lstrip("\ufeff").split("\n", 1)[0]
    sep = "\t" if first.count("\t") > first.count(",") else ","
    try:
        wide = pd.read_csv(io.StringIO(text), sep=sep, skip_blank_lines=True)
    except (pd.errors.ParserError, csv.Error, ValueError) as e:
        raise LogParseError(name, f"not a readable CSV table: {str(e).splitlines()[0]}") from None
    wide.columns = [str(c).strip().lstrip("\ufeff") for c in wide.columns]
    lower = {c.lower(): c for c in wide.columns}
    run = _stem(name)
    fmt, hints = "csv", {}
    if {"key", "value"} <= set(lower):
        # MLflow metric history: long already.
        runcol = lower.get("run_id") or lower.get("run")
        v = pd.to_numeric(wide[lower["value"]], errors="coerce")
        ok = v.notna()
        st = pd.to_numeric(wide[lower["step"]], errors="coerce") if "step" in lower else pd.Series(range(len(wide)))
        wt = pd.to_numeric(wide[lower["timestamp"]], errors="coerce") / 1000.0 if "timestamp" in lower else np.nan
        df = pd.DataFrame({"run": wide[runcol].astype(str) if runcol else run, "step": st.fillna(0).astype(np.int64),
                           "epoch": np.nan, "key": wide[lower["key"]].astype(str), "value": v, "wall_time": wt})[ok]
        fmt = "csv:mlflow-history"
    elif any(" - " in c for c in wide.columns):
        # W&B chart export: Step, "<run> - <metric>", "<run> - <metric>__MIN", "__MAX".
        step_c = lower.get("step") or lower.get("_step") or wide.columns[0]
        frames = []
        for c in wide.columns:
            if " - " not in c or c.endswith(("__MIN", "__MAX")):
                continue
            r, k = c.rsplit(" - ", 1)
            v = pd.to_numeric(wide[c], errors="coerce")
            ok = v.notna()
            frames.append(pd.DataFrame({"run": r.strip(), "step": pd.to_numeric(wide[step_c], errors="coerce")[ok].fillna(0).astype(np.int64),
                                        "epoch": np.nan, "key": k.strip(), "value": v[ok], "wall_time": np.nan}))
        df = pd.concat(frames, ignore_index=True) if frames else _empty()
        fmt = "csv:wandb-chart"
    elif {"name", "state"} <= set(lower) and ({"created", "runtime"} & set(lower)):
        # W&B runs table export: one row per run, its summary (final) values and config columns.
        names = wide[lower["name"]].astype(str)
        seeds = pd.to_numeric(wide[lower["seed"]], errors="coerce") if "seed" in lower else pd.Series(np.nan, index=wide.index)
        skip = [lower[k] for k in ("state", "notes", "user", "tags", "created", "runtime", "sweep", "seed") if k in lower]
        df = _wide_to_scalars(wide.drop(columns=skip), names)
        hints = {n: (infer_variant_seed(n)[0], int(s) if pd.notna(s) and s == int(s) else infer_variant_seed(n)[1])
                 for n, s in zip(names, seeds)}
        fmt = "csv:wandb-runs"
    elif ("run id" in lower or "run_id" in lower) and not ({"step", "_step", "epoch"} & set(lower)):
        # MLflow runs table: one row per run, final values only.
        idc = lower.get("name") or lower.get("run name") or lower.get("run id") or lower.get("run_id")
        skip = {lower.get(k) for k in ("start time", "duration", "end time", "run id", "run_id")}
        df = _wide_to_scalars(wide.drop(columns=[c for c in skip if c]).assign(step=0), wide[idc].astype(str))
        fmt = "csv:mlflow-runs"
    else:
        df = _wide_to_scalars(wide, run)
        if "_step" in lower:
            fmt = "csv:wandb-history"
        elif "step" in lower and "epoch" in lower:
            fmt = "csv:lightning"
        elif "epoch" in lower:
            fmt = "csv:keras"
    df = df.reset_index(drop=True)
    if not len(df):
        raise LogParseError(name, f"CSV has no numeric metric columns (columns: {', '.join(wide.columns[:8])})")
    log = ParsedLog(name, fmt, df[SCALAR_COLUMNS])
    if fmt == "csv:wandb-runs":
        log.variant_hint = hints
    return log


def _looks_like_csv(text: str) -> bool:
    lines = [l for l in text[:20000].split("\n")[:20] if l.strip()]
    if len(lines) < 2:
        return False
    sep = "\t" if lines[0].count("\t") > lines[0].count(",") else ","
    n = lines[0].count(sep)
    if n < 1 or "=" in lines[0]:
        return False
    header = [c.strip().strip('"') for c in lines[0].split(sep)]
    # A header names columns; a data row of a text log would have numbers in it.
    named = sum(bool(re.match(r"^[A-Za-z_]", c)) for c in header)
    return named >= len(header) - 1 and all(l.count(sep) >= n for l in lines[1:])


def parse_jsonl(text: str, name: str = "<jsonl>") -> ParsedLog:
    """One JSON object per line (our own metrics.jsonl, W&B history); a bad line is reported, not fatal."""
    s = text.strip().lstrip("\ufeff")
    run = _stem(name)
    recs, unparsed, n_bad = [], [], 0
    for no, line in enumerate(s.split("\n"), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            if not isinstance(r, dict):
                raise ValueError
            recs.append(_flatten(r))
        except ValueError:
            n_bad += 1
            if len(unparsed) < MAX_UNPARSED_KEPT:
                unparsed.append((no, line[:300]))
    if not recs:
        raise LogParseError(name, "not valid JSON or JSON lines (no line is a JSON object)")
    df = _wide_to_scalars(pd.DataFrame(recs), run)
    if not len(df):
        raise LogParseError(name, "JSON lines hold no numeric values")
    return ParsedLog(name, "jsonl", df, unparsed, n_bad)
