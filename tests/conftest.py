"""Shared fixtures: the reference material beside the checkout, deterministic torch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REFERENCE = SHARED / "reference"


@pytest.fixture(autouse=True)
def _deterministic_torch():
    """Every test starts from the same global seed and two threads, as on CI."""
    torch.manual_seed(0)
    torch.set_num_threads(2)
    yield


@pytest.fixture
def reference_dir() -> Path:
    """../shared/reference: test vectors and key lists made with the authors' code."""
    if not REFERENCE.is_dir():
        pytest.fail(f"reference material not found at {REFERENCE}: clone beside ../shared")
    return REFERENCE
