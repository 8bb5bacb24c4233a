"""The sweep's bookkeeping: finished runs skipped, interrupted ones resumed, failures recorded
while the sweep goes on. A stand-in trainer (a test fixture script) plays `rrn train` here, so
that each behaviour is exercised in a second; tests/test_sweep_train.py runs the real one."""

from __future__ import annotations

import dataclasses
import json
import sys
import textwrap
from pathlib import Path

import pytest

from robustresnet.sweep.execute import trial_state
from robustresnet.sweep.expand import expand
from robustresnet.sweep.runner import run_sweep
from robustresnet.sweep.spec import parse_sweep

# Fixture: writes config.yaml like `rrn train`, then acts as the override `x.mode=` says:
# ok -> report.json; fail -> traceback and exit 3; die -> killed by SIGKILL before the report.
FAKE_TRAINER = textwrap.dedent(
    """
    import json, os, signal, sys
    from pathlib import Path
    args = sys.argv[1:]
    calls = Path(os.environ["FAKE_CALLS"])
    with open(calls, "a") as log:
        log.write(json.dumps({"argv": args, "threads": os.environ.get("OMP_NUM_THREADS")}) + "\\n")
    if args[0] == "--resume":
        run_dir = Path(args[1])
        (run_dir / "report.json").write_text(json.dumps({"resumed": True}))
        sys.exit(0)
    run_dir = Path(args[args.index("--out") + 1])
    mode = next(a.split("=", 1)[1] for a in args if a.startswith("x.mode="))
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text("run: {seed: 0}\\n")
    if mode == "fail":
        (run_dir / "config.yaml").unlink()
        print("Traceback (most recent call last):")
        print("ValueError: the stand-in trainer was told to fail", file=sys.stderr)
        sys.exit(3)
    if mode == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    (run_dir / "report.json").write_text(json.dumps({"resumed": False}))
    """
)


@pytest.fixture
def fake(tmp_path, monkeypatch):
    script = tmp_path / "fake_trainer.py"
    script.write_text(FAKE_TRAINER)
    calls = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_CALLS", str(calls))
    return [sys.executable, str(script)], calls


def _trials(modes):
    sweep = parse_sweep(
        {"base": "digits-base", "axes": {"x.mode": modes}, "resources": {"threads": 1}},
        root=Path("/tmp"),
    )
    trials = [
        dataclasses.replace(t, overrides=(f"x.mode={t.values['x.mode']}",)) for t in expand(sweep)
    ]
    return sweep, trials


def _calls(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_runs_all_then_skips_finished(tmp_path, fake):
    trainer, calls = fake
    sweep, trials = _trials(["ok", "ok2"])
    summary = run_sweep(sweep, trials, tmp_path / "out", trainer=trainer, quiet=True)
    assert summary["counts"] == {"finished": 2}
    assert [c["threads"] for c in _calls(calls)] == ["1", "1"]
    again = run_sweep(sweep, trials, tmp_path / "out", trainer=trainer, quiet=True)
    assert again["counts"] == {"skipped": 2}
    assert all(t["trained_seconds"] > 0 for t in again["trials"])  # from sweep-trial.json
    assert len(_calls(calls)) == 2  # nothing ran the second time
    saved = json.loads((tmp_path / "out" / "sweep-summary.json").read_text())
    assert [t["name"] for t in saved["trials"]] == ["modeok", "modeok2"]


def test_failure_is_recorded_and_the_sweep_goes_on(tmp_path, fake):
    trainer, calls = fake
    sweep, trials = _trials(["fail", "ok"])
    summary = run_sweep(sweep, trials, tmp_path / "out", trainer=trainer, parallel=2, quiet=True)
    by_name = {t["name"]: t for t in summary["trials"]}
    assert summary["counts"] == {"failed": 1, "finished": 1}
    failed_dir = tmp_path / "out" / trials[0].name
    record = json.loads((failed_dir / "failed.json").read_text())
    assert record["returncode"] == 3
    assert "told to fail" in record["error"] and "Traceback" in record["log_tail"]
    assert by_name[trials[0].name]["status"] == "failed"
    assert trial_state(failed_dir) == "failed"
    assert trial_state(tmp_path / "out" / trials[1].name) == "finished"


def test_interrupted_run_is_resumed(tmp_path, fake):
    trainer, calls = fake
    sweep, trials = _trials(["die"])
    out = tmp_path / "out"
    first = run_sweep(sweep, trials, out, trainer=trainer, quiet=True)
    run_dir = out / trials[0].name
    assert first["counts"] == {"failed": 1}  # killed: no report, so recorded as failed...
    assert trial_state(run_dir) == "interrupted"  # ...but its config.yaml makes it resumable
    second = run_sweep(sweep, trials, out, trainer=trainer, quiet=True)
    assert second["counts"] == {"finished": 1}
    assert _calls(calls)[-1]["argv"][:2] == ["--resume", str(run_dir)]
    assert json.loads((run_dir / "report.json").read_text()) == {"resumed": True}
    assert not (run_dir / "failed.json").exists()  # a success clears the old failure
