"""Plain-PyTorch files of a network: a self-contained architecture source and its checkpoint.

The source is `standalone.py` (which imports only torch) with the spec written into `SPEC`; the
checkpoint is `{"state_dict": ...}` in RobustBench's layout. `check_reproduces` loads both the way
a user would and compares the logits with the model they came from.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import os
import pprint
from pathlib import Path

import torch
from torch import nn

from .._io import atomic_write, write_text
from ..arch import ArchSpec
from ..errors import CheckpointError, ConfigError
from . import standalone

_SPEC_LINE = "SPEC: dict = {}"  # the line of standalone.py that the spec replaces


def check_supported(spec: ArchSpec) -> None:
    """Raise ConfigError naming the stage field that standalone.py cannot build."""
    tables = {
        "block": standalone.BLOCKS,
        "activation": standalone.ACTIVATIONS,
        "normalization": standalone.NORMS,
    }
    for i, stage in enumerate(spec.stages):
        for field, table in tables.items():
            value = getattr(stage, field)
            if value not in table:
                raise ConfigError(
                    f"stages[{i}].{field}", value,
                    "one that the standalone architecture file implements: " + ", ".join(table),
                )  # fmt: skip


def architecture_source(spec: ArchSpec, header: str) -> str:
    """standalone.py with `SPEC` set to `spec`, after `header` (comment lines)."""
    check_supported(spec)
    source = importlib.resources.files(__package__).joinpath("standalone.py").read_text("utf-8")
    lines = source.splitlines()
    index = [i for i, line in enumerate(lines) if line.startswith(_SPEC_LINE)]
    if len(index) != 1:
        raise RuntimeError(f"standalone.py must hold one line starting {_SPEC_LINE!r}")
    literal = pprint.pformat(spec.to_dict(), sort_dicts=False, width=96)
    lines[index[0]] = "SPEC: dict = " + literal.replace("\n", "\n" + " " * len("SPEC: dict = "))
    comments = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
    return comments + "\n".join(lines) + "\n"


def robustbench_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's tensors on the CPU, `mu`/`sigma` shaped (C, 1, 1) as in RobustBench's zoo."""
    state = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    for key in ("mu", "sigma"):
        if key in state:
            state[key] = state[key].reshape(-1, 1, 1)
    return state


def write_checkpoint(path: str | os.PathLike, model: nn.Module) -> Path:
    """`torch.save({"state_dict": ...})`, atomically: what RobustBench's loader reads."""
    state = {"state_dict": robustbench_state_dict(model)}
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def write_architecture(path: str | os.PathLike, spec: ArchSpec, header: str) -> Path:
    """The self-contained architecture file of `spec`."""
    return write_text(path, architecture_source(spec, header))


def check_reproduces(
    model: nn.Module, architecture: Path, checkpoint: Path, *, atol: float = 1e-5
) -> float:
    """Build the network from the written files, load the checkpoint strictly, compare logits
    with `model` on two random images; returns the largest difference (raises above `atol`)."""
    loaded = _load_module(architecture).get_model()
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    try:
        loaded.load_state_dict(state, strict=True)
    except RuntimeError as err:
        why = " ".join(str(err).split())  # torch's message spans lines
        raise CheckpointError(f"{checkpoint} does not load into {architecture}: {why}") from None
    spec = model.spec
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(2, spec.in_channels, spec.input_size, spec.input_size, generator=generator)
    was_training = model.training
    with torch.no_grad():
        expected = model.eval()(x.to(next(model.parameters()).device)).cpu()
        got = loaded.eval()(x)
    model.train(was_training)
    difference = (expected - got).abs().max().item()
    if not difference <= atol:
        raise CheckpointError(
            f"{architecture} with {checkpoint} gives logits {difference:.3g} away from the "
            f"run's model (tolerance {atol})"
        )
    return difference


def _load_module(path: Path):
    """Execute the architecture file as a fresh module (not registered in sys.modules)."""
    module_spec = importlib.util.spec_from_file_location(f"_rrn_export_{path.stem}", path)
    if module_spec is None or module_spec.loader is None:
        raise CheckpointError(f"{path}: not a Python source file")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module
