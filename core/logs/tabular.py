"""Tables: CSV (Lightning, Keras CSVLogger, W&B and MLflow exports) and JSON lines, one row per
logging call."""
from __future__ import annotations

import csv
import io
import json
import re

import numpy as np
import pandas as pd

from .guards import cap_points, cap_series, check_columns, drop_long_lines, int64_steps
from .limits import DEFAULT, Limits
from .names import _stem, infer_variant_seed
from .parsed import EPOCH_KEYS, MAX_UNPARSED_KEPT, STEP_KEYS, WALL_KEYS, LogParseError, ParsedLog, _empty
from ..store.runs import SCALAR_COLUMNS


def _flatten(d: dict, prefix: str = "", depth: int = 0) -> dict:
    if depth > DEFAULT.json_depth:
        # A ValueError, so a JSON line this deep is one bad line, not a failed file.
        raise ValueError(f"nested deeper than the limit json_depth={DEFAULT.json_depth}")
    out = {}
    for k, v in d.items():
        k = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, k + "/", depth + 1))
        else:
            out[k] = v
    return out


def records_frame(records, chunk: int = 20_000) -> pd.DataFrame:
    """pd.DataFrame(list of dicts), built a chunk at a time: the dicts cost ~300 bytes a record, the
    frame's float columns 8 bytes a value, so only one chunk of dicts is alive at once."""
    frames, buf = [], []
    for r in records:
        buf.append(r)
        if len(buf) >= chunk:
            frames.append(pd.DataFrame(buf))
            buf = []
    if buf or not frames:
        frames.append(pd.DataFrame(buf))
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True, sort=False)


def _float(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError, OverflowError):
        return float("nan")


def _numeric(col: pd.Series) -> pd.Series:
    """pd.to_numeric(errors="coerce"), except that a JSON integer too big for a float (a Python int
    of 400 digits) is NaN instead of an OverflowError."""
    try:
        return pd.to_numeric(col, errors="coerce")
    except (OverflowError, TypeError, ValueError):
        return pd.to_numeric(col.map(_float), errors="coerce")


def _wide_to_scalars(wide: pd.DataFrame, run: str | pd.Series, name: str = "<table>", warnings: list | None = None,
                     lim: Limits = DEFAULT) -> pd.DataFrame:
    """One row per logging call, one column per metric (Lightning, Keras, W&B history, HF)."""
    warnings = [] if warnings is None else warnings
    check_columns(wide.shape[1], name, lim)
    keep = cap_series(list(wide.columns), name, warnings, lim)
    if len(keep) < wide.shape[1]:
        wide = wide[keep]
    n_keep = cap_points(len(wide), name, warnings, lim)
    if n_keep < len(wide):
        wide = wide.iloc[:n_keep]
        run = run.iloc[:n_keep] if isinstance(run, pd.Series) else run
    cols = list(wide.columns)
    lower = [str(c).strip().lower() for c in cols]
    pick = lambda names: next((j for j, c in enumerate(lower) if c in names), None)  # noqa: E731
    step_j, epoch_j, wall_j = pick(STEP_KEYS), pick(EPOCH_KEYS), pick(WALL_KEYS)
    mat = _matrix(wide)
    n = len(wide)
    nan = np.full(n, np.nan)
    step = mat[:, step_j] if step_j is not None else None
    epoch = mat[:, epoch_j] if epoch_j is not None else nan
    if step is None or np.isnan(step).all():
        step = epoch if not np.isnan(epoch).all() else np.arange(n, dtype=float)
    # Lightning writes train and val on different rows; a row without a step takes the last one.
    step = int64_steps(pd.Series(step).ffill().to_numpy())
    wall = mat[:, wall_j] if wall_j is not None else nan
    if not np.isnan(wall).all() and np.nanmax(wall) > 1e11:  # milliseconds (MLflow)
        wall = wall / 1000.0
    ok = ~np.isnan(mat)
    skip = {step_j, epoch_j, wall_j}
    metric_js = [j for j, c in enumerate(lower) if j not in skip and c not in ("_runtime", "run", "run_id", "name")]
    counts = ok.sum(axis=0)
    metric_js = [j for j in metric_js if counts[j]]
    if not metric_js:
        return _empty()
    # One pass into preallocated columns: a frame per metric and a concat would hold every row twice,
    # and cost ~1 ms a column (10,000 columns: 10 s).
    total = int(counts[metric_js].sum())
    out_step, out_epoch = np.empty(total, np.int64), np.empty(total)
    out_value, out_wall = np.empty(total), np.empty(total)
    out_key = np.empty(total, np.int32)
    runs = run.to_numpy(object) if isinstance(run, pd.Series) else None
    out_run = np.empty(total, object) if runs is not None else None
    o = 0
    for code, j in enumerate(metric_js):
        sel = ok[:, j]
        c = int(counts[j])
        out_value[o:o + c] = mat[sel, j]
        out_step[o:o + c] = step[sel]
        out_epoch[o:o + c] = epoch[sel]
        out_wall[o:o + c] = wall[sel]
        out_key[o:o + c] = code
        if runs is not None:
            out_run[o:o + c] = runs[sel]
        o += c
    names = [str(cols[j]).strip() for j in metric_js]
    if len(set(names)) == len(names):
        key = pd.Categorical.from_codes(out_key, categories=names)
    else:  # " acc" and "acc": two columns, one key name; categories must be unique
        key = np.array(names, dtype=object)[out_key]
    if out_run is None:
        out_run = pd.Categorical.from_codes(np.zeros(total, np.int8), categories=[run])
    return pd.DataFrame({"run": out_run, "step": out_step, "epoch": out_epoch, "key": key, "value": out_value,
                         "wall_time": out_wall}, copy=False)


def _matrix(wide: pd.DataFrame) -> np.ndarray:
    """Every column as float64 (NaN where not a number), column-major so a column is one slice."""
    mat = np.empty(wide.shape, dtype=float, order="F")
    for j in range(wide.shape[1]):
        col = wide.iloc[:, j]
        mat[:, j] = col.to_numpy(float, na_value=np.nan) if col.dtype.kind in "biuf" else _numeric(col).to_numpy(float)
    return mat


def parse_csv(text: str, name: str = "<csv>", lim: Limits = DEFAULT) -> ParsedLog:
    warnings: list[str] = []
    text = text.lstrip("\ufeff")
    nl = text.find("\n", 0, lim.line_chars + 1)
    first = text[:nl if nl != -1 else lim.line_chars + 1]
    sep = "\t" if first.count("\t") > first.count(",") else ","
    # Before pandas sees it: a 100,000-column table costs over a minute to convert.
    check_columns(first.count(sep) + 1, name, lim)
    if nl == -1 and len(text) > lim.line_chars:
        raise LogParseError(name, f"the CSV header is over the limit line_chars={lim.line_chars:,}")
    text = drop_long_lines(text, name, warnings, lim)
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
        v = _numeric(wide[lower["value"]])
        ok = v.notna()
        st = _numeric(wide[lower["step"]]) if "step" in lower else pd.Series(range(len(wide)))
        wt = _numeric(wide[lower["timestamp"]]) / 1000.0 if "timestamp" in lower else np.nan
        df = pd.DataFrame({"run": wide[runcol].astype(str) if runcol else run, "step": int64_steps(st.to_numpy(float)),
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
            v = _numeric(wide[c])
            ok = v.notna()
            frames.append(pd.DataFrame({"run": r.strip(), "step": int64_steps(_numeric(wide[step_c])[ok].to_numpy(float)),
                                        "epoch": np.nan, "key": k.strip(), "value": v[ok], "wall_time": np.nan}))
        df = pd.concat(frames, ignore_index=True) if frames else _empty()
        fmt = "csv:wandb-chart"
    elif {"name", "state"} <= set(lower) and ({"created", "runtime"} & set(lower)):
        # W&B runs table export: one row per run, its summary (final) values and config columns.
        names = wide[lower["name"]].astype(str)
        seeds = _numeric(wide[lower["seed"]]) if "seed" in lower else pd.Series(np.nan, index=wide.index)
        skip = [lower[k] for k in ("state", "notes", "user", "tags", "created", "runtime", "sweep", "seed") if k in lower]
        df = _wide_to_scalars(wide.drop(columns=skip), names, name, warnings, lim)
        hints = {n: (infer_variant_seed(n)[0], int(s) if np.isfinite(s) and s == int(s) else infer_variant_seed(n)[1])
                 for n, s in zip(names, seeds)}
        fmt = "csv:wandb-runs"
    elif ("run id" in lower or "run_id" in lower) and not ({"step", "_step", "epoch"} & set(lower)):
        # MLflow runs table: one row per run, final values only.
        idc = lower.get("name") or lower.get("run name") or lower.get("run id") or lower.get("run_id")
        skip = {lower.get(k) for k in ("start time", "duration", "end time", "run id", "run_id")}
        df = _wide_to_scalars(wide.drop(columns=[c for c in skip if c]).assign(step=0), wide[idc].astype(str),
                              name, warnings, lim)
        fmt = "csv:mlflow-runs"
    else:
        df = _wide_to_scalars(wide, run, name, warnings, lim)
        if "_step" in lower:
            fmt = "csv:wandb-history"
        elif "step" in lower and "epoch" in lower:
            fmt = "csv:lightning"
        elif "epoch" in lower:
            fmt = "csv:keras"
    df = df.reset_index(drop=True)
    if not len(df):
        raise LogParseError(name, f"CSV has no numeric metric columns (columns: {', '.join(wide.columns[:8])})")
    log = ParsedLog(name, fmt, df[SCALAR_COLUMNS], warnings=warnings)
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


def parse_jsonl(text: str, name: str = "<jsonl>", lim: Limits = DEFAULT) -> ParsedLog:
    """One JSON object per line (our own metrics.jsonl, W&B history); a bad line is reported, not fatal."""
    warnings: list[str] = []
    s = drop_long_lines(text.strip().lstrip("\ufeff"), name, warnings, lim)
    run = _stem(name)
    unparsed, bad, good = [], [0], [0]

    def records():
        for no, line in enumerate(s.split("\n"), 1):  # noqa: F821 (s is deleted only after this generator is consumed)
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                if not isinstance(r, dict):
                    raise ValueError
                flat = _flatten(r)
                good[0] += 1
                yield flat
            except (ValueError, RecursionError):
                bad[0] += 1
                if len(unparsed) < MAX_UNPARSED_KEPT:
                    unparsed.append((no, line[:300]))

    wide = records_frame(records())
    n_bad = bad[0]
    if not good[0]:
        raise LogParseError(name, "not valid JSON or JSON lines (no line is a JSON object)")
    del s
    df = _wide_to_scalars(wide, run, name, warnings, lim)
    if not len(df):
        raise LogParseError(name, "JSON lines hold no numeric values")
    return ParsedLog(name, "jsonl", df, unparsed, n_bad, warnings=warnings)
