"""Loading and saving weights: ours, the authors' `.pth` checkpoints and RobustBench's WRN-A4.

Loading never runs pickled code: safetensors, or `torch.load(weights_only=True)`. It is strict:
every tensor of the model must come from the checkpoint and every checkpoint tensor must be used,
except RobustBench's input-normalisation buffers (`mu`, `sigma`), which the spec also defines.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import nn

from .._io import atomic_write
from .._units import format_count
from ..errors import CheckpointError, in_file
from .network import build_model
from .profile import profile
from .spec import ArchSpec
from .specs import Spec, spec_from_dict

# Keys under which training scripts nest the state_dict, most specific first.
NESTED_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "module")
# Buffers the spec defines too: a checkpoint may omit them (RobustBench's own file does).
OPTIONAL_KEYS = ("mu", "sigma")
_PREFIXES = ("module.", "_orig_mod.")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors or torch checkpoint file, unpacked to a flat state_dict."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        try:
            return load_file(path)
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None
    return unwrap_state_dict(load_torch_file(path), source=str(path))


def load_torch_file(path: str | os.PathLike) -> Any:
    """`torch.load(weights_only=True)` of `path`, every failure a one-line CheckpointError: a
    file that needs code to load is "not a safe checkpoint", never to be loaded unsafely."""
    try:
        with _numpy_data_allowed(), warnings.catch_warnings():
            # The protocol notice is noise beside the verdict on the file.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        needs = next((line for line in lines if "GLOBAL" in line), None)
        if needs is not None:  # torch's text goes on to advise allowing it: cut that off
            needs = needs.split(". ")[0].removeprefix("WeightsUnpickler error: ")
            raise CheckpointError(
                f"{path}: not a safe checkpoint ({needs}): loading it could run code, so it was "
                "refused; only tensors, numbers, strings and containers are read. Save its "
                "state_dict as safetensors where it was made"
            ) from None
        unsupported = (line for line in lines if line.startswith("Unsupported"))
        reason = next(unsupported, lines[-1] if lines else "not a pickle")
        raise CheckpointError(f"{path}: corrupt or not a torch checkpoint ({reason})") from None
    except Exception as err:  # corrupt files raise RuntimeError, EOFError, KeyError, ...
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: corrupt or not a torch checkpoint ({reason})") from None


def _numpy_data_allowed():
    """Let the weights-only unpickler rebuild numpy scalars/arrays (plain data, no code).

    Training scripts store metrics such as `np.float64` accuracies beside the state_dict (the
    authors' `ENV`); without this their checkpoints would be refused although they hold no code.
    """
    allow = getattr(torch.serialization, "safe_globals", None)
    if allow is None:  # torch < 2.5: numpy entries stay refused
        return contextlib.nullcontext()
    core = getattr(np, "_core", None) or np.core
    names = [np.dtype, np.ndarray, *{type(np.dtype(code)) for code in np.typecodes["All"]}]
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        names.append((core.multiarray.scalar, f"{module}.scalar"))
        names.append((core.multiarray._reconstruct, f"{module}._reconstruct"))
    return allow(names)


def unwrap_state_dict(obj, *, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Descend into a nested checkpoint (`{"state_dict": ...}`) and strip `module.` prefixes."""
    while isinstance(obj, Mapping) and not _all_tensors(obj):
        if not obj:
            raise CheckpointError(f"{source}: holds no tensors")
        inner = next((obj[k] for k in NESTED_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            bad = next(k for k, v in obj.items() if not isinstance(v, torch.Tensor))
            raise CheckpointError(
                f"{source}: entry {bad!r} is not a tensor and no state_dict is nested under "
                + "/".join(NESTED_KEYS)
            )
        obj = inner
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source}: expected a state_dict mapping, got {type(obj).__name__}")
    return {_strip_prefix(k): v for k, v in obj.items()}


def _all_tensors(obj: Mapping) -> bool:
    return bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _strip_prefix(key: str) -> str:
    for prefix in _PREFIXES:
        while key.startswith(prefix):
            key = key[len(prefix) :]
    return key


def check_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise CheckpointError listing missing/unexpected tensors or naming the first bad shape."""
    own = model.state_dict()
    missing = [k for k in own if k not in state and k not in OPTIONAL_KEYS]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = [f"{source} does not fit the model"]
        if missing:
            parts.append(f"missing {len(missing)} tensors: {_listing(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} tensors: {_listing(unexpected)}")
        if any(k in OPTIONAL_KEYS for k in unexpected):
            parts.append(
                "the checkpoint normalises inputs in-model (mu/sigma): give the spec mean/std"
            )
        raise CheckpointError("; ".join(parts))
    for key, tensor in own.items():
        if key not in state:
            continue
        theirs = state[key]
        fits = theirs.shape == tensor.shape or (
            key in OPTIONAL_KEYS and theirs.numel() == tensor.numel()
        )
        if not fits:
            raise CheckpointError(
                f"{source}: tensor {key} has shape {list(theirs.shape)} in the checkpoint "
                f"but {list(tensor.shape)} in the model"
            )


def _listing(keys: list[str], limit: int = 8) -> str:
    more = f" ... (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_weights(model: nn.Module, path_or_state_dict) -> nn.Module:
    """Load a checkpoint file or state_dict into `model` strictly; returns the model."""
    if isinstance(path_or_state_dict, Mapping):
        source = "state_dict"
        state = unwrap_state_dict(path_or_state_dict, source=source)
    else:
        source = str(path_or_state_dict)
        state = read_state_dict(path_or_state_dict)
    check_state_dict(model, state, source)
    own = model.state_dict()
    state = {k: v.reshape(own[k].shape) if k in OPTIONAL_KEYS else v for k, v in state.items()}
    _warn_other_normalisation(own, state, source)
    on_meta = any(t.is_meta for t in own.values())
    model.load_state_dict(state, strict=False, assign=on_meta)
    return model


def _warn_other_normalisation(own: Mapping, state: Mapping, source: str) -> None:
    """The checkpoint's mu/sigma replace the spec's; say so when they differ."""
    for key in OPTIONAL_KEYS:
        if key not in state or own[key].is_meta:
            continue
        if not torch.allclose(own[key].float(), state[key].float(), atol=1e-6):
            warnings.warn(
                f"{source}: its {key} {state[key].flatten().tolist()} replaces the spec's "
                f"{own[key].flatten().tolist()}",
                UserWarning,
                stacklevel=3,
            )


def save_weights(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write the model's state_dict as safetensors (atomically), with its spec as metadata.

    The bytes are written by Python, so a full disk is an OSError the callers can name (the
    safetensors writer reports it as an error of its own)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    spec = getattr(model, "spec", None)
    metadata = {"arch": json.dumps(spec.to_dict())} if spec is not None else None
    data = safetensors_bytes(tensors, metadata=metadata)
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def metadata_spec(path: str | os.PathLike) -> Spec | None:
    """The spec that `save_weights` stores in a safetensors file's metadata (None: none)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            arch = (f.metadata() or {}).get("arch")
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None
    if not arch:
        return None
    try:
        data = json.loads(arch)
    except (ValueError, RecursionError) as err:
        reason = err if isinstance(err, ValueError) else "nested too deeply"
        raise CheckpointError(f"{path}: its arch metadata is not valid JSON ({reason})") from None
    with in_file(f"{path} (arch metadata)"):
        return spec_from_dict(data)


def load_model(spec: Spec, state: Mapping[str, torch.Tensor], source: str) -> nn.Module:
    """The network of `spec` holding the tensors `state` (read from `source`).

    Checked against the file before anything is allocated: the spec's parameters, counted
    without building it, must be among the file's values, so a spec far larger than its file
    (hostile metadata, a wrong --arch or --num-classes) fails here instead of allocating."""
    values = sum(t.numel() for t in state.values())
    # every block (cell) holds at least one tensor; bounds the counting below
    blocks = sum(spec.depths) if isinstance(spec, ArchSpec) else spec.layers
    if blocks > len(state):
        raise CheckpointError(
            f"{source} does not fit the spec: {blocks} blocks but only {len(state)} tensors"
        )
    params = profile(spec).params
    if params > values:
        raise CheckpointError(
            f"{source} does not fit the spec: the spec has {format_count(params)} parameters, "
            f"the file only {format_count(values)} values; give the network's own spec (--arch)"
        )
    check_state_dict(build_model(spec, device="meta"), state, source)
    return load_weights(build_model(spec), state)
