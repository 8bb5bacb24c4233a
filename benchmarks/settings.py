"""What our side of every comparison runs with (the baseline is always the definition: eager,
fp32, NCHW, unfused), and the per-device defaults of a run."""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass

import torch
from torch import nn

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# Images per call, per device and size. On a GPU the fp32 baseline's TRADES step holds two training
# forwards, about 180 MB of activations per A1 image and 700 MB per A4 image: A4 at 128 would not
# fit in an H200's 141 GB. On the CPU an A1 TRADES step of 8 images takes about 20 s.
BATCH = {
    "cpu": {"tiny": 64, "A1": 8, "A4": 2, "wrn-a4": 2},
    "cuda": {"tiny": 512, "A1": 128, "A4": 32, "wrn-a4": 32},
}
# 0: not run by default (on the CPU, one A1 image takes minutes of APGD iterations per side)
AA_SAMPLES = {
    "cpu": {"tiny": 4, "A1": 0, "A4": 0, "wrn-a4": 0},
    "cuda": {"tiny": 128, "A1": 16, "A4": 4, "wrn-a4": 4},
}
# APGD-T target classes: the fewest its targeted DLR loss allows (4 classes); AutoAttack's is 9
AA_TARGETS = 3
LOADER_BATCH = {"cpu": 128, "cuda": 512}


@dataclass(frozen=True)
class Settings:
    """Our side: device, autocast dtype name, memory format, fused attacks, torch.compile."""

    device: torch.device
    dtype: str = "fp32"
    channels_last: bool = True
    fuse: bool = True
    compile: bool = False

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast to the dtype (fp32: a no-op)."""
        dtype = DTYPES[self.dtype]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def prepare(self, model: nn.Module) -> nn.Module:
        """A copy of `model` as ours runs it: channels_last, compiled (fusing happens in the
        library's attacks; a compiled model is attacked as compiled)."""
        ours = copy.deepcopy(model)
        if self.channels_last:
            ours = ours.to(memory_format=torch.channels_last)
        return torch.compile(ours) if self.compile else ours

    def layout(self, x: torch.Tensor) -> torch.Tensor:
        """`x` in our memory format."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def label(self) -> str:
        """A short name of the setting, e.g. 'cuda, bf16, channels_last, fuse' (a compiled model
        is never fused: 'compile' then)."""
        parts = [self.device.type, self.dtype, "channels_last" if self.channels_last else "NCHW"]
        parts.append("compile" if self.compile else "fuse" if self.fuse else "no fuse")
        return ", ".join(parts)
