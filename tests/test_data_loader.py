"""DeviceLoader and the batched augmentations: determinism, sharding, mixing, resume, properties."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from robustresnet.data import DeviceLoader, ImageDataset
from robustresnet.data.augment import random_crop, random_flip, random_rotation, to_float
from robustresnet.errors import ConfigError


def _data(n: int, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images whose label is their index (+ offset), so batches reveal what was drawn."""
    images = torch.randint(0, 256, (n, 3, 8, 8), generator=torch.Generator().manual_seed(n))
    return images.to(torch.uint8), torch.arange(offset, offset + n)


def _epoch(loader: DeviceLoader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone()) for x, y in loader]


def _same(a, b) -> bool:
    return len(a) == len(b) and all(
        torch.equal(x, u) and torch.equal(y, v) for (x, y), (u, v) in zip(a, b, strict=True)
    )


def test_batches_are_float_in_unit_range_and_deterministic():
    images, labels = _data(50)
    first = _epoch(DeviceLoader(images, labels, batch_size=8, train=True, seed=3))
    again = _epoch(DeviceLoader(images, labels, batch_size=8, train=True, seed=3))
    other = _epoch(DeviceLoader(images, labels, batch_size=8, train=True, seed=4))
    assert len(first) == 6 and _same(first, again) and not _same(first, other)
    x, y = first[0]
    assert x.dtype == torch.float32 and x.shape == (8, 3, 8, 8) and y.dtype == torch.int64
    assert x.min() >= 0 and x.max() <= 1
    assert torch.equal((x * 255).round(), x * 255)  # exact k/255 values after crop and flip


def test_epochs_differ_and_advance_on_their_own():
    images, labels = _data(40)
    loader = DeviceLoader(images, labels, batch_size=8, train=True, seed=0)
    e0, e1 = _epoch(loader), _epoch(loader)
    assert loader.state_dict()["epoch"] == 2 and not _same(e0, e1)
    loader.set_epoch(1)
    assert _same(_epoch(loader), e1)


def test_each_training_epoch_is_a_permutation_with_drop_last():
    images, labels = _data(50)
    ys = torch.cat([y for _, y in DeviceLoader(images, labels, batch_size=8, train=True, seed=1)])
    assert len(ys) == 48 and len(set(ys.tolist())) == 48


@pytest.mark.parametrize(("n", "world", "drop"), [(60, 3, True), (60, 3, False), (61, 4, True)])
def test_sharding_is_disjoint_and_complete(n, world, drop):
    images, labels = _data(n)
    seen = []
    for rank in range(world):
        loader = DeviceLoader(
            images,
            labels,
            batch_size=4,
            train=True,
            seed=5,
            rank=rank,
            world_size=world,
            drop_last=drop,
        )
        ys = torch.cat([y for _, y in loader]).tolist()
        assert len(ys) == len(loader) * 4 or not drop
        seen.append(set(ys))
    union = set().union(*seen)
    assert sum(map(len, seen)) == len(union)  # disjoint
    assert len(union) == (n // world // 4 * 4 * world if drop else n // world * world)
    if n % world == 0 and not drop:
        assert union == set(range(n))  # complete


def test_eval_is_in_order_unaugmented_and_sharded_completely():
    images, labels = _data(23)
    loader = DeviceLoader(images, labels, batch_size=5, train=False)
    xs, ys = zip(*loader, strict=True)
    assert len(loader) == 5 and torch.equal(torch.cat(ys), labels)
    assert torch.equal(torch.cat(xs), images.float() / 255)
    shards = [
        torch.cat(
            [
                y
                for _, y in DeviceLoader(
                    images, labels, batch_size=4, train=False, rank=r, world_size=3
                )
            ]
        )
        for r in range(3)
    ]
    assert torch.equal(torch.cat(shards), labels)


def test_extra_data_fills_an_exact_fraction_of_each_batch():
    images, labels = _data(40)
    extra = ImageDataset(
        *_data(100, offset=1000), classes=tuple(map(str, range(1100))), name="e", split="extra"
    )
    loader = DeviceLoader(
        images, labels, batch_size=10, train=True, seed=2, extra=extra, extra_fraction=0.7
    )
    batches = _epoch(loader)
    assert len(loader) == len(batches) == 40 // 3
    for _, y in batches:
        assert (y >= 1000).sum() == 7 and (y < 1000).sum() == 3
    extra_seen = torch.cat([y[y >= 1000] for _, y in batches])
    assert len(set(extra_seen.tolist())) == len(extra_seen) == 91  # its own permutation, no repeats
    base_seen = torch.cat([y[y < 1000] for _, y in batches])
    assert len(set(base_seen.tolist())) == 39


def test_extra_share_is_rounded_down_as_carmons_sampler():
    """int(1024 * 0.7) = 716 extra, 308 labelled per batch, as the authors' lineage draws them."""
    images, labels = _data(400)
    loader = DeviceLoader(
        images, labels, batch_size=1024, train=True, extra=_data(30, 1000), extra_fraction=0.7,
        epoch_images=2048,
    )  # fmt: skip
    assert (loader.base_count, loader.extra_count) == (308, 716)


def test_an_epoch_of_epoch_images_cycles_the_labelled_set_under_fresh_permutations():
    """ceil(epoch_images / batch) batches; the labelled images reshuffled when they run out."""
    images, labels = _data(40)
    loader = DeviceLoader(images, labels, batch_size=8, train=True, seed=1, epoch_images=100)
    batches = _epoch(loader)
    assert len(loader) == len(batches) == 13  # ceil(100 / 8)
    seen = torch.cat([y for _, y in batches])
    assert len(seen) == 104 and torch.equal(torch.bincount(seen[:80]), torch.full((40,), 2))
    assert not torch.equal(seen[:40], seen[40:80])  # each round its own permutation
    assert not torch.equal(seen, torch.cat([y for _, y in _epoch(loader)]))  # next epoch differs
    sharded = [
        DeviceLoader(
            images,
            labels,
            batch_size=4,
            train=True,
            seed=1,
            epoch_images=100,
            rank=rank,
            world_size=2,
        )  # fmt: skip
        for rank in range(2)
    ]
    assert [len(s) for s in sharded] == [13, 13]  # the global batch of 8 decides the length
    first = [torch.cat([y for _, y in _epoch(s)])[:20] for s in sharded]
    assert not set(first[0].tolist()) & set(first[1].tolist())  # disjoint within a round


def test_small_extra_set_is_cycled():
    images, labels = _data(40)
    loader = DeviceLoader(
        images, labels, batch_size=10, train=True, extra=_data(5, 1000), extra_fraction=0.5
    )
    extra_seen = torch.cat([y[y >= 1000] for _, y in loader])
    assert torch.equal(torch.bincount(extra_seen - 1000), torch.full((5,), 8))  # 40 = 8 rounds


@pytest.mark.parametrize("extra_fraction", [0.0, 0.7])
def test_resume_mid_epoch_equals_uninterrupted(extra_fraction):
    images, labels = _data(64)
    settings = dict(
        batch_size=8,
        train=True,
        seed=9,
        rotation=20.0,
        extra=_data(30, 100),
        extra_fraction=extra_fraction,
    )
    whole = DeviceLoader(images, labels, **settings)
    whole.set_epoch(2)
    expected = _epoch(whole) + _epoch(whole)
    first = DeviceLoader(images, labels, **settings)
    first.set_epoch(2)
    got = []
    for batch in first:
        got.append(batch)
        if len(got) == 3:
            break
    state = first.state_dict()
    assert (state["epoch"], state["position"]) == (2, 3)
    resumed = DeviceLoader(images, labels, **settings)
    resumed.load_state_dict(state)
    got += _epoch(resumed) + _epoch(resumed)
    assert _same(got, expected)


def test_state_from_another_setting_is_refused():
    images, labels = _data(64)
    state = DeviceLoader(images, labels, batch_size=8, train=True, seed=1).state_dict()
    with pytest.raises(ConfigError, match="seed"):
        DeviceLoader(images, labels, batch_size=8, train=True, seed=2).load_state_dict(state)


@pytest.mark.parametrize("drop_last", [True, False])  # False: a short last batch
def test_training_images_are_shifted_windows_of_their_source_some_mirrored(drop_last):
    images, labels = _data(50)
    loader = DeviceLoader(images, labels, batch_size=8, train=True, seed=2, drop_last=drop_last)
    padded = F.pad(images, (4,) * 4)
    seen, mirrored = 0, 0
    for x, y in loader:
        for image, index in zip((x * 255).round().to(torch.uint8), y, strict=True):
            windows = [padded[index, :, i : i + 8, j : j + 8] for i in range(9) for j in range(9)]
            plain = any(torch.equal(image, window) for window in windows)
            flipped = any(torch.equal(image.flip(2), window) for window in windows)
            assert plain or flipped, f"image of source {index} is no crop of it"
            seen, mirrored = seen + 1, mirrored + (flipped and not plain)
    assert seen == (48 if drop_last else 50) and 10 < mirrored < seen - 10


def test_random_crop_is_the_padded_image_shifted_at_most_padding():
    images, _ = _data(64)
    out = random_crop(images, 4, torch.Generator().manual_seed(0))
    padded = F.pad(images, (4,) * 4)
    shifts = set()
    for i in range(len(images)):
        matches = [
            (dy, dx)
            for dy in range(9)
            for dx in range(9)
            if torch.equal(out[i], padded[i, :, dy : dy + 8, dx : dx + 8])
        ]
        assert matches, f"image {i} is not a shifted window"
        shifts.add(matches[0])
    assert len(shifts) > 20  # offsets really vary
    assert torch.equal(random_crop(images, 0), images)


def test_random_flip_mirrors_about_half():
    images, _ = _data(200)
    out = random_flip(images, torch.Generator().manual_seed(0))
    kept = torch.tensor([torch.equal(o, i) for o, i in zip(out, images, strict=True)])
    mirrored = torch.tensor([torch.equal(o, i.flip(2)) for o, i in zip(out, images, strict=True)])
    assert (kept ^ mirrored).all() and 70 < mirrored.sum() < 130


def test_rotation_keeps_shape_range_and_identity_at_zero():
    x = to_float(_data(16)[0])
    assert random_rotation(x, 0.0) is x
    rotated = random_rotation(x, 20.0, torch.Generator().manual_seed(0))
    assert rotated.shape == x.shape and rotated.min() >= 0 and rotated.max() <= 1
    assert not torch.equal(rotated, x)
    tiny = random_rotation(x, 1e-4, torch.Generator().manual_seed(0))
    assert torch.allclose(tiny, x, atol=1e-3)


def test_rotation_is_nearest_by_default_as_torchvision_and_bilinear_on_request():
    x = to_float(_data(16)[0])
    nearest = random_rotation(x, 20.0, torch.Generator().manual_seed(0))
    values = set(x.unique().tolist()) | {0.0}  # every output pixel is a source pixel or the fill
    assert set(nearest.unique().tolist()) <= values
    bilinear = random_rotation(x, 20.0, torch.Generator().manual_seed(0), mode="bilinear")
    assert not set(bilinear.unique().tolist()) <= values


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"extra_fraction": 1.0, "extra": _data(4)}, "extra_fraction"),
        ({"extra_fraction": 0.5}, "extra"),
        ({"rank": 2, "world_size": 2}, "rank"),
    ],
)
def test_bad_settings_are_config_errors(options, field):
    images, labels = _data(8)
    with pytest.raises(ConfigError, match=field):
        DeviceLoader(images, labels, **{"batch_size": 4, "train": True, **options})
