"""torch.hub entry points: one per preset of the zoo, named with `_` for `-`.

    model = torch.hub.load("path/to/robustresnet", "robustresnet_a1", source="local",
                           num_classes=10, activation="silu", mean="cifar10")

Each entry returns the preset's network, freshly initialised. No pretrained weights are published
yet, so `pretrained=True` is an error rather than a download.
"""

import sys as _sys
from pathlib import Path as _Path

# torch.hub checks these modules are importable before loading this file: the package's own
# import-time dependencies (it also needs this checkout's src/ on the path, added below).
dependencies = ["torch", "numpy", "yaml", "safetensors", "tqdm"]

# This checkout's package, installed or not; the path is restored once it is imported.
_SRC = str(_Path(__file__).resolve().parent / "src")
_sys.path.insert(0, _SRC)
try:
    from robustresnet.arch import build_model as _build_model
    from robustresnet.arch import zoo as _zoo
    from robustresnet.errors import ConfigError as _ConfigError
finally:
    _sys.path.remove(_SRC)


def _entry(preset: str):
    """The hub entry point building `preset`."""

    def entry(pretrained: bool = False, *, device=None, dtype=None, **overrides):
        if pretrained:
            raise _ConfigError(
                "pretrained", True, f"False: no pretrained weights of {preset} are published yet "
                "(train one with `rrn train`, then `robustresnet.load_weights(model, path)`)",
            )  # fmt: skip
        return _build_model(_zoo.get_spec(preset, **overrides), device=device, dtype=dtype)

    spec = _zoo.PRESETS[preset]
    if hasattr(spec, "stages"):
        block = ", ".join(dict.fromkeys(s.block for s in spec.stages))
        shape = f"{block}, depths {list(spec.depths)}, widths {list(spec.planes)}"
    else:  # a NAS cell network (activation is not an option there)
        shape = f"{spec.layout} cells, {spec.layers} layers of {spec.init_channels} channels"
    entry.__name__ = entry.__qualname__ = preset.replace("-", "_")
    entry.__doc__ = (
        f"{preset}: {shape}.\n\n"
        "Keyword options: num_classes, activation (one for every stage, e.g. 'silu'), mean / std\n"
        "(in-model input normalisation: numbers or 'cifar10'), device, dtype (device='meta'\n"
        "builds without memory); pretrained=True is refused: no weights are published yet."
    )
    return entry


for _preset in _zoo.PRESETS:
    globals()[_preset.replace("-", "_")] = _entry(_preset)
