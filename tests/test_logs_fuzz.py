"""Fuzz: random and mutated logs either parse or raise the parser's own error, nothing else."""
import os
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actlab.logs import LogParseError, parse_bytes, parse_text
from actlab.store.runs import SCALAR_COLUMNS

FIX = Path(__file__).parent / "fixtures" / "logs"
SEEDS = [p.read_bytes() for p in sorted(FIX.glob("*")) if p.is_file()]
# ACTLAB_FUZZ_EXAMPLES=5000 for a long soak; the default keeps the suite fast.
SETTINGS = settings(max_examples=int(os.environ.get("ACTLAB_FUZZ_EXAMPLES", "150")), deadline=None, suppress_health_check=[HealthCheck.too_slow])

LINE_PIECES = st.sampled_from(["epoch", "step", "loss", "acc/top1", "val acc", "INFO", "Epoch", "=", ":", " ", "|",
                               "%", "/", "(", ")", "[", "]", "\t", "\r", "nan", "-inf", "1e-3", "0.5", "42", "98.2%",
                               "9812/10000", "Test set:", ",", "\x00", "é", "{", "}", '"'])
# Repeated print statements with changing numbers, long enough (>= 64 lines) for the template path.
templates = st.lists(st.lists(LINE_PIECES | st.just("{v}") | st.just(" {v} "), max_size=10).map("".join),
                     min_size=1, max_size=4)
repeated = st.builds(lambda ts, n, chatter: "\n".join(
    (ts[i % len(ts)].replace("{v}", f"{(i * 37 % 101) / 7:.3f}") if i % 13 else chatter) for i in range(n)),
    templates, st.integers(64, 200), st.text(max_size=20))
lines = st.lists(st.lists(LINE_PIECES | st.text(max_size=8), max_size=12).map("".join), max_size=40).map("\n".join)


def check(log):
    assert list(log.df.columns) == SCALAR_COLUMNS
    assert len(log.df) > 0
    assert log.df["step"].dtype.kind == "i"
    assert all(isinstance(n, int) and n >= 1 for n, _ in log.unparsed)


@SETTINGS
@given(lines | repeated)
def test_text_parser_only_raises_its_own_error(text):
    try:
        fast = parse_text(text, "fuzz.log")
    except LogParseError:
        return
    check(fast)
    # The whole-file template path must agree with reading line by line.
    slow = parse_text(text, "fuzz.log", fast=False)
    pd.testing.assert_frame_equal(fast.df.reset_index(drop=True), slow.df.reset_index(drop=True))


@SETTINGS
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 10**6), st.binary(max_size=6)), max_size=6),
       st.integers(0, 10**6))
def test_mutated_fixtures_parse_or_raise_parse_error(seed, edits, cut):
    data = bytearray(seed)
    for pos, blob in edits:
        p = pos % (len(data) + 1)
        data[p:p + len(blob)] = blob
    data = bytes(data[: max(0, len(data) - cut % 50)])
    try:
        log = parse_bytes("mutated.log", data)
    except LogParseError:
        return
    check(log)


@SETTINGS
@given(st.binary(max_size=400))
def test_random_bytes(data):
    try:
        check(parse_bytes("random.bin", data))
    except LogParseError:
        pass
