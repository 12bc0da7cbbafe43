"""Hard negatives by nearest neighbour (sklearn BallTree) and the retrieval evaluator.

Embeddings are L2-normalised before the tree is built, so Euclidean neighbours are cosine
neighbours (|a - b|^2 = 2 - 2 cos) and the BallTree metric stays the cheap default.
"""
from __future__ import annotations

import numpy as np
import torch


def _unit(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def hard_negatives(anchors, candidates, positives, k: int = 1, exclude=None) -> np.ndarray:
    """For each anchor i, the k candidates nearest to it (cosine) other than its true counter
    `positives[i]` (and any candidate index in `exclude[i]`, e.g. duplicates of that text).
    Returns an (n_anchors, k) int array, nearest first."""
    anchors, candidates = _unit(anchors), _unit(candidates)
    positives = np.asarray(positives)
    n_cand = len(candidates)
    if n_cand < 2:
        raise ValueError("need at least 2 candidates to mine a negative")
    extra = max((len(e) for e in exclude), default=0) if exclude is not None else 0
    query_k = min(n_cand, k + 1 + extra)
    # Imported here: scikit-learn costs ~0.7 s to import, and `actlab train mnist` never mines.
    from sklearn.neighbors import BallTree

    _, idx = BallTree(candidates).query(anchors, k=query_k)
    out = np.empty((len(anchors), k), dtype=np.int64)
    for i, row in enumerate(idx):
        banned = {int(positives[i])} | (set(exclude[i]) if exclude is not None else set())
        picked = [j for j in row if j not in banned][:k]
        if len(picked) < k:
            # Too few distinct candidates left: repeat the farthest allowed one rather than fail.
            allowed = [j for j in range(n_cand) if j not in banned] or [int(row[-1])]
            picked += [picked[-1] if picked else allowed[0]] * (k - len(picked))
        out[i] = picked
    return out


def exhaustive_hard_negatives(anchors, candidates, positives, k: int = 1) -> np.ndarray:
    """The brute-force reference: the same answer as `hard_negatives` by sorting all distances."""
    a, c = _unit(anchors), _unit(candidates)
    d = ((a[:, None, :] - c[None, :, :]) ** 2).sum(-1)
    d[np.arange(len(a)), np.asarray(positives)] = np.inf
    return np.argsort(d, axis=1, kind="stable")[:, :k]


def retrieval_ranks(queries: torch.Tensor, candidates: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1-based rank of each query's true candidate by cosine similarity among all candidates.
    Ties count against the model (rank = 1 + number of candidates scoring at least as high,
    other than the target), so a collapsed encoder cannot score well."""
    q = torch.nn.functional.normalize(queries.float(), dim=-1)
    c = torch.nn.functional.normalize(candidates.float(), dim=-1)
    sim = q @ c.T
    target_sim = sim.gather(1, targets.view(-1, 1))
    ahead = (sim >= target_sim).sum(1) - 1
    return ahead + 1


def retrieval_metrics(ranks: torch.Tensor, ks=(1, 5, 10)) -> dict[str, float]:
    """`acc/top{k}` (fraction with rank <= k) and `mrr` (mean of 1/rank)."""
    ranks = ranks.float()
    out = {f"acc/top{k}": float((ranks <= k).float().mean()) for k in ks}
    out["mrr"] = float((1.0 / ranks).mean())
    return out
