"""The checks that hold an upload to core.logs.limits before a reader spends time or memory on it.
Each either refuses the file (LogParseError naming the limit) or trims it and leaves a warning.
All of them run at C speed over the text (find/rfind, translate), never a Python loop per character
or per line: they sit in front of the text fast path."""
from __future__ import annotations

import re

import numpy as np

from .limits import DEFAULT, Limits
from .parsed import STEP_KEYS, EPOCH_KEYS, LogParseError

_COUNTERS = frozenset(STEP_KEYS + EPOCH_KEYS)


def decode(data: bytes, name: str, warnings: list) -> str:
    """UTF-16 with a BOM or UTF-8. A multi-byte character cut by the end of the file (a log still
    being written) is dropped with a note; bad bytes anywhere else refuse the file."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            pass
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        if e.reason == "unexpected end of data" and e.end == len(data) and len(data) - e.start < 4:
            warnings.append(f"{name}: the last {len(data) - e.start} byte(s) are a cut UTF-8 character "
                            "(the file is still being written?); dropped")
            return data[:e.start].decode("utf-8-sig")
        raise LogParseError(name, f"not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
                                  "save the log as UTF-8") from None


def long_lines(text: str, limit: int) -> list[tuple[int, int]]:
    """(start, end) of every line longer than `limit`. Jumps `limit` characters at a time with
    rfind, so a file with no long line costs len(text) / limit steps."""
    spans, pos, n = [], 0, len(text)
    while n - pos > limit:
        nl = text.rfind("\n", pos, pos + limit + 1)
        if nl != -1:
            pos = nl + 1
            continue
        end = text.find("\n", pos)
        end = n if end == -1 else end
        spans.append((pos, end))
        pos = end + 1
    return spans


def drop_long_lines(text: str, name: str, warnings: list, lim: Limits = DEFAULT) -> str:
    """Lines over lim.line_chars become empty lines (so line numbers stay right), with a warning;
    a file that is nothing but such lines is refused."""
    if len(text) <= lim.line_chars:
        return text
    spans = long_lines(text, lim.line_chars)
    if not spans:
        return text
    parts, pos = [], 0
    for s, e in spans:
        parts.append(text[pos:s])
        pos = e
    parts.append(text[pos:])
    kept = "".join(parts)
    first_no = text.count("\n", 0, spans[0][0]) + 1
    longest = max(e - s for s, e in spans)
    if not kept.strip():
        raise LogParseError(name, f"line {first_no} is {spans[0][1] - spans[0][0]:,} characters, over the limit "
                                  f"line_chars={lim.line_chars:,}; nothing else to read")
    warnings.append(f"{name}: {len(spans)} line(s) longer than the limit line_chars={lim.line_chars:,} skipped "
                    f"(first at line {first_no}, longest {longest:,} characters)")
    return kept


_SHAPE = re.compile(r"\d+")


def drop_cut_last_line(text: str, name: str, warnings: list, cut_char: bool = False) -> str:
    """A file still being written ends mid-line: `epoch=3 acc=0.` would read as acc 0. The last
    line is taken as cut when the file has no final newline and either its end was a cut UTF-8
    character (`cut_char`) or the line's shape (digits as 0) is a strict prefix of the shape of one
    of the lines before it; then it is dropped with a note."""
    stripped = text.rstrip(" \t")
    if not stripped or stripped.endswith(("\n", "\r")):
        return text
    head = stripped.lstrip("\ufeff \t\r\n")[:1]
    if (head, stripped[-1]) in (("{", "}"), ("[", "]")):
        return text  # a whole JSON document, closed
    cut = max(stripped.rfind("\n"), stripped.rfind("\r"))
    if cut == -1:
        return text
    last = _SHAPE.sub("0", stripped[cut + 1:]).rstrip()
    if not last:
        return text
    if cut_char:
        warnings.append(f"{name}: the last line ends in a cut character, so it is incomplete; dropped: "
                        f"{stripped[cut + 1:][:80]!r}")
        return text[:cut + 1]
    before = stripped[max(0, cut - 100_000):cut].replace("\r", "\n").split("\n")[-100:]
    for line in reversed(before):
        shape = _SHAPE.sub("0", line).rstrip()
        if shape == last:
            return text
        if len(shape) > len(last) and shape.startswith(last):
            warnings.append(f"{name}: the last line is incomplete (the file is still being written?); dropped: "
                            f"{stripped[cut + 1:][:80]!r}")
            return text[:cut + 1]
    return text


_KEEP = bytes(range(256)).translate(None, b"[]{}\"")  # every byte but these is deleted
_STEP = np.zeros(256, np.int8)
_STEP[[ord("["), ord("{")]] = 1
_STEP[[ord("]"), ord("}")]] = -1


def check_json_depth(text: str, name: str, lim: Limits = DEFAULT):
    """Refuse JSON nested deeper than lim.json_depth before json.loads recurses into it. Counts the
    brackets outside strings; across JSON lines a cut line leaves its brackets open, which only
    errs towards refusing garbage."""
    b = text.encode("utf-8", "surrogatepass")
    if b.count(b"[") + b.count(b"{") <= lim.json_depth:
        return
    # Escaped quotes and backslashes first, so what is left pairs up into whole strings.
    b = b.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _KEEP)
    b = re.sub(rb'"[^"]*"', b"", b).replace(b'"', b"")
    if len(b) <= lim.json_depth:
        return
    depth = int(np.cumsum(_STEP[np.frombuffer(b, np.uint8)], dtype=np.int32).max(initial=0))
    if depth > lim.json_depth:
        raise LogParseError(name, f"JSON nested {depth:,} levels deep is over the limit json_depth={lim.json_depth:,}")


def int64_steps(values) -> np.ndarray:
    """Steps as int64: a NaN, inf or 1e300 step in a mutated export becomes 0 or the int64 edge
    instead of an IntCastingNaNError or a wrapped-around value."""
    a = np.nan_to_num(np.asarray(values, dtype=float), nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(a, -2.0**62, 2.0**62).astype(np.int64)


def check_columns(n: int, name: str, lim: Limits = DEFAULT):
    if n > lim.columns:
        raise LogParseError(name, f"{n:,} columns is over the limit columns={lim.columns:,}")


def cap_series(keys: list, name: str, warnings: list, lim: Limits = DEFAULT) -> list:
    """The keys to keep: counters always, then metrics in file order up to lim.series."""
    metrics = [k for k in keys if str(k).strip().lower() not in _COUNTERS]
    if len(metrics) <= lim.series:
        return keys
    keep = set(metrics[:lim.series])
    warnings.append(f"{name}: {len(metrics):,} metric keys is over the limit series={lim.series:,}; "
                    f"the first {lim.series:,} in file order were kept")
    return [k for k in keys if k in keep or str(k).strip().lower() in _COUNTERS]


def cap_points(n: int, name: str, warnings: list, lim: Limits = DEFAULT) -> int:
    """How many points of a series to keep: the first lim.points_per_series."""
    if n <= lim.points_per_series:
        return n
    warnings.append(f"{name}: a key with {n:,} points is over the limit points_per_series="
                    f"{lim.points_per_series:,}; the first {lim.points_per_series:,} were kept")
    return lim.points_per_series


def cap_rows(rows, name: str, warnings: list, lim: Limits = DEFAULT):
    """The text reader's collected (line, value) chunks held to the series and points limits."""
    keep = cap_series(sorted(rows.chunks, key=rows.first.__getitem__), name, warnings, lim)
    for k in set(rows.chunks) - set(keep):
        del rows.chunks[k], rows.first[k]
    noted = False
    for k, chunks in rows.chunks.items():
        n = sum(len(ls) for ls, _ in chunks)
        if n <= lim.points_per_series:
            continue
        if not noted:
            cap_points(n, name, warnings, lim)
            noted = True
        lines = np.concatenate([ls for ls, _ in chunks])
        vals = np.concatenate([vs for _, vs in chunks])
        o = np.argsort(lines, kind="stable")[:lim.points_per_series]
        rows.chunks[k] = [(lines[o], vals[o])]
