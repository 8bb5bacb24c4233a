"""`keep_freed_memory` applies glibc's settings where it can, and can be switched off."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

CHECK = textwrap.dedent(
    """
    import torch
    from robustresnet import keep_freed_memory
    print(keep_freed_memory())
    for _ in range(3):  # large tensors still allocate, compute and free normally
        assert float(torch.ones(8_000_000).sum()) == 8_000_000.0
    """
)


def _run(extra_env: dict[str, str]) -> str:
    env = {k: v for k, v in os.environ.items() if k != "RRN_SYSTEM_MALLOC"} | extra_env
    done = subprocess.run(
        [sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc setting")
def test_applied_on_glibc_linux():
    assert _run({}) == "True"


def test_opt_out_leaves_malloc_alone():
    assert _run({"RRN_SYSTEM_MALLOC": "1"}) == "False"
