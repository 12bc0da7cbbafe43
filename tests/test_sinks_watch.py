"""watch(model, sinks=[...]) in a plain loop: the figures land in TensorBoard and MLflow, read back
with their own readers; the HF callback's default follows report_to."""
import numpy as np
import pytest
import torch
from torch import nn

from actlab import UserError
from actlab.watcher import watch


def loop(tmp_path, sinks, steps=40):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(64, 8), torch.randint(0, 2, (64,))
    with watch(model, run="sinky", log_every=10, runs_dir=tmp_path / "runs", sinks=sinks, verbose=False) as w:
        for i in range(steps):
            if i == 25:
                w.add_event("note", reason="hello from the loop")
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.step(loss=loss)
        w.log({"acc/test": 0.75})  # outside a flush: reaches the trackers too
    from actlab.store.runs import RunStore

    with RunStore(tmp_path / "runs").open("sinky") as r:
        return r.scalars()[0]


def test_plain_loop_tensorboard_and_mlflow(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store = loop(tmp_path, [f"tensorboard:{tmp_path / 'tb'}", f"mlflow:{uri}"])
    want = store[store["key"] == "dead/1"].sort_values("step")
    assert want["step"].tolist() == [10, 20, 30, 40]

    acc = EventAccumulator(str(tmp_path / "tb" / "sinky"), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"dead/1", "dormant/1", "grad_norm/0.weight", "loss/train", "watch/overhead_pct"} <= tags
    got = acc.Scalars("dead/1")
    assert [e.step for e in got] == want["step"].tolist()
    assert np.allclose([e.value for e in got], want["value"], atol=1e-6)
    assert [e.step for e in acc.Histograms("pre/1")] == [10, 20, 30, 40]
    text = acc.Tensors("actlab/events/text_summary")
    assert len(text) == 1 and b"note: hello from the loop" in text[0].tensor_proto.string_val[0]

    c = MlflowClient(tracking_uri=uri)
    run = c.search_runs([c.get_experiment_by_name("actlab").experiment_id])[0]
    assert run.info.run_name == "sinky" and run.info.status == "FINISHED"
    assert any(v.endswith("note: hello from the loop") for k, v in run.data.tags.items() if k.startswith("actlab.event."))
    hist = c.get_metric_history(run.info.run_id, "dead/1")
    assert [m.step for m in hist] == want["step"].tolist()
    assert np.allclose([m.value for m in hist], want["value"])
    assert [(m.step, m.value) for m in c.get_metric_history(run.info.run_id, "acc/test")] == [(40, 0.75)]
    assert [(e.step, e.value) for e in acc.Scalars("acc/test")] == [(40, 0.75)]
    loss = store[store["key"] == "loss/train"].sort_values("step")
    assert np.allclose([m.value for m in c.get_metric_history(run.info.run_id, "loss/train")], loss["value"])


def test_bad_sink_spec_refused_before_anything_is_hooked(tmp_path):
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    with pytest.raises(UserError, match="unknown sink 'neptune'"):
        watch(model, run="x", runs_dir=tmp_path, sinks=["neptune"], verbose=False)
    assert not model[1]._forward_hooks
    assert not (tmp_path / "x").exists()


def test_hf_callback_sinks_follow_report_to(monkeypatch):
    from types import SimpleNamespace

    from actlab.watcher import hf_callback

    seen = {}
    monkeypatch.setattr(hf_callback, "watch", lambda model, **kw: seen.update(kw) or SimpleNamespace())
    args = SimpleNamespace(report_to=["tensorboard", "mlflow"], output_dir="out", logging_steps=5,
                           learning_rate=1e-3, per_device_train_batch_size=8, num_train_epochs=1, max_steps=-1,
                           seed=0, gradient_accumulation_steps=1)
    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    hf_callback.ActLabCallback(run="r").on_train_begin(args, None, None, model=nn.Linear(2, 2))
    assert seen["sinks"] == ["tensorboard:out/runs", "mlflow"]
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", "tb-here")
    hf_callback.ActLabCallback(run="r").on_train_begin(args, None, None, model=nn.Linear(2, 2))
    assert seen["sinks"] == ["tensorboard:tb-here", "mlflow"]
    seen.clear()
    hf_callback.ActLabCallback(run="r", sinks=[]).on_train_begin(args, None, None, model=nn.Linear(2, 2))
    assert seen["sinks"] == []


def test_every_store_key_reaches_tensorboard_dormancy_scores_included(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from actlab.watcher.dormancy_plugin import DormancyPlugin

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(64, 8), torch.randint(0, 2, (64,))
    with watch(model, run="dorm", log_every=5, runs_dir=tmp_path / "runs", plugins=[DormancyPlugin()],
               sinks=[f"tensorboard:{tmp_path / 'tb'}"], verbose=False) as w:
        for _ in range(20):
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.step(loss=loss)
    from actlab.store.runs import RunStore

    with RunStore(tmp_path / "runs").open("dorm") as r:
        store_keys = set(r.scalars()[0].dropna(subset=["value"])["key"])
    acc = EventAccumulator(str(tmp_path / "tb" / "dorm"), size_guidance={"scalars": 0})
    acc.Reload()
    assert len(store_keys) > 10 and any("/" in k and not k.startswith(("dead/", "dormant/", "grad_norm/", "zero_frac/",
                                                                       "loss/", "watch/")) for k in store_keys)
    assert store_keys <= set(acc.Tags()["scalars"]), store_keys - set(acc.Tags()["scalars"])


def test_hf_trainer_report_to_tensorboard_lands_our_figures_in_its_logging_dir(runs_dir, tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from transformers import Trainer, TrainingArguments

    from actlab.watcher import ActLabCallback
    from tests.test_watch_hf import FFN, TokenBatches, tiny_bert

    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    logs = tmp_path / "out" / "runs"  # the Trainer's own TensorBoard folder (transformers 5: output_dir/runs)
    args = TrainingArguments(output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, max_steps=4,
                             logging_steps=2, report_to=["tensorboard"], save_strategy="no", use_cpu=True,
                             disable_tqdm=True)
    Trainer(model=tiny_bert(), args=args, train_dataset=TokenBatches(), callbacks=[ActLabCallback(run="hf-tb", verbose=False)]).train()
    acc = EventAccumulator(str(logs / "hf-tb"), size_guidance={"scalars": 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars(f"dormant/{FFN.format(0)}")] == [2, 4]
    assert [e.step for e in acc.Scalars("loss/train")] == [2, 4]
