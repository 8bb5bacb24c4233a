"""evaluate(): the cascade's numbers, gradient-masking warnings, resume and merge of reports."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from _digits_model import held_out, trained_mlp
from torch import nn

from robustresnet import ConfigError
from robustresnet.attacks.spec import parse_attack
from robustresnet.evaluate import (
    EvaluationWarning,
    evaluate,
    merge_reports,
    to_markdown,
    weights_digest,
)

ATTACKS = ("clean", "fgsm", "pgd20", "cw40", "aa:attacks=apgd-ce+apgd-t")


@pytest.fixture(scope="module")
def full_report():
    x, y = held_out(120)
    with torch.random.fork_rng():
        return evaluate(trained_mlp(), x, y, attacks=ATTACKS, eps=0.1, batch_size=50)


def flags(report, name) -> torch.Tensor:
    return torch.tensor([c == "1" for c in report["flags"][name]])


def test_autoattack_is_at_most_pgd_and_cw_which_are_at_most_clean(full_report):
    accuracy = full_report["accuracy"]
    aa = accuracy["aa:attacks=apgd-ce+apgd-t"]
    assert aa <= min(accuracy["pgd20"], accuracy["cw40"]) <= accuracy["fgsm"] < accuracy["clean"]
    assert aa > 0.5 and accuracy["clean"] > 0.9  # a model with something to attack
    assert accuracy["worst_case"] <= min(v for k, v in accuracy.items() if k != "worst_case")
    assert full_report["complete"] and full_report["warnings"] == []


def test_flags_are_per_sample_and_only_clean_correct_samples_can_be_robust(full_report):
    clean = flags(full_report, "clean")
    x, y = held_out(120)
    assert torch.equal(clean, trained_mlp()(x).argmax(1) == y)
    for name in ATTACKS[1:]:
        assert len(full_report["flags"][name]) == 120
        assert not (flags(full_report, name) & ~clean).any()
        assert full_report["accuracy"][name] == flags(full_report, name).sum().item() / 120
    cumulative = [flags(full_report, f"{ATTACKS[-1]}/{a}") for a in ("apgd-ce", "apgd-t")]
    assert not (cumulative[1] & ~cumulative[0]).any()


def test_report_records_settings_versions_device_and_timing(full_report):
    assert full_report["settings"]["seed"] == 0 and full_report["settings"]["eps"] == 0.1
    assert full_report["settings"]["attacks"][2] == {
        "name": "pgd20", "kind": "pgd", "eps": 0.1, "norm": "inf", "steps": 20,
        "step_size": pytest.approx(0.01), "loss": "ce", "random_start": True,
    }  # fmt: skip
    assert set(full_report["versions"]) >= {"torch", "robustresnet", "pyautoattack"}
    assert full_report["device"].startswith("cpu")
    assert full_report["seconds"]["total"] > 0
    json.dumps(full_report)


def test_markdown_has_the_layout_of_the_papers_tables(full_report):
    table = to_markdown([full_report, full_report]).splitlines()
    assert table[0] == "| model | Clean | FGSM | PGD-20 | CW-40 | AA (apgd-ce+apgd-t) |"
    assert table[2].startswith(f"| model | {100 * full_report['accuracy']['clean']:.2f} |")
    assert table[3] == table[2]


def test_a_gradient_masked_model_does_not_silently_look_robust():
    class Quantise(nn.Module):
        def forward(self, x):
            return torch.round(x * 4) / 4  # no straight-through: zero gradient everywhere

    model = nn.Sequential(Quantise(), trained_mlp())
    x, y = held_out(40)
    with pytest.warns(EvaluationWarning) as caught:
        report = evaluate(model, x, y, attacks=["pgd20", "aa:attacks=square"], eps=0.15)
    messages = " ".join(str(w.message) for w in caught)
    assert "all-zero input gradient" in messages
    assert "above AutoAttack" in messages
    assert report["accuracy"]["pgd20"] - report["accuracy"]["aa:attacks=square"] > 0.3


class Interrupt(Exception):
    pass


class StopsAfter(nn.Module):
    """The trained model, interrupted after `calls` forward passes (a killed evaluation)."""

    def __init__(self, model: nn.Module, calls: int) -> None:
        super().__init__()
        self.model, self.calls = model, calls

    def forward(self, x):
        self.calls -= 1
        if self.calls < 0:
            raise Interrupt
        return self.model(x)


@pytest.mark.parametrize("calls", [1, 40, 90])
def test_an_interrupted_evaluation_resumes_to_the_same_report(tmp_path, calls):
    x, y = held_out(100)
    options = {"attacks": ("clean", "pgd20", "cw40"), "eps": 0.1, "batch_size": 30}
    state = tmp_path / "report.json"
    with pytest.raises(Interrupt):
        evaluate(StopsAfter(trained_mlp(), calls), x, y, state_path=state, **options)
    partial = json.loads(state.read_text())
    assert "." in "".join(partial["flags"].values()) or len(partial["flags"]) < 3
    resumed = evaluate(StopsAfter(trained_mlp(), 10**6), x, y, state_path=state, **options)
    whole = evaluate(trained_mlp(), x, y, **options)
    assert resumed["flags"] == whole["flags"] and resumed["accuracy"] == whole["accuracy"]
    assert json.loads(state.read_text())["flags"] == whole["flags"]


def test_a_state_of_other_settings_is_refused(tmp_path):
    x, y = held_out(20)
    state = tmp_path / "report.json"
    evaluate(trained_mlp(), x, y, attacks=["clean"], state_path=state, sanity_checks=False)
    with pytest.raises(ConfigError, match="state_path"):
        evaluate(trained_mlp(), x, y, attacks=["clean"], eps=0.2, state_path=state)


def test_a_state_of_other_weights_or_images_is_refused_whatever_the_name(tmp_path):
    """Bound to a digest of the weights: a rerun after training moved them is an error, not the
    old model's numbers; the same weights under another name (a moved run) resume."""
    x, y = held_out(20)
    state = tmp_path / "report.json"
    options = {"attacks": ["clean"], "state_path": state, "sanity_checks": False}
    first = evaluate(trained_mlp(), x, y, name="runs/same/x", **options)
    changed = copy.deepcopy(trained_mlp())  # the helper's model is shared
    with torch.no_grad():
        next(changed.parameters()).add_(0.01)
    with pytest.raises(ConfigError, match="other weights"):
        evaluate(changed, x, y, name="runs/same/x", **options)
    with pytest.raises(ConfigError, match="other samples"):
        evaluate(trained_mlp(), x.flip(0), y, name="runs/same/x", **options)
    moved = evaluate(trained_mlp(), x, y, name="runs/moved/x", **options)
    assert moved["flags"] == first["flags"] and moved["model"] == "runs/moved/x"
    assert moved["weights"] == first["weights"] != weights_digest(changed)


def test_reports_of_disjoint_ranges_merge_into_the_whole():
    x, y = held_out(90)
    options = {"attacks": ("clean", "fgsm"), "eps": 0.1, "sanity_checks": False}
    parts = [
        evaluate(trained_mlp(), x[a:b], y[a:b], offset=a, **options) for a, b in ((40, 90), (0, 40))
    ]
    merged = merge_reports(parts)
    whole = evaluate(trained_mlp(), x, y, **options)
    assert merged["flags"] == whole["flags"] and merged["accuracy"] == whole["accuracy"]
    assert merged["samples"]["n"] == 90 and merged["samples"]["ranges"] == [[0, 40], [40, 50]]
    with pytest.raises(ConfigError, match="disjoint"):
        merge_reports([parts[0], parts[0]])


def test_uint8_images_are_scaled_to_the_unit_interval():
    x, y = held_out(30)
    as_uint8 = (x * 255).round().to(torch.uint8)
    report = evaluate(trained_mlp(), as_uint8, y, attacks=["clean"], sanity_checks=False)
    expected = (trained_mlp()(as_uint8.float() / 255).argmax(1) == y).float().mean().item()
    assert report["accuracy"]["clean"] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "label", "changes"),
    [
        ("pgd20", "PGD-20", {"steps": 20, "step_size": 0.8 / 255, "loss": "ce"}),
        ("cw40", "CW-40", {"steps": 40, "loss": "cw"}),
        ("fgsm", "FGSM", {"kind": "fgsm"}),
        ("aa", "AA", {"autoattack": ("apgd-ce", "apgd-t", "fab-t", "square")}),
        ("pgd50:eps=4/255", "pgd50:eps=4/255", {"eps": 4 / 255, "step_size": 0.4 / 255}),
        ("pgd10:norm=2:eps=0.5:step_size=0.1", None, {"norm": "2", "step_size": 0.1}),
    ],
)
def test_attack_names_and_options(text, label, changes):
    spec = parse_attack(text)
    assert spec.label == (label or text)
    for key, value in changes.items():
        assert getattr(spec, key) == pytest.approx(value) if isinstance(value, float) else value


@pytest.mark.parametrize("text", ["pgd:eps=8", "fgsm:norm=2", "square", "aa:attacks=pgd", "fgsm3"])
def test_bad_attack_names_raise_config_error(text):
    with pytest.raises(ConfigError):
        parse_attack(text)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """An untrained three-stage WRN (widening 1) saved as a run directory: arch.yaml + weights."""
    from robustresnet import ArchSpec, StageSpec, build_model, save_weights

    torch.manual_seed(0)
    spec = ArchSpec(stages=tuple(StageSpec(depth=1, widening=1, stride=s) for s in (1, 2, 2)))
    run_dir = tmp_path_factory.mktemp("run")
    spec.save(run_dir / "arch.yaml")
    save_weights(build_model(spec), run_dir / "weights" / "last.safetensors")
    return run_dir


def rrn_eval(capsys, *args: str) -> dict:
    from robustresnet.cli import main

    assert main(["eval", *args, "--data", "digits", "--json", "--quiet"]) == 0
    return json.loads(capsys.readouterr().out)


def test_rrn_eval_end_to_end_writes_and_resumes_its_report(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "eval"
    args = ("-n", "24", "--attacks", "clean,fgsm,pgd5", "--batch-size", "10", "--out", str(out))
    report = rrn_eval(capsys, str(tiny_checkpoint), *args)
    assert report["complete"] and report["samples"]["n"] == 24
    assert report["source"]["data"] == "digits/test"
    assert json.loads((out / "report.json").read_text())["flags"] == report["flags"]
    assert (out / "report.md").read_text().startswith("| model | Clean | FGSM | PGD-5 |")
    weights = str(tiny_checkpoint / "weights" / "last.safetensors")  # spec from its metadata
    again = rrn_eval(capsys, weights, *args, "--name", tiny_checkpoint.stem)
    assert again["flags"] == report["flags"]


def test_rrn_eval_names_a_missing_checkpoint(tmp_path, capsys):
    from robustresnet.cli import main

    assert main(["eval", str(tmp_path / "nope.safetensors"), "--data", "digits"]) == 2
    assert "nope.safetensors" in capsys.readouterr().err


def test_rrn_eval_reads_a_reference_style_pth_with_arch(tiny_checkpoint, tmp_path, capsys):
    from robustresnet import build_model, load_weights
    from robustresnet.arch import ArchSpec

    spec = ArchSpec.load(tiny_checkpoint / "arch.yaml")
    model = load_weights(build_model(spec), tiny_checkpoint / "weights" / "last.safetensors")
    state = {f"module.{k}": v for k, v in model.state_dict().items()}  # DataParallel keys
    torch.save({"model_state_dict": state, "epoch": 99}, tmp_path / "model_best.pth")
    args = ("-n", "24", "--attacks", "clean,fgsm", "--no-sanity-checks")
    report = rrn_eval(
        capsys, str(tmp_path / "model_best.pth"), "--arch", str(tiny_checkpoint), *args
    )
    reference = rrn_eval(capsys, str(tiny_checkpoint), *args)
    assert report["flags"] == reference["flags"]


def test_evaluation_leaves_the_global_rng_alone():
    x, y = held_out(20)
    state = torch.get_rng_state()
    evaluate(trained_mlp(), x, y, attacks=["clean", "pgd5:eps=0.05", "aa:attacks=apgd-ce"], eps=0.1)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("text", ["[1, 2]", "null", "[" * 5000, "{not json"])
def test_a_damaged_state_file_is_an_error_naming_it(tmp_path, text):
    x, y = held_out(8)
    state = tmp_path / "report.json"
    state.write_text(text)
    with pytest.raises(ConfigError, match="report.json"):
        evaluate(trained_mlp(), x, y, attacks=["clean"], state_path=state, sanity_checks=False)
