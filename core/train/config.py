"""One declaration per training option, per task. Everything else is derived from it:

- the trainer's defaults (`spec.defaults()`),
- the `actlab train <task>` flags (`spec.add_arguments(parser)`) and the config they give,
- the check of a config that comes as a dict (ablation grids, tests, the launcher's child),
- the launcher's argv from form fields (`launch=` bounds; core/train/launcher.py),
- the monitor page's start form (`form=` fields; dashboard/views/monitor.py renders them).

A flag and a dict value are checked by the same core.argtypes function, so a rule such as
`recycle_every >= 1` is written once (the type `positive_int`).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable

from .. import argtypes as T
from .. import paths
from ..errors import UserError

@dataclass(frozen=True)
class Launch:
    """What the monitor form / launcher may set, and within which bounds (tighter than the flag's:
    a form never starts a 10^9-epoch run by a typo). `choices`: None = the option's own."""
    low: float | None = None
    high: float | None = None
    choices: Any = None


@dataclass(frozen=True)
class Field:
    """How the monitor page's start form shows an option (labels and keys are what the page tests use)."""
    label: str
    key: str
    widget: str  # select | text | number | check | params
    default: Any = None
    help: str | None = None
    placeholder: str | None = None
    options: Any = None  # select: a tuple or a callable; None = the launch choices
    format: dict | None = None  # select: value -> shown text
    zero_is_none: bool = False  # number: 0 means "no limit" (not passed)


@dataclass(frozen=True)
class Option:
    key: str
    default: Any = None
    flag: str | None = None  # None: set in code only (no flag)
    type: Callable[[str], Any] | None = None  # parses the flag, and checks a dict value
    kind: str = "value"  # value | list (nargs +) | switch (store_true) | off (--no-x) | params (K=V, repeatable)
    choices: Any = None  # a tuple, or a callable giving a list (resolved when the parser is built)
    help: Any = None  # a string, or a callable giving one (a list known once a module loads)
    metavar: str | None = None
    launch: Launch | None = None
    form: Field | None = None

    @property
    def launch_kind(self):
        """What the launcher's field check expects: int, float, str, "flag", "ints", "params" or "run"."""
        if self.kind == "switch":
            return "flag"
        if self.kind == "params":
            return "params"
        if self.kind == "list":
            return "ints"
        if self.type in (T.existing_run_name, T.run_name):
            return "run"
        if self.type in _INT_TYPES:
            return int
        if self.type in _FLOAT_TYPES:
            return float
        return str

    def launch_choices(self) -> list | None:
        c = self.launch.choices if self.launch and self.launch.choices is not None else self.choices
        return list(c()) if callable(c) else (list(c) if c is not None else None)


_INT_TYPES = (T.positive_int, T.non_negative_int)
_FLOAT_TYPES = (T.finite_float, T.positive_float, T.non_negative_float, T.probability, T.unit_interval, T.open_unit)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    options: tuple[Option, ...]
    # A flag left out is None ("not given"), so a preset or a resumed run's saved config is not
    # overwritten by a default; False: the flag's default is the option's default (shown in --help).
    flags_default_none: bool = True
    presets: dict = field(default_factory=dict)
    # What a resume may change (None: anything); the rest comes from the run's own saved config.
    resume_may_change: tuple[str, ...] | None = None
    by_key: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "by_key", {o.key: o for o in self.options})

    def defaults(self) -> dict:
        return {o.key: (list(o.default) if isinstance(o.default, list) else
                        dict(o.default) if isinstance(o.default, dict) else o.default) for o in self.options}

    def launch_options(self) -> dict[str, Option]:
        return {o.key: o for o in self.options if o.launch is not None}

    def form_options(self) -> list[Option]:
        return [o for o in self.options if o.form is not None]

    def add_arguments(self, p: argparse.ArgumentParser, keys: tuple[str, ...] | None = None) -> None:
        for o in self.options:
            if o.flag is None or (keys is not None and o.key not in keys):
                continue
            default = None if self.flags_default_none else o.default
            kw: dict[str, Any] = {"help": o.help() if callable(o.help) else o.help}
            if o.kind == "switch":
                p.add_argument(o.flag, action="store_true", default=None if self.flags_default_none else False, **kw)
                continue
            if o.kind == "off":
                p.add_argument(o.flag, dest=o.key, action="store_false", default=None if self.flags_default_none else True, **kw)
                continue
            if o.kind == "params":
                p.add_argument(o.flag, type=o.type, action="append", metavar=o.metavar, **kw)
                continue
            if o.choices is not None:
                kw["choices"] = list(o.choices()) if callable(o.choices) else list(o.choices)
            if o.metavar:
                kw["metavar"] = o.metavar
            if o.type is not None:
                kw["type"] = o.type
            if o.kind == "list":
                kw["nargs"] = "+"
            if o.key == "runs_dir":  # read now, so a test or the dashboard may point it elsewhere
                default = None if self.flags_default_none else str(paths.runs_dir())
            p.add_argument(o.flag, default=default, **kw)

    def config_from_args(self, args: argparse.Namespace) -> dict:
        """The options given on the command line (None = not given)."""
        cfg = {o.key: getattr(args, o.key) for o in self.options if o.flag and o.kind != "params"
               and getattr(args, o.key, None) is not None}
        for o in self.options:
            if o.kind == "params" and getattr(args, "param", None):
                from ..activations import parse_param_args

                cfg[o.key] = parse_param_args(args.param)
        if cfg.get("preset") in self.presets:  # the preset's values, under the flags given with it
            cfg = {**self.presets[cfg["preset"]], **cfg}
        return cfg

    def check_keys(self, config: dict) -> None:
        unknown = sorted(set(config) - set(self.by_key))
        if unknown:
            raise UserError(f"unknown {self.name} option(s): {', '.join(unknown)}")

    def validate(self, cfg: dict) -> dict:
        """A dict config is checked by the same type as its flag: `--dropout: expected a number in
        [0, 1), got '1.0'`. None means "not set" and is left to the trainer's default."""
        self.check_keys(cfg)
        for key, value in cfg.items():
            o = self.by_key[key]
            if value is None or o.kind in ("switch", "off", "params"):
                continue
            if o.type is not None:
                values = value if o.kind == "list" else [value]
                if o.kind == "list" and (isinstance(value, (str, bytes)) or not len(values)):
                    raise UserError(f"{o.flag or key}: expected one or more values, got {value!r}")
                for v in values:
                    _check(o, v)
            choices = None if o.choices is None else list(o.choices()) if callable(o.choices) else list(o.choices)
            if choices is not None and value not in choices:
                raise UserError(f"{o.flag or key} {value!r}: expected one of {', '.join(map(str, choices))}")
        return cfg


def _check(o: Option, v) -> None:
    if isinstance(v, bool):
        raise UserError(f"{o.flag or o.key}: expected a value, got {v!r}")
    text = str(int(v)) if o.type in _INT_TYPES and isinstance(v, float) and v.is_integer() else str(v)
    try:
        o.type(text)
    except argparse.ArgumentTypeError as e:
        raise UserError(f"{o.flag or o.key}: {e}") from None


def form_value(o: Option, raw):
    """A form widget's value -> the launcher field: empty text, an unset limit and no params are None."""
    f = o.form
    if f.widget == "text":
        return raw.strip() or None
    if f.widget == "number":
        return (int(raw) or None) if f.zero_is_none else int(raw)
    if f.widget == "check":
        return bool(raw)
    if f.widget == "params":
        params = {}
        for item in filter(None, (s.strip() for s in raw.split(","))):
            k, sep, v = item.partition("=")
            if not sep:
                raise UserError(f"activation params: expected K=V, got {item!r}")
            params[k.strip()] = v.strip()
        return params or None
    return raw


# -- the tasks -----------------------------------------------------------------------------------
def _activation_names() -> list[str]:
    from ..activations import names

    return names(vector=False)


def _head_presets() -> list[str]:
    from ..models.biencoder import PRESETS as HEADS

    return list(HEADS)


OPTIMIZERS = ("adam", "adamw", "sgd")
# Large Adam steps on a negatively biased first layer push most ReLU pre-activations below zero
# for every digit within a few hundred steps; LeakyReLU under the same preset keeps them alive.
PRESETS = {"stress": dict(lr=2e-2, init_bias=-1.0, optimizer="adam")}
DEVICES = Launch(choices=("auto", "cpu", "cuda"))
SEED = Launch(low=0, high=2**31 - 1)
LOG_EVERY = Launch(low=1, high=100000)
DORMANCY_HELP = "every dormancy definition side by side, with rank and overlaps (docs/dormancy.md)"
DORMANCY_FORM_HELP = "seven definitions side by side, rank and overlaps (docs/dormancy.md)"


def _common(task: str, epochs: int, lr: float, batch_size: int, log_every: int, lr_high: float, batch: tuple,
            form_prefix: str, form_log_every: int, lr_shown: str) -> tuple[Option, ...]:
    """--epochs --lr --batch-size --runs-dir --name --seed --device --log-every --max-steps --resume."""
    return (
        Option("epochs", epochs, "--epochs", T.positive_int, launch=Launch(1, 1000),
               form=Field("Epochs", f"{form_prefix}epochs", "number", 1)),
        Option("lr", lr, "--lr", T.positive_float, launch=Launch(1e-8, lr_high),
               form=Field("Learning rate", f"{form_prefix}lr", "text", "", placeholder=f"default ({lr_shown})")),
        Option("batch_size", batch_size, "--batch-size", T.positive_int, launch=Launch(*batch),
               form=Field("Batch size", "f_batch", "number", batch_size) if task == "mnist" else None),
        Option("runs_dir", None, "--runs-dir"),
        Option("name", None, "--name", T.run_name, help="run name (default: task-time)"),
        Option("seed", 0, "--seed", T.non_negative_int, launch=SEED),
        Option("device", "auto", "--device", help="auto | cpu | cuda[:N]", launch=DEVICES),
        Option("log_every", log_every, "--log-every", T.positive_int, launch=LOG_EVERY,
               form=Field("Log every (steps)", f"{form_prefix}log_every", "number", form_log_every)),
        Option("max_steps", None, "--max-steps", T.positive_int, help="stop after this many optimizer steps in total",
               launch=Launch(low=1),
               form=Field("Max steps (0 = no limit)", f"{form_prefix}max_steps", "number", 0, zero_is_none=True)),
        Option("resume", None, "--resume", T.existing_run_name, metavar="RUN", help="continue RUN from its last checkpoint"),
    )


MNIST = TaskSpec("mnist", (
    Option("activation", "relu", "--activation", help="registry name (actlab activations list)",
           launch=Launch(choices=_activation_names),
           form=Field("Activation", "f_activation", "select", "relu")),
    Option("act_params", {}, "--param", T.key_value, kind="params", metavar="K=V", help="activation parameter, repeatable",
           launch=Launch(), form=Field("Activation params (K=V, comma separated)", "f_params", "params", "",
                                       help="e.g. alpha=0.05 for leaky_relu")),
    Option("hidden", [512], "--hidden", T.positive_int, kind="list", launch=Launch(1, 65536),
           form=Field("Hidden sizes", "f_hidden", "text", "512")),
    Option("preset", None, "--preset", choices=tuple(PRESETS), launch=Launch(choices=("", *PRESETS)),
           form=Field("Preset", "f_preset", "select", "", format={"": "none"},
                      help="stress: large lr + negative bias kills ReLU units")),
    *_common("mnist", epochs=1, lr=1e-3, batch_size=64, log_every=50, lr_high=10.0, batch=(1, 65536),
             form_prefix="f_", form_log_every=20, lr_shown="1e-3; stress: 2e-2"),
    Option("optimizer", "adam", "--optimizer", choices=OPTIMIZERS, launch=Launch(),
           form=Field("Optimizer", "f_optimizer", "select", "adam")),
    Option("weight_decay", 0.0, "--weight-decay", T.non_negative_float),
    Option("momentum", 0.9),
    Option("norm", "none", "--norm", choices=("none", "layernorm", "batchnorm"), launch=Launch()),
    Option("init", "default", "--init", choices=("default", "he", "xavier"), launch=Launch()),
    Option("init_bias", 0.0, "--init-bias", T.finite_float),
    Option("dropout", 0.0, "--dropout", T.probability, launch=Launch(0.0, 0.99)),
    Option("data", "bundled", "--data", choices=("bundled", "full"), launch=Launch()),
    Option("data_dir", None, "--data-dir"),
    Option("checkpoints_dir", None, "--checkpoints-dir"),
    Option("bf16", False, "--bf16", kind="switch", help="bf16 autocast (CUDA only)", launch=Launch()),
    Option("compile", False, "--compile", kind="switch", help="torch.compile (CUDA only)", launch=Launch()),
    Option("threads", 1, "--threads", T.non_negative_int, help="CPU threads for torch (default 1; 0 = torch's default)"),
    Option("probes", True, "--no-probes", kind="off"),
    Option("progress", True, "--no-progress", kind="off"),
    Option("recycle_every", None, "--recycle-every", T.positive_int, metavar="N",
           help="recycle tau-dormant units (ReDo) at the first flush every N steps", launch=Launch(1, 10**9)),
    Option("recycle_tau", 0.1, "--recycle-tau", T.unit_interval, help="tau for --recycle-every (default 0.1)",
           launch=Launch(0.0, 1.0)),
    Option("recycle_by", None, "--recycle-by", choices=("dead", "redo", "grama", "utility", "age"),
           help="recycle by this dormancy definition instead (docs/dormancy.md)"),
    Option("dormancy", False, "--dormancy", kind="switch", help=DORMANCY_HELP, launch=Launch(),
           form=Field("Every dormancy definition", "f_dormancy", "check", False, help=DORMANCY_FORM_HELP)),
    Option("branch_from", None, "--branch-from", T.existing_run_name, metavar="RUN",
           help="start a new run from RUN's latest checkpoint (with the flags given here changed)", launch=Launch()),
    Option("fault_nan_at_step", None, "--fault-nan-at-step", T.positive_int, help=argparse.SUPPRESS),
    # Set in code only: the probes' settings and the evaluation's probe set.
    Option("eps", 0.0), Option("hist_bins", 64), Option("hist_range", [-6.0, 6.0]), Option("probe_size", 1000),
), presets=PRESETS)

BIENCODER = TaskSpec("bi-encoder", (
    Option("backbone", "minilm", "--backbone",
           help="minilm (offline default), tiny (random, for tests), a HF name or a local folder",
           # The form and the launcher pick from fixed lists: the dashboard never passes a free path or hub name.
           launch=Launch(choices=("minilm", "tiny")),
           form=Field("Backbone", "f_backbone", "select", "tiny", options=("tiny", "minilm"),
                      format={"tiny": "tiny (random 2-layer BERT)", "minilm": "MiniLM-L6 (bundled)"})),
    Option("head", "with_layernorm_relu", "--head",
           help=lambda: f"preset ({', '.join(_head_presets())}) or a spec like linear1,layernorm,relu,linear2",
           launch=Launch(choices=_head_presets), form=Field("Head variant", "f_head", "select", "with_layernorm_relu")),
    Option("freeze_backbone", False, "--freeze-backbone", kind="switch", launch=Launch(),
           form=Field("Freeze backbone", "f_freeze", "check", False)),
    Option("probe_backbone", False, "--probe-backbone", kind="switch",
           help="also watch the backbone's FFN activations (zero_frac/, dead/ per layer)", launch=Launch(),
           form=Field("Watch the backbone's FFN too", "f_probe_backbone", "check", False)),
    *_common("biencoder", epochs=3, lr=5e-5, batch_size=16, log_every=10, lr_high=1.0, batch=(2, 4096),
             form_prefix="f_bi_", form_log_every=10, lr_shown="5e-5"),
    Option("head_dim", None, "--head-dim", T.positive_int, help="width of the head's linear layers (default: backbone width)"),
    Option("pooling", "cls", "--pooling", choices=("cls", "mean"), launch=Launch()),
    Option("max_length", 128, "--max-length", T.positive_int, launch=Launch(8, 512)),
    Option("data", "demo", "--data", help="demo, pairs .jsonl/.csv, a BEIR folder, or arguana (downloaded once)",
           launch=Launch(choices=("demo",))),
    Option("test_fraction", 0.2, "--test-fraction", T.open_unit),
    Option("weight_decay", 0.01, "--weight-decay", T.non_negative_float),
    Option("triplet_margin", 1.0, "--triplet-margin", T.non_negative_float, launch=Launch(0.0, 10.0)),
    Option("ce_weight", 1.0, "--ce-weight", T.non_negative_float, launch=Launch(0.0, 100.0)),
    Option("backbone_activation", None, "--backbone-activation", metavar="NAME",
           help="replace the backbone's FFN activation (e.g. relu, silu, leaky_relu:alpha=0.1), keeping its weights"),
    Option("feature_cache", True, "--no-feature-cache", kind="off",
           help="with --freeze-backbone, run the backbone every step instead of caching its features"),
    Option("eps", 0.0, "--eps", T.non_negative_float, help="a unit is dead when |f'| <= eps on every sample"),
    Option("checkpoints_dir", None, "--checkpoints-dir", help="where <name>/last.pt goes (default: checkpoints/)"),
    Option("checkpoint", True, "--no-checkpoint", kind="off"),
    Option("dormancy", False, "--dormancy", kind="switch", help=DORMANCY_HELP, launch=Launch(),
           form=Field("Every dormancy definition", "f_bi_dormancy", "check", False, help=DORMANCY_FORM_HELP)),
    Option("progress", True, "--no-progress", kind="off", help="no tqdm bar (background runs)"),
    # Set in code only: the histogram's range; the ablation runner's per-epoch text log and variant name.
    Option("hist_bins", 40), Option("hist_range", (-5.0, 5.0)), Option("text_log"), Option("variant"),
), flags_default_none=False,
   # The run's own config rebuilds the same model; only how long and where to run may change.
   resume_may_change=("epochs", "max_steps", "device", "runs_dir", "checkpoints_dir", "resume", "log_every", "progress"))

TASKS: dict[str, TaskSpec] = {"mnist": MNIST, "biencoder": BIENCODER}
