"""Our TFRecord/Event reader against tensorboard's EventAccumulator and tbparse, and its CRC checks."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from actlab.logs import LogParseError, parse_bytes, parse_tensorboard
from actlab.logs.tfrecord import masked_crc32c


def _write_events(tmp_path, tensors=True):
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter
    from tensorboard.util import tensor_util

    V = summary_pb2.Summary.Value
    w = EventFileWriter(str(tmp_path))
    for step in range(0, 300):
        values = [V(tag="loss/train", simple_value=1 / (1 + step)), V(tag="acc", simple_value=step / 300)]
        if tensors and step % 3 == 0:
            values.append(V(tag="tf2/scalar", tensor=tensor_util.make_tensor_proto(np.float32(step * 0.5))))
            values.append(V(tag="tf2/double", tensor=tensor_util.make_tensor_proto(np.float64(step / 7))))
            values.append(V(tag="tf2/shape1", tensor=tensor_util.make_tensor_proto([step * 0.25], dtype=np.float32)))
            values.append(V(tag="tf2/int", tensor=tensor_util.make_tensor_proto(np.int32(step))))
            values.append(V(tag="tf2/vector", tensor=tensor_util.make_tensor_proto([1.0, 2.0])))   # not a scalar
            values.append(V(tag="tf2/text", tensor=tensor_util.make_tensor_proto("hello")))        # not a number
            values.append(V(node_name="old/style", tensor=tensor_util.make_tensor_proto(np.float32(-step))))
        # A huge step (a 10-byte varint when negative) and the wall time's full double precision.
        s = -5 if step == 299 else step * 1_000_003
        w.add_event(event_pb2.Event(wall_time=1.7e9 + step / 3, step=s, summary=summary_pb2.Summary(value=values)))
    w.add_event(event_pb2.Event(wall_time=1.7e9, step=9, summary=summary_pb2.Summary(
        value=[V(tag="acc", simple_value=0.5)])))
    w.close()
    return next(tmp_path.glob("events.out.tfevents.*"))


def _accumulator_rows(path):
    """What the previous reader (EventAccumulator with size_guidance 0) returned, in its order."""
    from tensorboard.backend.event_processing import event_accumulator as ea
    from tensorboard.util import tensor_util

    acc = ea.EventAccumulator(str(path), size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})
    acc.Reload()
    rows = [(t, e.step, e.value, e.wall_time) for t in acc.Tags()["scalars"] for e in acc.Scalars(t)]
    for t in acc.Tags()["tensors"]:
        for e in acc.Tensors(t):
            arr = tensor_util.make_ndarray(e.tensor_proto)
            if arr.size == 1 and np.issubdtype(arr.dtype, np.number):
                rows.append((t, e.step, float(arr.reshape(-1)[0]), e.wall_time))
    return rows


def _rows(log):
    d = log.df
    return list(zip(d["key"].astype(str), d["step"].tolist(), d["value"].tolist(), d["wall_time"].tolist()))


@pytest.mark.parametrize("verify", [True, False])
def test_same_rows_as_event_accumulator(tmp_path, verify):
    path = _write_events(tmp_path)
    log = parse_tensorboard(path.read_bytes(), f"run/{path.name}", verify_crc=verify)
    want = _accumulator_rows(path)
    assert _rows(log) == want
    assert {k for k, *_ in want} == {"loss/train", "acc", "tf2/scalar", "tf2/double", "tf2/shape1", "tf2/int",
                                     "old/style"}
    assert log.warnings == []


def test_same_scalars_as_tbparse(tmp_path):
    tbparse = pytest.importorskip("tbparse")
    path = _write_events(tmp_path, tensors=False)  # tbparse's own tensor reader fails on int32 tensors
    ref = tbparse.SummaryReader(str(path), pivot=False).scalars
    ours = parse_tensorboard(path.read_bytes(), path.name).df
    ours = ours[ours["key"].isin(set(ref["tag"]))]
    a = sorted(zip(ref["tag"], ref["step"], ref["value"]))
    b = sorted(zip(ours["key"].astype(str), ours["step"], ours["value"]))
    assert len(ours) == len(parse_tensorboard(path.read_bytes(), path.name).df)
    assert a == b and len(a) == 601


def _records(data: bytes):
    off, out = 0, []
    while off < len(data):
        (n,) = struct.unpack_from("<Q", data, off)
        out.append((off, n))
        off += n + 16
    return out


def test_corrupt_payload_crc_is_data_loss_with_verify_and_ignored_without(tmp_path):
    data = bytearray(_write_events(tmp_path).read_bytes())
    off, n = _records(bytes(data))[5]
    data[off + n + 12] ^= 0xFF  # the payload CRC of record 5
    data = bytes(data)
    log = parse_tensorboard(data, "bad.tfevents")
    assert any("fail their CRC" in w and "data loss" in w and f"byte {off}" in w for w in log.warnings)
    loose = parse_tensorboard(data, "bad.tfevents", verify_crc=False)
    assert loose.warnings == [] and len(loose.df) == len(log.df) + 2  # record 5 is step 4: two scalars


def test_corrupt_header_stops_framing_and_says_so(tmp_path):
    data = bytearray(_write_events(tmp_path).read_bytes())
    off, _ = _records(bytes(data))[10]
    data[off + 8] ^= 0x01  # the length's CRC
    log = parse_tensorboard(bytes(data), "hdr.tfevents")
    assert "header at byte" in log.warnings[0] and "kept the 10 complete records" in log.warnings[0]
    with pytest.raises(LogParseError, match="fails its CRC"):
        data2 = bytearray(data)
        data2[8] ^= 0x01
        parse_tensorboard(bytes(data2), "first.tfevents")


def test_truncated_record_keeps_the_complete_ones(tmp_path):
    data = _write_events(tmp_path).read_bytes()
    recs = _records(data)
    for verify in (True, False):
        log = parse_tensorboard(data[:recs[-1][0] + 20], "cut.tfevents", verify_crc=verify)
        assert "truncated TensorBoard file" in log.warnings[0] and f"byte {recs[-1][0]}" in log.warnings[0]
        assert (log.df["step"] == 9).sum() == 0


def test_garbage_payload_with_valid_crc_is_skipped_not_a_traceback():
    junk = b"\x0a\xff\xff\xff\xff\x0f"  # a length-delimited field claiming 4 GB
    rec = struct.pack("<Q", len(junk))
    rec += struct.pack("<I", masked_crc32c(rec)) + junk + struct.pack("<I", masked_crc32c(junk))
    with pytest.raises(LogParseError, match="no scalar summaries"):
        parse_tensorboard(rec, "junk.tfevents")


def test_loader_threads_verify_crc(tmp_path, monkeypatch):
    data = bytearray(_write_events(tmp_path).read_bytes())
    off, n = _records(bytes(data))[5]
    data[off + n + 12] ^= 0xFF
    assert any("CRC" in w for w in parse_bytes("a.tfevents", bytes(data)).warnings)
    assert not parse_bytes("b.tfevents", bytes(data), verify_crc=False).warnings


def test_cli_no_crc_reads_a_corrupt_record(tmp_path):
    import subprocess
    import sys
    data = bytearray(_write_events(tmp_path, tensors=False).read_bytes())
    off, n = _records(bytes(data))[5]
    data[off + n + 12] ^= 0xFF
    (tmp_path / "x.tfevents").write_bytes(bytes(data))
    for p in tmp_path.glob("events.out.*"):
        p.unlink()

    def run(*flags):
        return subprocess.run([sys.executable, "-m", "actlab", "logs", "parse", *flags, str(tmp_path / "x.tfevents")],
                              capture_output=True, text=True, timeout=120)
    strict, loose = run(), run("--no-crc")
    assert strict.returncode == loose.returncode == 0
    assert len(loose.stdout.splitlines()) == len(strict.stdout.splitlines()) + 2


def test_random_corruption_is_a_warning_or_a_log_parse_error_never_a_traceback(tmp_path):
    import random
    base = _write_events(tmp_path).read_bytes()
    rng = random.Random(0)
    for _ in range(60):
        b = bytearray(base)
        for _ in range(rng.choice([1, 3, 20])):
            b[rng.randrange(len(b))] = rng.randrange(256)
        if rng.random() < 0.3:
            b = b[:rng.randrange(len(b))]
        for verify in (True, False):
            try:
                parse_tensorboard(bytes(b), "f.tfevents", verify_crc=verify)
            except LogParseError:
                pass
