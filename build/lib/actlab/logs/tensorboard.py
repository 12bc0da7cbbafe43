"""TensorBoard event files, every point kept: scalar summaries (simple_value) and one-element
numeric tensors (TF2's tf.summary.scalar), read from the bytes in memory.

Our own reader, not tensorboard's EventAccumulator: that one parses one Event object per record
in Python (~15 us a record through tbparse here) and keeps a reservoir sample unless told
otherwise. Here the records are framed by tfrecord.frame and the Event / Summary / Summary.Value
layers are decoded as columns (a fixed-layout fast path, else tfrecord.walk); only tensor values
not in the common layout get a protobuf object each.
Unlike EventAccumulator, nothing is purged after a restart (SessionLog.START or a step going
back): every point written is kept, as the rest of ActLab keeps resumed runs' rows.
"""
from __future__ import annotations

import os
import struct
from pathlib import PurePosixPath

import numpy as np
import pandas as pd

from .names import _stem
from .parsed import LogParseError, ParsedLog
from .tfrecord import _read, _varint, byte_at, frame, masked_crc32c, walk
from ..store.runs import SCALAR_COLUMNS

# Summary.Value's oneof "value": simple_value, obsolete histogram, image, histo, audio, tensor.
_SIMPLE, _TENSOR = 2, 8
_ONEOF = (2, 3, 4, 5, 6, 8)
# u64 masks keeping the first k bytes of a little-endian word.
_KEEP = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [(1 << 64) - 1], dtype=np.uint64)


# Set to 0 to skip the CRCs everywhere event files are read (the loader, the page, the CLI's --no-crc).
VERIFY_CRC_ENV = "ACTLAB_TFEVENTS_VERIFY_CRC"


def verify_crc_default() -> bool:
    return os.environ.get(VERIFY_CRC_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def looks_like_tfevents(name: str, data: bytes) -> bool:
    if "tfevents" in PurePosixPath(name).name:
        return True
    if len(data) < 16:
        return False
    (length,) = struct.unpack_from("<Q", data, 0)
    if not 0 < length < 1 << 20:
        return False
    return masked_crc32c(data[:8]) == struct.unpack_from("<I", data, 8)[0]


def parse_tensorboard(data: bytes, name: str = "<tfevents>", path: str | None = None,
                      verify_crc: bool | None = None) -> ParsedLog:
    """`verify_crc=False` skips both CRCs of every record (about twice as fast on scalar files);
    framing, truncation and malformed records are still caught. None: on unless the environment
    variable ACTLAB_TFEVENTS_VERIFY_CRC is 0. `path` is unused (kept for callers)."""
    fr = frame(data, verify_crc_default() if verify_crc is None else verify_crc)
    warnings = []
    if fr.stop_at is not None:
        if fr.stop_why == "truncated":
            what = "truncated TensorBoard file"
            detail = f"the record at byte {fr.stop_at} is incomplete"
        else:
            what = "corrupt TensorBoard file (data loss)"
            detail = f"the record header at byte {fr.stop_at} fails its CRC, so nothing after it can be framed"
        if not len(fr.start) and not fr.bad_crc:
            if fr.stop_at == 0 and fr.stop_why == "truncated":
                detail = f"the first record is incomplete ({len(data)} bytes)"
            raise LogParseError(name, f"{what}: {detail}")
        warnings.append(f"{name}: {what}: {detail}; kept the {len(fr.start)} complete records before it")
    if fr.bad_crc:
        warnings.append(f"{name}: corrupt TensorBoard file (data loss): {len(fr.bad_crc)} record(s) fail their "
                        f"CRC and were skipped, the first at byte {fr.bad_crc[0]}")
    df, n_bad = scalar_frame(data, fr.start, fr.end, _stem(name))
    if n_bad:
        warnings.append(f"{name}: {n_bad} record(s) are not valid Event protobufs and were skipped")
    if df is None:
        raise LogParseError(name, "TensorBoard file holds no scalar summaries")
    return ParsedLog(name, "tensorboard", df[SCALAR_COLUMNS], warnings=warnings)


def scalar_frame(data: bytes, start: np.ndarray, end: np.ndarray, run: str) -> tuple[pd.DataFrame | None, int]:
    """The scalar rows of the Event records at data[start[i]:end[i]] (payloads, as tfrecord.frame
    gives them), or None when they hold none; and how many records were not valid Events.
    Also used by the monitor's live TensorBoard source on each newly appended stretch of a file."""
    u8 = np.frombuffer(data, np.uint8)
    ev, n_bad = _values(u8, start, end)
    frames = [_scalar_rows(u8, ev, run), _tensor_rows(data, u8, ev, run)]
    frames = [f for f in frames if f is not None and len(f)]
    if not frames:
        return None, n_bad
    return (frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)), n_bad


def _values(u8: np.ndarray, start: np.ndarray, end: np.ndarray) -> tuple[dict, int]:
    """Every Summary.Value in file order, as columns: its event's step and wall time, its oneof
    kind, and the spans of its tag, node_name, simple_value and tensor."""
    fast, cols = _simple_events(u8, start, end)
    rest = np.flatnonzero(~fast)
    if not len(rest):
        return cols, 0
    more, n_bad = _walked_values(u8, start[rest], end[rest])
    more["ev"] = rest[more["ev"]]
    if not len(more["ev"]):  # e.g. only the file_version event fell outside: nothing to insert
        return cols, n_bad
    # Few events fall outside the fixed layout (the first, a step 0): insert them in place.
    at = np.searchsorted(cols["ev"], more["ev"])
    out = {k: tuple(np.insert(a, at, b) for a, b in zip(v, more[k])) if isinstance(v, tuple)
           else np.insert(v, at, more[k]) for k, v in cols.items()}
    return out, n_bad


def _simple_events(u8: np.ndarray, start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, dict]:
    """Events in the layout torch's SummaryWriter and TF1 give one scalar, read at fixed places:
    wall_time (0x09), step (0x10) unless 0, then a summary (0x2a) of one value (0x0a) of a tag (0x0a) and a
    simple_value (0x15), nothing else. With a tag under 119 bytes every length is one byte, so the
    six bytes after the step follow from the record's length. A mask of those, and their columns."""
    ok = byte_at(u8, start) == 0x09
    # proto3 leaves out a step of 0.
    has_step = byte_at(u8, start + 9) == 0x10
    step, q, ok_s = _varint(u8, start + 10, end)
    ok_s |= ~has_step
    step[~has_step] = 0
    q = np.where(has_step, q, start + 9)
    tl = end - q - 11
    want = 0x2A | (tl + 9) << 8 | 0x0A << 16 | (tl + 7) << 24 | 0x0A << 32 | tl << 40
    got = (_read(u8, q, "<u8") & np.uint64(0xFFFFFFFFFFFF)).astype(np.int64)
    ok &= ok_s & (tl >= 0) & (tl <= 118) & (got == want) & (byte_at(u8, end - 5) == 0x15)
    f = np.flatnonzero(ok)
    q, e, step, zero = _take(q, f), _take(end, f), _take(step, f), np.zeros(len(f), np.int64)
    return ok, {"ev": f, "step": step.view(np.int64), "wall": _read(u8, _take(start, f) + 1, "<f8"),
                "kind": np.full(len(f), _SIMPLE, np.int8), "tag": (q + 6, e - 5), "node": (zero, zero),
                "simple": (e - 4, e), "tensor": (zero, zero)}


def _walked_values(u8: np.ndarray, start: np.ndarray, end: np.ndarray) -> tuple[dict, int]:
    """_values for any Event layout: field by field, as protobuf reads them."""
    n = len(start)
    wall, step = np.zeros(n), np.zeros(n, np.int64)
    rounds, bad = walk(u8, start, end)
    s_ev, s_pos, s_end = [], [], []
    for r in rounds:
        sel = (r.num == 1) & (r.wire == 1)
        wall[r.msg[sel]] = _read(u8, r.pos[sel], "<f8")
        sel = (r.num == 2) & (r.wire == 0)
        step[r.msg[sel]] = r.ival[sel].view(np.int64)
        sel = (r.num == 5) & (r.wire == 2)
        s_ev.append(r.msg[sel]), s_pos.append(r.pos[sel]), s_end.append(r.end[sel])
    s_ev, s_pos, s_end = _in_order(_cat(s_ev), _cat(s_pos), _cat(s_end))
    rounds, s_bad = walk(u8, s_pos, s_end)
    bad[s_ev[s_bad]] = True
    v_sum, v_pos, v_end = [], [], []
    for r in rounds:
        sel = (r.num == 1) & (r.wire == 2)
        v_sum.append(r.msg[sel]), v_pos.append(r.pos[sel]), v_end.append(r.end[sel])
    v_sum, v_pos, v_end = _in_order(_cat(v_sum), _cat(v_pos), _cat(v_end))
    v_ev = s_ev[v_sum]
    m = len(v_ev)
    kind = np.zeros(m, np.int8)
    spans = {k: (np.zeros(m, np.int64), np.zeros(m, np.int64)) for k in ("tag", "node", "simple", "tensor")}
    rounds, v_bad = walk(u8, v_pos, v_end)
    bad[v_ev[v_bad]] = True
    for r in rounds:
        for k, num, wire in (("tag", 1, 2), ("node", 7, 2), ("simple", 2, 5), ("tensor", 8, 2)):
            sel = (r.num == num) & (r.wire == wire)
            spans[k][0][r.msg[sel]], spans[k][1][r.msg[sel]] = r.pos[sel], r.end[sel]
        sel = np.isin(r.num, _ONEOF)
        kind[r.msg[sel]] = r.num[sel]
    keep = ~bad[v_ev]
    out = {"ev": v_ev[keep], "step": step[v_ev][keep], "wall": wall[v_ev][keep], "kind": kind[keep]}
    out.update({k: (a[keep], b[keep]) for k, (a, b) in spans.items()})
    return out, int(bad.sum())


def _take(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
    # Mostly every row is kept: skip the gather then.
    return a if len(idx) == len(a) else a[idx]


def _cat(parts: list) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def _in_order(owner: np.ndarray, pos: np.ndarray, end: np.ndarray):
    # walk() yields round by round; a stable sort by owner restores file order within each owner.
    if len(owner) > 1 and (np.diff(owner) < 0).any():
        o = np.argsort(owner, kind="stable")
        return owner[o], pos[o], end[o]
    return owner, pos, end


def _tags(u8: np.ndarray, pos: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Tag spans -> (codes in order of first appearance, the tags). A few distinct tags repeat
    millions of times, so the bytes are compared as u64 words and decoded once per distinct tag."""
    ln = end - pos
    if not len(ln):
        return np.zeros(0, np.int64), []
    if ln.max() > 256:
        codes, uniq = pd.factorize(pd.Series([u8[a:b].tobytes() for a, b in zip(pos.tolist(), end.tolist())]))
        return codes, [b.decode("utf-8", "replace") for b in uniq]
    words = [_read(u8, pos + 8 * w, "<u8") & _KEEP[np.clip(ln - 8 * w, 0, 8)] for w in range(int(ln.max() + 7) // 8)]
    # One hash per tag, factorized in one pass; then every row is checked against its code's first
    # row, and only if two tags collided are the words factorized one by one.
    h = ln.astype(np.uint64)
    for k, w in enumerate(words):
        h = h * np.uint64(0x9E3779B97F4A7C15) + (w ^ (w >> np.uint64(29 + k)))
    codes = pd.factorize(h)[0]
    rep = np.flatnonzero(np.diff(np.maximum.accumulate(codes), prepend=-1) > 0)
    same = ln == ln[rep][codes]
    for w in words:
        same &= w == w[rep][codes]
    if not same.all():
        codes = pd.factorize(ln)[0]
        for w in words:
            c = pd.factorize(w)[0]
            codes = pd.factorize(codes * (int(c.max()) + 1) + c)[0]
    # factorize numbers codes by first appearance, so a new code is always the running max + 1.
    first = np.flatnonzero(np.diff(np.maximum.accumulate(codes), prepend=-1) > 0)
    return codes, [u8[pos[i]:end[i]].tobytes().decode("utf-8", "replace") for i in first]


def _frame(run: str, keys: list[str], codes: np.ndarray, step, value, wall) -> pd.DataFrame:
    # EventAccumulator's order: tags by first appearance, each tag's points in file order.
    if len(keys) > 1:
        o = np.argsort(codes.astype(np.int16 if len(keys) < 1 << 15 else np.int64), kind="stable")
        codes, step, value, wall = codes[o], step[o], value[o], wall[o]
    n = len(codes)
    return pd.DataFrame({"run": pd.Categorical.from_codes(np.zeros(n, np.int8), categories=[run]),
                         "step": step, "epoch": np.full(n, np.nan),
                         "key": pd.Categorical.from_codes(codes, categories=keys),
                         "value": value, "wall_time": wall}, copy=False)


def _scalar_rows(u8: np.ndarray, ev: dict, run: str) -> pd.DataFrame | None:
    sel = np.flatnonzero(ev["kind"] == _SIMPLE)
    if not len(sel):
        return None
    codes, keys = _tags(u8, _take(ev["tag"][0], sel), _take(ev["tag"][1], sel))
    value = _read(u8, _take(ev["simple"][0], sel), "<f4").astype(np.float64)
    return _frame(run, keys, codes, _take(ev["step"], sel), value, _take(ev["wall"], sel))


def _tensor_rows(data: bytes, u8: np.ndarray, ev: dict, run: str) -> pd.DataFrame | None:
    from .tftensor import scalar_tensors
    sel = np.flatnonzero(ev["kind"] == _TENSOR)
    if not len(sel):
        return None
    value, ok = scalar_tensors(data, u8, ev["tensor"][0][sel], ev["tensor"][1][sel])
    sel, value = sel[ok], value[ok]
    if not len(sel):
        return None
    # An old-style tensor summary (plugin assets) has no tag; EventAccumulator names it by node_name.
    a, b = ev["tag"][0][sel].copy(), ev["tag"][1][sel].copy()
    empty = a == b
    a[empty], b[empty] = ev["node"][0][sel][empty], ev["node"][1][sel][empty]
    codes, keys = _tags(u8, a, b)
    return _frame(run, keys, codes, ev["step"][sel], value, ev["wall"][sel])
