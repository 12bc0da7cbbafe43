"""TensorBoard event files, every point kept (not the reader's default reservoir sample)."""
from __future__ import annotations

import os
import struct
import tempfile
from pathlib import PurePosixPath

import numpy as np
import pandas as pd

from core.logs.names import _stem
from core.logs.parsed import LogParseError, ParsedLog
from core.runs import SCALAR_COLUMNS


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
