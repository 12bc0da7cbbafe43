"""Monitor figures for retrieval runs, and the per-layer activation map the histogram overlay uses."""
import json

import pandas as pd
import pytest

from actlab.store.runs import RunStore
from actlab.train.mnist import train_mnist
from actlab.dashboard.charts import training as charts


def _df(rows):
    return pd.DataFrame(rows, columns=["run", "step", "epoch", "key", "value", "wall_time"])


def test_accuracy_figure_shows_retrieval_keys_and_mrr():
    df = _df([("r", s, 0, k, v + s / 10, float(s)) for s in (1, 2) for k, v in
              [("acc/top1", 0.1), ("acc/top5", 0.5), ("mrr", 0.3), ("ndcg@10/test", 0.2), ("loss/train", 2.0)]])
    fig = charts.accuracy_figure(df)
    traces = {t.name: list(t.y) for t in fig.data}
    assert set(traces) == {"r acc/top1", "r acc/top5", "r mrr", "r ndcg@10/test"}
    assert traces["r mrr"] == [0.4, 0.5]
    assert traces["r ndcg@10/test"] == pytest.approx([0.3, 0.4])


def test_run_json_records_each_layers_activation(tmp_path):
    name = train_mnist({"runs_dir": str(tmp_path / "runs"), "checkpoints_dir": str(tmp_path / "ck"), "name": "lk",
                        "activation": "leaky_relu", "act_params": {"alpha": 0.2}, "hidden": [16, 8],
                        "max_steps": 3, "epochs": 1, "progress": False, "log_every": 2})
    meta = json.loads((RunStore(tmp_path / "runs").path(name) / "run.json").read_text())
    # LeakyReLU is never dead (f' >= alpha): the page leads with tau-dormant for it.
    assert meta["layers"] and all({k: v[k] for k in v if k != "recycle"} == {
        "activation": "leaky_relu", "params": {"alpha": 0.2}, "definition": "dormant", "dead": True, "class": "LeakyReLU"}
        for v in meta["layers"].values())
    assert len(meta["layers"]) == 2
    # The pair each layer's units live between, for recycling.
    assert [v["recycle"] for v in meta["layers"].values()] == ["fc1 -> fc2", "fc2 -> out"]
