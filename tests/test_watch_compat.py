"""Never break or change the user's training: each case trains with and without watch(), from the
same seed, and must end with bit-identical losses and parameters, and with dead/dormant figures
(or a clear note in the watch table). CUDA-only variants skip without CUDA."""
import contextlib

import pytest
import torch
from actlab.store.runs import RunStore
from actlab.watcher import WatchPlugin, watch
from torch import nn
from torch.utils.checkpoint import checkpoint

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
STEPS = 4


class Samples(WatchPlugin):
    """Each flush's window sample count per layer: a checkpoint's recompute must not add to it."""

    def __init__(self):
        self.seen = []

    def on_flush(self, watcher, record):
        self.seen.append({k: v.window_samples for k, v in record.layers.items()})


def train(build, step, watched, runs_dir, run, steps=STEPS, between=None, **watch_kw):
    """(losses, state, plugin) after `steps` optimizer steps; `step(model, opt, i)` returns the loss."""
    torch.manual_seed(0)
    model, opt = build()
    plugin = Samples()
    plugins = [plugin, *watch_kw.pop("plugins", [])]
    ctx = (watch(model, run=run, runs_dir=runs_dir, log_every=2, verbose=False, plugins=plugins, **watch_kw)
           if watched else contextlib.nullcontext())
    losses = []
    with ctx as w:
        for i in range(steps):
            torch.manual_seed(100 + i)  # the same batch and dropout masks in both runs
            loss = step(model, opt, i)
            losses.append(loss.detach().float().clone())
            if w is not None:
                w.step(loss=loss.detach())
            if between is not None:
                between(model)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return torch.stack(losses), state, plugin


def assert_same_training(runs_dir, build, step, run, tol=0.0, **kw):
    """Bit-identical unless `tol` (a relative tolerance) is given."""
    plain_loss, plain_state, _ = train(build, step, False, runs_dir, run + "-plain", **kw)
    loss, state, plugin = train(build, step, True, runs_dir, run, **kw)
    torch.testing.assert_close(loss, plain_loss, rtol=tol, atol=tol * 1e-2, equal_nan=True)
    assert state.keys() == plain_state.keys()
    for k in state:
        torch.testing.assert_close(state[k], plain_state[k], rtol=tol, atol=tol * 1e-2, msg=k)
    return RunStore(runs_dir).open(run), plugin


def sgd_step(model, opt, i):
    x = torch.randn(8, 6)
    loss = model(x).float().pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss


class MLP(nn.Module):
    def __init__(self, act=None, ckpt=None):
        super().__init__()
        self.inp = nn.Linear(6, 16)
        self.block = nn.Sequential(nn.Linear(16, 16), act() if act else nn.GELU(), nn.Dropout(0.1), nn.Linear(16, 16), nn.ReLU())
        self.out = nn.Linear(16, 1)
        self.ckpt = ckpt

    def forward(self, x):
        h = self.inp(x)
        h = checkpoint(self.block, h, use_reentrant=self.ckpt) if self.ckpt is not None else self.block(h)
        return self.out(h)


def mlp(act=None, ckpt=None, device="cpu"):
    def build():
        m = MLP(act, ckpt).to(device)
        return m, torch.optim.AdamW(m.parameters(), lr=1e-2)
    return build


# ---------------------------------------------------------------- gradient checkpointing
@pytest.mark.parametrize("reentrant", [True, False])
def test_torch_checkpoint_trains_the_same_and_recompute_does_not_count(runs_dir, reentrant):
    # stats_every=1: every batch is sampled, so the GELU's window counts every batch too.
    r, plugin = assert_same_training(runs_dir, mlp(ckpt=reentrant), sgd_step, f"ckpt-{reentrant}", stats_every=1)
    v = r.last()
    assert 0.0 <= v["dormant/block.1"] <= 1.0 and "dead/block.4" in v  # the GELU's f' test ran under checkpoint
    # 2 batches of 8 per flush window: the backward's recompute fired the hooks again but counted nothing.
    assert plugin.seen == [{"block.1": 16.0, "block.4": 16.0}] * 2


def tiny_bert_builder(**ckpt_kwargs):
    transformers = pytest.importorskip("transformers")

    def build():
        cfg = transformers.BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                      intermediate_size=32, max_position_embeddings=32)
        m = transformers.BertModel(cfg)
        m.gradient_checkpointing_enable(**ckpt_kwargs)
        m.train()
        return m, torch.optim.AdamW(m.parameters(), lr=1e-3)
    return build


def bert_step(model, opt, i):
    ids = torch.randint(1, 64, (4, 8))
    loss = model(input_ids=ids).last_hidden_state.pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss


@pytest.mark.parametrize("kwargs", [{}, {"gradient_checkpointing_kwargs": {"use_reentrant": True}}],
                         ids=["hf-default", "hf-reentrant"])
def test_hf_gradient_checkpointing_trains_the_same(runs_dir, kwargs):
    r, plugin = assert_same_training(runs_dir, tiny_bert_builder(**kwargs), bert_step, "hf-ckpt", stats_every=1)
    ffn = "encoder.layer.{}.intermediate.intermediate_act_fn"
    v = r.last()
    for i in range(2):
        assert 0.0 <= v[f"dormant/{ffn.format(i)}"] <= 1.0
    assert [s[ffn.format(0)] for s in plugin.seen] == [2 * 4 * 8.0] * 2  # tokens of 2 batches, counted once


# ---------------------------------------------------------------- AMP
def amp_step(device, dtype, scaler=None, poison=()):
    def step(model, opt, i):
        x = torch.randn(8, 6, device=device)
        with torch.autocast(device, dtype=dtype):
            loss = model(x).float().pow(2).mean()
        if i in poison:
            loss = loss * float("inf")  # a step GradScaler must skip
        opt.zero_grad()
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        return loss
    return step


def _autocast_supported(device, dtype):
    try:
        with torch.autocast(device, dtype=dtype):
            nn.Linear(2, 2).to(device)(torch.ones(1, 2, device=device))
    except (RuntimeError, AssertionError) as e:
        return str(e).splitlines()[0]
    return None


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_autocast_trains_the_same(runs_dir, device, dtype):
    why = _autocast_supported(device, dtype)
    if why:
        pytest.skip(f"{dtype} autocast on {device} is not supported by this torch: {why}")
    r, _ = assert_same_training(runs_dir, mlp(device=device), amp_step(device, dtype), "amp")
    v = r.last()
    assert "dormant/block.1" in v and "dead/block.4" in v


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
def test_grad_scaler_skipping_steps_trains_the_same(runs_dir, device):
    dtype = torch.float16 if device == "cuda" else torch.bfloat16
    scales = {}

    def run(watched):
        scaler = torch.amp.GradScaler(device, init_scale=2.0 ** 8)
        out = train(mlp(device=device), amp_step(device, dtype, scaler, poison=(1, 2)), watched, runs_dir,
                    f"scaler-{watched}", steps=6)
        scales[watched] = scaler.get_scale()
        return out

    (pl, ps, _), (wl, ws, _) = run(False), run(True)
    assert scales[False] == scales[True] == 2.0 ** 6  # two skipped steps halved the scale twice
    torch.testing.assert_close(wl, pl, rtol=0, atol=0, equal_nan=True)
    for k in ps:
        torch.testing.assert_close(ws[k], ps[k], rtol=0, atol=0, msg=k)
    assert "dormant/block.1" in RunStore(runs_dir).open("scaler-True").last()


# ---------------------------------------------------------------- in-place, channels_last, eval passes
def test_in_place_relu_trains_the_same_and_reads_like_out_of_place(runs_dir):
    r, _ = assert_same_training(runs_dir, mlp(act=lambda: nn.ReLU(inplace=True)), sgd_step, "inplace")
    ref, _ = assert_same_training(runs_dir, mlp(act=nn.ReLU), sgd_step, "outofplace")
    v, ref_v = r.last(), ref.last()
    for k in ("dead/block.1", "dormant/block.1", "zero_frac/block.1"):
        assert v[k] == ref_v[k], k
    hooked = {h["name"]: h for h in r.config["watch"]["hooked"]}
    assert "in-place" in hooked["block.1"]["reason"] and hooked["block.1"]["dead"] is True


def test_in_place_elu_leaves_dead_out_with_a_note(runs_dir):
    r, _ = assert_same_training(runs_dir, mlp(act=lambda: nn.ELU(inplace=True)), sgd_step, "inplace-elu")
    v = r.last()
    assert "dead/block.1" not in v and "dormant/block.1" in v
    (h,) = [h for h in r.config["watch"]["hooked"] if h["name"] == "block.1"]
    assert "dead/ left out" in h["reason"]


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.ReLU()
        self.head = nn.Linear(8, 1)

    def forward(self, x):
        return self.head(self.act(self.conv(x)).mean((2, 3)))


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
def test_channels_last_trains_the_same_and_reads_like_contiguous(runs_dir, device):
    def build(fmt):
        def b():
            m = ConvNet().to(device, memory_format=fmt)
            return m, torch.optim.SGD(m.parameters(), lr=0.1)
        return b

    def step(fmt):
        def s(model, opt, i):
            x = torch.randn(4, 3, 8, 8, device=device).to(memory_format=fmt)
            loss = model(x).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss
        return s

    r, _ = assert_same_training(runs_dir, build(torch.channels_last), step(torch.channels_last), "cl")
    ref, _ = assert_same_training(runs_dir, build(torch.contiguous_format), step(torch.contiguous_format), "contig")
    assert r.last()["dead/act"] == ref.last()["dead/act"]
    assert len(r.unit_activity("score/act")[-1]["values"]) == 8  # channels are the units


def test_eval_and_no_grad_passes_in_between_train_the_same_and_do_not_count(runs_dir):
    def evaluate(model):
        model.eval()
        with torch.no_grad():
            model(torch.randn(32, 6))
        model.train()

    r, plugin = assert_same_training(runs_dir, mlp(), sgd_step, "evals", between=evaluate, stats_every=1)
    assert plugin.seen == [{"block.1": 16.0, "block.4": 16.0}] * 2  # the 32-row eval batches never count
    assert "dormant/block.1" in r.last()


# ---------------------------------------------------------------- torch.compile
@pytest.mark.timeout(300)
def test_compiled_model_trains_the_same_and_records_layers(runs_dir):
    """Compiled AND called before watch(): dynamo's cached graph has no hooks, so the watcher resets the
    compile caches and the next call re-traces with them (the hooks themselves run eagerly). The graph
    breaks at the hooks let inductor fuse differently: the same to float rounding, not bit for bit
    (measured here: 2e-7 relative on the loss), and the watch table says so."""
    def build():
        m = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 1))
        cm = torch.compile(m)
        cm(torch.randn(2, 6))  # the first compile happens before watching
        return cm, torch.optim.SGD(m.parameters(), lr=0.1)

    r, plugin = assert_same_training(runs_dir, build, sgd_step, "compiled", tol=1e-5)
    assert "dead/1" in r.last() and "dormant/1" in r.last()
    assert plugin.seen == [{"1": 16.0}] * 2
    assert any("torch.compile" in n for n in r.config["watch"]["notes"])


# ---------------------------------------------------------------- other optimizer hooks
def test_an_optimizer_hook_registered_after_watch_keeps_firing_and_training_is_the_same(runs_dir):
    """The recycler finds the loop's optimizer with a global step pre-hook. Removing it from inside
    itself, while torch iterates over the global hooks, raised "OrderedDict mutated during iteration"
    from the user's opt.step() whenever another hook came after it (the user's own, a second watch)."""
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    calls = []

    class UserHook(WatchPlugin):  # registered right after the watcher's own hooks, before any step
        def on_start(self, watcher):
            self.handle = register_optimizer_step_pre_hook(lambda opt, a, k: calls.append(1))

        def on_close(self, watcher, status):
            self.handle.remove()

    plain_loss, plain_state, _ = train(mlp(act=nn.ReLU), sgd_step, False, runs_dir, "opt-hook-plain")
    loss, state, _ = train(mlp(act=nn.ReLU), sgd_step, True, runs_dir, "opt-hook", plugins=[UserHook()])
    assert len(calls) == STEPS
    assert torch.equal(loss, plain_loss)
    assert all(torch.equal(state[k], plain_state[k]) for k in state)
    assert "dead/block.1" in RunStore(runs_dir).open("opt-hook").last()
