"""Probe reductions (core/watcher/reductions.py): each equals a plain reference on known data; the
subsampled histogram equals the full one within sampling error."""
import contextlib
import warnings

import pytest
import torch
from actlab.activations import identify
from actlab.errors import UserError
from actlab.watcher.probes import ActivationProbes, Target
from actlab.watcher.reductions import (
    AbsBuffers,
    Fused,
    Histogram,
    abs_sum,
    indicator,
    nonzero,
    unit_sum,
)


def reference_hist(x: torch.Tensor, bins=64, lo=-6.0, hi=6.0, keep=None) -> torch.Tensor:
    """Bin by hand in float64: clamp into the end bins, NaN into the last one."""
    v = x.double().reshape(-1)
    v = torch.where(torch.isnan(v), torch.full_like(v, hi), v).clamp(lo, hi)
    idx = ((v - lo) / (hi - lo) * bins).floor().clamp(0, bins - 1).long()
    w = keep.reshape(-1).double() if keep is not None else torch.ones_like(v)
    return torch.zeros(bins, dtype=torch.float64).index_add_(0, idx, w)


def test_small_tensor_histogram_is_exact_with_outliers_nan_and_inf():
    x = torch.tensor([[-100.0, -5.5, 0.5, 100.0], [float("nan"), float("inf"), float("-inf"), 0.0]])
    h = Histogram(12, -6, 6, sample=1 << 14)(x, units=4)
    assert h.tolist() == reference_hist(x, 12).tolist()
    assert h[0] == 3 and h[-1] == 3 and h.sum() == x.numel()  # -100, -5.5, -inf | 100, nan, inf


def test_subsampled_histogram_matches_the_full_one_within_sampling_error():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 96, 257, generator=g) * 2  # 1.6M elements, 257 units
    h = Histogram(64, -6, 6, sample=1 << 14)(x, units=257)
    ref = reference_hist(x)
    # Each bin's share has a sampling sd of at most sqrt(p / 16384) ~ 0.0015 here: 0.008 is > 5 sd.
    assert (h.double() / h.sum() - ref / ref.sum()).abs().max() < 0.008
    assert abs(h.sum().item() - x.numel()) / x.numel() < 1e-3  # counts scaled back to elements
    # And the estimate is not the full histogram itself (it really sampled).
    assert not torch.equal(h.double(), ref)


def test_subsample_visits_every_unit_even_when_units_divide_the_stride():
    # 4096 units and 2^22 elements: a stride of n // sample = 256 divides 4096 and would see 1 unit in 16.
    units = 4096
    x = torch.arange(units, dtype=torch.float32).repeat(1024, 1)  # value = unit index
    h = Histogram(units, -0.5, units - 0.5, sample=1 << 14)
    seen = h(x, units=units) > 0
    assert seen.float().mean() > 0.95


def test_subsampled_histogram_skips_padded_tokens():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(32, 128, 200, generator=g)
    pad = torch.rand(32, 128, generator=g) > 0.4
    x[~pad] = 5.0  # padded tokens hold a value the histogram must never see
    h = Histogram(64, -6, 6, sample=1 << 14)(x, units=200, pad=pad)
    keep = pad.unsqueeze(-1).expand_as(x)
    ref = reference_hist(x, keep=keep)
    spike = int((5.0 + 6) / 12 * 64)
    assert h[spike] < 0.01 * h.sum()  # the padded 5.0s are not there
    assert (h.double() / h.sum() - ref / ref.sum()).abs().max() < 0.008
    assert abs(h.sum().item() - keep.sum().item()) / keep.sum().item() < 0.03


def test_a_non_contiguous_padded_activation_is_binned_whole_and_exactly():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(64, 32, 40, generator=g).transpose(0, 1)  # (32, 64, 40), not contiguous
    pad = torch.rand(32, 64, generator=g) > 0.5
    h = Histogram(64, -6, 6, sample=1 << 10)(x, units=40, pad=pad)
    assert torch.equal(h.double(), reference_hist(x, keep=pad.unsqueeze(-1).expand_as(x)))


def test_channels_last_conv_map_is_sampled_without_a_copy_of_its_own_order():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(16, 64, 32, 32, generator=g).to(memory_format=torch.channels_last)
    h = Histogram(64, -6, 6, sample=1 << 12)(x, units=64)
    ref = reference_hist(x)
    assert (h.double() / h.sum() - ref / ref.sum()).abs().max() < 0.02


@pytest.mark.parametrize("method", ["histc", "onehot"])
def test_cuda_binning_methods_count_what_bincount_counts(method):
    # The CUDA paths (histc; a one-hot product under deterministic algorithms) run on the CPU too:
    # same counts as the CPU's bincount, on values outside the range, at its edges, NaN, infinities
    # and padded elements.
    g = torch.Generator().manual_seed(7)
    v = torch.cat([4 * torch.randn(5000, generator=g),
                   torch.tensor([-6.0, 6.0, 0.0, -7.5, 9.0, float("nan"), float("inf"), -float("inf"), 5.99])])
    keep = torch.rand(len(v), generator=g) > 0.25
    h = Histogram(64, -6, 6)
    for k in (None, keep):
        ref = h.bin(v, k, 1, method="bincount")
        got = h.bin(v, k, 1, method=method)
        assert torch.equal(got, ref), (method, k is None)
        assert ref.sum() == (len(v) if k is None else int(keep.sum()))
    assert torch.equal(h.bin(v, None, 3, method=method), 3 * h.bin(v, None, 1))  # a subsample's stride scales
    with pytest.raises(ValueError, match="unknown binning method 'hist'"):
        h.bin(v, None, 1, method="hist")


def test_abs_sum_matches_reference_with_and_without_padding():
    g = torch.Generator().manual_seed(3)
    y = torch.randn(4, 6, 5, generator=g)
    pad = torch.tensor([[1, 1, 1, 0, 0, 0]] * 4).bool()
    bufs = AbsBuffers()
    ref = y.abs().sum((0, 1))
    assert torch.allclose(abs_sum(y, (0, 1), 5, False, bufs), ref)
    ref_pad = (y.abs() * pad.unsqueeze(-1)).sum((0, 1))
    assert torch.allclose(abs_sum(y, (0, 1), 5, False, bufs, pad.float()), ref_pad)
    # bf16 activations: fp32 result, no bf16 rounding of the per-step sum beyond the inputs'.
    yb = y.bfloat16()
    s = abs_sum(yb, (0, 1), 5, False, bufs, pad.bfloat16())
    assert s.dtype == torch.float32
    assert torch.allclose(s, (yb.float().abs() * pad.unsqueeze(-1)).sum((0, 1)), rtol=1e-3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_indicator_counts_match_boolean_counts(dtype):
    y = torch.tensor([[[0.0, 1.0], [0.0, -0.0]], [[-2.0, 0.0], [3.0, float("nan")]]], dtype=dtype)
    pad = torch.tensor([[True, False], [True, True]])
    bufs = AbsBuffers()
    ind = indicator(y, bufs)
    assert ind.dtype == dtype and torch.equal(y[0, 0], torch.tensor([0.0, 1.0], dtype=dtype))  # y untouched
    # A NaN output is not active (torch.count_nonzero would count it).
    assert unit_sum(ind, (0, 1), 2).tolist() == torch.count_nonzero(y.nan_to_num(0.0), dim=(0, 1)).float().tolist() == [2.0, 1.0]
    w = pad.to(dtype)
    assert unit_sum(indicator(y, bufs), (0, 1), 2, w).tolist() == [2.0, 1.0]
    pad[0, 0] = False  # now the 1.0 of token (0, 0) does not count
    assert unit_sum(indicator(y, bufs), (0, 1), 2, pad.to(dtype)).tolist() == [2.0, 0.0]
    g = torch.tensor([0.5, -1e-3, 0.0, float("nan")])
    assert nonzero(g.abs()).tolist() == [1.0, 1.0, 0.0, 0.0]  # a NaN f' is not > eps


def test_unit_sum_takes_each_path_alike():
    g = torch.Generator().manual_seed(7)
    a = torch.randn(3, 5, 4, generator=g).abs()
    w = torch.tensor([[1, 1, 1, 0, 0]] * 3).float()
    ref = (a * w.unsqueeze(-1)).sum((0, 1))
    assert torch.allclose(unit_sum(a, (0, 1), 4, w), ref)  # BLAS mv
    assert torch.allclose(unit_sum(a.transpose(0, 1).contiguous().transpose(0, 1), (0, 1), 4, w), ref)  # not contiguous
    assert torch.allclose(unit_sum(a.bfloat16(), (0, 1), 4, w), ref, rtol=1e-2)  # another dtype than w's


def test_probes_on_bf16_match_fp32():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(64, 32, generator=g)
    out = {}
    for dt in (torch.float32, torch.bfloat16):
        act = torch.nn.GELU().train()
        ident = identify(act)
        p = ActivationProbes([Target("act", act, ident.activation, ident.params, dead=ident.kind == "exact", cls="GELU")],
                             stats_every=1)
        act(x.to(dt))
        out[dt] = p.flush()["act"]
    a, b = out[torch.float32], out[torch.bfloat16]
    assert torch.allclose(torch.as_tensor(a["score"]), torch.as_tensor(b["score"]), rtol=2e-2)
    assert a["zero_frac"] == b["zero_frac"] and a["dead"] == b["dead"]
    assert a["hist"].sum() == b["hist"].sum() == x.numel()


def test_probes_leave_the_users_rng_alone():
    act = torch.nn.ReLU().train()
    p = ActivationProbes([Target("act", act, "relu", {}, cls="ReLU")], stats_every=1, hist_sample=256)
    state = torch.get_rng_state()
    act(torch.ones(64, 64))
    p.flush()
    assert torch.equal(state, torch.get_rng_state())


def test_bad_probe_options_are_one_line_errors():
    with pytest.raises(UserError, match="hist_sample"):
        Histogram(64, -6, 6, sample=-1)
    with pytest.raises(UserError, match="fused"):
        Fused("maybe")




@contextlib.contextmanager
def _no_raise():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def test_fused_window_sum_equals_eager():
    g = torch.Generator().manual_seed(5)
    y = torch.randn(4, 6, 5, generator=g)
    w = torch.tensor([[1, 1, 0, 0, 0, 0]] * 4).float()
    f = Fused(True)
    with _no_raise():
        got = f(y, w, (0, 1), False)
    if got is None:
        pytest.skip("torch.compile cannot build a kernel here (warned, fell back to eager)")
    assert not f._broken
    assert torch.allclose(got, abs_sum(y, (0, 1), 5, False, AbsBuffers(), w))
    assert Fused("auto")(y, w, (0, 1), False) is None  # eager is the CPU default


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_histc_and_window_sum_equal_the_cpu_path():
    g = torch.Generator().manual_seed(6)
    x = torch.randn(8, 16, 33, generator=g)
    pad = torch.rand(8, 16, generator=g) > 0.3
    h_cpu = Histogram(64, -6, 6)(x, units=33, pad=pad)
    h_gpu = Histogram(64, -6, 6)(x.cuda(), units=33, pad=pad.cuda()).cpu()
    assert torch.equal(h_cpu, h_gpu)
    torch.use_deterministic_algorithms(True)
    try:
        h_det = Histogram(64, -6, 6)(x.cuda(), units=33, pad=pad.cuda()).cpu()
    finally:
        torch.use_deterministic_algorithms(False)
    assert torch.equal(h_cpu, h_det)
    s = Fused("auto")(x.cuda().bfloat16(), pad.cuda().bfloat16(), (0, 1), False)
    ref = (x.bfloat16().float().abs() * pad.unsqueeze(-1)).sum((0, 1))
    assert s is not None and torch.allclose(s.cpu(), ref, rtol=1e-2)


def test_watch_refuses_bad_probe_speed_settings(tmp_path):
    from actlab.watcher import watch

    m = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU())
    with pytest.raises(UserError, match="fused must be"):
        watch(m, runs_dir=tmp_path, fused="maybe", verbose=False)
    with pytest.raises(UserError, match="hist_sample"):
        watch(m, runs_dir=tmp_path, hist_sample=-5, verbose=False)
