"""Fuzzing the `rrn` command with generated bad inputs (issue 16): malformed overrides, hostile
config / sweep / spec files, truncated or flipped safetensors, state files and dataset files.

Every input must end with exit code 2 (or 0 where it happens to be valid), one stderr line
naming what is wrong and no traceback, and nothing may be written outside the case's own output
folder. The generator is seeded, so the same inputs are tried on every run; the errors come
before any data is read or model built, so the ~300 cases take a few seconds.
"""

from __future__ import annotations

import io
import json
import pickle
import random
import re
import shutil
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from _train_helpers import tiny_dict, untrained_run

from robustresnet.cli import main
from robustresnet.train import checkpoint as ckpt
from robustresnet.train import trainer

SEED = 16
OUT = "{out}"  # in argv: the case's own output folder, the only place it may write
ERROR_LINE = re.compile(r"rrn [a-z]+: error: \S[^\n]*: [^\n]*\n")


@dataclass(frozen=True)
class Case:
    """One command line; `bad` when it must fail (exit 2), else it may also succeed. `copy` is a
    run directory copied to OUT/run first, for the commands that write into the run they read."""

    argv: tuple[str, ...]
    bad: bool = True
    copy: Path | None = None


def _listing(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


def _drive(cases: list[Case], workspace: Path, capsys) -> None:
    """Run each case in-process; check its exit code, its stderr and what it wrote."""
    before = _listing(workspace)
    for i, case in enumerate(cases):
        out = workspace / "out" / str(i)
        argv = [arg.replace(OUT, str(out)) for arg in case.argv]
        if case.copy is not None:
            shutil.copytree(case.copy, out / "run")
        code = main(argv)
        err = capsys.readouterr().err
        where = f"case {i}: rrn {' '.join(argv)[:300]}"
        assert code == 2 if case.bad else code in (0, 2), f"{where}: exit {code}; {err}"
        if code == 2:
            assert ERROR_LINE.fullmatch(err), f"{where}: stderr is not one error line: {err!r}"
        after = _listing(workspace)
        own = f"out/{i}"
        written = {p for p in after - before if p != own and not p.startswith(own + "/")}
        assert not written, f"{where}: wrote outside its folder: {sorted(written)}"
        before = after


# ---------------------------------------------------------------- rrn train: dotted overrides

FLOAT_KEYS = (
    "optim.lr", "optim.weight_decay", "optim.grad_clip", "data.rotation", "data.extra_fraction",
    "ema.tau", "ema.warmup_epochs", "schedule.warmup_epochs", "model.bn_momentum", "eval.eps",
    "objective.eps", "objective.step_size", "objective.start_std",
)  # fmt: skip
INT_KEYS = (
    "run.seed", "run.batch_size", "run.threads", "run.checkpoint_every", "eval.final_samples",
    "eval.autoattack_samples", "eval.batch_size", "eval.every", "eval.val_steps",
    "schedule.epochs", "data.val_size", "data.epoch_images", "data.crop_padding",
    "objective.steps",
)  # fmt: skip
# Values no float field takes (every range starts at 0) and none no integer field takes.
BAD_FLOATS = (".nan", ".inf", "-.inf", "-1", "1e400", "abc", "[1, 2]", "{a: 1}", "true", "1/0")
BAD_INTS = ("-5", str(2**70), str(10**30), "1.5", "x", ".nan", "[1]", "true", "{a: 1}", "-1")
BAD_OVERRIDES = (
    "optim.lr.x=1", "optim=5", "run=[1]", "model.spec.stages=5", "data.options=5", "objective=5",
    "optim.lrr=1", "foo=1", "foo.bar=1", ".=1", "optim..lr=1", "=1", "optim.lr", "~nothing",
    "~optim.foo", "optim.lr=[1", "optim.lr={", "run.seed=@x", "run.seed=`x`",
    "optim.lr=!!python/object/apply:os.system [true]", "optim.lr=" + "[" * 3000,
    "data.name=bogus", "data.options={size: 100000}", "data.options={size: -1}",
    "data.options={foo: 1}", "data.options={[1]: 2}", "model.spec={stages: []}",
    "model.spec={stages: [{depth: 0, widening: 1}]}", "model.num_classes=0",
    "model.activation=bogus", "model.mean=bogus", "model.mean=[.nan, 1, 1]",
    "run.device=bogus", "run.device=cuda:99", "run.precision=fp64", "eval.final_attacks=[pgd]",
    "eval.final_attacks=[clean, clean]", "eval.autoattack=[bogus]", "objective.name=bogus",
    "objective.norm=3", "schedule.kind=bogus", "schedule.milestones=[.nan]", "optim.no_decay=x",
    "optim.momentum=[0.9, 0.1]", "eval.norm=1", "eval.ties=never", "data.rotation_mode=cubic",
)  # fmt: skip


def _override_cases(rng: random.Random, config: Path) -> list[Case]:
    cases = []
    for _ in range(120):
        overrides = []
        for _ in range(rng.randint(1, 3)):
            kind = rng.random()
            if kind < 0.35:
                overrides.append(f"{rng.choice(FLOAT_KEYS)}={rng.choice(BAD_FLOATS)}")
            elif kind < 0.7:
                overrides.append(f"{rng.choice(INT_KEYS)}={rng.choice(BAD_INTS)}")
            else:
                overrides.append(rng.choice(BAD_OVERRIDES))
        if rng.random() < 0.3:
            overrides.insert(rng.randrange(len(overrides) + 1), "optim.lr=0.1")  # a good one
        cases.append(Case(("train", str(config), *overrides, "--out", OUT, "--quiet")))
    return cases


# ------------------------------------------------------------- hostile files: generic mutations


def _mutations(rng: random.Random, data: bytes, count: int) -> Iterator[bytes]:
    """Truncations, byte flips, inserted bytes (a \\xff is never UTF-8), duplicated slices."""
    for _ in range(count):
        kind = rng.randrange(4)
        cut = rng.randrange(len(data) + 1)
        if kind == 0:
            yield data[:cut]
        elif kind == 1:
            flipped = bytearray(data)
            for _ in range(rng.randint(1, 4)):
                flipped[rng.randrange(len(data))] = rng.randrange(256)
            yield bytes(flipped)
        elif kind == 2:
            yield (
                data[:cut]
                + rng.choice([b"\xff", b"\t", b"\x00", b": [", b"{", b"!!x "])
                + data[cut:]
            )
        else:
            yield data[:cut] + data[rng.randrange(len(data) + 1) :]


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def _config_file_cases(rng: random.Random, inputs: Path) -> list[Case]:
    text = yaml.safe_dump(tiny_dict()).encode()
    hostile = [
        b"", b"[1, 2]", b"model: 5", b"\xff\xfe", b"model: {name: wrn-28-10}\n" + b"a: " * 5000,
        b"model: " + b"[" * 5000 + b"]" * 5000, b"model: !!python/object/apply:os.system [x]",
        b"model: &a [*a]", b"1: 2\nmodel: {name: wrn-28-10}", b"model:\n\t name: x",
    ]  # fmt: skip
    files = [*hostile, *_mutations(rng, text, 30)]
    cases = []
    for i, data in enumerate(files):
        path = _write(inputs, f"config-{i}.yaml", data)
        cases.append(Case(("train", str(path), "--out", OUT, "--quiet"), bad=i < len(hostile)))
    return cases


def _sweep_cases(rng: random.Random, inputs: Path, base: Path) -> list[Case]:
    good = f"name: fuzz\nbase: {base.name}\naxes:\n  seed: [0, 1]\n  optim.lr: [0.1, 0.2]\n"
    b = f"base: {base.name}\n"
    hostile = [
        "name: [a", "base: 5", "base: [1]", "axes: [1]", b + "zip: 5", b + "output: [1]",
        b + f"axes: {{seed: [{2**70}]}}", b + "axes: {depths: [5]}", b + "axes: {block: [[1]]}",
        b + "axes: {foo: [1]}", b + "resources: {num_cpus: .nan}", "base: missing.yaml",
        b + "axes: {scaling: {targets: [1e30]}}", b + "axes: {optim.lr: [.nan]}",
        b + "filters: {macs: [a]}",
    ]  # fmt: skip
    files = [text.encode() for text in hostile] + list(_mutations(rng, good.encode(), 20))
    cases = []
    for i, data in enumerate(files):
        path = _write(inputs, f"sweep-{i}.yaml", data)
        argv = ("sweep", str(path), "--dry-run", "--out", OUT, "--quiet")
        cases.append(Case(argv, bad=i < len(hostile)))
    return cases


def _spec_cases(rng: random.Random, inputs: Path) -> list[Case]:
    good = yaml.safe_dump(tiny_dict()["model"]["spec"]).encode()
    hostile = [
        b"stages: [{depth: 100000000, channels: 8}]\ninput_size: 1000000000000",
        b"stages: [{depth: 1, widening: 1, block: [1]}]", b"stages: [{depth: 1, widening: {}}]",
        b"stages: [{depth: 1, widening: 1}]\nmean: [.nan, 1, 1]\nstd: [1, 1, 1]",
        b"stages: [{depth: 1, widening: 1, stride: 3}]", b"stages: 5", b"[1]", b"\xff",
        b"stages: [{depth: 1, widening: 1}]\nname: [1]", b"stages: [{depth: 1, widening: 1}]\nx: 1",
    ]  # fmt: skip
    files = [*hostile, *_mutations(rng, good, 20)]
    cases = []
    for i, data in enumerate(files):
        path = _write(inputs, f"spec-{i}.yaml", data)
        cases.append(Case(("profile", str(path), "--json"), bad=i < len(hostile)))
    return cases


# --------------------------------------------------- safetensors, state files and dataset files


def _safetensors_cases(rng: random.Random, inputs: Path, weights: Path) -> list[Case]:
    data = weights.read_bytes()
    header_end = 8 + struct.unpack("<Q", data[:8])[0]
    hostile = [
        b"",
        b"garbage" * 10,
        data[:8],
        data[: header_end - 1],
        (2**62).to_bytes(8, "little"),
    ]
    # mutations of the header only: the tensors' bytes would still load
    files = hostile + [m + data[header_end:] for m in _mutations(rng, data[:header_end], 20)]
    eval_options = ("--data", "digits", "-n", "8", "--attacks", "clean", "--quiet")
    cases = []
    for i, blob in enumerate(files):
        path = _write(inputs, f"weights-{i}.safetensors", blob)
        cases.append(Case(("eval", str(path), *eval_options), bad=i < len(hostile)))
    return cases


def _saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _resume_cases(rng: random.Random, inputs: Path, run: Path) -> list[Case]:
    """`rrn train --resume` of run directories whose checkpoint.json or state file is damaged
    (each resumes a copy in its own folder: resuming writes into the run)."""
    state = {
        "step": 1, "epoch": 0, "mid_epoch": True, "model": {}, "optimizer": {}, "scaler": {},
        "ema": None, "history": [], "best": {}, "sums": {}, "ranks": [{}],
    }  # fmt: skip
    states = [b"", b"garbage", _saved([1]), _saved({"a": 1}), _saved({**state, "ranks": 5})]
    states += [m for m in _mutations(rng, _saved(state), 12) if m != _saved(state)]
    pointers = [b"\xff", b"[1]", b'{"state": 5}', b'{"state": "../../x.pt"}', b'{"state": "s"}']
    cases = []
    for i, (state_bytes, pointer) in enumerate(
        [(s, None) for s in states] + [(_saved(state), p) for p in pointers]
    ):
        copy = shutil.copytree(run, inputs / f"run-{i}")
        (copy / "state").mkdir()
        (copy / "state" / "step-000000001.pt").write_bytes(state_bytes)
        name = json.dumps({"state": "state/step-000000001.pt", "step": 1, "epoch": 0})
        (copy / ckpt.POINTER).write_bytes(pointer or name.encode())
        cases.append(Case(("train", "--resume", f"{OUT}/run", "--quiet"), copy=copy))
    return cases


def _data_cases(rng: random.Random, inputs: Path) -> list[Case]:
    record = {"data": np.zeros((2, 32, 32, 3), np.uint8), "extrapolated_targets": [0, 1]}
    pickled = pickle.dumps(record, protocol=4)
    buffer = io.BytesIO()
    np.savez(buffer, image=np.zeros((2, 32, 32, 3), np.uint8), label=np.array([0, 1]))
    hostile = [
        (".pickle", b"\x80\x04\x8c\x08builtins\x94\x8c\tbytearray\x94\x93\x94"
                    b"J\x00\xc2\xeb\x0b\x85\x94R\x94."),
        (".pickle", b"\x80\x05\x96" + (1_500_000_000).to_bytes(8, "little") + b"."),
        (".pickle", b"\x80\x02Nr\xff\xff\xff\x0f."), (".pickle", pickle.dumps([1])),
        (".pickle", pickle.dumps({"data": [[0], [1, 2]], "extrapolated_targets": [0, 1]})),
        (".npz", b"garbage"), (".pickle", b""),
    ]  # fmt: skip
    files = hostile + [(".pickle", m) for m in _mutations(rng, pickled, 12)]
    files += [(".npz", m) for m in _mutations(rng, buffer.getvalue(), 6)]
    cases = []
    for i, (suffix, blob) in enumerate(files):
        path = _write(inputs, f"extra-{i}{suffix}", blob)
        cases.append(Case(("data", "info", str(path), "--json"), bad=i < len(hostile)))
    return cases


# ---------------------------------------------------------------------------------- the tests


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Path:
    """The only folder the cases may touch: inputs, an empty working directory, outputs."""
    for name in ("inputs", "cwd", "out"):
        (tmp_path / name).mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # a default output (runs/...) would land in here
    return tmp_path


@pytest.fixture
def tiny_run(workspace) -> Path:
    """A run directory of the untrained tiny network: config.yaml, arch.yaml, weights."""
    return untrained_run(workspace / "inputs" / "tiny-run")


def test_fuzz_train_overrides_and_config_files(workspace, capsys, monkeypatch):
    """A config that passes is not trained: what is fuzzed is the reading of it."""
    monkeypatch.setattr(trainer, "train", lambda config, run_dir, **_: Path(run_dir))
    rng = random.Random(SEED)
    config = _write(workspace / "inputs", "tiny.yaml", yaml.safe_dump(tiny_dict()).encode())
    cases = _override_cases(rng, config) + _config_file_cases(rng, workspace / "inputs")
    _drive(cases, workspace, capsys)


def test_fuzz_sweep_spec_and_data_files(workspace, capsys):
    rng = random.Random(SEED + 1)
    inputs = workspace / "inputs"
    base = _write(inputs, "base.yaml", yaml.safe_dump(tiny_dict()).encode())
    cases = _sweep_cases(rng, inputs, base) + _spec_cases(rng, inputs) + _data_cases(rng, inputs)
    _drive(cases, workspace, capsys)


def test_fuzz_weights_and_state_files(workspace, tiny_run, capsys):
    """Damaged state files fail the resume before any training step."""
    rng = random.Random(SEED + 2)
    inputs = workspace / "inputs"
    weights = tiny_run / "weights" / "last.safetensors"
    cases = _safetensors_cases(rng, inputs, weights) + _resume_cases(rng, inputs, tiny_run)
    _drive(cases, workspace, capsys)


def test_the_fuzzing_tries_at_least_200_bad_inputs(tmp_path):
    rng = random.Random(SEED)
    (tmp_path / "run").mkdir()
    count = len(_override_cases(rng, tmp_path / "c.yaml")) + len(_config_file_cases(rng, tmp_path))
    count += len(_sweep_cases(rng, tmp_path, tmp_path / "b.yaml")) + len(_spec_cases(rng, tmp_path))
    count += len(_data_cases(rng, tmp_path))
    assert count >= 200
