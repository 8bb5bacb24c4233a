"""Issue 16: inputs that ended in Python tracebacks. Each is now one line on stderr, naming the
file or field at fault, with exit code 2; and `rrn eval --threads` exists."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from _train_helpers import TINY_SPEC, untrained_run

from robustresnet.arch import ArchSpec
from robustresnet.cli import main
from robustresnet.errors import ConfigError

EVAL = ["-n", "8", "--attacks", "clean", "--quiet"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A run directory of the tiny digits network, untrained: config, arch and weights."""
    return untrained_run(tmp_path_factory.mktemp("runs") / "tiny")


def _with_metadata(weights: Path, arch: str, out: Path) -> Path:
    """A copy of a safetensors file whose metadata holds `arch` as its spec."""
    data = weights.read_bytes()
    size = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + size])
    header["__metadata__"] = {"arch": arch}
    text = json.dumps(header).encode()
    out.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + size :])
    return out


def _error_line(capsys, argv: list[str]) -> str:
    """Run `rrn argv` in-process; it must exit 2 with exactly one stderr line and no traceback."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"rrn {argv[0]}: error: "), err
    assert "Traceback" not in err
    return err


def test_malformed_safetensors_without_arch(run, tmp_path, capsys):
    good = (run / "weights" / "last.safetensors").read_bytes()
    for name, data in (("garbage", b"garbage" * 10), ("cut", good[: len(good) // 2]), ("e", b"")):
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(data)
        err = _error_line(capsys, ["eval", str(path), "--data", "digits", *EVAL])
        assert f"{name}.safetensors: not a readable safetensors file" in err


@pytest.mark.parametrize(
    ("arch", "expected"),
    [
        # about 10^12 parameters: 4 TB of float32, from a file of a few kB
        (
            {**TINY_SPEC, "stages": [{"depth": 1, "channels": 300_000}]},
            "does not fit the spec: the spec has 810G parameters, the file only",
        ),
        ({**TINY_SPEC, "stages": [{"depth": 10**8, "channels": 8}]}, "100000000 blocks but only"),
        ("{not json", "its arch metadata is not valid JSON"),
        ({"stages": [{"depth": 0, "widening": 1}]}, "(arch metadata): stages[0].depth"),
    ],
    ids=["huge", "deep", "not-json", "bad-spec"],
)
def test_hostile_metadata_is_checked_against_the_file_before_building(
    run, tmp_path, capsys, arch, expected
):
    text = arch if isinstance(arch, str) else json.dumps(arch)
    path = _with_metadata(run / "weights" / "last.safetensors", text, tmp_path / "m.safetensors")
    err = _error_line(capsys, ["eval", str(path), "--data", "digits", *EVAL])
    assert expected in err


def test_a_wrong_class_count_fails_against_the_file_not_the_allocator(run, capsys):
    err = _error_line(capsys, ["eval", str(run), "--num-classes", str(10**9), *EVAL])
    assert "does not fit the spec" in err


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (["--device", "bogus"], "--device"),
        (["--device", "cuda:99"], "--device"),
        (["--seed", str(2**70)], "--seed"),
        (["--batch-size", str(2**70)], "--batch-size"),
        (["--threads", "0"], "--threads"),
        (["--eps", "1e400"], "--eps"),
        (["--attacks", "pgd2:step_size=1e400"], "step_size"),
    ],
)
def test_eval_options_are_checked(run, capsys, options, field):
    err = _error_line(capsys, ["eval", str(run), *EVAL, *options])
    assert field in err


def test_eval_takes_threads_like_run_threads(run, capsys):
    before = torch.get_num_threads()
    try:
        assert main(["eval", str(run), *EVAL, "--threads", "2", "--json"]) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert json.loads(capsys.readouterr().out)["samples"]["n"] == 8


def test_eval_out_that_is_a_file(run, tmp_path, capsys):
    (tmp_path / "out").write_text("a file")
    err = _error_line(capsys, ["eval", str(run), *EVAL, "--out", str(tmp_path / "out")])
    assert f"{tmp_path / 'out'} is a file, not a run directory" in err  # the lock names it


def test_a_run_config_that_is_not_utf8_is_named(run, tmp_path, capsys):
    copy = tmp_path / "copy"
    for name in ("arch.yaml", "weights/last.safetensors"):
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        (copy / name).write_bytes((run / name).read_bytes())
    (copy / "config.yaml").write_bytes(b"data: {name: \xff}")
    err = _error_line(capsys, ["eval", str(copy), *EVAL])
    assert "copy/config.yaml" in err and "UTF-8" in err


def test_pickled_torch_files_never_suggest_loading_them_unsafely(run, tmp_path, capsys):
    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Payload()}, tmp_path / "evil.pth")
    (tmp_path / "junk.pth").write_bytes(b"hello world")
    for name, expected in (("evil", "not a safe checkpoint"), ("junk", "corrupt or not a torch")):
        err = _error_line(capsys, ["eval", str(tmp_path / f"{name}.pth"), "--arch", str(run)])
        assert f"{name}.pth: {expected}" in err and "weights_only" not in err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"name: [a", "valid YAML (expected ',' or ']'"),
        (b"name: \xff", "UTF-8"),
        (b"base: b.yaml\nzip: 5", "zip: got 5"),
        (b"base: b.yaml\nresources: {num_cpus: abc}", "resources.num_cpus"),
        (b"base: b.yaml\naxes: {depths: [5]}", "depths: got 5"),
        (b"base: b.yaml\naxes: {block: [[1]]}", "block: got [1]"),
        (b"base: b.yaml\naxes: {scaling: {targets: [1e30]}}", "target_macs"),
    ],
    ids=["syntax", "utf8", "zip", "resources", "depths", "block", "scaling"],
)
def test_sweep_files(tmp_path, capsys, text, expected):
    (tmp_path / "b.yaml").write_text("model: {spec: {stages: [{depth: 1, widening: 1}]}}\n")
    (tmp_path / "s.yaml").write_bytes(text)
    err = _error_line(capsys, ["sweep", str(tmp_path / "s.yaml"), "--dry-run"])
    assert expected in err


@pytest.mark.parametrize(
    ("text", "options", "expected"),
    [
        (b"stages: [{depth: 1, widening: 1}]\n\xff", [], "UTF-8"),
        (b"stages: [{depth: 1, widening: 1, block: [1]}]", [], "stages[0].block: got [1]"),
        (b"stages: [{depth: 1, widening: 1}]", ["--input-size", str(10**12)], "input_size"),
        (b"stages: [{depth: 1, widening: 1}]\nmean: [.nan, 1, 1]\nstd: [1, 1, 1]", [], "mean"),
    ],
    ids=["utf8", "unhashable", "input-size", "nan-mean"],
)
def test_spec_files(tmp_path, capsys, text, options, expected):
    (tmp_path / "spec.yaml").write_bytes(text)
    err = _error_line(capsys, ["profile", str(tmp_path / "spec.yaml"), *options])
    assert expected in err


def test_scale_beyond_any_network(capsys):
    assert "target_macs" in _error_line(capsys, ["scale", "--macs", "1e30"])


def test_scale_output_inside_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("a file")
    err = _error_line(capsys, ["scale", "--macs", "1G", "-o", str(tmp_path / "f" / "s.yaml")])
    assert "cannot write" in err


def test_an_arch_spec_error_names_the_spec_file(tmp_path):
    (tmp_path / "arch.yaml").write_text("stages: 5")
    with pytest.raises(ConfigError, match=r"arch.yaml: stages: got 5"):
        ArchSpec.load(tmp_path / "arch.yaml")


def test_report_lists_a_broken_run_with_why_and_reports_the_others(run, tmp_path, capsys):
    report = {"model": "tiny", "samples": {"n": 8}, "accuracy": {"clean": 0.5, "pgd20": 0.25}}
    for name in ("good", "bad"):
        for part in ("config.yaml", "arch.yaml"):
            (tmp_path / "study" / name).mkdir(parents=True, exist_ok=True)
            (tmp_path / "study" / name / part).write_bytes((run / part).read_bytes())
        (tmp_path / "study" / name / "report.json").write_text(json.dumps(report))
    (tmp_path / "study" / "bad" / "config.yaml").write_bytes(b"\xff\xfe")
    assert main(["report", str(tmp_path / "study"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["status"] == {"finished": 1, "broken": 1}
    markdown = Path(summary["files"]["markdown"]).read_text()
    assert "- bad: broken (config.yaml: got" in markdown and "UTF-8" in markdown
