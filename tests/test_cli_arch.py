"""`rrn zoo`, `rrn profile`, `rrn scale`: JSON outputs, spec files, clear errors with exit 2."""

from __future__ import annotations

import json

import pytest

from robustresnet import ArchSpec, get_spec, profile
from robustresnet.arch import PRESETS
from robustresnet.cli import main


def _json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_zoo_lists_every_preset(capsys):
    rows = _json(capsys, ["zoo", "--json"])
    assert [r["name"] for r in rows] == list(PRESETS)
    a1 = rows[0]
    assert (a1["block"], a1["depths"], a1["widening"]) == (
        "robust_res_block",
        [14, 14, 7],
        [5, 7, 3],
    )
    assert all(isinstance(r["params"], int) and isinstance(r["macs"], int) for r in rows)
    assert main(["zoo"]) == 0
    text = capsys.readouterr().out
    assert "robustresnet-a1" in text and "5.11G" in text and "267M" in text
    large = _json(capsys, ["zoo", "--input-size", "64", "--json"])
    assert large[0]["input_size"] == [3, 64, 64] and large[0]["macs"] > 3.9 * a1["macs"]


def test_profile_preset_json(capsys):
    out = _json(capsys, ["profile", "RobustResNet-A1", "--json"])
    expected = profile(get_spec("robustresnet-a1"))
    assert (out["params"], out["macs"]) == (expected.params, expected.macs)
    assert out["input_size"] == [3, 32, 32]


def test_profile_spec_file_and_input_size(capsys, tmp_path):
    path = get_spec("preactresnet-18").save(tmp_path / "arch.yaml")
    small = _json(capsys, ["profile", str(path), "--json"])
    large = _json(capsys, ["profile", str(path), "--input-size", "64", "--json"])
    assert small["params"] == large["params"] and large["macs"] > 3.9 * small["macs"]
    assert main(["profile", str(tmp_path)]) == 0  # a run directory holding arch.yaml
    assert "556M" in capsys.readouterr().out


def test_scale_compound_json_and_output_file(capsys, tmp_path):
    out = _json(capsys, ["scale", "--macs", "5G", "--json", "-o", str(tmp_path / "a.yaml")])
    assert (out["depths"], out["widening"]) == ([14, 14, 7], [5, 7, 3])
    assert isinstance(out["macs"], int) and abs(out["macs"] / 5e9 - 1) < 0.05
    assert out["target_macs"] == 5_000_000_000
    saved = ArchSpec.load(tmp_path / "a.yaml")
    assert (saved.depths, saved.widening) == ((14, 14, 7), (5, 7, 3))


def test_scale_baseline_names_its_base(capsys):
    out = _json(capsys, ["scale", "--macs", "5e9", "--rule", "depth", "--json"])
    assert out["base"] == "wrn-28-10"
    assert (out["depths"], out["widening"]) == ([5, 5, 2], [10, 10, 10])
    assert main(["scale", "--macs", "500M", "--block", "basic_block"]) == 0
    assert "of the target 500M" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["scale", "--macs", "abc"], "--macs"),
        (["scale", "--macs", "10G", "--block", "nope"], "block"),
        (["profile", "no-such-net"], "arch"),
        (["profile", "missing.yaml"], "arch"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"rrn {argv[0]}: error: ") and message in err
    assert err.count("\n") == 1


def test_unknown_rule_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["scale", "--macs", "10G", "--rule", "diagonal"])
    assert info.value.code == 2
