"""The history rows of a W&B run's transaction log (`run-<id>.wandb`), the only record of an
offline run before `wandb sync`: wandb writes no wandb-history.jsonl any more.

Framing is LevelDB's log format, which wandb documents: a 7-byte file header (":W&B", magic 0xBEE1,
version 0), then 32 KiB blocks of chunks (crc32c u32, length u16, type u8: 1 full, 2 first,
3 middle, 4 last); a block's last < 7 bytes are zero padding. Each whole record is a
`wandb.proto.wandb_internal_pb2.Record`, parsed by wandb's own protobuf classes (so reading a
.wandb file needs wandb installed); a file without wandb raises LogParseError naming the fix.
"""
from __future__ import annotations

import json
import struct

from .parsed import LogParseError

_HEADER = b":W&B\xe1\xbe\x00"
_BLOCK = 32768
_CHUNK = struct.Struct("<IHB")


def records(data: bytes, name: str = "<run.wandb>") -> tuple[list[bytes], list[str]]:
    """Whole records' bytes, and warnings (a cut last record is expected while a run is live)."""
    if not data.startswith(_HEADER):
        raise LogParseError(name, "not a W&B transaction log (no ':W&B' header)")
    out, warnings, buf, off, n = [], [], b"", len(_HEADER), len(data)
    while off + _CHUNK.size <= n:
        left = _BLOCK - off % _BLOCK
        if left < _CHUNK.size:
            off += left
            continue
        _crc, length, kind = _CHUNK.unpack_from(data, off)
        if kind == 0 and length == 0:  # zero fill at the end of a block
            off += left
            continue
        if kind not in (1, 2, 3, 4) or off + _CHUNK.size + length > n or length > left - _CHUNK.size:
            warnings.append(f"{name}: W&B log unreadable from byte {off}: kept the {len(out)} records before it")
            break
        chunk = data[off + _CHUNK.size: off + _CHUNK.size + length]
        off += _CHUNK.size + length
        if kind == 1:
            out.append(chunk)
        elif kind == 2:
            buf = chunk
        else:
            buf += chunk
            if kind == 4:
                out.append(buf)
                buf = b""
    return out, warnings


def history(data: bytes, name: str = "<run.wandb>") -> tuple[list[dict], list[str]]:
    """One dict per run.log() call ({"_step": 3, "loss/train": 0.7, ...}), values JSON-decoded;
    nested keys (a histogram's "_type", "bins") rebuilt as nested dicts, as wandb-history.jsonl had them."""
    try:
        from wandb.proto import wandb_internal_pb2 as pb
    except ImportError:
        raise LogParseError(name, "reading a W&B .wandb log needs wandb: pip install wandb") from None
    recs, warnings = records(data, name)
    rows, bad = [], 0
    for raw in recs:
        rec = pb.Record()
        try:
            rec.ParseFromString(raw)
        except Exception:  # protobuf's DecodeError; a damaged record is skipped, counted below
            bad += 1
            continue
        if rec.WhichOneof("record_type") != "history":
            continue
        row: dict = {}
        for item in rec.history.item:
            path = list(item.nested_key) or [item.key]
            try:
                value = json.loads(item.value_json)
            except ValueError:
                value = item.value_json
            at = row
            for k in path[:-1]:
                at = at.setdefault(k, {}) if isinstance(at.get(k, {}), dict) else {}
            at[path[-1]] = value
        rows.append(row)
    if bad:
        warnings.append(f"{name}: {bad} record(s) are not valid W&B records and were skipped")
    return rows, warnings
