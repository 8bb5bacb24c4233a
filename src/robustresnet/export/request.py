"""The text of RobustBench's "new model" issue, filled from the same fields as model_info."""

from __future__ import annotations

from typing import Any

from .claim import THREAT_MODELS, AutoAttackClaim

_ZOO_ARCHITECTURES = (
    "https://github.com/RobustBench/robustbench/tree/master/robustbench/model_zoo/architectures"
)


def request_text(
    info: dict[str, Any],
    claim: AutoAttackClaim,
    model_id: str,
    checkpoint: str,
    placeholders: tuple[str, ...],
) -> str:
    """Markdown in the layout of RobustBench's new-model issue template, ready to paste."""
    todo = ""
    if placeholders:
        todo = (
            f"> **Before submitting** replace the placeholders of: {', '.join(placeholders)} "
            "(here and in the model_info JSON), and upload the checkpoint and code.\n\n"
        )
    footnote = f"- **Footnote**: {info['footnote']}\n" if "footnote" in info else ""
    return f"""\
Title: [New Model] {model_id}

{todo}# Paper Information

- **Paper Title**: {info["name"]}
- **Paper URL**: {info["link"]}
- **Paper authors**: {info["authors"]}

# Leaderboard Claim(s)

## Model 1

- **Architecture**: {info["architecture"]}
- **Threat Model**: {THREAT_MODELS[claim.norm]}
- **eps**: {info["eps"]}
- **Clean accuracy**: {info["clean_acc"]}%
- **Robust accuracy**: {info["autoattack_acc"]}%
- **Additional data**: {str(info["additional_data"]).lower()}
- **Evaluation method**: {_method(claim)}
- **Checkpoint and code**: TODO: URLs of `{checkpoint}` (torch.save of {{"state_dict": ...}}, \
loads with strict=True) and `architecture.py` (plain PyTorch; `get_model()` builds the network)
{footnote}
# Model Zoo:

- [x] I want to add my models to the Model Zoo (check if true)
- [x] I use an architecture that is **not** included among
  those [here]({_ZOO_ARCHITECTURES}) (check if true): `architecture.py` defines it.
- [ ] I agree to release my model(s) under MIT license (check if true) **OR**
- [ ] I want my models to be released under a custom license, located here: (custom license URL
  here)
"""


def _method(claim: AutoAttackClaim) -> str:
    """What was run, on how many images, with which software."""
    versions = claim.report.get("versions") or {}
    software = ", ".join(f"{k} {v}" for k, v in versions.items() if k != "python" and v)
    seed = claim.report["settings"].get("seed")
    return (
        f"{claim.label} ({', '.join(claim.attacks)}) on {claim.samples:,} of "
        f"{claim.test_size:,} test images, seed {seed}" + (f"; {software}" if software else "")
    )
