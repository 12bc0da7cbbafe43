"""core/store/mirror.py: a run copied flush by flush into another store looks like the original;
commands go back; a retried worker supersedes what the lost one wrote."""
import torch
from torch import nn

from actlab.watcher import watch
from actlab.store.mirror import Mirror, RunTail, deliver, pending_commands
from actlab.store.runs import RunStore


def _steps(w, model, opt, n):
    x = torch.randn(32, 4, generator=torch.Generator().manual_seed(0))
    for _ in range(n):
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        w.step(loss=loss)


def test_a_mirrored_run_matches_its_source_and_commands_reach_it(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    worker, driver = RunStore(tmp_path / "worker"), RunStore(tmp_path / "driver")
    w = watch(model, run="m", log_every=2, runs_dir=worker.root, optimizer=opt, verbose=False)
    tail, mirror = RunTail(worker, "m"), Mirror(driver)
    _steps(w, model, opt, 4)
    mirror.apply("m", tail.read())
    assert tail.read() is None  # nothing new: nothing to send
    assert driver.summary("m")["status"] == "running"
    # The page queues a recycle on the driver; it reaches the worker's run and is applied there.
    cmd = driver.send_command("m", "recycle", {"layer": "1", "tau": 1.0}, command_id="c1")
    deliver(worker, "m", pending_commands(driver, "m"))
    deliver(worker, "m", pending_commands(driver, "m"))  # delivered twice: still one command
    _steps(w, model, opt, 2)
    w.close()
    mirror.apply("m", tail.read())
    mirror.close()

    src, dst = worker.open("m"), driver.open("m")
    a = src.scalars()[0].sort_values(["key", "step"], ignore_index=True)
    b = dst.scalars()[0].sort_values(["key", "step"], ignore_index=True)
    assert len(a) > 10 and a[["step", "key"]].equals(b[["step", "key"]])
    assert a["value"].fillna(-1).tolist() == b["value"].fillna(-1).tolist()
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("id", "wall_time")} for r in rows]  # noqa: E731
    assert strip(src.histograms()) == strip(dst.histograms()) and len(dst.histograms()) > 0
    assert strip(src.unit_activity()) == strip(dst.unit_activity())
    assert strip(src.events()) == strip(dst.events())
    assert [e["command_id"] for e in dst.events()] == [cmd["id"]]
    assert [c["state"] for c in dst.commands()] == ["applied"]
    assert dst.meta == src.meta  # config, layers, host as the worker wrote them
    assert dst.status().state == "finished"
    assert dst.con.execute("SELECT pid FROM status").fetchone() == src.con.execute("SELECT pid FROM status").fetchone()


def test_a_retried_worker_supersedes_the_lost_tail(tmp_path):
    driver = RunStore(tmp_path / "driver")
    mirror = Mirror(driver)
    meta = {"name": "r", "kind": "mnist", "config": {"lr": 1}, "layers": {}, "host": "elsewhere", "created": 1.0}
    rows = [(s, None, k, float(s), 100.0 + s) for s in (2, 4, 6, 8) for k in ("loss/train", "acc/train")]
    mirror.apply("r", {"meta": meta, "resume_step": None, "scalars": rows,
                       "histograms": [{"step": s, "epoch": None, "key": "pre/fc", "edges": [0, 1], "counts": [s]} for s in (4, 8)],
                       "status": ("running", None, 12345, 108.0, 100.0)})
    # The worker died after step 8; the retry resumes from a checkpoint at step 4 and writes step 6 again.
    mirror.apply("r", {"meta": meta, "resume_step": 4, "scalars": [(6, None, "loss/train", -6.0, 200.0)],
                       "histograms": [{"step": 6, "epoch": None, "key": "pre/fc", "edges": [0, 1], "counts": [60]}],
                       "status": ("finished", None, 777, 201.0, 199.0)})
    r = driver.open("r")
    df = r.scalars()[0]
    assert not df.duplicated(["step", "key"]).any()
    assert sorted(df[df["key"] == "loss/train"]["step"]) == [2, 4, 6]
    assert df[(df["key"] == "loss/train") & (df["step"] == 6)]["value"].tolist() == [-6.0]
    assert [(h["step"], h["counts"]) for h in r.histograms()] == [(4, [4.0]), (6, [60.0])]
    assert r.status().state == "finished" and r.meta["created"] == 1.0 and r.meta["host"] == "elsewhere"
    r.close()
    # Started again from nothing (no checkpoint had arrived): every old row goes.
    mirror.apply("r", {"meta": meta, "resume_step": None, "scalars": [(2, None, "loss/train", 9.0, 300.0)]})
    df = driver.open("r").scalars()[0]
    assert df[["step", "key", "value"]].values.tolist() == [[2, "loss/train", 9.0]]
    mirror.close()


def test_commands_left_when_the_run_ends_are_refused(tmp_path):
    driver = RunStore(tmp_path / "driver")
    mirror = Mirror(driver)
    meta = {"name": "e", "kind": "watch", "config": {}, "layers": {"fc": {"recycle": "fc -> out"}}, "host": "h"}
    mirror.apply("e", {"meta": meta, "scalars": [(3, None, "loss/train", 1.0, 1.0)],
                       "status": ("running", None, 1, 9e12, 1.0)})
    driver.send_command("e", "recycle", {"layer": "fc"}, command_id="late")
    mirror.apply("e", {"status": ("finished", None, 1, 2.0, 1.0)})
    r = driver.open("e")
    assert [(c["id"], c["state"]) for c in r.commands()] == [("late", "refused")]
    assert [(e["kind"], e["step"]) for e in r.events()] == [("refused", 3)]
    mirror.close()
