"""ExperimentConfig: defaults < YAML < overrides, explicit units, errors naming the key."""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml
from _train_helpers import tiny_dict, write_config

from robustresnet.errors import ConfigError
from robustresnet.train.config import ExperimentConfig, config_diff, load_config
from robustresnet.train.objectives import PGDAT, TRADES

MODEL = "model.name=wrn-28-10"  # a preset: the model section is checked when the config is read


def _yaml(tmp_path, data, name="c.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_defaults_then_yaml_then_overrides(tmp_path):
    path = _yaml(tmp_path, {"model": {"name": "wrn-28-10"}, "optim": {"lr": 0.3, "nesterov": True}})
    config = load_config(path, ["optim.lr=0.2", "schedule.milestones=[0.5, 0.8]"])
    assert config.optim.lr == 0.2  # the command line wins
    assert config.optim.nesterov is True  # the YAML wins over the default
    assert config.optim.weight_decay == 2e-4  # the default
    assert config.schedule.milestones == (0.5, 0.8)


def test_eps_fraction_strings_and_no_unit_guessing():
    config = load_config(None, [MODEL, "objective.eps=8/255", "objective.step_size=2/255"])
    assert config.objective.eps == pytest.approx(8 / 255)
    assert config.objective.step_size == pytest.approx(2 / 255)
    with pytest.raises(ConfigError, match="objective.eps"):
        load_config(None, [MODEL, "objective.eps=8"])  # never silently divided by 255
    l2 = load_config(None, [MODEL, "objective.norm=2", "objective.eps=1.5"])
    assert l2.objective.eps == 1.5  # an L2 radius above 1 is legitimate


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("optim.lrr=0.1", "optim.lrr"),
        ("optimiser.lr=0.1", "optimiser"),
        ("run.batch_size=1.5", "run.batch_size"),
        ("run.batch_size=0", "run.batch_size"),
        ("run.precision=fp8", "run.precision"),
        ("objective.name=fgsm", "objective.name"),
        ("optim.nesterov=maybe", "optim.nesterov"),
        ("ema.tau=abc", "ema.tau"),
        ("schedule.kind=linear", "schedule.kind"),
        ("data.extra_fraction=0.7", "data.extra"),
        ("data.extra_kind=synthetic", "data.extra_kind"),
        ("noequals", "override"),
        ("run.loggers=[neptune]", "run.loggers"),
        ("run.loggers=wandb", "run.loggers"),  # a list, even of one
        ("run.loggers=[wandb, wandb]", "run.loggers"),
        ("run.wandb.projekt=x", "run.wandb.projekt"),
        ("run.mlflow=off", "run.mlflow"),
    ],
)
def test_bad_values_name_the_key(override, key):
    with pytest.raises(ConfigError) as err:
        load_config(None, ["model.name=wrn-28-10", override])
    assert err.value.field == key


def test_trackers_and_their_settings():
    config = load_config(None, [MODEL, "run.loggers=[mlflow, wandb]", "run.wandb.project=study"])
    assert config.run.loggers == ("mlflow", "wandb") and config.run.wandb.project == "study"
    assert config.run.mlflow.experiment == "robustresnet"  # the default


@pytest.mark.parametrize(
    ("old", "loggers"),
    [
        ({"tensorboard": False}, ()),
        ({"tensorboard": True}, ("tensorboard",)),
        ({"tensorboard": True, "loggers": ["wandb"]}, ("wandb", "tensorboard")),
    ],
)
def test_an_earlier_versions_run_tensorboard_reads_as_run_loggers(old, loggers):
    """Run directories written before run.loggers still load (rrn eval, report, --resume)."""
    data = {"model": {"name": "wrn-28-10"}, "run": dict(old)}
    assert ExperimentConfig.from_dict(data).run.loggers == loggers
    assert data["run"] == old  # the caller's dict is left as it was


def test_model_needs_exactly_one_source(tmp_path):
    with pytest.raises(ConfigError, match="model"):
        load_config(None, [])
    with pytest.raises(ConfigError, match="model"):
        load_config(None, ["model.name=wrn-28-10", "model.spec={stages: []}"])


def test_round_trip_and_diff():
    config = load_config(None, ["model.name=wrn-28-10", "eval.autoattack=[apgd-ce, apgd-t]"])
    again = ExperimentConfig.from_dict(yaml.safe_load(yaml.safe_dump(config.to_dict())))
    assert again == config
    other = load_config(None, ["model.name=wrn-28-10", "optim.lr=0.2"])
    assert config_diff(config.to_dict(), other.to_dict()) == ["eval.autoattack", "optim.lr"]


def test_missing_or_bad_yaml_file(tmp_path):
    with pytest.raises(ConfigError, match="config"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    with pytest.raises(ConfigError, match="valid YAML"):
        load_config(bad)


def test_the_authors_model_section_builds(tmp_path, reference_dir):
    from robustresnet.train import setup

    case = json.loads((reference_dir / "vectors" / "robust_silu_bn_c100.json").read_text())
    path = _yaml(tmp_path, {"model": {"reference": case["model"]}, "data": {"name": "cifar100"}})
    spec = setup.build_spec(load_config(path).model, 100, (3, 32, 32))
    assert spec.num_classes == 100 and spec.stages[0].activation == "silu"
    with pytest.raises(ConfigError, match="model.num_classes"):
        setup.build_spec(load_config(path).model, 10, (3, 32, 32))


def test_the_objective_section_is_the_objective_itself():
    """One definition: the section builds the objective class, its defaults are the class's."""
    config = load_config(None, [MODEL])
    assert config.objective == TRADES()
    config = load_config(None, [MODEL, "objective.name=pgd_at", "~objective.name"])
    assert config.objective == TRADES()  # ~ removed the name: back to the default
    config = load_config(None, [MODEL, "objective={name: pgd_at, eps: 4/255}"])
    assert config.objective == PGDAT(eps=4 / 255)
    expected = {"name": "pgd_at", **dataclasses.asdict(PGDAT(eps=4 / 255))}
    assert config.to_dict()["objective"] == expected
    assert ExperimentConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["objective.name=pgd_at", "objective.beta=6"], "objective.beta"),
        (["objective.name=standard", "objective.eps=0.1", "eval.eps=0.1"], "objective.eps"),
        (
            ["objective.name=pgd_at", "objective.bn_adversarial_only=true"],
            "objective.bn_adversarial_only",
        ),
        (["objective.attack_bn=batch"], "objective.attack_bn"),
        (["objective.name=fgsm_at"], "objective.name"),
        (["objective.name=standard"], "eval.eps"),  # no eps to evaluate at
        (["optim.momentum=[0.85, 0.95]"], "optim.momentum"),  # cycling needs one-cycle
        (["eval.final_attacks=[clean, pdg20]"], "attack"),  # a typo fails before training
        (["~objective.gamma"], "~objective.gamma"),
    ],
)
def test_settings_nothing_uses_are_refused_by_name(overrides, key):
    with pytest.raises(ConfigError) as err:
        load_config(None, [MODEL, *overrides])
    assert err.value.field == key


def test_a_method_change_on_the_command_line_names_what_to_remove(tmp_path):
    path = _yaml(
        tmp_path, {"model": {"name": "wrn-a1"}, "objective": {"name": "trades", "beta": 3.0}}
    )
    with pytest.raises(ConfigError, match="~objective.beta"):
        load_config(path, ["objective.name=pgd_at"])
    assert load_config(path, ["objective.name=pgd_at", "~objective.beta"]).objective == PGDAT()


def test_cycled_momentum_with_one_cycle_and_the_threat_model():
    config = load_config(None, [MODEL, "optim.momentum=[0.85, 0.95]", "schedule.kind=onecycle"])
    assert config.optim.momentum == (0.85, 0.95)
    assert config.threat_model() == (8 / 255, "inf")
    standard = load_config(None, [MODEL, "objective.name=standard", "eval.eps=0.1"])
    assert standard.threat_model() == (0.1, "inf")


# Issue 16: every numeric field finite and in range, every count bounded, the network, dataset
# and device names checked, all when the config is read (before any data or model exists).
@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["optim.lr=.nan"], "optim.lr"),  # NaN passes every comparison
        (["optim.lr=.inf"], "optim.lr"),
        (["optim.lr=1e400"], "optim.lr"),  # a string to YAML, too large for a float
        (["optim.momentum=[.nan, 0.9]", "schedule.kind=onecycle"], "optim.momentum"),
        (["data.rotation=.nan"], "data.rotation"),
        (["schedule.milestones=[.nan]"], "schedule.milestones"),
        (["ema.tau=0.9", "ema.warmup_epochs=.inf"], "ema.warmup_epochs"),
        (["eval.eps=.nan"], "eval.eps"),
        (["eval.norm=2", "eval.eps=.inf"], "eval.eps"),
        (["model.bn_momentum=.nan"], "model.bn_momentum"),
        (["objective.start_std=.inf"], "objective.start_std"),
        (["objective.step_size=.inf"], "objective.step_size"),
        (["objective.name=trades", "objective.beta=.inf"], "objective.beta"),
        (["eval.final_samples=-5"], "eval.final_samples"),  # evaluated 350 samples
        (["eval.final_samples=0"], "eval.final_samples"),  # evaluated the whole split
        (["eval.autoattack=[apgd-ce]", "eval.autoattack_samples=-3"], "eval.autoattack_samples"),
        (["eval.batch_size=100000000000000000000"], "eval.batch_size"),
        (["eval.from_epoch=-1"], "eval.from_epoch"),
        (["run.seed=99999999999999999999999"], "run.seed"),
        (["run.seed=-1"], "run.seed"),
        (["run.threads=-1"], "run.threads"),
        (["run.threads=0"], "run.threads"),
        (["run.device=bogus"], "run.device"),
        (["data.val_size=100000000000000"], "data.val_size"),
        (["data.epoch_images=1000000000000"], "data.epoch_images"),
        (["data.options={size: 100000}"], "data.options.size"),  # asked for 72 TB
        (["data.options={labels: coarse}"], "data.options"),
        (["data.name=bogus"], "data.name"),
        (["model.spec={stages: [{depth: 0, widening: 1}]}"], "model.spec.stages[0].depth"),
        (["~model.spec", "model.name=bogus"], "model.name"),
        (["model.num_classes=0"], "model.num_classes"),
        (["model.activation=bogus"], "model.activation"),
    ],
)
def test_bad_numbers_and_names_are_refused_when_the_config_is_read(tmp_path, overrides, key):
    config = write_config(tmp_path / "tiny.yaml", tiny_dict())
    with pytest.raises(ConfigError) as err:
        load_config(config, overrides)
    assert err.value.field == key


def test_a_spec_file_written_later_is_checked_when_the_run_starts(tmp_path):
    """A sweep plans its trials before writing their spec files: the name is kept, unchecked."""
    config = load_config(None, [f"model.name={tmp_path / 'later.yaml'}"])
    with pytest.raises(ConfigError, match="model.name"):
        config.model.arch_spec()
