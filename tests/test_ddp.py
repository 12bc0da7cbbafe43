"""Two CPU processes with gloo, as torchrun would start them (RANK / WORLD_SIZE / LOCAL_RANK)."""
import json
import os
import socket
import sys
import types

import pytest
import torch
import torch.multiprocessing as mp

from actlab.store.runs import RunStore
from tests.test_train_biencoder import write_pairs


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, cfg, out_dir):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import actlab.train.biencoder as tb
    from actlab.watcher import WatchPlugin

    seen = []
    real_watch = tb.watch

    def recording_watch(*a, **kw):
        # What each rank holds after every flush's all-reduce (tests/test_watch_ddp.py checks the
        # merge rule itself on constructed masks).
        class Masks(WatchPlugin):
            def on_flush(self, watcher, record):
                seen.append({k: v.alive.tolist() for k, v in record.layers.items() if v.alive is not None})

        return real_watch(*a, plugins=[Masks()], **kw)

    tb.watch = recording_watch
    captured = {}
    real_ddp = torch.nn.parallel.DistributedDataParallel

    def capture(module, *a, **kw):
        captured["model"] = module
        return real_ddp(module, *a, **kw)

    torch.nn.parallel.DistributedDataParallel = capture
    tb.train_biencoder(cfg)
    params = {k: v.detach().sum().item() for k, v in captured["model"].state_dict().items()}
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump({"masks": seen, "params": params}, f)


@pytest.mark.timeout(240)
def test_two_gloo_ranks_agree(tmp_path, monkeypatch):
    # AppTest tests earlier in the session leave a page script as __main__; spawned workers would
    # re-run it on start-up. A bare __main__ makes them import only what _worker needs.
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    pairs = write_pairs(tmp_path / "pairs.jsonl")
    cfg = {"backbone": "tiny", "data": str(pairs), "epochs": 3, "batch_size": 4, "lr": 1e-3,
           "runs_dir": str(tmp_path / "runs"), "name": "ddp", "device": "cpu", "probe_backbone": True,
           # 5 steps an epoch: interval logs at 3, 6, 9, 12; epoch ends at 5, 10, 15.
           "log_every": 3,
           "checkpoint": False}
    mp.start_processes(_worker, args=(2, _free_port(), cfg, str(tmp_path)), nprocs=2, join=True, start_method="spawn")
    r0, r1 = (json.loads((tmp_path / f"rank{i}.json").read_text()) for i in range(2))
    assert len(r0["masks"]) == len(r1["masks"]) == 7  # 4 interval logs + 3 epoch ends
    for after0, after1 in zip(r0["masks"], r1["masks"]):
        assert any(k.startswith("head.") for k in after0) and any(k.startswith("backbone.") for k in after0)
        # After the all-reduce both ranks hold the same mask.
        assert after0 == after1
    # DDP kept the replicas identical.
    assert r0["params"].keys() == r1["params"].keys()
    assert all(abs(r0["params"][k] - r1["params"][k]) < 1e-4 for k in r0["params"])
    # Only rank 0 wrote the store: one run, finished, with the retrieval metrics.
    store = RunStore(tmp_path / "runs")
    assert store.names() == ["ddp"]
    r = store.open("ddp")
    assert r.status().state == "finished" and r.config["world_size"] == 2
    assert {"acc/top1", "mrr", "loss/train"} <= set(r.keys())
