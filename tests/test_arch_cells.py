"""The NAS baselines (RobNet-large-v2, AdvRush, RACL): the authors' module layout, the published
sizes, and training / attacking / fusing like every other network (at a reduced size)."""

from __future__ import annotations

import pytest
import torch
from _arch_checks import check_trains, randomise_batchnorms
from test_arch_reference import _reference_keys

from robustresnet import CellNetSpec, ConfigError, build_model, fuse, get_spec, profile
from robustresnet.arch import load_spec, save_weights
from robustresnet.arch.compat import metadata_spec
from robustresnet.attacks import fgsm, pgd

NAS = ["robnet-large-v2", "advrush", "racl"]

# torchprofile 0.1.0 on the authors' own modules (zhichao-lu/robust-residual-network models/,
# built as their __main__ blocks and RobNets' config do) gives exactly these counts; so do we.
EXACT = {
    "robnet-large-v2": (33_326_666, 5_094_812_672),
    "advrush": (32_575_018, 4_969_284_096),
    "racl": (32_509_682, 4_928_466_816),
}
# The paper's Table 2. RobNet-large-v2's 5.10G is not reached: by torchprofile's rules its MACs
# are 5.0948G (5.09G), 187,328 MACs short of rounding up; counting the affine-free BatchNorms
# (5.13G), the additions (5.13G) or the ReLUs (5.14G) overshoots, so no counting rule explains it.
# The figure is presumably RobNets' own (another counter); docs/architectures.md says so.
PUBLISHED = {
    "robnet-large-v2": ("33.3M", "5.10G"),
    "advrush": ("32.6M", "4.97G"),
    "racl": ("32.5M", "4.93G"),
}


def _tiny(name: str, **changes) -> CellNetSpec:
    """The same genotype with 5 cells (two reducing) of 8 initial channels."""
    return get_spec(name).replace(**{"layers": 5, "init_channels": 8, **changes})


@pytest.mark.parametrize("name", NAS)
def test_full_size_keys_are_the_reference_state_dict(reference_dir, name):
    model = build_model(get_spec(name), device="meta")
    ours = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert ours == list(_reference_keys(reference_dir / "keys" / f"{name}.txt").items())


@pytest.mark.parametrize("name", NAS)
def test_published_sizes(name):
    cost = profile(get_spec(name))
    assert (cost.params, cost.macs) == EXACT[name]
    params, macs = PUBLISHED[name]
    assert f"{cost.params / 1e6:.1f}M" == params
    if name == "robnet-large-v2":
        assert f"{cost.macs / 1e9:.2f}G" == "5.09G" != macs  # see the comment at PUBLISHED
    else:
        assert f"{cost.macs / 1e9:.2f}G" == macs


@pytest.mark.parametrize("name", NAS)
def test_trains_attacks_and_fuses_at_reduced_size(name):
    torch.manual_seed(0)
    model = build_model(_tiny(name)).train()
    x, y = torch.rand(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    assert check_trains(model, x).shape == (4, 10)
    model.eval()
    randomise_batchnorms(model)
    with torch.no_grad():
        torch.testing.assert_close(fuse(model)(x), model(x), atol=1e-4, rtol=1e-4)
    x_adv = fgsm(model, x, y, eps=8 / 255)
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6 and not torch.equal(x_adv, x)
    x_pgd = pgd(model, x, y, eps=8 / 255, step_size=2 / 255, steps=1, fuse=False)
    assert torch.isfinite(model(x_pgd)).all()


def test_second_derivatives_are_native():
    """A gradient penalty differentiates through the cells: plain autograd, no custom Function."""
    model = build_model(_tiny("advrush")).eval()
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    (grad,) = torch.autograd.grad(model(x).logsumexp(1).sum(), x, create_graph=True)
    grad.square().sum().backward()
    assert model.classifier.weight.grad is not None and model.stem[0].weight.grad.any()


def test_compiles_as_one_graph():
    model = build_model(_tiny("racl", layers=3)).eval()
    x = torch.rand(2, 3, 8, 8)
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x))


def test_robnet_cells_sum_every_earlier_state():
    spec = get_spec("RobNet_Large_v2")
    assert [len(node) for node in spec.normal] == [2, 3, 4, 5]
    assert spec.normal == spec.reduce and not spec.affine and spec.depths == (11, 10, 10)
    assert get_spec("AdvRush").depths == get_spec("racl").depths == (7, 7, 7)  # "7@C"


def test_spec_files_and_weight_metadata_round_trip(tmp_path):
    spec = _tiny("robnet-large-v2", num_classes=100)
    for suffix in ("yaml", "json"):
        assert load_spec(spec.save(tmp_path / f"arch.{suffix}")) == spec
    model = build_model(spec)
    path = save_weights(model, tmp_path / "w.safetensors")
    assert metadata_spec(path) == spec


def test_overrides():
    spec = get_spec("racl", num_classes=100, mean="cifar10")
    model = build_model(spec, device="meta")
    assert model.classifier.out_features == 100 and tuple(model.mu.shape) == (1, 3, 1, 1)
    with pytest.raises(ConfigError, match="activation"):
        get_spec("advrush", activation="silu")


@pytest.mark.parametrize(
    "change, field",
    [
        ({"normal": ((("conv_9x9", 0),),)}, r"normal\[0\]\[0\]\.op"),
        ({"normal": ((("skip_connect", 2),),)}, r"normal\[0\]\[0\]\.input"),
        ({"normal_concat": (2, 9)}, "normal_concat"),
        ({"layout": "nasnet"}, "layout"),
        ({"init_channels": 7}, "init_channels"),
    ],
)
def test_bad_specs_name_the_field(change, field):
    with pytest.raises(ConfigError, match=field):
        get_spec("advrush").replace(**change)


def test_unknown_kind_and_missing_field(tmp_path):
    data = get_spec("racl").to_dict()
    (tmp_path / "a.yaml").write_text("kind: nasnet\n")
    with pytest.raises(ConfigError, match="kind"):
        load_spec(tmp_path / "a.yaml")
    del data["layers"]
    with pytest.raises(ConfigError, match="layers"):
        CellNetSpec.from_dict(data)


# One epoch leaves a tiny network whose sanity check may flag the attack: not what this tests.
@pytest.mark.filterwarnings("ignore:PGD-10 robust accuracy")
def test_trains_and_evaluates_end_to_end(tmp_path, capsys):
    """`train` a reduced AdvRush on digits from a spec dict, then `rrn eval` its run directory."""
    from _train_helpers import tiny_config

    from robustresnet import train
    from robustresnet.cli import main

    spec = _tiny("advrush", layers=3, input_size=8).to_dict()
    config = tiny_config(model={"spec": spec}, schedule={"epochs": 1})
    run = train(config, tmp_path / "run", quiet=True)
    assert isinstance(load_spec(tmp_path / "run" / "arch.yaml"), CellNetSpec) and run is not None
    args = ["eval", str(tmp_path / "run"), "--data", "digits", "-n", "16", "--json", "--quiet"]
    assert main([*args, "--attacks", "clean,pgd5", "--out", str(tmp_path / "eval")]) == 0
    assert '"complete": true' in capsys.readouterr().out
