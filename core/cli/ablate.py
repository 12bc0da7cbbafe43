"""`actlab ablate biencoder|mnist`: a variant x seed grid, summarised with verdicts (core/analysis/ablation.py)."""
from __future__ import annotations

from .. import argtypes as T
from .. import paths
from ..analysis.ablation import run_biencoder_grid, run_mnist_grid


def add_cli(sub) -> None:
    p = sub.add_parser("ablate", help="run a variant x seed grid and summarise it")
    s = p.add_subparsers(dest="task", required=True)

    b = s.add_parser("biencoder", help="bi-encoder head variants x seeds")
    b.add_argument("--variants", default="all", help="all or a comma list of head presets")
    b.add_argument("--seeds", type=T.positive_int, default=3, help="seeds 1..N per variant")
    b.add_argument("--grid", type=T.run_name, default=None, help="grid name (default: biencoder-<time>)")
    b.add_argument("--out", default=None, help="also write the summary JSON (with verdicts) here")
    from .train import add_biencoder_args

    add_biencoder_args(b, ablation=True)
    add_backend_args(b)
    b.set_defaults(func=run_biencoder_grid)

    m = s.add_parser("mnist", help="MNIST MLP activations x norms x seeds")
    m.add_argument("--activations", default="relu,leaky_relu,gelu")
    m.add_argument("--norms", default="none")
    m.add_argument("--seeds", type=T.positive_int, default=3)
    m.add_argument("--grid", type=T.run_name, default=None)
    m.add_argument("--out", default=None, help="also write the summary JSON (with verdicts) here")
    m.add_argument("--epochs", type=T.positive_int, default=3)
    m.add_argument("--max-steps", type=T.positive_int, default=None)
    m.add_argument("--device", default="auto")
    m.add_argument("--runs-dir", default=str(paths.runs_dir()))
    add_backend_args(m)
    m.set_defaults(func=run_mnist_grid)


def add_backend_args(p) -> None:
    p.add_argument("--parallel", type=T.positive_int, default=None, metavar="N",
                   help="up to N runs at once, one process each (default: one per GPU; 1 on a CPU)")
    p.add_argument("--backend", choices=["local", "ray"], default="local",
                   help="local processes, or Ray tasks (pip install 'actlab[ray]')")
    p.add_argument("--address", default=None, metavar="auto|ray://HOST:PORT",
                   help="the Ray cluster to join (default: start a local one)")
