"""watch() under DDP: two CPU processes with gloo. A unit is dead only if dead on every rank; rank 0 writes."""
import json
import os
import socket
import sys
import types

import pytest
import torch
import torch.multiprocessing as mp

from actlab.store.runs import RunStore


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Per rank, which of 4 units get a positive bias (alive). Union: units 0, 1, 2 -> 1/4 dead overall.
ALIVE = {0: [1.0, -1.0, 1.0, -1.0], 1: [-1.0, 1.0, -1.0, -1.0]}


def _worker(rank, world, port, runs_dir, out_dir):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import torch.distributed as dist
    from torch import nn

    from actlab.watcher import WatchPlugin, watch

    dist.init_process_group("gloo", rank=rank, world_size=world)
    fc = nn.Linear(3, 4)
    model = nn.parallel.DistributedDataParallel(nn.Sequential(fc, nn.ReLU()))
    with torch.no_grad():  # after wrapping: DDP broadcasts rank 0's weights when it is built
        fc.weight.zero_()
        fc.bias.copy_(torch.tensor(ALIVE[rank]))
    local = []

    class Dead(WatchPlugin):
        def on_flush(self, watcher, record):
            local.append(record.layers["1"].dead)

    with watch(model, run="ddp", log_every=2, runs_dir=runs_dir, verbose=False, plugins=[Dead()]) as w:
        for _ in range(3):  # 2 flushes: one at step 2, one at close (step 3)
            model(torch.randn(rank + 2, 3)).sum().backward()  # different batch sizes per rank
            w.step(loss=torch.tensor(float(rank)))
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump({"dead": local, "writer": w.store is not None}, f)
    # Both ranks past every collective before the group goes (a rank that tears gloo down while the
    # other is still in the close's flush can abort: "terminate called without an active exception").
    dist.barrier()
    dist.destroy_process_group()
    # Skip interpreter finalization: gloo's worker threads can still hold async work whose tensors
    # reach back into Python there, and torch then aborts the process (SIGABRT) after every result
    # is written (seen 1 run in ~10 under load; pytorch/pytorch#179291). The test reads the files.
    os._exit(0)


@pytest.mark.timeout(180)
def test_two_gloo_ranks_merge_masks_and_rank0_writes(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    runs = tmp_path / "runs"
    mp.start_processes(_worker, args=(2, _free_port(), str(runs), str(tmp_path)), nprocs=2, join=True,
                       start_method="spawn")
    r0, r1 = (json.loads((tmp_path / f"rank{i}.json").read_text()) for i in range(2))
    # Alone, each rank would read 0.5 dead (rank 0) or 0.75 (rank 1); merged, only unit 3 is dead on both.
    assert r0["dead"] == r1["dead"] == [0.25, 0.25]
    assert r0["writer"] and not r1["writer"]
    store = RunStore(runs)
    assert store.names() == ["ddp"]
    r = store.open("ddp")
    assert r.status().state == "finished" and r.config["world_size"] == 2
    df, _ = r.scalars()
    assert df[df.key == "dead/1"].value.tolist() == [0.25, 0.25]
    # Window sums merged too: per-unit mean |output| over all samples of both ranks.
    score = r.unit_activity("score/1")[0]["values"]
    assert score[3] == 0.0 and all(s > 0 for s in score[:3])


def _recycle_worker(rank, world, port, runs_dir, out_dir):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import torch.distributed as dist
    from torch import nn

    from actlab.watcher import watch

    dist.init_process_group("gloo", rank=rank, world_size=world)
    fc, out = nn.Linear(3, 4), nn.Linear(4, 2)
    model = nn.parallel.DistributedDataParallel(nn.Sequential(fc, nn.ReLU(), out))
    with torch.no_grad():
        fc.weight.zero_()
        fc.bias.copy_(torch.tensor(ALIVE[rank]))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    with watch(model, run="ddp-recycle", log_every=2, runs_dir=runs_dir, verbose=False, optimizer=opt) as w:
        if rank == 0:  # only rank 0 sees the store; the watcher broadcasts the command at the flush
            RunStore(runs_dir).send_command("ddp-recycle", "recycle", {"layer": "1", "dead": True}, command_id="c")
        dist.barrier()
        for _ in range(2):
            model(torch.randn(rank + 2, 3)).sum().backward()
            opt.step()
            opt.zero_grad()
            w.step()
        events = [{"units": e.units, "kind": e.kind} for e in w.events]
    torch.save({"fc": fc.weight.detach().clone(), "out": out.weight.detach().clone(), "events": events},
               os.path.join(out_dir, f"recycle{rank}.pt"))
    # Both ranks past every collective before the group goes: a rank that tears gloo down while the
    # other is still in broadcast_object_list can abort ("terminate called without an active exception").
    dist.barrier()
    dist.destroy_process_group()
    # Skip interpreter finalization: gloo's worker threads can still hold async work whose tensors
    # reach back into Python there, and torch then aborts the process (SIGABRT) after every result
    # is written (seen 1 run in ~10 under load; pytorch/pytorch#179291). The test reads the files.
    os._exit(0)


@pytest.mark.timeout(180)
def test_recycle_command_reaches_every_rank_and_replicas_agree(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    runs = tmp_path / "runs"
    mp.start_processes(_recycle_worker, args=(2, _free_port(), str(runs), str(tmp_path)), nprocs=2, join=True,
                       start_method="spawn")
    r0, r1 = (torch.load(tmp_path / f"recycle{i}.pt", weights_only=True) for i in range(2))
    # Unit 3 is dead on both ranks: both recycle it, with the same redraw, so the replicas stay equal.
    assert [e["units"] for e in r0["events"]] == [e["units"] for e in r1["events"]] == [1]
    torch.testing.assert_close(r0["fc"], r1["fc"], rtol=0, atol=0)
    torch.testing.assert_close(r0["out"], r1["out"], rtol=0, atol=0)
    assert torch.all(r0["out"][:, 3] == 0) and r0["fc"][3].abs().sum() > 0
    (ev,) = RunStore(runs).open("ddp-recycle").events()
    assert (ev["step"], ev["layer"], ev["units"], ev["command_id"]) == (2, "1", 1, "c")
