"""load_weights / save_weights: checkpoint layouts, safety, and the errors users see."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
import torch
from safetensors import safe_open

from robustresnet import CheckpointError, build_model, get_spec, load_weights, save_weights
from robustresnet.arch import ArchSpec, StageSpec


def _spec(**changes) -> ArchSpec:
    stages = tuple(StageSpec(depth=1, widening=1, stride=1 + (i > 0)) for i in range(3))
    return ArchSpec(stages=stages, stem_channels=8, **changes)


@pytest.fixture
def source():
    return build_model(_spec()).eval()


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_safetensors_round_trip(tmp_path, source):
    path = save_weights(source, tmp_path / "w.safetensors")
    assert not list(tmp_path.glob(".*.tmp"))
    target = load_weights(build_model(_spec()), path)
    assert _same(source, target)
    with safe_open(path, "pt") as f:
        assert ArchSpec.from_dict(json.loads(f.metadata()["arch"])) == source.spec


@pytest.mark.parametrize("nest", ["state_dict", "model_state_dict", "model"])
def test_nested_and_prefixed_pth(tmp_path, source, nest):
    """The authors' .pth: state_dict under a key, DataParallel's `module.` prefix, extra entries."""
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    torch.save({nest: state, "epoch": 99, "optimizer": {"lr": 0.1}}, tmp_path / "ckpt.pth")
    assert _same(source, load_weights(build_model(_spec()), tmp_path / "ckpt.pth"))


def test_numpy_metrics_beside_the_weights_load(tmp_path, source):
    """The authors' checkpoints keep metrics (numpy scalars, arrays) next to model_state_dict."""
    env = {"best_pgd_acc": np.float64(55.9), "history": np.arange(3.0), "dtype": np.dtype("f4")}
    ckpt = {"epoch": 99, "model_state_dict": source.state_dict(), "ENV": env, "genotype": None}
    torch.save(ckpt, tmp_path / "authors.pth")
    assert _same(source, load_weights(build_model(_spec()), tmp_path / "authors.pth"))


def test_pickled_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (pathlib.Path.touch, (marker,))

    torch.save({"state_dict": {"fc.weight": torch.zeros(1)}, "x": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="not a safe checkpoint") as err:
        load_weights(build_model(_spec()), tmp_path / "evil.pth")
    assert not marker.exists()
    assert "weights_only" not in str(err.value)  # never advise loading it unsafely (issue 16)


def test_shape_mismatch_names_the_tensor(source):
    state = dict(source.state_dict())
    state["blocks.1.layer.0.conv2.weight"] = torch.zeros(32, 32, 5, 5)
    with pytest.raises(
        CheckpointError, match=r"blocks\.1\.layer\.0\.conv2\.weight.*\[32, 32, 5, 5\]"
    ):
        load_weights(build_model(_spec()), state)


def test_missing_and_unexpected_are_listed(source):
    state = dict(source.state_dict())
    del state["fc.bias"]
    state["head.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"missing 1 tensors: fc\.bias.*unexpected 1.*head"):
        load_weights(build_model(_spec()), state)


def test_other_architecture_is_rejected(source):
    with pytest.raises(CheckpointError, match="does not fit"):
        load_weights(build_model(get_spec("preactresnet-18"), device="meta"), source.state_dict())


def test_robustbench_layout(source):
    """RobustBench's WRN-A4: mu/sigma of shape (3, 1, 1), or absent from the file."""
    state = dict(source.state_dict())
    normed = _spec(mean=(0.4914, 0.4822, 0.4465), std=(0.2471, 0.2435, 0.2616))
    model = load_weights(build_model(normed), state)
    assert model.mu.shape == (1, 3, 1, 1)
    state["mu"] = torch.tensor([0.4914, 0.4822, 0.4465]).view(3, 1, 1)
    state["sigma"] = torch.tensor([0.2471, 0.2435, 0.2616]).view(3, 1, 1)
    load_weights(build_model(normed), state)
    with pytest.raises(CheckpointError, match="give the spec mean/std"):
        load_weights(build_model(_spec()), state)
    state["mu"] = torch.full((3, 1, 1), 0.5)
    with pytest.warns(UserWarning, match="replaces the spec's"):
        assert load_weights(build_model(normed), state).mu.flatten().tolist() == [0.5] * 3


def test_loads_into_meta_model(source):
    model = load_weights(build_model(_spec(), device="meta"), source.state_dict())
    assert _same(source, model)


def test_unreadable_files(tmp_path, source):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_weights(source, tmp_path / "missing.pth")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        load_weights(source, tmp_path / "junk.safetensors")
    (tmp_path / "junk.pth").write_bytes(b"\x00\x01garbage")
    with pytest.raises(CheckpointError, match="junk.pth"):
        load_weights(source, tmp_path / "junk.pth")
    with pytest.raises(CheckpointError, match="'epoch' is not a tensor"):
        load_weights(source, {"epoch": 3})
