"""Experiment trackers (`run.loggers`): TensorBoard, Weights & Biases and MLflow each receive
every epoch's metrics row, as metrics.jsonl holds it, and the final report's accuracies.

Only rank 0 logs. A tracker's package is imported when the run starts (`check_loggers`), so a
missing one fails before any work, naming the extra to install. The W&B and MLflow run ids are
kept in RUN_DIR/loggers.json, so that `rrn train --resume` continues the same tracker runs."""

from __future__ import annotations

import importlib
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any, Protocol

from .._files import read_json
from .._io import write_json
from ..errors import ConfigError
from .config import ExperimentConfig

IDS = "loggers.json"
_MLFLOW_BATCH = 100  # MLflow takes at most 100 parameters in one call


class Logger(Protocol):
    """One tracker, as the trainer calls it on rank 0."""

    package: str  # what it imports; the extra of the tracker's name installs it

    def __init__(self, config: ExperimentConfig, run_dir: Path, epoch: int) -> None:
        """Start (or, when `epoch` > 0, continue) the tracker's run of `run_dir`."""

    def log_epoch(self, metrics: dict[str, float], epoch: int) -> None:
        """One epoch's numbers, at step `epoch`."""

    def log_final(self, metrics: dict[str, float], epoch: int) -> None:
        """The final test accuracies, after the last epoch."""

    def close(self, finished: bool) -> None:
        """Flush and end the tracker's run; `finished` is False when training stopped early."""


def check_loggers(names: tuple[str, ...]) -> None:
    """Import each tracker's package now, before any work: a missing one is a ConfigError
    naming the extra to install, never a tracker that silently logs nothing."""
    for name in names:
        package = TRACKERS[name].package
        try:
            importlib.import_module(package)
        except ImportError as err:
            why = "" if err.name == package else f" (importing it failed: {err})"
            raise ConfigError(
                "run.loggers",
                name,
                f"the {package} package installed{why}: pip install 'robustresnet[{name}]'",
            ) from None


def open_loggers(config: ExperimentConfig, run_dir: Path, *, epoch: int) -> Loggers:
    """The trackers `config.run.loggers` names, started for `run_dir`, whose checkpoint is at
    `epoch` (0 for a new run)."""
    loggers = Loggers([])
    try:
        for name in config.run.loggers:
            loggers.loggers.append(TRACKERS[name](config, run_dir, epoch))
    except BaseException:
        loggers.close(finished=False)  # the ones already started
        raise
    return loggers


class Loggers:
    """Several trackers as one, for the trainer; as a context manager it ends their runs,
    marked unfinished when the block raised."""

    def __init__(self, loggers: list[Logger]) -> None:
        self.loggers = loggers

    def log_epoch(self, row: dict[str, Any]) -> None:
        """Every number of a metrics row (`epoch` is the step, not a metric)."""
        metrics = {
            key: float(value)
            for key, value in row.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "epoch"
        }
        for logger in self.loggers:
            logger.log_epoch(metrics, row["epoch"])

    def log_final(self, reports: list[dict[str, Any]], epoch: int) -> None:
        """The final reports' accuracies: test_clean, test_pgd20, ... and for a separate
        AutoAttack subset test_aa_subset_clean, test_aa_subset_aa."""
        metrics = {}
        for index, report in enumerate(reports):
            prefix = "test_" if index == 0 else "test_aa_subset_"
            for attack, accuracy in report["accuracy"].items():
                metrics[prefix + _metric_name(attack)] = float(accuracy)
        for logger in self.loggers:
            logger.log_final(metrics, epoch)

    def close(self, finished: bool) -> None:
        """End every tracker's run."""
        for logger in self.loggers:
            logger.close(finished)

    def __enter__(self) -> Loggers:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: Any) -> None:
        self.close(finished=kind is None)


class TensorBoardLogger:
    """Scalars in RUN_DIR/tensorboard; a resumed run first drops what a killed process logged
    after its checkpoint."""

    package = "tensorboard"

    def __init__(self, config: ExperimentConfig, run_dir: Path, epoch: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=epoch + 1)

    def log_epoch(self, metrics: dict[str, float], epoch: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, epoch)
        self.writer.flush()

    def log_final(self, metrics: dict[str, float], epoch: int) -> None:
        self.log_epoch(metrics, epoch)

    def close(self, finished: bool) -> None:
        self.writer.close()


class WandbLogger:
    """A W&B run named after the run directory, its files in RUN_DIR/wandb ($WANDB_DIR when
    set); WANDB_MODE=offline keeps it on disk for `wandb sync`."""

    package = "wandb"

    def __init__(self, config: ExperimentConfig, run_dir: Path, epoch: int) -> None:
        import wandb

        settings = config.run.wandb
        run_id = _stored_id(run_dir, "wandb") or _remember(run_dir, "wandb", secrets.token_hex(4))
        try:
            self.run = wandb.init(
                project=settings.project or os.environ.get("WANDB_PROJECT", "robustresnet"),
                entity=settings.entity,
                group=settings.group,
                name=run_dir.name,
                id=run_id,
                resume="allow",
                dir=os.environ.get("WANDB_DIR", str(run_dir)),
                config=config.to_dict(),
            )
        except wandb.errors.Error as err:
            raise ConfigError(
                "run.loggers", "wandb", f"a W&B run that starts ({err}); log in with `wandb "
                "login`, or set WANDB_MODE=offline and sync later",
            ) from None  # fmt: skip

    def log_epoch(self, metrics: dict[str, float], epoch: int) -> None:
        self.run.log({**metrics, "epoch": epoch}, step=epoch)

    def log_final(self, metrics: dict[str, float], epoch: int) -> None:
        self.run.summary.update(metrics)

    def close(self, finished: bool) -> None:
        self.run.finish(exit_code=0 if finished else 1)


class MlflowLogger:
    """An MLflow run named after the run directory, the config as its parameters. The store:
    `run.mlflow.tracking_uri`, else $MLFLOW_TRACKING_URI, else a file store in RUN_DIR/mlruns."""

    package = "mlflow"

    def __init__(self, config: ExperimentConfig, run_dir: Path, epoch: int) -> None:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        settings = config.run.mlflow
        uri = settings.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            # MLflow 3 keeps its file store only for those who opt in; a run directory's own
            # store needs no server and no database package.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            uri = (run_dir / "mlruns").resolve().as_uri()
        try:
            self.client = MlflowClient(uri)
            self.run_id = self._continue(_stored_id(run_dir, "mlflow"))
            if self.run_id is None:
                self.run_id = self._start(config, run_dir, settings.experiment)
        except MlflowException as err:
            why = " ".join(str(err).split())[:300]
            raise ConfigError("run.mlflow.tracking_uri", uri, f"a usable store ({why})") from None

    def _continue(self, run_id: str | None) -> str | None:
        """`run_id`, marked running again, when the store has it (a resumed run)."""
        from mlflow.exceptions import MlflowException

        if run_id is None:
            return None
        try:
            self.client.update_run(run_id, status="RUNNING")
        except MlflowException:
            return None  # another store than the run was started with: a new MLflow run
        return run_id

    def _start(self, config: ExperimentConfig, run_dir: Path, experiment: str) -> str:
        """A new run in `experiment` (created if need be), the config as dotted parameters."""
        from mlflow.entities import Param

        found = self.client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else self.client.create_experiment(experiment)
        run_id = self.client.create_run(experiment_id, run_name=run_dir.name).info.run_id
        _remember(run_dir, "mlflow", run_id)
        params = [Param(k, str(v)) for k, v in _dotted(config.to_dict()).items()]
        for start in range(0, len(params), _MLFLOW_BATCH):
            self.client.log_batch(run_id, params=params[start : start + _MLFLOW_BATCH])
        return run_id

    def log_epoch(self, metrics: dict[str, float], epoch: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(key, value, now, epoch) for key, value in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch)

    def log_final(self, metrics: dict[str, float], epoch: int) -> None:
        self.log_epoch(metrics, epoch)

    def close(self, finished: bool) -> None:
        self.client.set_terminated(self.run_id, "FINISHED" if finished else "KILLED")


# The trackers by the names `run.loggers` takes (config.LOGGERS).
TRACKERS: dict[str, type[Logger]] = {
    "tensorboard": TensorBoardLogger,
    "wandb": WandbLogger,
    "mlflow": MlflowLogger,
}


def _metric_name(attack: str) -> str:
    """An attack's report key as a name every tracker takes: aa:attacks=apgd-ce+apgd-t is
    aa_attacks_apgd-ce_apgd-t (MLflow allows letters, digits and _ - . / only)."""
    return re.sub(r"[^\w.\-/]", "_", attack)


def _stored_id(run_dir: Path, tracker: str) -> str | None:
    """The id of the tracker's run that this run directory logged to before, if any."""
    return _ids(run_dir).get(tracker)


def _remember(run_dir: Path, tracker: str, run_id: str) -> str:
    """Keep `run_id` in RUN_DIR/loggers.json for a resume; returns it."""
    write_json(run_dir / IDS, {**_ids(run_dir), tracker: run_id})
    return run_id


def _ids(run_dir: Path) -> dict[str, str]:
    """RUN_DIR/loggers.json: {tracker: run id} ({} before the first tracker run starts)."""
    path = run_dir / IDS
    if not path.is_file():
        return {}
    ids = read_json(path, IDS)
    if not isinstance(ids, dict):
        raise ConfigError(str(path), ids, 'a JSON object of tracker run ids, {"wandb": ID}')
    return ids


def _dotted(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested sections as one level of dotted keys: {"optim.lr": 0.1, ...}."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(_dotted(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
