"""`export_robustbench`: the leaderboard entry from the run's report, refusals of anything but
standard AutoAttack on the whole test split, and exactly the weights the report evaluated."""

from __future__ import annotations

import json

import pytest
import torch
from _export_runs import EPS, fake_run

from robustresnet import build_model, get_spec, save_weights
from robustresnet.arch.spec import StageSpec
from robustresnet.errors import CheckpointError, ConfigError
from robustresnet.evaluate import eps_text, weights_digest
from robustresnet.export import export_robustbench
from robustresnet.export.robustbench import architecture_name

FIELDS = ["link", "name", "authors", "additional_data", "number_forward_passes", "dataset",
          "venue", "architecture", "eps", "clean_acc", "reported", "autoattack_acc"]  # fmt: skip


@pytest.fixture(scope="module")
def standard_run(tmp_path_factory):
    """Standard AutoAttack on all 355 test digits at the run's threat model."""
    run = tmp_path_factory.mktemp("standard") / "run"
    return run, fake_run(run)


def test_model_info_from_the_report(standard_run, tmp_path):
    run, model = standard_run
    result = export_robustbench(run, tmp_path)
    report = json.loads((run / "report.json").read_text())
    info = result.model_info
    assert list(info) == [*FIELDS, "footnote"]  # RobustBench's field order
    assert info["clean_acc"] == f"{100 * report['accuracy']['clean']:.2f}"
    assert info["autoattack_acc"] == info["reported"] == f"{100 * report['accuracy']['aa']:.2f}"
    assert (info["eps"], info["dataset"], info["additional_data"]) == ("0.5", "digits", False)
    assert info["number_forward_passes"] == 1
    assert info["footnote"] == "Evaluated at eps = 0.5, not the leaderboard's 8/255."
    assert info["name"].startswith("TODO") and info["link"].startswith("TODO")
    assert result.placeholders == ("name", "authors", "venue", "link", "model_id")
    assert result.model_info_path == tmp_path / "model_info/digits/Linf/NameYearWord_run.json"
    assert json.loads(result.model_info_path.read_text()) == info
    assert result.weights == run / "weights" / "best.safetensors"
    state = torch.load(result.checkpoint_path, weights_only=True)["state_dict"]
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(state[k].reshape(v.shape), v) for k, v in model.state_dict().items())
    assert result.logits_difference == 0.0
    request = result.request_path.read_text()
    assert "Title: [New Model] NameYearWord_run" in request
    assert "Before submitting" in request and "**Robust accuracy**: " in request
    assert "AutoAttack (apgd-ce, apgd-t, fab-t, square) on 355 of 355 test images" in request


def test_given_fields_leave_no_placeholders(standard_run, tmp_path):
    run, _ = standard_run
    result = export_robustbench(
        run, tmp_path, model_id="Doe2025Tiny_PreActResNet", name="Tiny robust digits",
        authors="J. Doe", venue="arXiv, Jan. 2025", link="https://example.org/tiny",
        architecture="PreActResNet-4", external=1.5, footnote="Trained on digits.",
    )  # fmt: skip
    info = result.model_info
    assert result.placeholders == ()
    assert result.checkpoint_path.name == "Doe2025Tiny_PreActResNet.pt"
    assert (info["name"], info["architecture"], info["external"]) == (
        "Tiny robust digits", "PreActResNet-4", "1.50",
    )  # fmt: skip
    assert info["footnote"].endswith("8/255. Trained on digits.")
    request = result.request_path.read_text()
    assert "TODO: paper" not in request and "Before submitting" not in request
    assert "- **Paper authors**: J. Doe" in request


@pytest.mark.parametrize(
    ("attacks", "n", "coverage"),
    [
        (["clean", "aa:attacks=apgd-ce+apgd-t"], 50, "AutoAttack (apgd-ce+apgd-t) on 50 of 355"),
        (["clean", "aa"], 40, "AutoAttack on 40 of 355"),
        (["clean", "aa:attacks=apgd-ce"], None, "AutoAttack (apgd-ce) on 355 of 355"),
    ],
)
def test_a_partial_evaluation_is_refused_unless_allowed(tmp_path, attacks, n, coverage):
    fake_run(tmp_path / "run", attacks=attacks, n=n)
    with pytest.raises(
        ConfigError, match=r"report: got '.*report\.json'.*standard AutoAttack"
    ) as e:
        export_robustbench(tmp_path / "run", tmp_path / "out")
    assert coverage in str(e.value) and "--allow-partial" in str(e.value)
    result = export_robustbench(tmp_path / "run", tmp_path / "out", allow_partial=True)
    assert result.model_info["footnote"].startswith(f"{coverage} test images, not the full")


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"attacks": ["clean", "pgd20"]}, "an AutoAttack evaluation"),
        ({"report_eps": 0.25}, "AutoAttack at the run's threat model .Linf, eps 0.5."),
    ],
)
def test_no_autoattack_at_the_threat_model_is_refused(tmp_path, changes, expected):
    fake_run(tmp_path / "run", **changes)
    with pytest.raises(ConfigError, match=r"report: .*" + expected):
        export_robustbench(tmp_path / "run", tmp_path / "out", allow_partial=True)


def test_an_unfinished_or_missing_report_is_refused(tmp_path):
    fake_run(tmp_path / "run")
    path = tmp_path / "run" / "report.json"
    report = json.loads(path.read_text())
    path.write_text(json.dumps({**report, "complete": False}))
    with pytest.raises(ConfigError, match="a finished evaluation"):
        export_robustbench(tmp_path / "run", tmp_path / "out")
    path.unlink()
    with pytest.raises(ConfigError, match="a readable report.json"):
        export_robustbench(tmp_path / "run", tmp_path / "out")
    with pytest.raises(ConfigError, match="a run directory holding config.yaml"):
        export_robustbench(tmp_path, tmp_path / "out")


def test_the_weights_are_those_the_report_evaluated(tmp_path):
    run = tmp_path / "run"
    evaluated = fake_run(run, weights="ema")
    other = build_model(evaluated.spec)
    save_weights(other, run / "weights" / "best.safetensors")  # not what the report evaluated
    result = export_robustbench(run, tmp_path / "out")
    assert result.weights == run / "weights" / "ema.safetensors"
    state = torch.load(result.checkpoint_path, weights_only=True)["state_dict"]
    model = build_model(evaluated.spec)
    model.load_state_dict({k: v.reshape(model.state_dict()[k].shape) for k, v in state.items()})
    assert weights_digest(model) == weights_digest(evaluated)
    (run / "weights" / "ema.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"digest .* \(tried: best\.safetensors\)"):
        export_robustbench(run, tmp_path / "out")


def test_extra_data_is_additional_data_when_external_and_footnoted_when_generated(tmp_path):
    """As RobustBench lists Carmon2019Unlabeled (true) and Wang2023Better (false, footnoted);
    unstated, the export refuses to guess."""
    infos = {}
    for kind in ("external", "generated", None):
        data = {"extra": "extra.npz", "extra_fraction": 0.7, "extra_kind": kind}
        fake_run(tmp_path / f"run-{kind}", data=data)
        if kind is None:
            with pytest.raises(ConfigError, match="data.extra_kind: got None, expected external"):
                export_robustbench(tmp_path / f"run-{kind}", tmp_path / "out")
        else:
            infos[kind] = export_robustbench(tmp_path / f"run-{kind}", tmp_path / kind).model_info
    synthetic = "It uses synthetic images in training, 70% of each batch."
    assert infos["external"]["additional_data"] and synthetic not in infos["external"]["footnote"]
    assert infos["generated"]["additional_data"] is False
    assert synthetic in infos["generated"]["footnote"]  # after the eps note of this digits run


def test_model_id_must_be_a_file_name(standard_run, tmp_path):
    with pytest.raises(ConfigError, match="model_id: got '../x'"):
        export_robustbench(standard_run[0], tmp_path, model_id="../x")


def test_architecture_names():
    assert architecture_name(get_spec("robustresnet-a1", activation="silu")) == "RobustResNet-A1"
    assert architecture_name(get_spec("wrn-a4", mean="cifar10")) == "WideResNet-A4"
    assert architecture_name(get_spec("wrn-34-r")) == "WideResNet-34-R"
    assert architecture_name(get_spec("preactresnet-18")) == "PreActResNet-18"
    deeper = get_spec("wrn-28-10")
    deeper = deeper.replace(stages=(StageSpec(depth=5, widening=10), *deeper.stages[1:]))
    assert architecture_name(deeper) == "wrn-28-10"  # a preset's name on another network
    unnamed = deeper.replace(name=None)
    assert (
        architecture_name(unnamed) == "PreActResNet (basic_block, depths 5-4-4, widths 160-320-640)"
    )


def test_eps_as_robustbench_writes_it():
    assert eps_text(8 / 255, "inf") == "8/255"
    assert eps_text(4 / 255, "inf") == "4/255"
    assert eps_text(0.5, "2") == "0.5"
    assert eps_text(EPS, "inf") == "0.5"
    assert eps_text(0.031, "inf") == "0.031"
