"""The seven dormancy scores against hand-computed cases (core/watcher/dormancy.py)."""
import math

import numpy as np
import pytest
import torch
from actlab.errors import UserError
from actlab.watcher import dormancy as D

# A layer of 5 units over 4 samples. Unit 0 never fires, unit 1 fires weakly once,
# unit 4 is loud; units 2 and 3 are ordinary.
H = np.array([[0.0, 0.0, 1.0, 2.0, 9.0],
              [0.0, 0.4, 1.0, 2.0, 9.0],
              [0.0, 0.0, 1.0, 2.0, 9.0],
              [0.0, 0.0, 1.0, 2.0, 9.0]])
# mean|h| per unit: 0, 0.1, 1, 2, 9 -> layer mean 2.42 -> scores 0, 0.0413, 0.413, 0.826, 3.719


def test_normalised_by_layer_mean_not_sum():
    s = D.normalised(np.abs(H).mean(0))
    assert s == pytest.approx([0.0, 0.1 / 2.42, 1 / 2.42, 2 / 2.42, 9 / 2.42])
    assert s.mean() == pytest.approx(1.0)  # the paper's eq. (1) and the reference code: mean 1, not sum 1
    assert D.normalised(np.zeros(3)).tolist() == [0.0, 0.0, 0.0]


def test_dead_redo_overactive_hand_case():
    active = (H > 0).sum(0)
    assert D.dead_mask(active).tolist() == [True, False, False, False, False]
    mean_abs = np.abs(H).mean(0)
    assert D.redo_mask(mean_abs, 0.1).tolist() == [True, True, False, False, False]
    assert D.redo_mask(mean_abs, 0.5).tolist() == [True, True, True, False, False]
    assert D.redo_mask(mean_abs, 0.0).tolist() == [True, False, False, False, False]
    assert D.overactive_mask(mean_abs, 3.0).tolist() == [False, False, False, False, True]


def test_grama_on_gradients_hand_case():
    # Unit 2 is loud in the forward pass but gets almost no gradient: only GraMa flags it.
    g = np.array([[1.0, 1.0, 0.01, 1.0, 1.0],
                  [1.0, 1.0, 0.03, 1.0, 1.0]])
    mean_abs_g = np.abs(g).mean(0)  # 1, 1, 0.02, 1, 1 -> mean 0.804 -> unit 2 scores 0.0249
    assert D.grama_mask(mean_abs_g, 0.1).tolist() == [False, False, True, False, False]
    assert D.grama_mask(mean_abs_g, 0.02).tolist() == [False] * 5


def test_saturated_from_registry_zones():
    from actlab.activations import properties

    zones = properties("tanh")["saturation_zones"]
    assert zones and zones[0][0] == -6.0 and zones[-1][1] == 6.0
    # pre-activations: unit 0 always far in a tail, unit 1 always near 0, unit 2 in a tail 3 times of 4
    x = torch.tensor([[-50.0, 0.1, 8.0], [30.0, -0.2, 9.0], [-7.0, 0.0, 7.0], [12.0, 0.3, 0.0]])
    inside = D.in_zones(x, zones)
    assert inside[:, 0].all() and not inside[:, 1].any()
    counts = inside.sum(0).numpy()
    assert counts.tolist() == [4, 0, 3]
    assert D.saturated_mask(counts, 4, 0.99).tolist() == [True, False, False]
    assert D.saturated_mask(counts, 4, 0.75).tolist() == [True, False, True]
    assert D.saturated_mask(counts, 0, 0.99).tolist() == [False, False, False]


def test_utility_update_and_lowest_mature_fraction():
    u = D.ContributionUtility(4, eta=0.5, rho=0.25, maturity=2)
    h = torch.tensor([1.0, 2.0, 0.0, 4.0])
    w = torch.tensor([1.0, 1.0, 5.0, 0.5])  # sum_k |w_out[k, i]|
    for _ in range(3):
        u.update(h, w)
    # u = (1 - 0.5^3) * |h| * w = 0.875 * [1, 2, 0, 2]
    assert u.util.tolist() == pytest.approx([0.875, 1.75, 0.0, 1.75])
    assert u.age.tolist() == [3, 3, 3, 3]
    # 4 mature units * rho 0.25 = 1 unit per step: over 1 step the single lowest is flagged
    assert u.flagged(u.util, u.age, steps=1).tolist() == [False, False, True, False]
    # over 2 steps, the two lowest
    assert u.flagged(u.util, u.age, steps=2).tolist() == [True, False, True, False]
    # immature units are never flagged; a fractional count carries over (as the reference code)
    young = D.ContributionUtility(4, eta=0.5, rho=0.1, maturity=2)
    young.update(h, w)
    assert not young.flagged(young.util, young.age, steps=5).any()  # age 1 <= m
    young.update(h, w); young.update(h, w)
    assert not young.flagged(young.util, young.age, steps=2).any()  # 0.4 * 2 = 0.8 units owed
    assert young.flagged(young.util, young.age, steps=1).tolist() == [False, False, True, False]  # 0.8 + 0.4
    u.reset(torch.tensor([False, False, True, False]))
    assert u.util[2] == 0 and u.age[2] == 0 and u.age[0] == 3


def test_firing_age_against_own_intervals():
    a = D.FiringAge(3, history=4)
    # unit 0 fires every 10 steps; unit 1 fires every 2 steps and then stops; unit 2 never fires
    for step in range(2, 41, 2):
        fired = torch.tensor([step % 10 == 0, step <= 20, False])
        a.update(fired, step)
    last, ring = a.last.numpy(), a.ring.numpy()
    assert last.tolist() == [40.0, 20.0, 0.0]
    assert np.nanmax(ring[0]) == 10 and np.nanmax(ring[1]) == 2 and np.isnan(ring[2]).all()
    # at step 44: unit 0 is 4 steps since firing (< 10), unit 1 is 24 (> 2), unit 2 has no interval: age 44 > m=20
    assert D.FiringAge.flagged(last, ring, 44, 99.0, maturity=20).tolist() == [False, True, True]
    assert D.FiringAge.flagged(last, ring, 51, 99.0, maturity=100).tolist() == [True, True, False]
    a.reset(torch.tensor([False, True, False]), 44)
    assert a.last[1] == 44 and torch.isnan(a.ring[1]).all()


def test_effective_rank_and_feature_norm():
    assert D.effective_rank(np.eye(4)) == pytest.approx(4.0)
    assert D.effective_rank(np.ones((6, 3))) == pytest.approx(1.0)
    # singular values 3 and 1: p = 0.75, 0.25
    h = np.diag([3.0, 1.0])
    assert D.effective_rank(h) == pytest.approx(math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))))
    assert D.effective_rank(np.zeros((3, 3))) == 0.0
    assert D.feature_norm(np.array([[3.0, 4.0], [0.0, 1.0]])) == pytest.approx(3.0)


def test_jaccard():
    a, b = np.array([1, 1, 0, 0], bool), np.array([1, 0, 1, 0], bool)
    assert D.jaccard(a, b) == pytest.approx(1 / 3)
    assert D.jaccard(a, a) == 1.0
    assert math.isnan(D.jaccard(np.zeros(3, bool), np.zeros(3, bool)))
    names, m = D.jaccard_matrix({"x": a, "y": b})
    assert names == ["x", "y"] and m[0][1] == m[1][0] == pytest.approx(1 / 3)


def test_bootstrap_interval_brackets_and_degenerates():
    # 8 groups x 3 units of "active sample" counts: unit 0 never active (always dead), unit 1 active
    # in one group only (dead on resamples that miss it), unit 2 active everywhere.
    act = np.zeros((8, 3))
    act[3, 1] = 1
    act[:, 2] = 5
    lo, hi = D.bootstrap_interval(lambda s: D.dead_mask(s["active"]), {"active": act}, n_boot=400, level=0.9)
    assert lo == pytest.approx(1 / 3) and hi == pytest.approx(2 / 3)
    # P(miss group 3 in 8 draws) = (7/8)^8 = 0.34: the upper bound really is 2/3, the lower 1/3
    lo, hi = D.bootstrap_interval(lambda s: D.dead_mask(s["active"]), {"active": np.ones((8, 3))}, n_boot=50)
    assert lo == hi == 0.0


@pytest.mark.parametrize("kw, name", [({"tau": 1.5}, "tau"), ({"tau": -0.1}, "tau"), ({"grama_tau": 2}, "grama_tau"),
                                      ({"rho": 0.0}, "rho"), ({"rho": 1.0}, "rho"), ({"eta": 1.0}, "eta"),
                                      ({"maturity": -1}, "maturity"), ({"overactive": 0.5}, "overactive"),
                                      ({"age_percentile": 0}, "age_percentile"), ({"groups": 1}, "groups")])
def test_bad_settings_name_the_setting(kw, name):
    with pytest.raises(UserError) as e:
        D.DormancySettings(**kw)
    msg = str(e.value)
    assert msg.startswith(name) and "\n" not in msg


def test_unknown_definition():
    with pytest.raises(UserError, match=r"^recycle_by: unknown definition 'bogus'"):
        D.check_definition("bogus", "recycle_by", D.RECYCLE_BY)
    with pytest.raises(UserError, match="recycle_by"):
        D.check_definition("overactive", "recycle_by", D.RECYCLE_BY)
    assert D.check_definition("grama") == "grama"
    with pytest.raises(UserError, match="convention"):
        D.check_convention("adam")


def test_bootstrap_resamples_all_at_once_match_one_by_one():
    rng = np.random.default_rng(5)
    groups = {"abs": rng.random((6, 10)) * np.linspace(0.01, 2, 10), "n": np.full((6, 1), 8.0)}
    fn = lambda g: D.redo_mask(g["abs"] / g["n"], 0.3)  # noqa: E731
    lo, hi = D.bootstrap_interval(fn, groups, n_boot=100, level=0.8, seed=3)
    w = np.random.default_rng(3).multinomial(6, np.full(6, 1 / 6), size=100).astype(float)
    one = [fn({"abs": wi @ groups["abs"], "n": wi @ groups["n"]}).mean() for wi in w]
    assert (lo, hi) == (np.quantile(one, 0.1), np.quantile(one, 0.9))
    assert D.normalised(np.array([[1.0, 3.0], [0.0, 0.0]])).tolist() == [[0.5, 1.5], [0.0, 0.0]]


def test_row_percentile_matches_nanpercentile():
    rng = np.random.default_rng(0)
    x = rng.random((50, 16)) * 100
    x[rng.random((50, 16)) < 0.4] = np.nan
    x[:, 0] = 7.0  # every row has a value
    for q in (50, 90, 99, 100):
        assert np.allclose(D._row_percentile(x, q), np.nanpercentile(x, q, axis=1))
