"""One-element numeric TensorProtos (TF2 writes every tf.summary.scalar as one) -> float.

The layout TF writes (dtype float or double, shape [] or [1], the value in tensor_content or
float_val/double_val) is decoded as columns; any other tensor gets a TensorProto and
tensorboard's make_ndarray, so the meaning stays tensorboard's."""
from __future__ import annotations

import numpy as np

from .tfrecord import _read, walk

_DT_FLOAT, _DT_DOUBLE = 1, 2
_SHAPE_ONE = np.frombuffer(b"\x12\x02\x08\x01", np.uint8)  # TensorShapeProto{dim {size: 1}}


def scalar_tensors(data: bytes, u8: np.ndarray, pos: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(value, ok) per TensorProto span: ok where the tensor holds exactly one number."""
    m = len(pos)
    value, ok = np.full(m, np.nan), np.zeros(m, bool)
    dtype = np.zeros(m, np.int64)
    shape = (np.zeros(m, np.int64), np.zeros(m, np.int64))
    at, size, fnum = np.zeros(m, np.int64), np.zeros(m, np.int64), np.zeros(m, np.int64)
    n_val, other = np.zeros(m, np.int64), np.zeros(m, bool)
    rounds, bad = walk(u8, pos, end)
    for r in rounds:
        sel = (r.num == 1) & (r.wire == 0)
        dtype[r.msg[sel]] = r.ival[sel].astype(np.int64)
        sel = (r.num == 2) & (r.wire == 2)
        shape[0][r.msg[sel]], shape[1][r.msg[sel]] = r.pos[sel], r.end[sel]
        # tensor_content (4), float_val (5, packed or not), double_val (6, packed or not)
        val = ((r.num == 4) & (r.wire == 2)) | ((r.num == 5) & np.isin(r.wire, (2, 5))) | \
              ((r.num == 6) & np.isin(r.wire, (1, 2)))
        mv = r.msg[val]
        at[mv], size[mv], fnum[mv] = r.pos[val], r.end[val] - r.pos[val], r.num[val]
        n_val[mv] += 1
        other[r.msg[~(val | np.isin(r.num, (1, 2)))]] = True
    slen = shape[1] - shape[0]
    shape_ok = (slen == 0) | ((slen == 4) & _bytes_equal(u8, shape[0], _SHAPE_ONE))
    # float_val under a double dtype (or the reverse) is make_ndarray's business.
    layout = ((dtype == _DT_FLOAT) & np.isin(fnum, (4, 5)) & (size == 4)) | \
             ((dtype == _DT_DOUBLE) & np.isin(fnum, (4, 6)) & (size == 8))
    fast = ~bad & ~other & (n_val == 1) & shape_ok & layout
    f = np.flatnonzero(fast & (dtype == _DT_FLOAT))
    value[f] = _read(u8, at[f], "<f4").astype(np.float64)
    d = np.flatnonzero(fast & (dtype == _DT_DOUBLE))
    value[d] = _read(u8, at[d], "<f8")
    ok[f], ok[d] = True, True
    for i in np.flatnonzero(~fast & ~bad).tolist():
        v = _slow(data[pos[i]:end[i]])
        if v is not None:
            value[i], ok[i] = v, True
    return value, ok


def _bytes_equal(u8: np.ndarray, pos: np.ndarray, want: np.ndarray) -> np.ndarray:
    out = np.ones(len(pos), bool)
    for k, b in enumerate(want):
        out &= u8[np.minimum(pos + k, len(u8) - 1)] == b
    return out


def _slow(blob: bytes) -> float | None:
    from tensorboard.compat.proto import tensor_pb2
    from tensorboard.util import tensor_util
    try:
        arr = tensor_util.make_ndarray(tensor_pb2.TensorProto.FromString(blob))
    except Exception:  # a malformed or unsupported tensor is skipped, as EventAccumulator's users do
        return None
    if arr.size == 1 and np.issubdtype(arr.dtype, np.number):
        return float(arr.reshape(-1)[0])
    return None
