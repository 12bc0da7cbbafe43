"""A tiny Hugging Face BERT under watch(): in a plain loop and under the Trainer (ActLabCallback)."""
import pytest
import torch

from actlab.store.runs import RunStore
from actlab.watcher import ActLabCallback, watch

transformers = pytest.importorskip("transformers")


def tiny_bert(act="gelu"):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                     max_position_embeddings=32, num_labels=2, hidden_act=act)
    return BertForSequenceClassification(cfg)


def batch(n=8, t=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 64, (n, t), generator=g)
    mask = torch.ones(n, t, dtype=torch.long)
    mask[: n // 2, t // 2:] = 0  # half the rows padded
    return ids, mask, torch.randint(0, 2, (n,), generator=g)


FFN = "bert.encoder.layer.{}.intermediate.intermediate_act_fn"


def test_plain_loop_gives_dormant_keys_per_ffn_layer(runs_dir):
    model = tiny_bert()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with watch(model, run="bert", log_every=2, verbose=False) as w:
        for i in range(4):
            ids, mask, y = batch(seed=i)
            out = model(input_ids=ids, attention_mask=mask, labels=y)
            out.loss.backward()
            opt.step()
            opt.zero_grad()
            w.step(loss=out.loss)
        model.eval()
        with torch.no_grad():
            model(input_ids=ids, attention_mask=mask)  # an eval pass in between: not counted
        model.train()
    r = RunStore(runs_dir).open("bert")
    v = r.last()
    assert r.status().state == "finished"
    for i in range(2):
        assert 0.0 <= v[f"dormant/{FFN.format(i)}"] <= 1.0
        assert v[f"dead/{FFN.format(i)}"] == 0.0  # GELU: f' is never exactly 0 here
        assert r.meta["layers"][FFN.format(i)]["activation"] == "gelu"
        assert r.meta["layers"][FFN.format(i)]["definition"] == "dormant"
    assert "grad_norm/bert.encoder.layer.0.intermediate.dense.weight" in v
    assert len(r.unit_activity(f"score/{FFN.format(0)}")[-1]["values"]) == 32  # intermediate_size units


def test_padding_count_is_the_real_token_count(runs_dir):
    model = tiny_bert(act="relu")
    with watch(model, run="cnt", log_every=100, window="manual", verbose=False) as w:
        ids, mask, y = batch()
        model(input_ids=ids, attention_mask=mask)
        w.flush()
        assert float(w.probes.layers[FFN.format(0)].w_count) == mask.sum().item() == 60
        w.close()


class TokenBatches(torch.utils.data.Dataset):
    """32 single-example batches for a Trainer (`batch`'s tokens, mask and label)."""

    def __len__(self):
        return 32

    def __getitem__(self, i):
        ids, mask, y = batch(n=1, seed=i)
        return {"input_ids": ids[0], "attention_mask": mask[0], "labels": y[0]}


def test_trainer_callback_mirrors_logs_and_watches(runs_dir, tmp_path):
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, max_steps=6,
                             logging_steps=2, report_to="none", save_strategy="no", use_cpu=True,
                             learning_rate=1e-3, disable_tqdm=True, eval_strategy="steps", eval_steps=3,
                             per_device_eval_batch_size=8)
    cb = ActLabCallback(run="hf", verbose=False)
    trainer = Trainer(model=tiny_bert(), args=args, train_dataset=TokenBatches(), eval_dataset=TokenBatches(), callbacks=[cb])
    trainer.train()
    r = RunStore(runs_dir).open("hf")
    assert r.status().state == "finished" and r.meta["kind"] == "hf-trainer"
    df, _ = r.scalars()
    keys = set(df.key)
    assert {"loss/train", "lr", "eval/loss", f"dormant/{FFN.format(0)}", f"dead/{FFN.format(1)}"} <= keys
    assert sorted(df[df.key == "loss/train"].step) == [2, 4, 6]
    assert sorted(df[df.key == f"dormant/{FFN.format(0)}"].step) == [2, 4, 6]
    hist = [h for h in trainer.state.log_history if "loss" in h]
    assert df[df.key == "loss/train"].sort_values("step").value.tolist() == pytest.approx([h["loss"] for h in hist])
    assert not cb.watcher.model.bert.encoder.layer[0].intermediate.intermediate_act_fn._forward_hooks


def test_mirror_key_mapping():
    assert ActLabCallback.mirror({"loss": 1.0, "learning_rate": 0.1, "eval_accuracy": 0.5, "epoch": 1.0,
                                  "grad_norm": 2.0, "note": "x"}) == {
        "loss/train": 1.0, "lr": 0.1, "eval/accuracy": 0.5, "grad_norm": 2.0}
