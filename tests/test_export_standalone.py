"""The exported plain-PyTorch architecture file: every block of the design space, RobustBench's
checkpoint layout, and a fresh interpreter that cannot import robustresnet."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from _arch_checks import randomise_batchnorms

from robustresnet import ArchSpec, StageSpec, build_model, load_weights
from robustresnet.arch.blocks import BLOCKS
from robustresnet.arch.layers import ACTIVATIONS, NORMS
from robustresnet.errors import CheckpointError, ConfigError
from robustresnet.export import standalone
from robustresnet.export.plain import (
    architecture_source,
    check_reproduces,
    write_architecture,
    write_checkpoint,
)

STATS = {"mean": (0.4914, 0.4822, 0.4465), "std": (0.2471, 0.2435, 0.2616)}


def _spec(blocks, activation="relu", normalization="batchnorm", **fields) -> ArchSpec:
    """Tiny stages (8 px input, widths 16 and 32), one block type per stage."""
    stages = tuple(
        StageSpec(
            depth=2,
            channels=16 * 2**i,
            stride=1 if i == 0 else 2,
            block=block,
            activation=activation,
            normalization=normalization,
        )
        for i, block in enumerate(blocks)
    )
    return ArchSpec(
        stages=stages, stem_channels=8, input_size=8, scales=4, se_reduction=16, **fields
    )


def _model(spec: ArchSpec) -> torch.nn.Module:
    return randomise_batchnorms(build_model(spec)).eval()


def _export(model: torch.nn.Module, folder: Path) -> tuple[Path, Path]:
    architecture = write_architecture(folder / "architecture.py", model.spec, "test export")
    return architecture, write_checkpoint(folder / "model.pt", model)


def test_it_implements_every_block_activation_and_normalisation():
    assert set(standalone.BLOCKS) == set(BLOCKS)
    assert set(standalone.ACTIVATIONS) == set(ACTIVATIONS)
    assert set(standalone.NORMS) == set(NORMS)


CASES = (
    [pytest.param((block, block), "relu", "batchnorm", id=block) for block in sorted(BLOCKS)]
    + [pytest.param(("basic_block",) * 2, act, "batchnorm", id=act) for act in sorted(ACTIVATIONS)]
    + [pytest.param(("robust_res_block",) * 2, "silu", n, id=n) for n in sorted(NORMS)]
    + [pytest.param(("inverted_bottleneck", "robust_res_block"), "gelu", "groupnorm", id="mixed")]
)


@pytest.mark.parametrize(("blocks", "activation", "normalization"), CASES)
def test_exported_files_reproduce_the_logits(tmp_path, blocks, activation, normalization):
    model = _model(_spec(blocks, activation, normalization))
    assert check_reproduces(model, *_export(model, tmp_path)) == 0.0


def test_checkpoint_is_robustbench_layout(tmp_path):
    model = _model(_spec(("basic_block", "basic_block"), **STATS))
    _, checkpoint = _export(model, tmp_path)
    saved = torch.load(checkpoint, weights_only=True)
    assert list(saved) == ["state_dict"]
    state = saved["state_dict"]
    assert list(state) == list(model.state_dict())  # the authors' key names, unchanged
    assert state["mu"].shape == state["sigma"].shape == (3, 1, 1)  # RobustBench's WRN-A4 buffers
    reloaded = load_weights(build_model(model.spec), checkpoint).eval()
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(reloaded(x), model(x))


def test_spec_is_embedded_and_the_template_refuses_without_one():
    spec = _spec(("robust_res_block", "basic_block"), **STATS)
    source = architecture_source(spec, "line one\n\nline three")
    assert source.startswith("# line one\n#\n# line three\n")
    namespace: dict = {}
    exec(compile(source, "architecture.py", "exec"), namespace)
    assert ArchSpec.from_dict(namespace["SPEC"]) == spec
    with pytest.raises(ValueError, match="no spec"):
        standalone.get_model()


def test_a_block_it_cannot_build_is_refused(monkeypatch):
    blocks = {k: v for k, v in standalone.BLOCKS.items() if k != "se_bottleneck"}
    monkeypatch.setattr(standalone, "BLOCKS", blocks)
    spec = _spec(("basic_block", "se_bottleneck"))
    with pytest.raises(ConfigError, match=r"stages\[1\]\.block: got 'se_bottleneck'"):
        architecture_source(spec, "")


FRESH = """\
import importlib.util, sys
sys.path.append(sys.argv[1])  # torch's site-packages, without running its .pth files
assert importlib.util.find_spec("robustresnet") is None, "robustresnet is importable"
import torch
for folder in sys.argv[2:]:
    sys.path.insert(0, folder)
    sys.modules.pop("architecture", None)
    from architecture import get_model
    model = get_model()
    model.load_state_dict(torch.load(folder + "/model.pt", weights_only=True)["state_dict"])
    x = torch.load(folder + "/x.pt", weights_only=True)
    with torch.no_grad():
        torch.save(model.eval()(x), folder + "/logits.pt")
    sys.path.remove(folder)
"""


def test_a_fresh_interpreter_without_robustresnet_reproduces_the_logits(tmp_path):
    specs = {
        "robust": _spec(("robust_res_block", "robust_res_block")),
        "basic_silu_normalised": _spec(("basic_block", "basic_block"), "silu", **STATS),
        "bottleneck_layernorm": _spec(
            ("residual_se_bottleneck", "basic_block_post"), "prelu", "layernorm"
        ),
    }
    expected = {}
    for name, spec in specs.items():
        model, folder = _model(spec), tmp_path / name
        _export(model, folder)
        x = torch.rand(3, 3, 8, 8)
        torch.save(x, folder / "x.pt")
        with torch.no_grad():
            expected[name] = model(x)
    (tmp_path / "fresh.py").write_text(textwrap.dedent(FRESH))
    site_packages = str(Path(torch.__file__).resolve().parents[1])
    folders = [str(tmp_path / name) for name in specs]
    # -I: no PYTHONPATH, no user site, no cwd; -S: no site-packages .pth (the editable install)
    command = [sys.executable, "-I", "-S", str(tmp_path / "fresh.py"), site_packages, *folders]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for name in specs:
        logits = torch.load(tmp_path / name / "logits.pt", weights_only=True)
        torch.testing.assert_close(logits, expected[name], atol=1e-5, rtol=0)


def test_files_that_do_not_reproduce_the_model_are_an_error(tmp_path):
    model = _model(_spec(("basic_block", "basic_block")))
    architecture, checkpoint = _export(model, tmp_path)
    state = torch.load(checkpoint, weights_only=True)
    state["state_dict"]["fc.bias"] += 1.0
    torch.save(state, checkpoint)
    with pytest.raises(CheckpointError, match="logits 1 away from the run's model"):
        check_reproduces(model, architecture, checkpoint)
    del state["state_dict"]["fc.bias"]
    torch.save(state, checkpoint)
    with pytest.raises(CheckpointError, match=r"does not load into .*Missing key.*fc\.bias"):
        check_reproduces(model, architecture, checkpoint)
