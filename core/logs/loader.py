"""Bytes, files, folders, zips and store runs -> ParsedLogs: format detection, size limits,
a content-hash cache, and archives expanded in memory. Errors are collected per file."""
from __future__ import annotations

import hashlib
import io
import os
import re
import zipfile
from collections import OrderedDict
from pathlib import Path, PurePosixPath

import pandas as pd

from ..errors import UserError
from .documents import parse_json
from .guards import decode, drop_cut_last_line
from .keras import looks_like_keras_console, parse_keras_console
from .names import _stem
# Read here at call time, so tests can lower them with monkeypatch.
from .limits import DEFAULT, MAX_FILE_BYTES, MAX_ZIP_MEMBERS, MAX_ZIP_RATIO, MAX_ZIP_TOTAL_BYTES, Limits
from .parsed import LoadResult, LogParseError, ParsedLog
from .tabular import _looks_like_csv, parse_csv
from .tensorboard import looks_like_tfevents, parse_tensorboard, verify_crc_default
from .text import parse_text
from .trackers import find_runs, load_runs
from ..store.runs import RunStore



_CACHE: OrderedDict[tuple, ParsedLog] = OrderedDict()
_CACHE_MAX = 64
cache_stats = {"hits": 0, "misses": 0}


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode_text(data: bytes, name: str, warnings: list | None = None) -> str:
    return decode(data, name, [] if warnings is None else warnings)


def _is_binary(data: bytes) -> bool:
    head = data[:8192]
    if b"\x00" in head:
        return True
    # Backspace (8) is text here: progress bars (Keras) erase themselves with runs of it.
    ctrl = sum(1 for b in head if b < 8 or 13 < b < 32)
    return len(head) > 0 and ctrl / len(head) > 0.1


def parse_bytes(name: str, data: bytes, regex: str | None = None, max_bytes: int | None = None,
                limits: Limits = DEFAULT,
                verify_crc: bool | None = None) -> ParsedLog:
    """One file's bytes -> ParsedLog, served from cache when the same content was parsed before."""
    max_bytes = MAX_FILE_BYTES if max_bytes is None else max_bytes
    if len(data) > max_bytes:
        raise LogParseError(name, f"{len(data) / 2**20:.1f} MB is over the {max_bytes / 2**20:.0f} MB upload limit "
                                  f"(file_bytes={max_bytes:,})")
    h = content_hash(data)
    verify_crc = verify_crc_default() if verify_crc is None else verify_crc
    key = (h, PurePosixPath(name).name, regex or "", limits, verify_crc)
    hit = _CACHE.get(key)
    if hit is not None:
        _CACHE.move_to_end(key)
        cache_stats["hits"] += 1
        return _renamed(hit, name)
    cache_stats["misses"] += 1
    try:
        log = _parse_uncached(name, data, regex, limits, verify_crc=verify_crc)
    except RecursionError:
        # The depth check runs before any reader recurses; this is the net under it.
        raise LogParseError(name, f"nested too deeply to read (limit json_depth={limits.json_depth})") from None
    log.sha256 = h
    _CACHE[key] = log
    while len(_CACHE) > _CACHE_MAX:
        _CACHE.popitem(last=False)
    return log


def _renamed(log: ParsedLog, name: str) -> ParsedLog:
    if log.name == name:
        return log
    df = log.df
    if log.format not in ("csv:wandb-chart", "csv:wandb-runs", "csv:mlflow-runs", "csv:mlflow-history"):
        df = df.assign(run=_stem(name))
    return ParsedLog(name, log.format, df, log.unparsed, log.n_unparsed, log.percent_keys,
                     [w.replace(log.name, name) for w in log.warnings], log.sha256, log.variant_hint)


_NON_SPACE = re.compile(rb"\S")
_FIRST_NON_SPACE = re.compile(r"\S")
_HEAD = re.compile("[^\ufeff \t\r\n]")


def _starts_record(text: str) -> bool:
    """text.lstrip().startswith("[{") without copying a large text."""
    m = _FIRST_NON_SPACE.search(text)
    return m is not None and text.startswith("[{", m.start())


def _parse_uncached(name: str, data: bytes, regex: str | None, lim: Limits = DEFAULT,
                   verify_crc: bool = True) -> ParsedLog:
    if _NON_SPACE.search(data) is None:  # strip() would copy the whole upload to learn this
        raise LogParseError(name, "empty file")
    if data[:4] == b"PK\x03\x04":
        raise LogParseError(name, "is a zip archive; load it with load_bytes/load_paths to expand it")
    if looks_like_tfevents(name, data):
        try:
            return parse_tensorboard(data, name, verify_crc=verify_crc)
        except LogParseError:
            raise
        except Exception as e:  # a mangled event file trips the protobuf reader in many ways
            raise LogParseError(name, f"unreadable TensorBoard file ({type(e).__name__})") from None
    if data[:2] == b"\x1f\x8b":
        raise LogParseError(name, "gzip-compressed file: unpack it or upload it as a .zip")
    if _is_binary(data) and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise LogParseError(name, f"binary file, not a recognised log format (starts with {data[:8]!r})")
    notes: list[str] = []
    text = decode(data, name, notes)
    text = drop_cut_last_line(text, name, notes, cut_char=bool(notes))
    log = _parse_text_as_any(text, name, regex, lim, notes)
    log.warnings = notes + log.warnings
    return log


def _parse_text_as_any(text: str, name: str, regex: str | None, lim: Limits, notes: list) -> ParsedLog:
    if regex:
        return parse_text(text, name, regex=regex, limits=lim)
    m = _HEAD.search(text)  # text.lstrip(...)[:1] without copying the text
    head = text[m.start()] if m else ""
    if head in "{[" and head:
        try:
            # A JSON document may be one long line; parse_json holds JSON lines to line_chars itself.
            return parse_json(text, name, lim)
        except LogParseError as e:
            if head == "{":
                raise
            # "[12:01:02] INFO step ..." also starts with a bracket; if it is no text log either, the
            # JSON reader's refusal is the one to show when it names a limit.
            json_err = e if "limit" in e.problem else None
        if json_err:
            try:
                return _parse_rest(text, name, head, lim)
            except LogParseError:
                raise json_err from None
    return _parse_rest(text, name, head, lim)


def _parse_rest(text: str, name: str, head: str, lim: Limits) -> ParsedLog:
    lname = name.lower()
    # Each reader holds lines to lim.line_chars its own way (a CSV header is never dropped, Keras
    # progress updates share a line).
    if looks_like_keras_console(text):
        return parse_keras_console(text, name, lim)
    if head == "[" and not _starts_record(text):
        return parse_text(text, name, limits=lim)
    if lname.endswith((".csv", ".tsv")) or _looks_like_csv(text):
        return parse_csv(text, name, lim)
    return parse_text(text, name, limits=lim)


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
        res.errors.append((name, f"zip has {len(files):,} files, over the limit zip_members={MAX_ZIP_MEMBERS:,}"))
        return res
    if total > MAX_ZIP_TOTAL_BYTES:
        res.errors.append((name, f"zip expands to {total / 2**20:.0f} MB, over the {MAX_ZIP_TOTAL_BYTES / 2**20:.0f} MB "
                                 f"limit zip_total_bytes={MAX_ZIP_TOTAL_BYTES:,} (possible zip bomb); nothing was extracted"))
        return res
    if total > 1 << 20 and total / max(1, len(data)) > MAX_ZIP_RATIO:
        res.errors.append((name, f"zip compression ratio {total / max(1, len(data)):.0f}:1 is over "
                                 f"{MAX_ZIP_RATIO}:1, the limit zip_ratio (possible zip bomb); nothing was extracted"))
        return res
    budget = MAX_ZIP_TOTAL_BYTES
    # Tracker run folders (MLflow, W&B) are read as one run each, after their files are extracted.
    tracked = find_runs([i.filename for i in files])
    tracked_members, tracked_blobs = {m for _, ms in tracked.values() for m in ms}, {}
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
            res.errors.append((member, f"{info.file_size / 2**20:.0f} MB is over the {MAX_FILE_BYTES / 2**20:.0f} MB limit "
                                          f"(file_bytes={MAX_FILE_BYTES:,})"))
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
        if info.filename in tracked_members:
            tracked_blobs[info.filename] = blob
            continue
        if blob[:4] == b"PK\x03\x04":
            res.errors.append((member, "nested zip archives are not expanded"))
            continue
        res.extend(load_bytes(info.filename, blob, regex, _prefix=name))
    if tracked:
        res.extend(load_runs(tracked, tracked_blobs, prefix=name))
    return res


def load_bytes(name: str, data: bytes, regex: str | None = None, _prefix: str = "") -> LoadResult:
    """One upload (a log or a zip of logs). Errors are collected, never raised."""
    res = LoadResult()
    shown = f"{_prefix}/{name}" if _prefix else name
    if len(data) > MAX_FILE_BYTES:
        res.errors.append((shown, f"{len(data) / 2**20:.1f} MB is over the {MAX_FILE_BYTES / 2**20:.0f} MB upload limit "
                                     f"(file_bytes={MAX_FILE_BYTES:,})"))
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
            with store.open(n) as r:
                df, _ = r.scalars()
                cfg = r.config
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
            files = [f for f in sorted(p.rglob("*")) if f.is_file()
                     and not any(part.startswith(".") for part in f.relative_to(p).parts)
                     and not any(s in f.relative_to(p).parts for s in (d.name for d in stores))]
            tracked = find_runs([f.relative_to(p).as_posix() for f in files])
            if tracked:
                res.extend(_load_tracked(p, tracked))
            taken = {m for _, members in tracked.values() for m in members}
            for f in files:
                if f.relative_to(p).as_posix() in taken:
                    continue
                if f.suffix.lower() in _LOG_SUFFIXES or "tfevents" in f.name:
                    res.extend(_load_file(f, str(f.relative_to(p)), regex))
        else:
            res.extend(_load_file(p, p.name, regex))
    dedupe_runs(res)
    return res


def _load_tracked(root: Path, tracked: dict) -> LoadResult:
    blobs, res = {}, LoadResult()
    for _, members in tracked.values():
        for m in members:
            f = root / m
            try:
                if f.stat().st_size > MAX_FILE_BYTES:
                    res.errors.append((m, f"over the {MAX_FILE_BYTES / 2**20:.0f} MB limit (file_bytes={MAX_FILE_BYTES:,})"))
                    continue
                blobs[m] = f.read_bytes()
            except OSError as e:
                res.errors.append((m, f"cannot read: {e.strerror or e}"))
    res.extend(load_runs(tracked, blobs))
    return res


def _load_file(path: Path, name: str, regex: str | None) -> LoadResult:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            return LoadResult(errors=[(name, f"{size / 2**20:.1f} MB is over the {MAX_FILE_BYTES / 2**20:.0f} MB limit "
                                                 f"(file_bytes={MAX_FILE_BYTES:,})")])
        data = path.read_bytes()
    except OSError as e:
        return LoadResult(errors=[(name, f"cannot read: {e.strerror or e}")])
    return load_bytes(name, data, regex)


def variant_seed_of(res: LoadResult) -> pd.DataFrame:
    """run_table with variant/seed taken from a run's own config (store runs, MLflow params, W&B config)."""
    table = res.run_table()
    for log in res.logs:
        hint = log.variant_hint
        if not hint:
            continue
        # A deduplicated run ("x#2") keeps its file's hint.
        per_run = hint if isinstance(hint, dict) else {r: hint for r in log.runs}
        for run in log.runs:
            variant, seed = per_run.get(run, per_run.get(run.split("#")[0], (None, None)))
            m = table["run"] == run
            if variant:
                table.loc[m, "variant"] = variant
            if seed is not None:
                table.loc[m, "seed"] = seed
    return table
