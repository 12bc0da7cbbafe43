"""Training logs in any common format -> one tidy scalar table (run, step, epoch, key, value, wall_time).

Readers: our run store, key=value text (the ablation runner's format), plain-text training logs in
the shapes people print, JSON lines, CSV (Lightning, Keras, W&B and MLflow exports), Hugging Face
trainer_state.json, TensorBoard event files, and zips of any of those. Uploaded files are data:
nothing here unpickles, imports or executes them, and zips are read in memory only.

Each file either parses or raises LogParseError naming the file and what is wrong; `load_*`
collect those per file so one bad file never stops the others.
"""
from __future__ import annotations

import csv
import gc
import hashlib
import io
import itertools
import json
import math
import os
import re
import struct
import tempfile
import warnings
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from core import UserError
from core.runs import SCALAR_COLUMNS, RunStore

# Matches .streamlit/config.toml's maxUploadSize so the CLI and the page refuse the same files.
MAX_FILE_BYTES = 200 * 1024 * 1024
# A zip is expanded in memory, so its claimed and actual expanded size are both bounded.
MAX_ZIP_TOTAL_BYTES = 512 * 1024 * 1024
MAX_ZIP_RATIO = 200  # deflate tops out near 1000:1; real logs compress 5-20:1
MAX_ZIP_MEMBERS = 5000
MAX_UNPARSED_KEPT = 200  # line reports kept per file; the count is always exact

STEP_KEYS = ("step", "global_step", "_step", "iteration", "iter", "it", "trainer/global_step", "batch")
EPOCH_KEYS = ("epoch", "ep")
WALL_KEYS = ("wall_time", "_timestamp", "timestamp", "time")
_LEVEL_WORDS = {"info", "debug", "warning", "warn", "error", "critical", "trace", "notice"}
# What people print -> the short names the rest of ActLab uses.
_KEY_ALIASES = {"accuracy": "acc", "average_loss": "loss", "avg_loss": "loss", "mean_loss": "loss",
                "iteration": "step", "iter": "step", "global_step": "step"}


class LogParseError(UserError):
    """A file that cannot be read as a log. The message names the file."""

    def __init__(self, name: str, problem: str):
        self.name, self.problem = name, problem
        super().__init__(f"{name}: {problem}")


@dataclass
class ParsedLog:
    name: str                      # file name, or path inside a zip
    format: str                    # text, keyvalue, jsonl, csv, trainer_state, tensorboard, store
    df: pd.DataFrame               # SCALAR_COLUMNS; `run` may hold several runs (W&B exports)
    unparsed: list = field(default_factory=list)  # [(line_no, text)], at most MAX_UNPARSED_KEPT
    n_unparsed: int = 0
    percent_keys: list = field(default_factory=list)  # keys printed as "98.2%", stored as 0.982
    warnings: list = field(default_factory=list)
    sha256: str = ""
    variant_hint: tuple | None = None  # (variant, seed) from a store run's config

    @property
    def runs(self) -> list[str]:
        return list(dict.fromkeys(self.df["run"].tolist())) if len(self.df) else []


@dataclass
class LoadResult:
    logs: list[ParsedLog] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (file, what is wrong)

    def extend(self, other: "LoadResult"):
        self.logs += other.logs
        self.errors += other.errors

    def scalars(self) -> pd.DataFrame:
        frames = [p.df for p in self.logs if len(p.df)]
        return pd.concat(frames, ignore_index=True) if frames else _empty()

    def run_table(self) -> pd.DataFrame:
        """One row per run: run, file, format, variant, seed, n_points (the editable part on the page)."""
        rows = []
        for p in self.logs:
            counts = p.df.groupby("run", sort=False, observed=True).size() if len(p.df) else {}
            for run in p.runs:
                variant, seed = infer_variant_seed(run if run != _stem(p.name) else p.name)
                rows.append({"run": run, "file": p.name, "format": p.format, "variant": variant,
                             "seed": seed, "n_points": int(counts[run])})
        return pd.DataFrame(rows, columns=["run", "file", "format", "variant", "seed", "n_points"])


def _empty() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(
        SCALAR_COLUMNS, ["object", "int64", "float64", "object", "float64", "float64"])})


def _stem(name: str) -> str:
    p = PurePosixPath(name.replace("\\", "/"))
    stem = p.name
    if "tfevents" in stem:
        # events.out.tfevents.<time>.<host> says nothing; the folder is the run.
        return str(p.parent) if str(p.parent) != "." else stem
    for ext in (".log", ".txt", ".jsonl", ".json", ".csv", ".tsv", ".out"):
        if stem.lower().endswith(ext):
            return str(p.parent / stem[: -len(ext)]) if str(p.parent) != "." else stem[: -len(ext)]
    return str(p)


# ----------------------------------------------------------------------------------------------
# variant / seed from names: with_relu_seed2.log, without_layernorm/run-3/metrics.csv, relu/s1
_SEED_WHOLE = re.compile(r"^(?:seed|run|rep|trial|s|r)[_\-=]?(\d+)$|^(\d+)$", re.I)
_SEED_SUFFIX = re.compile(r"^(?P<variant>.+?)[_\-.](?:seed|run|rep|trial|s)[_\-=]?(?P<seed>\d+)$", re.I)
# Names that say nothing about the variant: the file inside a run folder.
_GENERIC_NAMES = {"metrics", "log", "logs", "train", "training", "trainer_state", "history", "events",
                  "output", "stdout", "results", "progress", "scalars", "version_0", "lightning_logs"}


def infer_variant_seed(path: str) -> tuple[str, int | None]:
    parts = [p for p in _stem(path).replace("\\", "/").split("/") if p and p not in (".", "..")]
    parts = [p for p in parts if not p.startswith("events.out.tfevents")]
    seed, variant = None, None
    for part in reversed(parts):
        low = part.lower()
        if low in _GENERIC_NAMES or re.fullmatch(r"version_\d+", low):
            continue
        m = _SEED_WHOLE.match(part)
        if m and seed is None:
            seed = int(m.group(1) or m.group(2))
            continue
        m = _SEED_SUFFIX.match(part)
        if m:
            if seed is None:
                seed = int(m.group("seed"))
            variant = m.group("variant")
        else:
            variant = part
        break
    return (variant or (parts[-1] if parts else path)), seed


# ----------------------------------------------------------------------------------------------
# plain text
_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?i:nan|inf(?:inity)?)"
_KEY = r"[A-Za-z_][\w./@\-]*(?:[ \t][A-Za-z_][\w./@\-]*)*"
# `Accuracy: 9812/10000 (98.12%)` is a count over a total: the fraction is exact, the % rounded.
_PAIR = re.compile(
    rf"(?<![\w./@\-])(?P<key>{_KEY})(?P<sep>[ \t]*[=:][ \t]*|[ \t]+)"
    rf"(?P<val>{_NUM})"
    rf"(?:(?P<frac>/(?P<den>\d+)(?:[ \t]*\([ \t]*(?:{_NUM})[ \t]*%[ \t]*\))?)|(?P<pct>[ \t]*%))?"
    r"(?![\w./%])")
_SET_PREFIX = re.compile(r"^\s*(train|training|val|valid|validation|test|eval|dev)\s+set\s*:", re.I)
_HAS_DIGIT = re.compile(r"\d")


def _norm_key(raw: str) -> str:
    words = raw.split()
    while len(words) > 1 and words[0].lower() in _LEVEL_WORDS:
        words = words[1:]
    # "Train Epoch: 1" and "INFO step 1200": the last word is the counter.
    if len(words) > 1 and words[-1].lower() in STEP_KEYS + EPOCH_KEYS:
        words = words[-1:]
    key = "_".join(w.lower() for w in words) if len(words) > 1 or raw[:1].isupper() else words[0]
    return _KEY_ALIASES.get(key, key)


def _line_pairs(line: str):
    """[(key, start, end, has_den, has_pct)] for each key/value pair found in one line."""
    prefix = ""
    m = _SET_PREFIX.match(line)
    if m:
        prefix = {"training": "train", "valid": "val", "validation": "val"}.get(m.group(1).lower(), m.group(1).lower()) + "/"
    out = []
    for p in _PAIR.finditer(line):
        key = _norm_key(p.group("key"))
        if prefix and key not in STEP_KEYS + EPOCH_KEYS:
            key = prefix + key
        out.append((key, p.start(), p.end(), p.start("val"), p.group("den") is not None, p.group("pct") is not None))
    return out


def _line_values(line: str):
    vals = []
    for p in _PAIR.finditer(line):
        v = float(p.group("val"))
        if p.group("den") is not None:
            den = float(p.group("den"))
            v = v / den if den else math.nan
        elif p.group("pct") is not None:
            v /= 100.0
        vals.append(v)
    return vals


def _literal(s: str) -> str:
    # Between pairs: timestamps and counters vary line to line, so digits and blanks generalise.
    out = []
    for piece in re.split(r"(\d+|[ \t]+)", s):
        if not piece:
            continue
        out.append(r"\d+" if piece.isdigit() else r"[ \t]+" if piece.isspace() else re.escape(piece))
    return "".join(out)


def _template(line: str, pairs, capture: bool = True) -> tuple[str, list]:
    """A regex that matches every line printed by the same print statement as `line`."""
    rx, pos, spec = [], 0, []
    o = "(" if capture else "(?:"
    for key, start, end, vstart, den, pct in pairs:
        rx.append(_literal(line[pos:start]))
        # The key and separator stay literal: "top1 acc" must not match "top5 acc".
        head = line[start:vstart]
        rx.append("".join(r"[ \t]+" if c.isspace() else re.escape(c) for c in re.split(r"([ \t]+)", head) if c)
                  .replace(r"[ \t]+[ \t]+", r"[ \t]+"))
        if den:
            rx.append(o + _NUM + ")/" + o + r"\d+)" + rf"(?:[ \t]*\([ \t]*(?:{_NUM})[ \t]*%[ \t]*\))?")
        elif pct:
            rx.append(rf"{o}{_NUM})[ \t]*%")
        else:
            rx.append(rf"{o}{_NUM})")
        spec.append((key, den, pct))
        pos = end
    rx.append(_literal(line[pos:]))
    return "".join(rx), spec


# A NUM can start with these and end with those; a token touching a number must avoid them.
_NUM_CHARS = set("0123456789.+-eEnNaAiIfFtTyY")
_NUM_START, _NUM_END = set("0123456789.+-nNiI"), set("0123456789.nNfFyY")


def _fixed_tokens(line: str, pairs) -> list[str] | None:
    """The non-number text of a line as whitespace-free tokens, if deleting them from a block of
    such lines can leave only the numbers: no digits between pairs (those are generalised, so they
    vary), no count-over-total values, and no token that could merge with a number."""
    text, pos = [], 0
    for key, start, end, vstart, den, pct in pairs:
        if den or _HAS_DIGIT.search(line[pos:start]):
            return None
        text.append(line[pos:vstart])
        if pct:
            text.append("%")
        pos = end
    if _HAS_DIGIT.search(line[pos:]):
        return None
    text.append(line[pos:])
    tokens = set(" ".join(text).split())
    for t in tokens:
        if not (set(t) - _NUM_CHARS) or t[0] in _NUM_END or t[-1] in _NUM_START:
            return None
    return sorted(tokens, key=len, reverse=True)  # longest first: "step=" before "p="


def parse_text(text: str, name: str = "<text>", regex: str | None = None, fast: bool = True) -> ParsedLog:
    """Plain-text logs. `regex` (named groups) overrides auto-detection. `fast` matches whole files
    against per-print-statement templates (one C-level regex pass) instead of line by line."""
    if "\r" in text:
        # tqdm redraws with bare \r; each redraw is its own line for us.
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not _HAS_DIGIT.search(text):
        raise LogParseError(name, "contains no numbers, so no metrics could be read")
    if regex:
        return _parse_with_regex(text, name, regex)
    # Millions of small tuples from findall would set off the cyclic GC again and again; they hold
    # no cycles, so it is paused for the parse.
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        return _parse_text_auto(text, name, fast)
    finally:
        if gc_was_on:
            gc.enable()


class _Rows:
    """Values collected per key as (line numbers, values) chunks, each chunk in line order.
    Keys are ordered by where they first appear (line, then position in the line), so the template
    path and the line-by-line path give the same table without sorting millions of rows."""

    def __init__(self):
        self.chunks: dict[str, list] = {}
        self.first: dict[str, tuple] = {}

    def add(self, key: str, pos: int, lines: np.ndarray, values: np.ndarray):
        if len(lines):
            self.chunks.setdefault(key, []).append((lines, values))
            self.first[key] = min(self.first.get(key, (math.inf, 0)), (int(lines[0]), pos))

    def arrays(self):
        keys = sorted(self.chunks, key=self.first.__getitem__)
        lines, vals, sizes = [], [], []
        for k in keys:
            ls, vs = zip(*self.chunks[k])
            l, v = (ls[0], vs[0]) if len(ls) == 1 else (np.concatenate(ls), np.concatenate(vs))
            if len(ls) > 1:
                o = np.argsort(l, kind="stable")
                l, v = l[o], v[o]
            lines.append(l)
            vals.append(v)
            sizes.append(len(l))
        kc = np.repeat(np.arange(len(keys), dtype=np.int32), sizes)
        return keys, np.concatenate(lines).astype(np.int64, copy=False), kc, np.concatenate(vals).astype(float, copy=False)


def _parse_text_auto(text: str, name: str, fast: bool) -> ParsedLog:
    rows = _Rows()
    percent, unparsed, n_unparsed = set(), [], 0
    all_lines = text.split("\n")
    line_nos, pending = np.arange(1, len(all_lines) + 1), all_lines
    for _ in range(8 if fast else 0):
        if len(pending) < 64:
            break
        first = next(((l, pr) for l in pending[:2000] if (pr := _line_pairs(l))), None)
        if first is None:
            break
        rx, spec = _template(*first)
        taken = _take_template_token_path(_template(*first, capture=False)[0], spec, _fixed_tokens(*first),
                                          pending, all_lines, text) \
            or _take_template_capture_path(rx, spec, pending, all_lines, text)
        if taken is None:
            break
        hit, columns = taken
        taken_lines = line_nos if hit.all() else line_nos[hit]
        for pos, ((key, den, pct), v) in enumerate(zip(spec, columns)):
            if pct:
                percent.add(key)
            rows.add(key, pos, taken_lines, v)
        keep = ~hit
        line_nos = line_nos[keep]
        pending = list(itertools.compress(pending, keep))
    # Whatever no template took: line by line.
    one: dict[str, tuple] = {}
    for no, line in zip(line_nos.tolist(), pending):
        if not line.strip():
            continue
        pairs = _line_pairs(line)
        if not pairs:
            n_unparsed += 1
            if len(unparsed) < MAX_UNPARSED_KEPT:
                unparsed.append((no, line[:300]))
            continue
        for pos, ((key, _s, _e, _v, _den, pct), v) in enumerate(zip(pairs, _line_values(line))):
            if pct:
                percent.add(key)
            ls, vs, _ = one.setdefault(key, ([], [], (no, pos)))
            ls.append(no)
            vs.append(v)
    for key, (ls, vs, (no, pos)) in one.items():
        rows.add(key, pos, np.array(ls, dtype=np.int64), np.array(vs, dtype=float))
        rows.first[key] = min(rows.first[key], (no, pos))
    if not rows.chunks:
        raise LogParseError(name, f"no 'key value' pairs found in {len(all_lines)} lines; expected lines like "
                                  "'epoch=3 acc=0.91' or 'Epoch 3 | loss 0.41' (or give a regex)")
    df = _lines_to_scalars(*rows.arrays(), _stem(name), len(all_lines))
    fmt = "keyvalue" if re.search(r"^\s*\w[\w/.\-]*=[-+.\d]", text[:2000], re.M) else "text"
    if len(df) == 0:
        raise LogParseError(name, "found step/epoch counters but no metric values")
    return ParsedLog(name, fmt, df, sorted(unparsed), n_unparsed, sorted(percent))


def _hits(catch_all, pending) -> np.ndarray | None:
    if len(catch_all) != len(pending):  # a template that can match across lines: stay safe
        return None
    # map(bool, ...) runs in C: a line is taken when the catch-all group is empty and the line is not.
    hit = ~np.fromiter(map(bool, catch_all), bool, len(pending))
    hit &= np.fromiter(map(bool, pending), bool, len(pending))
    return hit if hit.sum() >= 2 else None


def _take_template_token_path(rx, spec, tokens, pending, all_lines, text):
    """One regex pass that only says which lines match (no capture groups, so no object per value);
    then the fixed tokens are deleted from those lines and numpy parses what is left, in C."""
    if tokens is None:
        return None
    block = text if pending is all_lines else "\n".join(pending)
    hit = _hits(re.compile(rf"^(?:{rx})$|^(.*)$", re.M).findall(block), pending)
    if hit is None:
        return None
    joined = "\n".join(itertools.compress(pending, hit))
    for t in tokens:
        joined = joined.replace(t, " ")
    nums = _numbers(joined)
    if nums is None or nums.size != int(hit.sum()) * len(spec):
        return None
    table = nums.reshape(-1, len(spec))
    return hit, [np.ascontiguousarray(table[:, i]) / (100.0 if pct else 1.0) for i, (_, _, pct) in enumerate(spec)]


def _take_template_capture_path(rx, spec, pending, all_lines, text):
    block = text if pending is all_lines else "\n".join(pending)
    found = re.compile(rf"^(?:{rx})$|^(.*)$", re.M).findall(block)
    if not found:
        return None
    cols = list(zip(*found))
    hit = _hits(cols[-1], pending)
    if hit is None:
        return None
    everywhere = bool(hit.all())
    out, g = [], 0
    for _key, den, pct in spec:
        v = _to_float(cols[g], hit, everywhere)
        g += 1
        if den:
            d = _to_float(cols[g], hit, everywhere)
            with np.errstate(divide="ignore", invalid="ignore"):
                v = np.where(d != 0, v / d, np.nan)
            g += 1
        elif pct:
            v = v / 100.0
        out.append(v)
    return hit, out


def _numbers(text: str) -> np.ndarray | None:
    """Whitespace-separated numbers -> float array, parsed in C; None if any token is not a number."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # numpy warns, not raises, on a token it cannot read
            return np.fromstring(text, sep=" ")
    except (ValueError, DeprecationWarning):
        vals = pd.to_numeric(pd.Series(text.split(), dtype=object), errors="coerce")
        return vals.to_numpy(float)


def _to_float(col: tuple, hit: np.ndarray, everywhere: bool) -> np.ndarray:
    # numpy parses a tuple of str in C; the pandas fallback only for oddities like "Infinity".
    try:
        return np.array(col if everywhere else list(itertools.compress(col, hit)), dtype=np.float64)
    except ValueError:
        return pd.to_numeric(pd.Series(col, dtype=object)[hit], errors="coerce").to_numpy(float)


def _ffill(a: np.ndarray) -> np.ndarray:
    idx = np.where(np.isnan(a), 0, np.arange(len(a)))
    np.maximum.accumulate(idx, out=idx)
    out = a[idx]
    return out


def _lines_to_scalars(keys: list[str], lines: np.ndarray, kc: np.ndarray, val: np.ndarray, run: str,
                      n_lines: int) -> pd.DataFrame:
    """Rows grouped by key, each key's rows in line order -> scalar schema. Step and epoch come from
    the same line, else from the last line that printed them (an eval line after a train line),
    else from order. Arrays indexed by line number instead of sorting: this runs on millions of rows."""
    def per_line(codes):
        out = np.full(n_lines + 2, np.nan)
        m = np.isin(kc, codes)
        # Later keys first, so on a line with two counters the first one printed wins.
        for c in sorted(codes, reverse=True):
            sel = kc == c
            out[lines[sel]] = val[sel]
        return out, bool(m.any()), m

    step, has_step, m_step = per_line([i for i, k in enumerate(keys) if k in STEP_KEYS])
    epoch, has_epoch, m_epoch = per_line([i for i, k in enumerate(keys) if k in EPOCH_KEYS])
    keep = ~(m_step | m_epoch)
    if not keep.all():
        lines, kc, val = lines[keep], kc[keep], val[keep]
    epoch = _ffill(epoch)
    if has_step:
        step = _ffill(step)
        step = np.where(np.isnan(step), epoch if has_epoch else 0.0, step)
    elif has_epoch:
        step = epoch
    if has_step or has_epoch:
        s = step[lines]
    else:  # no counter anywhere: the n-th value of a key is step n
        starts = np.searchsorted(kc, np.arange(len(keys)))
        s = np.arange(len(kc)) - starts[kc]
    n = len(kc)
    # Categoricals: the run and a handful of keys repeated millions of times, at one byte a row.
    return pd.DataFrame({
        "run": pd.Categorical.from_codes(np.zeros(n, np.int8), categories=[run]),
        "step": np.nan_to_num(np.asarray(s, float), copy=False).astype(np.int64),
        "epoch": epoch[lines],
        "key": pd.Categorical.from_codes(kc, categories=keys),
        "value": val,
        "wall_time": np.full(n, np.nan),
    }, copy=False)  # no consolidating copy: these arrays are ours


def _parse_with_regex(text: str, name: str, regex: str) -> ParsedLog:
    rx = compile_user_regex(regex)
    groups = list(rx.groupindex)
    rows, unparsed, n_unparsed = [], [], 0
    percent = set()
    for no, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        m = rx.search(line)
        if not m:
            n_unparsed += 1
            if len(unparsed) < MAX_UNPARSED_KEPT:
                unparsed.append((no, line[:300]))
            continue
        d = m.groupdict()
        vals = {}
        if "value" in d and d["value"] is not None:
            vals[(d.get("key") or "value").strip()] = d["value"]
        for g in groups:
            if g not in ("key", "value", "step", "epoch") and d[g] is not None:
                vals[g] = d[g]
        for k in ("step", "epoch"):
            if d.get(k) is not None:
                vals[k] = d[k]
        for k, raw in vals.items():
            raw = raw.strip()
            pct = raw.endswith("%")
            try:
                v = float(raw.rstrip("%").strip())
            except ValueError:
                n_unparsed += 1
                if len(unparsed) < MAX_UNPARSED_KEPT:
                    unparsed.append((no, line[:300]))
                break
            if pct:
                v /= 100.0
                percent.add(k)
            rows.append((no, k, v))
    if not rows:
        raise LogParseError(name, f"the regex matched no line with a number: {regex!r}")
    collected = _Rows()
    by_key: dict[str, list] = {}
    for no, k, v in rows:
        by_key.setdefault(k, []).append((no, v))
    for pos, (k, pts) in enumerate(by_key.items()):
        collected.add(k, pos, np.array([p[0] for p in pts], np.int64), np.array([p[1] for p in pts], float))
    df = _lines_to_scalars(*collected.arrays(), _stem(name), text.count("\n") + 1)
    return ParsedLog(name, "regex", df, unparsed, n_unparsed, sorted(percent))


def compile_user_regex(regex: str) -> re.Pattern:
    try:
        rx = re.compile(regex)
    except re.error as e:
        raise UserError(f"invalid regex {regex!r}: {e}") from None
    names = set(rx.groupindex)
    if not names - {"step", "epoch", "key"}:
        raise UserError(f"regex {regex!r} needs a named group for the value: (?P<value>...) with (?P<key>...), "
                        "or one named after the metric, e.g. (?P<acc>[0-9.]+)")
    if "key" in names and "value" not in names:
        raise UserError(f"regex {regex!r} has (?P<key>...) but no (?P<value>...)")
    return rx


# ----------------------------------------------------------------------------------------------
# tables: CSV, JSON lines, trainer_state.json
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
    fmt = "csv"
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
    return ParsedLog(name, fmt, df[SCALAR_COLUMNS])


def parse_json(text: str, name: str = "<json>") -> ParsedLog:
    s = text.strip().lstrip("\ufeff")
    try:
        obj = json.loads(s)
    except json.JSONDecodeError:
        obj = None
    run = _stem(name)
    if isinstance(obj, dict) and isinstance(obj.get("log_history"), list):
        recs = [_flatten(r) for r in obj["log_history"] if isinstance(r, dict)]
        df = _wide_to_scalars(pd.DataFrame(recs), run) if recs else _empty()
        if not len(df):
            raise LogParseError(name, "trainer_state.json has an empty log_history")
        return ParsedLog(name, "trainer_state", df)
    if isinstance(obj, list) and obj and all(isinstance(r, dict) for r in obj):
        df = _wide_to_scalars(pd.DataFrame([_flatten(r) for r in obj]), run)
        if not len(df):
            raise LogParseError(name, "JSON records hold no numeric values")
        return ParsedLog(name, "json", df)
    if isinstance(obj, dict) and "\n" not in s:
        obj = None  # a single JSON object: treat as one JSON line below
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


# ----------------------------------------------------------------------------------------------
# TensorBoard
def _tfrecord_check(data: bytes) -> tuple[int, int | None]:
    """(complete records, byte offset where a truncated record starts or None). Reads only headers."""
    off, n, count = 0, len(data), 0
    while off + 12 <= n:
        (length,) = struct.unpack_from("<Q", data, off)
        end = off + 12 + length + 4
        if end > n:
            return count, off
        count += 1
        off = end
    return count, (off if off != n else None)


def looks_like_tfevents(name: str, data: bytes) -> bool:
    if "tfevents" in PurePosixPath(name).name:
        return True
    if len(data) < 16:
        return False
    (length,) = struct.unpack_from("<Q", data, 0)
    if not 0 < length < 1 << 20:
        return False
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c
    return masked_crc32c(data[:8]) == struct.unpack_from("<I", data, 8)[0]


def parse_tensorboard(data: bytes, name: str = "<tfevents>", path: str | None = None) -> ParsedLog:
    from tensorboard.backend.event_processing import event_accumulator as ea
    from tensorboard.util import tensor_util

    complete, cut = _tfrecord_check(data)
    warnings = []
    if cut is not None:
        if complete == 0:
            raise LogParseError(name, f"truncated TensorBoard file: the first record is incomplete ({len(data)} bytes)")
        warnings.append(f"{name}: truncated TensorBoard file: the record at byte {cut} is incomplete; "
                        f"kept the {complete} complete records before it")
    tmp = None
    try:
        if path is None:
            # EventAccumulator reads from a path; the copy is data only and is removed at once.
            tmp = tempfile.NamedTemporaryFile(prefix="actlab-", suffix=".tfevents", delete=False)
            tmp.write(data[:cut] if cut is not None else data)
            tmp.close()
            path = tmp.name
        # size_guidance 0 keeps every point instead of the default reservoir sample.
        acc = ea.EventAccumulator(path, size_guidance={ea.SCALARS: 0, ea.TENSORS: 0, ea.HISTOGRAMS: 1,
                                                       ea.IMAGES: 1, ea.AUDIO: 1, ea.COMPRESSED_HISTOGRAMS: 1})
        try:
            acc.Reload()
        except Exception as e:  # the reader's own errors (DataLossError, DecodeError) vary by version
            raise LogParseError(name, f"unreadable TensorBoard file: {type(e).__name__}: {e}") from None
        tags = acc.Tags()
        run = _stem(name)
        frames = []
        for tag in tags.get("scalars", []):
            ev = acc.Scalars(tag)
            frames.append(pd.DataFrame({"run": run, "step": np.fromiter((e.step for e in ev), np.int64, len(ev)),
                                        "epoch": np.nan, "key": tag,
                                        "value": np.fromiter((e.value for e in ev), float, len(ev)),
                                        "wall_time": np.fromiter((e.wall_time for e in ev), float, len(ev))}))
        for tag in tags.get("tensors", []):
            rows = []
            for e in acc.Tensors(tag):
                try:
                    arr = tensor_util.make_ndarray(e.tensor_proto)
                except Exception:
                    continue
                if arr.size == 1 and np.issubdtype(arr.dtype, np.number):
                    rows.append((e.step, float(arr.reshape(-1)[0]), e.wall_time))
            if rows:
                st, v, w = zip(*rows)
                frames.append(pd.DataFrame({"run": run, "step": np.array(st, np.int64), "epoch": np.nan,
                                            "key": tag, "value": np.array(v, float), "wall_time": np.array(w, float)}))
    finally:
        if tmp is not None:
            os.unlink(tmp.name)
    if not frames:
        raise LogParseError(name, "TensorBoard file holds no scalar summaries")
    return ParsedLog(name, "tensorboard", pd.concat(frames, ignore_index=True)[SCALAR_COLUMNS], warnings=warnings)


# ----------------------------------------------------------------------------------------------
# bytes -> ParsedLog, with format detection and a content-hash cache
_CACHE: "OrderedDict[tuple, ParsedLog]" = OrderedDict()
_CACHE_MAX = 64
cache_stats = {"hits": 0, "misses": 0}


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode_text(data: bytes, name: str) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            pass
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise LogParseError(name, f"not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
                                  "save the log as UTF-8") from None


def _is_binary(data: bytes) -> bool:
    head = data[:8192]
    if b"\x00" in head:
        return True
    ctrl = sum(1 for b in head if b < 9 or 13 < b < 32)
    return len(head) > 0 and ctrl / len(head) > 0.1


def parse_bytes(name: str, data: bytes, regex: str | None = None, max_bytes: int = MAX_FILE_BYTES) -> ParsedLog:
    """One file's bytes -> ParsedLog, served from cache when the same content was parsed before."""
    if len(data) > max_bytes:
        raise LogParseError(name, f"{len(data) / 2**20:.1f} MB is over the {max_bytes / 2**20:.0f} MB upload limit")
    h = content_hash(data)
    key = (h, PurePosixPath(name).name, regex or "")
    hit = _CACHE.get(key)
    if hit is not None:
        _CACHE.move_to_end(key)
        cache_stats["hits"] += 1
        return _renamed(hit, name)
    cache_stats["misses"] += 1
    log = _parse_uncached(name, data, regex)
    log.sha256 = h
    _CACHE[key] = log
    while len(_CACHE) > _CACHE_MAX:
        _CACHE.popitem(last=False)
    return log


def _renamed(log: ParsedLog, name: str) -> ParsedLog:
    if log.name == name:
        return log
    df = log.df
    if log.format not in ("csv:wandb-chart", "csv:mlflow-runs", "csv:mlflow-history"):
        df = df.assign(run=_stem(name))
    return ParsedLog(name, log.format, df, log.unparsed, log.n_unparsed, log.percent_keys,
                     [w.replace(log.name, name) for w in log.warnings], log.sha256)


def _parse_uncached(name: str, data: bytes, regex: str | None) -> ParsedLog:
    if not data.strip():
        raise LogParseError(name, "empty file")
    if data[:4] == b"PK\x03\x04":
        raise LogParseError(name, "is a zip archive; load it with load_bytes/load_paths to expand it")
    if looks_like_tfevents(name, data):
        return parse_tensorboard(data, name)
    if data[:2] == b"\x1f\x8b":
        raise LogParseError(name, "gzip-compressed file: unpack it or upload it as a .zip")
    if _is_binary(data) and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise LogParseError(name, f"binary file, not a recognised log format (starts with {data[:8]!r})")
    text = decode_text(data, name)
    if regex:
        return parse_text(text, name, regex=regex)
    head = text.lstrip("\ufeff \t\r\n")[:1]
    lname = name.lower()
    if head in "{[" and head:
        try:
            return parse_json(text, name)
        except LogParseError:
            if head == "{":
                raise
            # "[12:01:02] INFO step ..." also starts with a bracket.
    if head == "[" and not text.lstrip().startswith("[{"):
        return parse_text(text, name)
    if lname.endswith((".csv", ".tsv")) or _looks_like_csv(text):
        return parse_csv(text, name)
    return parse_text(text, name)


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


# ----------------------------------------------------------------------------------------------
# zips, folders, the run store
def _unsafe_member(name: str) -> str | None:
    n = name.replace("\\", "/")
    if n.startswith("/") or re.match(r"^[A-Za-z]:", n):
        return "absolute path"
    if ".." in PurePosixPath(n).parts:
        return "path traversal ('..')"
    if "\x00" in n:
        return "NUL byte in name"
    return None


def load_zip(name: str, data: bytes, regex: str | None = None) -> LoadResult:
    """Expand in memory after checking the declared sizes; the actual bytes read are capped too,
    since a crafted header can understate them."""
    res = LoadResult()
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        res.errors.append((name, f"not a readable zip archive: {e}"))
        return res
    files = [i for i in infos if not i.is_dir()]
    total = sum(i.file_size for i in files)
    if len(files) > MAX_ZIP_MEMBERS:
        res.errors.append((name, f"zip has {len(files)} files; the limit is {MAX_ZIP_MEMBERS}"))
        return res
    if total > MAX_ZIP_TOTAL_BYTES:
        res.errors.append((name, f"zip expands to {total / 2**20:.0f} MB, over the {MAX_ZIP_TOTAL_BYTES / 2**20:.0f} MB "
                                 "limit (possible zip bomb); nothing was extracted"))
        return res
    if total > 1 << 20 and total / max(1, len(data)) > MAX_ZIP_RATIO:
        res.errors.append((name, f"zip compression ratio {total / max(1, len(data)):.0f}:1 is over "
                                 f"{MAX_ZIP_RATIO}:1 (possible zip bomb); nothing was extracted"))
        return res
    budget = MAX_ZIP_TOTAL_BYTES
    for info in files:
        member = f"{name}/{info.filename}"
        base = PurePosixPath(info.filename).name
        if info.filename.startswith("__MACOSX/") or base.startswith("._") or base in (".DS_Store",):
            continue
        why = _unsafe_member(info.filename)
        if why:
            res.errors.append((member, f"skipped: unsafe name inside the zip ({why})"))
            continue
        if info.file_size > MAX_FILE_BYTES:
            res.errors.append((member, f"{info.file_size / 2**20:.0f} MB is over the {MAX_FILE_BYTES / 2**20:.0f} MB limit"))
            continue
        try:
            with zf.open(info) as f:
                blob = f.read(min(info.file_size, budget) + 1)
        except (zipfile.BadZipFile, RuntimeError, OSError, NotImplementedError, EOFError, ValueError) as e:
            res.errors.append((member, f"cannot extract: {e}"))
            continue
        if len(blob) > info.file_size or len(blob) > budget:
            res.errors.append((member, "expands beyond the size its header declares (possible zip bomb); stopped"))
            break
        budget -= len(blob)
        if blob[:4] == b"PK\x03\x04":
            res.errors.append((member, "nested zip archives are not expanded"))
            continue
        res.extend(load_bytes(info.filename, blob, regex, _prefix=name))
    return res


def load_bytes(name: str, data: bytes, regex: str | None = None, _prefix: str = "") -> LoadResult:
    """One upload (a log or a zip of logs). Errors are collected, never raised."""
    res = LoadResult()
    shown = f"{_prefix}/{name}" if _prefix else name
    if len(data) > MAX_FILE_BYTES:
        res.errors.append((shown, f"{len(data) / 2**20:.1f} MB is over the {MAX_FILE_BYTES / 2**20:.0f} MB upload limit"))
        return res
    if data[:4] == b"PK\x03\x04" and not _prefix:
        return load_zip(name, data, regex)
    try:
        log = parse_bytes(name, data, regex)
        res.logs.append(log)
    except LogParseError as e:
        res.errors.append((shown, e.problem))
    except UserError as e:
        res.errors.append((shown, str(e)))
    return res


def load_uploads(files: list[tuple[str, bytes]], regex: str | None = None) -> LoadResult:
    res = LoadResult()
    for name, data in files:
        res.extend(load_bytes(name, data, regex))
    dedupe_runs(res)
    return res


def dedupe_runs(res: LoadResult):
    seen: dict[str, int] = {}
    for log in res.logs:
        ren = {}
        for r in log.runs:
            if r in seen:
                seen[r] += 1
                ren[r] = f"{r}#{seen[r]}"
            else:
                seen[r] = 1
        if ren:
            log.df = log.df.assign(run=log.df["run"].astype(object).replace(ren))


def load_store_runs(root: str | os.PathLike, names: list[str]) -> LoadResult:
    store, res = RunStore(root), LoadResult()
    for n in names:
        try:
            r = store.open(n)
            try:
                df, _ = r.scalars()
                cfg = r.config
            finally:
                r.close()
        except UserError as e:
            res.errors.append((n, str(e)))
            continue
        except Exception as e:  # a corrupt metrics.db must not hide the other runs
            res.errors.append((n, f"unreadable run store: {type(e).__name__}: {e}"))
            continue
        log = ParsedLog(n, "store", df.assign(run=n))
        log.variant_hint = cfg.get("variant"), cfg.get("seed")
        res.logs.append(log)
    return res


_LOG_SUFFIXES = (".log", ".txt", ".jsonl", ".json", ".csv", ".tsv", ".out", ".zip")


def load_paths(paths: list[str], regex: str | None = None) -> LoadResult:
    """Files, folders of logs (names inside become run names) and run-store folders."""
    res = LoadResult()
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise UserError(f"no such file or directory: {raw}")
        if p.is_dir():
            if (p / "metrics.db").exists() and (p / "run.json").exists():
                res.extend(load_store_runs(p.parent, [p.name]))
                continue
            stores = [d for d in sorted(p.iterdir()) if (d / "metrics.db").exists() and (d / "run.json").exists()]
            if stores:
                res.extend(load_store_runs(p, [d.name for d in stores]))
            for f in sorted(p.rglob("*")):
                if not f.is_file() or any(part.startswith(".") for part in f.relative_to(p).parts):
                    continue
                if any(s in f.relative_to(p).parts for s in (d.name for d in stores)):
                    continue
                if f.suffix.lower() in _LOG_SUFFIXES or "tfevents" in f.name:
                    res.extend(_load_file(f, str(f.relative_to(p)), regex))
        else:
            res.extend(_load_file(p, p.name, regex))
    dedupe_runs(res)
    return res


def _load_file(path: Path, name: str, regex: str | None) -> LoadResult:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            return LoadResult(errors=[(name, f"{size / 2**20:.1f} MB is over the {MAX_FILE_BYTES / 2**20:.0f} MB limit")])
        data = path.read_bytes()
    except OSError as e:
        return LoadResult(errors=[(name, f"cannot read: {e.strerror or e}")])
    return load_bytes(name, data, regex)


def variant_seed_of(res: LoadResult) -> pd.DataFrame:
    """run_table with store runs' variant/seed taken from their config when it has them."""
    table = res.run_table()
    for log in res.logs:
        hint = getattr(log, "variant_hint", None)
        if hint:
            m = table["run"] == log.name
            if hint[0]:
                table.loc[m, "variant"] = hint[0]
            if hint[1] is not None:
                table.loc[m, "seed"] = hint[1]
    return table


# ----------------------------------------------------------------------------------------------
# CLI
def add_cli(sub) -> None:
    p = sub.add_parser("logs", help="read training logs in any common format; compare variants")
    s = p.add_subparsers(dest="action", required=True)
    sp = s.add_parser("summarize", help="per-run final/best, per-variant mean/CI, pairwise verdicts")
    sp.add_argument("paths", nargs="+", metavar="FILE_OR_DIR")
    sp.add_argument("--metric", help="scalar key to compare (default: the first accuracy-like key all runs share)")
    sp.add_argument("--use", choices=("final", "best"), default="final")
    sp.add_argument("--regex", help="override detection: named groups step/epoch/key/value or one per metric")
    sp.add_argument("--test", choices=("auto", "welch", "permutation"), default="auto")
    sp.add_argument("--alpha", type=float, default=0.05)
    sp.add_argument("--json", action="store_true", help="print JSON (the default prints a table)")
    sp.set_defaults(func=_cli_summarize)
    pp = s.add_parser("parse", help="print the tidy scalar table as CSV")
    pp.add_argument("paths", nargs="+", metavar="FILE_OR_DIR")
    pp.add_argument("--regex")
    pp.set_defaults(func=_cli_parse)


def _problems(res: LoadResult) -> dict:
    return {
        "unparsed": [{"file": l.name, "count": l.n_unparsed,
                      "lines": [{"line": n, "text": t} for n, t in l.unparsed[:50]]} for l in res.logs if l.n_unparsed],
        "errors": [{"file": f, "error": e} for f, e in res.errors],
        "warnings": [w for l in res.logs for w in l.warnings],
        "percent_keys": sorted({k for l in res.logs for k in l.percent_keys}),
    }


def _cli_summarize(args) -> int:
    from core.compare import summarize

    if args.regex:
        compile_user_regex(args.regex)
    res = load_paths(args.paths, args.regex)
    if not res.logs:
        detail = "; ".join(f"{f}: {e}" for f, e in res.errors) or "no log files found"
        raise UserError(f"no runs could be read ({detail})")
    table = variant_seed_of(res)
    out = summarize(res.scalars(), args.metric, use=args.use, runs=table, test=args.test, alpha=args.alpha)
    out.update(_problems(res))
    if args.json:
        print(json.dumps(out, indent=2, default=_json_default))
        return 0
    print(f"metric {out['metric']} ({out['use']}), test {out['test']}")
    for v in out["variants"]:
        print(f"  {v['variant']:<28} n={v['n']:<3} mean={_f(v['mean'])} std={_f(v['std'])} ci95=±{_f(v['ci95'])}")
    for c in out["comparisons"]:
        print(f"  {c['a']} vs {c['b']}: diff={_f(c['diff'])} p={_f(c['p_value'])} -> {c['verdict']}")
    for f, e in res.errors:
        print(f"  error: {f}: {e}")
    for u in out["unparsed"]:
        print(f"  {u['file']}: {u['count']} lines not understood, e.g. line {u['lines'][0]['line']}: {u['lines'][0]['text'][:80]!r}")
    return 0


def _f(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.4g}"


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return None if not np.isfinite(o) else float(o)
    return str(o)


def _cli_parse(args) -> int:
    import sys

    res = load_paths(args.paths, args.regex)
    for f, e in res.errors:
        print(f"error: {f}: {e}", file=sys.stderr)
    res.scalars().to_csv(sys.stdout, index=False)
    return 0 if res.logs else 2
