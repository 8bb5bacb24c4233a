"""hubconf.py: a torch.hub entry point per preset, loaded from this checkout with source="local"."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from conftest import REPO

from robustresnet import get_spec
from robustresnet.arch.zoo import PRESETS
from robustresnet.errors import ConfigError


def _load(name: str, **kwargs) -> torch.nn.Module:
    return torch.hub.load(str(REPO), name, source="local", **kwargs)


def test_every_preset_is_listed(monkeypatch):
    # torch.hub.list only takes GitHub repositories: point its download step at this checkout
    monkeypatch.setattr(torch.hub, "_get_cache_or_reload", lambda *args, **kwargs: str(REPO))
    assert torch.hub.list("owner/robustresnet") == sorted(p.replace("-", "_") for p in PRESETS)
    assert torch.hub.help("owner/robustresnet", "wrn_28_10").startswith("wrn-28-10: basic_block")


def test_a1_with_the_published_parameter_count():
    path = list(sys.path)
    model = _load("robustresnet_a1", pretrained=False, num_classes=10, device="meta")
    assert model.spec == get_spec("robustresnet-a1")
    assert sum(p.numel() for p in model.parameters()) == 19_222_738  # the paper's 19.2M
    assert sys.path == path  # hubconf restores the path it extended


def test_overrides_reach_the_spec():
    model = _load("wrn_a4", activation="silu", mean="cifar10", device="meta")
    assert model.spec == get_spec("wrn-a4", activation="silu", mean="cifar10")
    small = _load("preactresnet_18", num_classes=100).eval()
    assert small(torch.rand(2, 3, 32, 32)).shape == (2, 100)


def test_pretrained_weights_are_not_invented():
    with pytest.raises(ConfigError, match="no pretrained weights of wrn-28-10 are published"):
        _load("wrn_28_10", pretrained=True)


def test_loads_this_checkout_without_robustresnet_on_the_path(tmp_path):
    """-I: no PYTHONPATH; whichever robustresnet is installed, the hub uses this checkout's."""
    script = (
        "import torch\n"
        f"torch.hub.load({str(REPO)!r}, 'wrn_28_10', source='local', device='meta')\n"
        "import robustresnet\n"
        "print(robustresnet.__file__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", script], capture_output=True, text=True, cwd=tmp_path,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(REPO / "src" / "robustresnet" / "__init__.py")
