"""Models built from the activation registry. Configs carry activation names; nothing here
imports a particular activation class."""
from __future__ import annotations


from torch import nn

from ..errors import UserError
from ..activations import create_act_layer

NORMS = ("none", "layernorm", "batchnorm")
INITS = ("default", "he", "xavier")


class MLP(nn.Module):
    """784 -> [fc_i -> norm_i -> act_i -> drop_i]* -> out. Names fc1/act1 make probe keys read
    `dead/act1`, `grad_norm/fc1.weight`."""

    def __init__(self, in_dim: int = 784, hidden=(512,), out_dim: int = 10, activation: str = "relu",
                 act_params: dict | None = None, norm: str = "none", init: str = "default",
                 dropout: float = 0.0, init_bias: float = 0.0):
        super().__init__()
        if norm not in NORMS:
            raise UserError(f"--norm {norm!r}: expected one of {', '.join(NORMS)}")
        if init not in INITS:
            raise UserError(f"--init {init!r}: expected one of {', '.join(INITS)}")
        if not 0.0 <= dropout < 1.0:
            raise UserError(f"--dropout {dropout}: expected a value in [0, 1)")
        if not hidden or any(int(h) < 1 for h in hidden):
            raise UserError(f"--hidden {list(hidden)}: expected one or more positive sizes")
        self.hidden = [int(h) for h in hidden]
        prev = in_dim
        for i, h in enumerate(self.hidden, 1):
            fc = nn.Linear(prev, h)
            _init(fc, init, activation, init_bias)
            setattr(self, f"fc{i}", fc)
            if norm == "layernorm":
                setattr(self, f"norm{i}", nn.LayerNorm(h))
            elif norm == "batchnorm":
                setattr(self, f"norm{i}", nn.BatchNorm1d(h))
            setattr(self, f"act{i}", create_act_layer(activation, **(act_params or {})))
            if dropout > 0:
                setattr(self, f"drop{i}", nn.Dropout(dropout))
            prev = h
        self.out = nn.Linear(prev, out_dim)

    def forward(self, x):
        x = x.flatten(1)
        for i in range(1, len(self.hidden) + 1):
            x = getattr(self, f"fc{i}")(x)
            if hasattr(self, f"norm{i}"):
                x = getattr(self, f"norm{i}")(x)
            x = getattr(self, f"act{i}")(x)
            if hasattr(self, f"drop{i}"):
                x = getattr(self, f"drop{i}")(x)
        return self.out(x)


def _init(fc: nn.Linear, init: str, activation: str, bias: float):
    # core.recycle redraws recycled rows the way the layer was first drawn.
    fc.actlab_init = (init, activation)
    if init == "he":
        nonlinearity = "leaky_relu" if activation in ("leaky_relu", "prelu") else "relu"
        nn.init.kaiming_normal_(fc.weight, nonlinearity=nonlinearity)
        nn.init.zeros_(fc.bias)
    elif init == "xavier":
        nn.init.xavier_uniform_(fc.weight)
        nn.init.zeros_(fc.bias)
    if bias:
        # A negative bias pushes pre-activations left of ReLU's kink: the stress preset uses it.
        nn.init.constant_(fc.bias, bias)
