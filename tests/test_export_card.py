"""`export_card`: README.md front matter from the run's reports, config and profile, beside the
weights the reports evaluated."""

from __future__ import annotations

import json

import torch
import yaml
from _export_runs import SPEC, digits_test, fake_run

from robustresnet import ArchSpec, build_model, evaluate, load_weights, profile
from robustresnet._io import write_json
from robustresnet.export import export_card


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_card_of_a_run_with_two_reports(tmp_path):
    """The final attacks on 64 images and AutoAttack on its own 40-image subset, as a run writes."""
    run = tmp_path / "run"
    model = fake_run(run, attacks=["clean", "pgd20"], n=64)
    first = json.loads((run / "report.json").read_text())
    images, labels = digits_test()
    second = evaluate(model, images[:40], labels[:40], attacks=["clean", "aa:attacks=apgd-ce"],
                      eps=0.5, sanity_checks=False)  # fmt: skip
    write_json(run / "report.json", [first, second])

    result = export_card(run, tmp_path / "card", model_id="tiny-digits", license_id="apache-2.0")
    front = _front_matter(result.readme_path.read_text())
    assert front == result.front_matter
    assert front["license"] == "apache-2.0" and front["datasets"] == ["digits"]
    assert "arxiv:2212.11005" in front["tags"]
    (entry,) = front["model-index"]
    assert entry["name"] == "tiny-digits"
    (results,) = entry["results"]
    assert results["task"]["type"] == "image-classification"
    assert results["dataset"] == {"type": "digits", "name": "scikit-learn digits", "split": "test"}
    metrics = {(m["config"], m["args"]["samples"]): m for m in results["metrics"]}
    assert set(metrics) == {("clean", 64), ("pgd20", 64), ("clean", 40), ("aa:attacks=apgd-ce", 40)}
    assert metrics["pgd20", 64]["value"] == round(100 * first["accuracy"]["pgd20"], 2)
    assert metrics["pgd20", 64]["args"]["steps"] == 20
    aa = metrics["aa:attacks=apgd-ce", 40]
    assert aa["type"] == "robust_accuracy" and aa["args"]["autoattack"] == ["apgd-ce"]
    assert front["threat_model"] == {"norm": "Linf", "eps": "0.5", "eps_value": 0.5}
    cost = profile(SPEC)
    assert (front["architecture"]["params"], front["architecture"]["macs"]) == (
        cost.params, cost.macs,
    )  # fmt: skip
    assert front["training"]["objective"]["name"] == "pgd_at"
    assert front["training"]["optimizer"]["lr"] == 0.05

    body = result.readme_path.read_text().split("---\n", 2)[2]
    assert "# tiny-digits" in body and "| Clean | PGD-20 |" in body
    assert "title     = {Revisiting Residual Networks for Adversarial Robustness}" in body
    assert ArchSpec.load(result.arch_path) == SPEC
    reloaded = load_weights(build_model(SPEC), result.weights_path).eval()
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(reloaded(x), model(x))


def test_extra_data_is_named_not_its_local_path(tmp_path):
    data = {"extra": "/home/me/data/ti_500K_pseudo_labeled.pickle", "extra_fraction": 0.7}
    fake_run(tmp_path / "run", data=data)
    front = export_card(tmp_path / "run", tmp_path / "card").front_matter
    assert front["training"]["data"]["extra"] == "ti_500K_pseudo_labeled.pickle"
    assert front["model-index"][0]["name"] == "run"
