"""Fidelity to the authors' implementation: test vectors and full-size key lists."""

from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors.torch import load_file

from robustresnet import build_model, fuse, load_weights
from robustresnet.arch import ArchSpec, get_spec

CASES = ["basic_relu_bn", "robust_relu_bn", "robust_silu_bn_c100"]


def _case(reference_dir, name):
    case = json.loads((reference_dir / "vectors" / f"{name}.json").read_text())
    tensors = load_file(reference_dir / "vectors" / f"{name}.safetensors")
    return case, tensors.pop("__input__"), tensors.pop("__logits__"), tensors


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("name", CASES)
def test_vector_logits(reference_dir, name, fused):
    """The authors' logits from the definition, and from its fused copy (attacks run that)."""
    case, x, logits, state = _case(reference_dir, name)
    model = build_model(ArchSpec.from_reference(case["model"])).eval()
    load_weights(model, state)
    assert list(x.shape) == case["input_shape"]
    with torch.no_grad():
        out = (fuse(model) if fused else model)(x)
    torch.testing.assert_close(out, logits, atol=case["tolerance_abs"], rtol=0)


@pytest.mark.parametrize("name", CASES)
def test_vector_params(reference_dir, name):
    case = json.loads((reference_dir / "vectors" / f"{name}.json").read_text())
    model = build_model(ArchSpec.from_reference(case["model"]), device="meta")
    assert sum(p.numel() for p in model.parameters()) == case["params"]


def _reference_keys(path):
    out = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, shape = line.split(" ", 1)
            out[key] = tuple(int(n) for n in re.findall(r"\d+", shape))
    return out


@pytest.mark.parametrize("preset", ["robustresnet-a1", "wrn-a4"])
def test_full_size_keys(reference_dir, preset):
    model = build_model(get_spec(preset), device="meta")
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == _reference_keys(reference_dir / "keys" / f"{preset}.txt")


def test_robustbench_wrn_a4_layout(reference_dir):
    """RobustBench's WRN-A4: the reference keys plus the in-model normalisation buffers."""
    spec = get_spec("wrn-a4", activation="silu", mean="cifar10")
    state = build_model(spec, device="meta").state_dict()
    expected = _reference_keys(reference_dir / "keys" / "wrn-a4.txt")
    assert set(state) - set(expected) == {"mu", "sigma"}
    assert tuple(state["mu"].shape) == (1, 3, 1, 1)
