"""Activation and normalisation registries, and the squeeze-and-excitation module.

Names are normalised once (`canonical_name`), so the authors' spellings ("ReLU", "BatchNorm",
"Swish") and ours ("relu", "batchnorm", "silu") select the same layer. Every registry entry is a
factory taking `device`/`dtype` (norms: and the channel count), so no global device is involved.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError

ActFactory = Callable[..., nn.Module]
NormFactory = Callable[..., nn.Module]


def _softplus(**_factory) -> nn.Module:
    return nn.Softplus(beta=1.0, threshold=20.0)


def _plain(cls: type[nn.Module]) -> ActFactory:
    """A parameter-free activation: device and dtype do not matter."""
    return lambda **_factory: cls()


ACTIVATIONS: Mapping[str, ActFactory] = {
    "relu": _plain(nn.ReLU),
    "silu": _plain(nn.SiLU),
    "gelu": _plain(nn.GELU),
    "softplus": _softplus,
    "mish": _plain(nn.Mish),
    "elu": _plain(nn.ELU),
    "leakyrelu": _plain(nn.LeakyReLU),
    "prelu": lambda **factory: nn.PReLU(**factory),
}


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channel axis at every pixel of an NCHW tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(
            x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps
        )
        return y.permute(0, 3, 1, 2)


def register_input_stats(module: nn.Module, spec, **factory) -> None:
    """Give `module` buffers `mu` / `sigma` of shape (1, C, 1, 1) when `spec.mean` is set (the
    names of RobustBench's and the authors' checkpoints); `module.normalize` says whether."""
    module.normalize = spec.mean is not None
    if module.normalize:
        shape = (1, spec.in_channels, 1, 1)
        module.register_buffer("mu", torch.tensor(spec.mean, **factory).view(shape))
        module.register_buffer("sigma", torch.tensor(spec.std, **factory).view(shape))


def group_count(channels: int) -> int:
    """Groups of GroupNorm: C/8 as the authors use, else the largest divisor of C below C/8."""
    target = max(1, channels // 8)
    return next(g for g in range(target, 0, -1) if channels % g == 0)


def _groupnorm(channels: int, **factory) -> nn.Module:
    return nn.GroupNorm(group_count(channels), channels, **factory)


def _instancenorm(channels: int, **factory) -> nn.Module:
    # No affine parameters, as the authors' nn.InstanceNorm2d(C): their checkpoints load here.
    return nn.InstanceNorm2d(channels, **factory)


NORMS: Mapping[str, NormFactory] = {
    "batchnorm": nn.BatchNorm2d,
    "groupnorm": _groupnorm,
    "layernorm": ChannelLayerNorm,
    "instancenorm": _instancenorm,
}

# Other spellings met in configs (the authors' "Swish" is SiLU); keys are already normalised.
_ALIASES = {
    "swish": "silu",
    "bn": "batchnorm",
    "batchnorm2d": "batchnorm",
    "gn": "groupnorm",
    "ln": "layernorm",
    "layernorm2d": "layernorm",
    "in": "instancenorm",
    "instancenorm2d": "instancenorm",
}


def canonical_name(name: str) -> str:
    """Lower case, no separators, aliases resolved: "BatchNorm", "batch_norm" → "batchnorm"."""
    key = str(name).lower().replace("_", "").replace("-", "").replace(" ", "")
    return _ALIASES.get(key, key)


def lookup(registry: Mapping[str, Callable], name: str, field: str) -> Callable:
    """The registry entry for `name`; an unknown name raises ConfigError listing the choices."""
    key = canonical_name(name)
    if key not in registry:
        raise ConfigError(field, name, "one of " + ", ".join(registry))
    return registry[key]


class SqueezeExcitation(nn.Module):
    """x · sigmoid(FC2(ReLU(FC1(GAP(x))))), FC1: C→C/r, FC2: C/r→C, no biases."""

    def __init__(self, channels: int, reduction: int, *, device=None, dtype=None) -> None:
        super().__init__()
        hidden = channels // reduction
        # `fc.0` / `fc.2` kept for checkpoint compatibility (the authors' nn.Sequential layout).
        self.fc = nn.Sequential(
            nn.Linear(channels, hidden, bias=False, device=device, dtype=dtype),
            nn.ReLU(),
            nn.Linear(hidden, channels, bias=False, device=device, dtype=dtype),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc(x.mean(dim=(2, 3)))
        return x * gate[:, :, None, None]


def conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, **factory):
    """A bias-free convolution that keeps the spatial size at stride 1 (odd kernels)."""
    return nn.Conv2d(
        in_ch,
        out_ch,
        kernel,
        stride=stride,
        padding=kernel // 2,
        groups=groups,
        bias=False,
        **factory,
    )


class Block(nn.Module):
    """Base of every block: `expansion` and the width check used by the spec's validation."""

    expansion = 1

    @classmethod
    def width_error(cls, planes: int, **options: int) -> str | None:
        """Why `planes` (with the block options) cannot be built, or None when it can."""
        return None


def projection(in_ch: int, out_ch: int, stride: int, *, norm: NormFactory | None = None, **fk):
    """The 1×1 shortcut when the shape changes (`shortcut.0`, the authors' name), else None."""
    if stride == 1 and in_ch == out_ch:
        return None
    layers = [conv(in_ch, out_ch, 1, stride, **fk)]
    if norm is not None:
        layers.append(norm(out_ch, **fk))
    return nn.Sequential(*layers)


def hierarchical(h: torch.Tensor, convs, norms, act, scales: int, pool) -> torch.Tensor:
    """Res2Net mixing of `scales` chunks; with a stride (`pool` set) the chunks are independent."""
    chunks = torch.chunk(h, scales, dim=1)
    ys = []
    for k in range(scales - 1):
        inp = chunks[k] if k == 0 or pool is not None else chunks[k] + ys[-1]
        ys.append(act(norms[k](convs[k](inp))))
    ys.append(chunks[-1] if pool is None else pool(chunks[-1]))
    return torch.cat(ys, dim=1)


def se_error(planes: int, expansion: int, se_reduction: int) -> str | None:
    """Why SE cannot reduce planes·expansion channels by `se_reduction`, or None."""
    if planes * expansion // se_reduction < 1:
        return f"at least {math.ceil(se_reduction / expansion)} so SE keeps a channel"
    return None
