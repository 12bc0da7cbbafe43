"""The text reader's token path (a loose line-shape regex, then tokens blanked and numbers read in
C) must give what the line-by-line path gives, on the values that could fool it."""
import pandas as pd
import pytest

from actlab.logs import parse_text


def _same(text):
    fast, slow = parse_text(text, "run.log"), parse_text(text, "run.log", fast=False)
    cols = ["step", "epoch", "key", "value"]
    pd.testing.assert_frame_equal(fast.df[cols].astype({"key": str}).reset_index(drop=True),
                                  slow.df[cols].astype({"key": str}).reset_index(drop=True))
    return fast


@pytest.mark.parametrize("odd", ["nan", "inf", "-inf", "1e-05", "2.5E+3", "+.5", "7.", "5-3", "1.2.3", "1e5e5", "-"])
def test_odd_values_among_regular_lines(odd):
    lines = [f"epoch={i} step={i * 10} loss/train={1 / (i + 1):.4f} acc/top1={i / 100:.3f} top5_acc={i / 90:.3f}"
             for i in range(200)]
    lines[57] = f"epoch=57 step=570 loss/train={odd} acc/top1=0.57 top5_acc=0.6"
    lines[58] = f"epoch=58 step=580 loss/train=0.5 acc/top1={odd} top5_acc=0.6"
    _same("\n".join(lines) + "\n")


def test_digits_and_exponent_letters_inside_keys_are_not_numbers(monkeypatch):
    import actlab.logs.templates as templates
    used = []
    real = templates._token_numbers
    monkeypatch.setattr(templates, "_token_numbers", lambda lines, toks: used.append(toks) or real(lines, toks))
    text = "".join(f"epoch={i} top10e5={i * 1e-7:.3e} m.x-y={i}.5 acc={i}%\n" for i in range(100))
    log = _same(text)
    assert used and set(log.df["key"].astype(str)) == {"top10e5", "m.x-y", "acc"}


def test_epoch_only_log_keeps_nan_epoch_before_the_first_epoch_line():
    log = parse_text("warmup loss=0.9\n" + "".join(f"epoch={i} loss={1 / (i + 2):.3f}\n" for i in range(100)), "a.log")
    first = log.df.iloc[0]
    assert first["step"] == 0 and first["epoch"] != first["epoch"]  # NaN: no epoch printed yet
    assert log.df["step"].tolist()[1:4] == [0, 1, 2]
