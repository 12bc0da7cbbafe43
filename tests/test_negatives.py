import numpy as np
import pytest
import torch

from actlab.models.negatives import exhaustive_hard_negatives, hard_negatives, retrieval_metrics, retrieval_ranks


def test_balltree_matches_exhaustive_search():
    rng = np.random.default_rng(0)
    anchors, cands = rng.normal(size=(60, 8)), rng.normal(size=(80, 8))
    positives = rng.integers(0, 80, size=60)
    got = hard_negatives(anchors, cands, positives, k=3)
    want = exhaustive_hard_negatives(anchors, cands, positives, k=3)
    assert np.array_equal(got, want)
    assert not (got == positives[:, None]).any()


def test_true_counter_is_excluded_even_when_nearest():
    cands = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    anchors = np.array([[1.0, 0.0], [0.0, 1.0]])
    got = hard_negatives(anchors, cands, positives=[0, 2], k=1)
    assert got[:, 0].tolist() == [1, 1]
    # A duplicate of the true counter's text can be excluded too.
    got = hard_negatives(anchors, cands, positives=[0, 2], k=1, exclude=[[1], []])
    assert got[0, 0] == 2


def test_topk_and_mrr_on_a_hand_made_case():
    candidates = torch.eye(4)
    # Query 0 points at candidate 0 (rank 1); query 1 is nearest 0 then 2 then 1 (rank 3);
    # query 2 is nearest 1 then 3 (target 3: rank 2).
    queries = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.9, 0.1, 0.4, 0.0], [0.0, 1.0, 0.0, 0.5]])
    ranks = retrieval_ranks(queries, candidates, torch.tensor([0, 1, 3]))
    assert ranks.tolist() == [1, 3, 2]
    m = retrieval_metrics(ranks, ks=(1, 2, 5))
    assert m["acc/top1"] == pytest.approx(1 / 3) and m["acc/top2"] == pytest.approx(2 / 3)
    assert m["acc/top5"] == 1.0
    assert m["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 2) / 3)


def test_collapsed_embeddings_rank_last():
    ranks = retrieval_ranks(torch.ones(3, 4), torch.ones(5, 4), torch.tensor([0, 1, 2]))
    assert ranks.tolist() == [5, 5, 5]
