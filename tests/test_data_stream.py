"""Streamed extra data: formats, up-front checks, the window order, mixing, resume, the thread."""

from __future__ import annotations

import gc
import io
import json
import os
import struct
import threading
import zipfile

import numpy as np
import pytest
import torch

from robustresnet.data import DeviceLoader, open_extra
from robustresnet.data.extra_order import WindowOrder
from robustresnet.data.stream import LABEL_SAMPLE
from robustresnet.errors import ConfigError, DataError

SHAPE = (8, 8, 3)  # H, W, C on disk; the loader's images are 3 x 8 x 8
CLASSES = 100_000  # labels are image numbers here, so batches reveal what was drawn


def _images(n: int, seed: int = 0, shape=SHAPE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def _npz(path, n: int, first: int = 0, **changes):
    """An np.savez shard of `n` images labelled first, first + 1, ..."""
    arrays = {"image": _images(n, first), "label": np.arange(first, first + n), **changes}
    np.savez(path, **{key: value for key, value in arrays.items() if value is not None})
    return path


def _open(path, **options):
    return open_extra(path, **{"num_classes": CLASSES, "image_shape": (3, 8, 8), **options})


def _all(extra) -> tuple[np.ndarray, np.ndarray]:
    images = np.empty((len(extra), *SHAPE), np.uint8)
    labels = np.empty(len(extra), np.int64)
    extra.read(0, len(extra), images, labels)
    return images, labels


def _prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "rrn-extra-prefetch"]


# Formats ------------------------------------------------------------------------------------


def test_an_npz_is_mapped_at_its_local_header_offset_past_the_zip64_extra_field(tmp_path):
    path = _npz(tmp_path / "g.npz", 50)
    with zipfile.ZipFile(path) as archive, open(path, "rb") as file:
        for info in archive.infolist():
            file.seek(info.header_offset)
            name_length, extra_length = struct.unpack("<HH", file.read(30)[26:30])
            extra = file.read(name_length + extra_length)[name_length:]
            # np.savez writes a Zip64 field (id 1) in the local header, none in the central one.
            assert extra_length > len(info.extra) and struct.unpack("<H", extra[:2])[0] == 1
    extra = _open(path)
    mapped = extra.shards[0]
    assert isinstance(mapped.images, np.memmap) and isinstance(mapped.labels, np.memmap)
    with np.load(path) as data:
        assert np.array_equal(mapped.images, data["image"])
        assert np.array_equal(mapped.labels, data["label"])
    assert len(extra) == 50 and extra.image_shape == (3, 8, 8)


def _file_resident_mib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("RssFile")) // 1024


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads Linux's RssFile")
def test_reading_a_whole_pass_keeps_the_file_out_of_resident_memory(tmp_path):
    """Images are read, not touched through the mapping: mapped pages would count in the
    process's resident memory, which then grows to the file's size (48 MB here)."""
    n = 16_384
    np.savez(
        tmp_path / "big.npz", image=np.full((n, 32, 32, 3), 7, np.uint8), label=np.zeros(n, int)
    )
    extra = open_extra(tmp_path / "big.npz", num_classes=10)
    images, labels = np.empty((n // 4, 32, 32, 3), np.uint8), np.empty(n // 4, np.int64)
    before = _file_resident_mib()
    for start in range(0, n, n // 4):
        extra.read(start, start + n // 4, images, labels)
    assert (images == 7).all() and _file_resident_mib() - before < 12


def test_a_folder_of_shards_is_one_set_in_name_order_and_an_npy_pair_is_read_too(tmp_path):
    folder = tmp_path / "shards"
    folder.mkdir()
    _npz(folder / "b.npz", 30, first=20)
    _npz(folder / "a.npz", 20, first=0)
    _npz(folder / "c.npz", 7, first=50)
    images, labels = _all(_open(folder))
    assert np.array_equal(labels, np.arange(57))
    assert np.array_equal(images[20:50], _images(30, 20))
    pair = tmp_path / "pair"
    pair.mkdir()
    np.save(pair / "image.npy", images)
    np.save(pair / "label.npy", labels.astype(np.int32))
    extra = _open(pair)
    assert isinstance(extra.shards[0].images, np.memmap)
    pair_images, pair_labels = _all(extra)
    assert np.array_equal(pair_images, images) and np.array_equal(pair_labels, labels)
    # a read spanning three shards, not from the start
    part_images = np.empty((40, *SHAPE), np.uint8)
    part_labels = np.empty(40, np.int64)
    _open(folder).read(15, 55, part_images, part_labels)
    assert np.array_equal(part_labels, np.arange(15, 55))
    assert np.array_equal(part_images, images[15:55])


# Checks before training ---------------------------------------------------------------------


def _lying_npz(path, n: int, claimed: int):
    """An uncompressed .npz whose image header claims `claimed` images but holds `n`."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|u1", "fortran_order": False, "shape": (claimed, *SHAPE)}
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("image.npy", header.getvalue() + _images(n).tobytes())
        label = io.BytesIO()
        np.save(label, np.arange(claimed))
        archive.writestr("label.npy", label.getvalue())


def _pointing_before_the_file(path):
    """An .npz whose end record places the central directory 1,000 bytes later than it is, so
    zipfile still finds it but puts the first member's local header before the file's start."""
    data = bytearray(path.read_bytes())
    end = data.rindex(b"PK\x05\x06") + 16  # the end record's central directory offset
    data[end : end + 4] = struct.pack("<L", struct.unpack("<L", data[end : end + 4])[0] + 1000)
    path.write_bytes(bytes(data))
    return path


def _bad_files(tmp_path):
    """(path, message) of each fault a shard can have; every file of a folder is named."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    _npz(folder / "a.npz", 10)
    np.savez(folder / "b.npz", image=_images(10, shape=(16, 16, 3)), label=np.arange(10))
    dtype = tmp_path / "dtype"
    dtype.mkdir()
    _npz(dtype / "a.npz", 10)
    np.savez(dtype / "b.npz", image=_images(10).astype(np.float32), label=np.arange(10))
    truncated = _npz(tmp_path / "truncated.npz", 40)
    truncated.write_bytes(truncated.read_bytes()[:5000])
    compressed = tmp_path / "compressed.npz"
    np.savez_compressed(compressed, image=_images(10), label=np.arange(10))
    lying = tmp_path / "lying.npz"
    _lying_npz(lying, 10, claimed=12)
    both = tmp_path / "both"
    both.mkdir()
    _npz(both / "a.npz", 10)
    np.save(both / "image.npy", _images(10))
    pair = tmp_path / "pair"
    pair.mkdir()
    np.save(pair / "image.npy", _images(10))
    np.save(pair / "label.npy", np.arange(10))
    (pair / "image.npy").write_bytes((pair / "image.npy").read_bytes()[:-100])
    empty = np.zeros((2, 0, 8, 3), np.uint8)
    return [
        (folder, r"b\.npz: images of shape \(10, 16, 16, 3\), expected Nx8x8x3"),
        (dtype, r"b\.npz: images must be NxHxWxC uint8.*float32"),
        (truncated, r"truncated\.npz: not a readable \.npz, corrupt or truncated"),
        (compressed, r"compressed\.npz: member 'image' is compressed.*np\.savez\('OUT\.npz'"),
        (lying, r"lying\.npz: image\.npy header says \(12, 8, 8, 3\).*2304 bytes.*1920 bytes"),
        (_npz(tmp_path / "count.npz", 10, label=np.arange(9)), r"count\.npz: 10 images but 9"),
        (_npz(tmp_path / "high.npz", 10, label=np.arange(10) * 20_000), r"high\.npz: label 100000"),
        (_npz(tmp_path / "low.npz", 10, label=np.arange(10) - 1), r"low\.npz: label -1 of image 0"),
        (_npz(tmp_path / "nolabel.npz", 10, label=None), r"nolabel\.npz: member 'label'"),
        (pair, r"pair/image\.npy: image\.npy header says.*\(truncated, or a header that lies\)"),
        (tmp_path / "absent.npz", r"absent\.npz: not found; expected an \.npz file, a folder"),
        (both, r"both: holds both \.npz shards and \.npy files"),
        (_npz(tmp_path / "empty.npz", 2, image=empty), r"empty\.npz: .*H, W > 0\), got shape"),
        (_pointing_before_the_file(_npz(tmp_path / "before.npz", 2)), r"before\.npz: no zip local"),
    ]


def test_every_bad_shard_is_a_data_error_naming_the_file_and_the_fault(tmp_path):
    for path, message in _bad_files(tmp_path):
        with pytest.raises(DataError, match=message):
            _open(path)


def test_an_npy_pair_needs_both_files_and_an_empty_folder_says_what_it_expected(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .npz shards and no image.npy/label.npy"):
        _open(tmp_path / "empty")
    (tmp_path / "half").mkdir()
    np.save(tmp_path / "half" / "image.npy", _images(3))
    with pytest.raises(DataError, match=r"half: label\.npy is missing"):
        _open(tmp_path / "half")


def test_a_label_beyond_the_spot_check_fails_the_read_in_the_loader_naming_the_shard(tmp_path):
    """Labels are spot-checked when opened; the rest as they are read (in the prefetch thread,
    whose error the training loop raises)."""
    n = 3 * LABEL_SAMPLE
    labels = np.arange(n) % 10
    drawn = np.random.default_rng([0, n]).integers(0, n, size=LABEL_SAMPLE)
    unchecked = sorted(set(range(n)) - set(drawn) - {0, n - 1})[0]
    labels[unchecked] = 10
    path = _npz(tmp_path / "late.npz", n, label=labels)
    extra = _open(path, num_classes=10)  # the spot check passes
    base = torch.zeros((64, 3, 8, 8), dtype=torch.uint8)
    loader = DeviceLoader(
        base, torch.zeros(64, dtype=torch.long), batch_size=8, train=True, extra=extra,
        extra_fraction=0.5, epoch_images=n,
    )  # fmt: skip
    with pytest.raises(DataError, match=f"late.npz: label 10 of image {unchecked} out of range"):
        for _ in loader:
            pass
    gc.collect()
    assert not _prefetch_threads()


# The order of the stream --------------------------------------------------------------------


def _source(tmp_path, n: int):
    return _open(_npz(tmp_path / "s.npz", n))


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_a_pass_is_disjoint_between_ranks_and_complete_up_to_the_remainder(tmp_path, world_size):
    source = _source(tmp_path, 5000)
    orders = [
        WindowOrder(source, seed=4, rank=r, world_size=world_size, window=16, block_windows=8)
        for r in range(world_size)
    ]
    seen = [next(o.batches(0, o.pass_images, 1))[1].tolist() for o in orders]
    union = set().union(*map(set, seen))
    assert sum(map(len, seen)) == len(union)  # every image once per pass, no rank shares one
    assert 0 <= 5000 - len(union) < world_size * orders[0].window
    next_pass = [next(o.batches(o.pass_images, o.pass_images, 1))[1].tolist() for o in orders]
    assert set().union(*map(set, next_pass)) != union or next_pass != seen  # reshuffled


def test_a_batch_mixes_many_windows_of_a_class_sorted_file(tmp_path):
    source = _source(tmp_path, 8000)  # labels = index: a window is a run of consecutive labels
    order = WindowOrder(source, seed=0, window=16, block_windows=64)
    for _, labels in order.batches(0, 100, 10):
        windows = set((labels // order.window).tolist())
        assert len(windows) > 40  # from ~64 windows, not one contiguous stretch
        assert not torch.equal(labels.sort().values, labels)


def test_the_stream_is_a_function_of_its_position_across_passes(tmp_path):
    source = _source(tmp_path, 300)
    order = WindowOrder(source, seed=1, window=8, block_windows=4)
    assert order.pass_images == 296
    whole = torch.cat([y for _, y in order.batches(0, 7, 100)])  # 700 images: passes 0 to 2
    for start in (0, 7, 287, 294, 301):  # block, pass and mid-batch boundaries
        again = WindowOrder(source, seed=1, window=8, block_windows=4)
        part = torch.cat([y for _, y in again.batches(start, 7, 20)])
        assert torch.equal(part, whole[start : start + 140])
    first, second = whole[:296], whole[296:592]
    assert sorted(first.tolist()) == sorted(second.tolist()) and not torch.equal(first, second)


def test_small_sets_get_smaller_windows(tmp_path):
    order = WindowOrder(_source(tmp_path, 1000), seed=0, world_size=2)
    assert order.window == 1 and order.pass_images == 500
    with pytest.raises(ConfigError, match="extra"):
        WindowOrder(_source(tmp_path, 2), seed=0, world_size=3)


# The loader ---------------------------------------------------------------------------------


def _base(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.randint(0, 256, (n, 3, 8, 8), generator=torch.Generator().manual_seed(n))
    return images.to(torch.uint8), torch.arange(CLASSES - n, CLASSES)


def _loader(extra, **options) -> DeviceLoader:
    settings = {"batch_size": 10, "train": True, "seed": 3, "extra": extra,
                "extra_fraction": 0.7, **options}  # fmt: skip
    return DeviceLoader(*_base(), **settings)


def _epoch(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


def test_the_loader_takes_an_exact_share_of_streamed_images_as_they_are_on_disk(tmp_path):
    path = _npz(tmp_path / "g.npz", 500)
    loader = _loader(_open(path), crop_padding=0, flip=False)
    batches = _epoch(loader)
    assert len(batches) == 64 // 3
    on_disk = torch.from_numpy(_images(500)).permute(0, 3, 1, 2)
    seen = []
    for x, y in batches:
        extra = y < CLASSES - 64
        assert extra.sum() == 7 and torch.equal(extra, torch.arange(10) >= 3)
        assert torch.equal((x[extra] * 255).round().to(torch.uint8), on_disk[y[extra]])
        seen += y[extra].tolist()
    assert len(set(seen)) == len(seen) == 7 * len(batches)
    state = loader.state_dict()
    assert (state["epoch"], state["extra_position"], state["extra_size"]) == (1, 147, 500)


@pytest.mark.parametrize("stop_at", [(0, 3), (1, 0), (2, 5)])
def test_a_resumed_loader_gives_the_uninterrupted_batches_also_across_a_pass(tmp_path, stop_at):
    extra = _open(_npz(tmp_path / "g.npz", 60))  # 60 images: a pass lasts under 9 batches
    options = {"rotation": 10.0}
    whole = _loader(extra, **options)
    expected = _epoch(whole) + _epoch(whole) + _epoch(whole)
    first = _loader(extra, **options)
    epoch, position = stop_at
    first.set_epoch(epoch)
    got = []
    for batch in first if position else ():
        got.append(batch)
        if first.position == position:
            break
    state = first.state_dict()
    assert (state["epoch"], state["position"]) == (epoch, position)
    resumed = _loader(extra, **options)
    resumed.load_state_dict(state)
    while resumed.epoch < 3:
        got += _epoch(resumed)
    tail = expected[epoch * len(whole) :]
    assert len(got) == len(tail)
    assert all(
        torch.equal(a, c) and torch.equal(b, d) for (a, b), (c, d) in zip(got, tail, strict=True)
    )
    extra_labels = torch.cat([y[3:] for _, y in expected])
    assert len(extra_labels) > 2 * whole.extra_stream.pass_images  # the test crosses passes


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_ranks_read_disjoint_extra_images(tmp_path, world_size):
    extra = _open(_npz(tmp_path / "g.npz", 400))
    seen = []
    for rank in range(world_size):
        loader = _loader(extra, rank=rank, world_size=world_size)
        seen.append({v for _, y in loader for v in y[3:].tolist()})
    assert sum(map(len, seen)) == len(set().union(*seen))
    assert all(len(s) == 7 * len(loader) for s in seen)


def test_a_state_of_another_extra_set_is_refused(tmp_path):
    small = _open(_npz(tmp_path / "small.npz", 60))
    large = _open(_npz(tmp_path / "large.npz", 80))
    state = _loader(small).state_dict()
    with pytest.raises(ConfigError, match="extra_size: got 60"):
        _loader(large).load_state_dict(state)
    images, labels = map(torch.as_tensor, _all(small))
    memory_state = _loader((images.permute(0, 3, 1, 2), labels)).state_dict()
    with pytest.raises(ConfigError, match="extra_size: got None"):
        _loader(small).load_state_dict(memory_state)
    with pytest.raises(ConfigError, match="extra"):
        _loader(_open(_npz(tmp_path / "big.npz", 9, image=_images(9, shape=(4, 4, 3))),
                      image_shape=None))  # fmt: skip


def test_breaking_out_of_an_epoch_leaves_no_thread_running(tmp_path):
    loader = _loader(_open(_npz(tmp_path / "g.npz", 500)))
    for step, _ in enumerate(loader):
        assert len(_prefetch_threads()) == 1
        if step == 2:
            break
    gc.collect()
    assert not _prefetch_threads()
    batches = iter(loader)
    next(batches)
    batches.close()
    assert not _prefetch_threads()
    batches = iter(loader)
    next(batches)
    del batches  # garbage-collected early
    gc.collect()
    assert not _prefetch_threads()
    loader.set_epoch(0)
    assert len(_epoch(loader)) == len(loader) and not _prefetch_threads()


# On a GPU, and on a file over 4 GiB ---------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batches_equal_the_cpu_batches(tmp_path):
    """Pinned reads, asynchronous copies from the thread: the same batches as on the CPU."""
    extra = _open(_npz(tmp_path / "g.npz", 2000))
    on_cpu = _epoch(_loader(extra, rotation=0.0))
    on_gpu = _epoch(_loader(extra, device="cuda"))
    assert all(x.is_cuda for x, _ in on_gpu) and len(on_cpu) == len(on_gpu)
    for (x, y), (u, v) in zip(on_cpu, on_gpu, strict=True):
        assert torch.equal(x, u.cpu()) and torch.equal(y, v.cpu())
    assert not _prefetch_threads()


@pytest.mark.skipif(
    not os.environ.get("RRN_LARGE_TESTS"), reason="writes 4.6 GB: RRN_LARGE_TESTS=1"
)
def test_an_npz_over_4_gib_is_mapped_through_its_zip64_headers(tmp_path):
    n = 1_500_000  # 4.6 GB of 32x32x3 images: the label member starts beyond 2^32
    images = np.zeros((n, 32, 32, 3), np.uint8)
    images[:, 0, 0, 0] = np.arange(n) % 251
    images[:, 0, 0, 1] = np.arange(n) // 251 % 251
    path = tmp_path / "big.npz"
    np.savez(path, image=images, label=np.arange(n) % 10)
    del images
    with zipfile.ZipFile(path) as archive:
        assert archive.getinfo("label.npy").header_offset > 2**32
    extra = open_extra(path, num_classes=10, image_shape=(3, 32, 32))
    shard = extra.shards[0]
    assert shard.images.nbytes == n * 3072 and len(extra) == n
    for start in (0, 1_234_567, n - 40):
        out = np.empty((40, 32, 32, 3), np.uint8)
        labels = np.empty(40, np.int64)
        extra.read(start, start + 40, out, labels)
        index = np.arange(start, start + 40)
        assert np.array_equal(out[:, 0, 0, 0], index % 251)
        assert np.array_equal(out[:, 0, 0, 1], index // 251 % 251)
        assert np.array_equal(labels, index % 10) and not out[:, 1:].any()


# rrn train ----------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["file", "folder", "pair"])
def test_rrn_train_streams_data_extra_from_each_form(tmp_path, form):
    from _train_helpers import tiny_dict, write_config

    from robustresnet.cli import main

    images, labels = _images(300), np.arange(300) % 10
    path = tmp_path / "extra"
    if form == "file":
        path = tmp_path / "extra.npz"
        np.savez(path, image=images, label=labels)
    elif form == "folder":
        path.mkdir()
        np.savez(path / "0.npz", image=images[:100], label=labels[:100])
        np.savez(path / "1.npz", image=images[100:], label=labels[100:])
    else:
        path.mkdir()
        np.save(path / "image.npy", images)
        np.save(path / "label.npy", labels)
    config = write_config(tmp_path / "tiny.yaml", tiny_dict(schedule={"epochs": 1}))
    run = tmp_path / "run"
    argv = ["train", str(config), f"data.extra={path}", "data.extra_fraction=0.7", "--out",
            str(run), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    pointer = json.loads((run / "checkpoint.json").read_text())
    state = torch.load(run / pointer["state"], weights_only=True)["ranks"][0]["loader"]
    assert (
        state["extra_size"] == 300 and state["extra_position"] == 35 * 89
    )  # an epoch: 1378 // 39 base images
