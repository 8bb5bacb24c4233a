"""Shared fixtures: the reference material (copied into tests/data), deterministic torch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "tests" / "data" / "reference"


# Tiny test models gain nothing from intra-op threads, and on a shared CPU the OpenMP barriers
# of two threads made them 10-80x slower (measured): one thread, set before any fixture runs.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _deterministic_torch():
    """Every test starts from the same global seed and one intra-op thread."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    yield


@pytest.fixture
def reference_dir() -> Path:
    """tests/data/reference: test vectors and key lists made with the authors' code (a copy of
    ../shared/reference, so a plain clone runs every test)."""
    return REFERENCE
