"""The training loop: one short step per batch, metrics per epoch, crash-safe checkpoints."""

from __future__ import annotations

import json
import math
import shlex
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._lock import folder_lock
from .._progress import progress, write_line
from .._stop import Interrupt, StopFlag, on_stop_signals, signal_name
from ..arch.compat import save_weights
from ..errors import CheckpointError, ConfigError, FolderInUseError, RobustResNetError, Stopped
from . import distributed as ddp
from . import setup
from .checkpoint import (
    CONFIG,
    POINTER,
    check_trained_config,
    load_checkpoint,
    prepare_run_dir,
    save_checkpoint,
    write_arch,
)
from .config import ExperimentConfig
from .final import final_report, validate
from .loggers import Loggers, check_loggers, open_loggers
from .metrics import plot_curves, write_metrics
from .optim import lr_at, momentum_at, set_lr

# Steps between the ranks' comparisons of their stop flags: each is an all-reduce and, on a GPU,
# a synchronisation, so not every step; a single process looks at its flag every step.
_AGREE_EVERY = 5


class DivergedError(RobustResNetError):
    """Training diverged: the loss, a weight or a BatchNorm statistic became NaN or infinite."""


@dataclass
class Trainer:
    """Everything one run holds, and its counters (what a checkpoint saves)."""

    config: ExperimentConfig
    run_dir: Path
    world: ddp.World
    device: torch.device
    spec: Any
    model: nn.Module
    net: nn.Module  # `model`, compiled when run.compile is on
    objective: Any
    optimizer: torch.optim.Optimizer
    ema: Any
    scaler: Any
    generator: torch.Generator
    data: setup.Data
    step: int = 0
    epoch: int = 0
    mid_epoch: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=lambda: {"val_robust": None, "epoch": None})
    sums: dict[str, float] = field(default_factory=dict)
    stop: StopFlag | None = None  # polled at step boundaries (train(stop_on_signals=True))

    @property
    def eval_model(self) -> nn.Module:
        """The model that is validated and selected: the EMA copy when EMA is on."""
        return self.ema.module if self.ema is not None else self.model


def train(
    config: ExperimentConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    quiet: bool = False,
    stop_on_signals: bool = False,
) -> Path:
    """Train as `config` says into `run_dir` (continuing it when `resume`); returns `run_dir`.

    The run directory is locked while this runs: a second process fails at once with
    FolderInUseError. With `stop_on_signals` (as `rrn train` does), SIGTERM or SIGINT stops the
    run at the next step with a checkpoint and raises Stopped (a second signal stops at once);
    the previous signal handlers are back when this returns."""
    run_dir = Path(run_dir)
    check_loggers(config.run.loggers)  # a missing tracker package fails before any work
    device = setup.pick_device(config.run.device, ddp.detect_world().local_rank)
    world = ddp.init(device.type, config.run.dist_timeout_minutes)
    flag = StopFlag() if stop_on_signals else None
    try:
        with _exclusive(run_dir, world), on_stop_signals(flag) if flag else nullcontext():
            _run(config, run_dir, world, device, resume=resume, quiet=quiet, stop=flag)
    except Interrupt as stop:
        name = signal_name(stop.signum)
        if flag is not None and not flag.graceful:
            what = f"{name} during the final evaluation (saved after every batch)"
        else:
            what = f"a second {name} at once; the last complete checkpoint is kept"
        raise Stopped(stop.signum, f"stopped by {what}; {_resume_hint(run_dir)}") from None
    finally:
        ddp.shutdown(world)
    return run_dir


def _run(
    config: ExperimentConfig,
    run_dir: Path,
    world: ddp.World,
    device: torch.device,
    *,
    resume: bool,
    quiet: bool,
    stop: StopFlag | None,
) -> None:
    """Build, write or check the run directory, restore, fit, report."""
    trainer = _build(config, run_dir, world, device)  # bad data or config: nothing written yet
    trainer.stop = stop
    if world.is_main:
        prepare_run_dir(run_dir, config, resume=resume)
        write_arch(run_dir, trainer.spec)
    ddp.barrier(world)
    state = load_checkpoint(run_dir) if resume else None
    if state is not None:
        check_trained_config(run_dir, state, config)
        _restore(trainer, state)
    with _open_loggers(trainer) as loggers:
        _fit(trainer, quiet, loggers)
        if stop is not None:
            stop.graceful = False  # the final evaluation saves its state after every batch
        if world.is_main:
            plot_curves(run_dir, trainer.history)
        reports = final_report(trainer, quiet=quiet)  # every rank evaluates its shard
        loggers.log_final(reports, trainer.epoch)
    ddp.barrier(world)


def _open_loggers(t: Trainer) -> Loggers:
    """Rank 0's trackers (none elsewhere); when one cannot start, every rank fails."""
    loggers, refused = Loggers([]), None
    if t.world.is_main:
        try:
            loggers = open_loggers(t.config, t.run_dir, epoch=t.epoch)
        except ConfigError as err:
            refused = err
    message = ddp.gather(t.world, None if refused is None else str(refused))[0]
    if refused is not None:
        raise refused
    if message is not None:
        raise RobustResNetError(message)
    return loggers


@contextmanager
def _exclusive(run_dir: Path, world: ddp.World) -> Iterator[None]:
    """Rank 0 holds the run directory's lock; when another process has it, every rank fails."""
    with ExitStack() as stack:
        refused = None
        if world.is_main:
            try:
                stack.enter_context(folder_lock(run_dir))
            except FolderInUseError as err:
                refused = str(err)
        refused = ddp.gather(world, refused)[0]
        if refused is not None:
            raise FolderInUseError(refused)
        yield


def _resume_hint(run_dir: Path) -> str:
    """How to go on with a stopped run."""
    if not (run_dir / CONFIG).is_file():
        return "nothing was saved yet: start the run again"
    return f"resume with: rrn train --resume {shlex.quote(str(run_dir))}"


def _build(
    config: ExperimentConfig, run_dir: Path, world: ddp.World, device: torch.device
) -> Trainer:
    """Data, model, objective, optimizer, EMA and RNG of a fresh run."""
    if config.run.precision == "fp16" and device.type != "cuda":
        raise ConfigError("run.precision", "fp16", "bf16 or fp32 on CPU (fp16 needs a GPU)")
    if config.run.threads:
        torch.set_num_threads(config.run.threads)
    data = setup.build_data(config, world, device)
    spec = setup.build_spec(config.model, data.num_classes, tuple(data.test.images.shape[1:]))
    torch.manual_seed(config.run.seed)
    model = setup.build_model_on(spec, config, device)
    ddp.broadcast_parameters(world, model)
    generator = torch.Generator(device=device)
    generator.manual_seed(config.run.seed + 7919 * world.rank)
    if config.model.bn_momentum is not None:
        setup.set_bn_momentum(model, config.model.bn_momentum)
    return Trainer(
        config=config,
        run_dir=run_dir,
        world=world,
        device=device,
        spec=spec,
        model=model,
        net=torch.compile(model) if config.run.compile else model,
        objective=config.objective,
        optimizer=setup.build_optim(model, config),
        ema=setup.build_ema(model, config, len(data.loader)),
        scaler=torch.amp.GradScaler(device.type, enabled=config.run.precision == "fp16"),
        generator=generator,
        data=data,
    )


def train_step(
    t: Trainer, x: torch.Tensor, y: torch.Tensor, lr: float, momentum: float
) -> dict[str, Any]:
    """objective -> loss -> backward -> average over ranks -> clip -> SGD step -> EMA."""
    set_lr(t.optimizer, lr, momentum)
    if t.config.run.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    precision = t.config.run.precision
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    with torch.autocast(t.device.type, dtype=dtype, enabled=precision != "fp32"):
        loss, metrics = t.objective(t.net, x, y, generator=t.generator, fuse=t.config.run.fuse)
    t.optimizer.zero_grad(set_to_none=True)
    t.scaler.scale(loss).backward()
    ddp.average_gradients(t.world, t.model)
    if t.config.optim.grad_clip is not None:
        t.scaler.unscale_(t.optimizer)
        nn.utils.clip_grad_norm_(t.model.parameters(), t.config.optim.grad_clip)
    t.scaler.step(t.optimizer)
    t.scaler.update()
    ddp.broadcast_buffers(t.world, t.model)
    if t.ema is not None:
        t.ema.update(t.model)
    return {"loss": loss.detach(), **metrics}


def _fit(t: Trainer, quiet: bool, loggers: Loggers) -> None:
    """Epochs of steps; a checkpoint every `run.checkpoint_every` steps and after each epoch, and
    at the step where a stop signal is noticed, which then raises Stopped."""
    cfg = t.config
    per_epoch = len(t.data.loader)
    total = cfg.schedule.epochs * per_epoch
    bar = progress(total=total, initial=t.step, quiet=quiet or not t.world.is_main, unit="step")
    _first_step_bn_momentum(t)
    try:
        _stop_if_signalled(t, agree=True)  # a signal while setting up: the saved state is current
        while t.epoch < cfg.schedule.epochs:
            if not t.mid_epoch:
                t.data.loader.set_epoch(t.epoch)
                t.sums = {}
            t.mid_epoch = True
            start = time.perf_counter()
            for x, y in t.data.loader:
                metrics = train_step(t, x, y, *_schedule(t, t.step, per_epoch))
                _accumulate(t.sums, metrics, len(y))
                t.step += 1
                if t.step == 1:
                    _first_step_bn_momentum(t)
                bar.update()
                if t.step % 50 == 0:
                    _check_finite(t)
                if t.step % per_epoch == 0:
                    continue  # the epoch's end checkpoints
                signum = _stop_signal(t, agree=t.step % _AGREE_EVERY == 0)
                every = cfg.run.checkpoint_every
                if signum or (every and t.step % every == 0):
                    t.sums["time"] = t.sums.get("time", 0.0) + time.perf_counter() - start
                    start = time.perf_counter()
                    _checkpoint(t)
                _stop_if_signalled(t, signum=signum)
            t.sums["time"] = t.sums.get("time", 0.0) + time.perf_counter() - start
            _end_epoch(t, per_epoch, quiet, loggers)
            _stop_if_signalled(t, agree=True)
    finally:
        bar.close()


def _stop_signal(t: Trainer, *, agree: bool) -> int:
    """The signal that stops the run at this step, or 0. Every rank stops at the same step: they
    compare their flags where `agree` (one tiny all-reduce); one process looks at every step."""
    if t.stop is None:
        return 0
    mine = t.stop.received or 0
    if not t.world.active:
        return mine
    return ddp.max_over_ranks(t.world, mine, t.device) if agree else 0


def _stop_if_signalled(t: Trainer, *, agree: bool = False, signum: int | None = None) -> None:
    """Raise Stopped when a stop signal came (`signum`, else asked of `_stop_signal`); the
    state on disk is that of this step."""
    signum = _stop_signal(t, agree=agree) if signum is None else signum
    if not signum:
        return
    if t.step == 0:
        where = "before the first step"
    elif t.mid_epoch:
        where = f"at step {t.step} (epoch {t.epoch + 1})"
    else:
        where = f"at step {t.step} (end of epoch {t.epoch})"
    raise Stopped(signum, f"stopped by {signal_name(signum)} {where}; {_resume_hint(t.run_dir)}")


def _schedule(t: Trainer, step: int, per_epoch: int) -> tuple[float, float]:
    """(learning rate, momentum) of optimizer step `step`; a per-epoch schedule counts epochs."""
    sched, optim = t.config.schedule, t.config.optim
    if sched.interval == "epoch":
        position, total, warmup = step // per_epoch, sched.epochs, round(sched.warmup_epochs)
    else:
        position, total = step, sched.epochs * per_epoch
        warmup = round(sched.warmup_epochs * per_epoch)
    lr = lr_at(
        position,
        total_steps=total,
        base_lr=optim.lr,
        schedule=sched.kind,
        warmup_steps=warmup,
        milestones=sched.milestones,
    )
    momentum = momentum_at(
        position, total_steps=total, warmup_steps=warmup, momentum=optim.momentum
    )
    return lr, momentum


def _first_step_bn_momentum(t: Trainer) -> None:
    """`model.bn_momentum_first_step` for step 0, then `model.bn_momentum` (torch's 0.1 if
    unset): the authors' advanced trainer starts running statistics from the first batch."""
    first = t.config.model.bn_momentum_first_step
    if first is not None:
        regular = t.config.model.bn_momentum
        setup.set_bn_momentum(
            t.model, first if t.step == 0 else 0.1 if regular is None else regular
        )


def _accumulate(sums: dict[str, Any], metrics: dict[str, Any], n: int) -> None:
    """Running sums (weighted by batch size) of every scalar metric; tensors stay on the device."""
    sums["images"] = sums.get("images", 0) + n
    for key, value in metrics.items():
        if isinstance(value, torch.Tensor):
            value = value.detach().float()
            if value.numel() != 1:
                continue
        sums[key] = sums.get(key, 0.0) + value * n


def _end_epoch(t: Trainer, per_epoch: int, quiet: bool, loggers: Loggers) -> None:
    """Epoch summary, validation, best weights, metrics files, trackers and the checkpoint."""
    t.epoch += 1
    t.mid_epoch = False
    sums = _reduce_sums(t)
    images = sums.pop("images")
    seconds = sums.pop("time")
    row: dict[str, Any] = {"epoch": t.epoch, "step": t.step}
    row.update({f"train_{k}": v / images for k, v in sums.items()})
    lr, momentum = _schedule(t, t.step - 1, per_epoch)  # the last step's
    row.update(lr=lr, momentum=momentum, epoch_time=seconds)
    row["images_per_s"] = images / max(seconds, 1e-9)
    cfg = t.config.eval
    if t.data.val is not None and (t.epoch % cfg.every == 0 or t.epoch == t.config.schedule.epochs):
        row.update(validate(t))  # sharded over the ranks; every rank gets the merged figures
    improved = _is_best(t, row)
    t.history.append(row)
    if t.world.is_main:
        write_metrics(t.run_dir, t.history)
        loggers.log_epoch(row)
        if not quiet:
            write_line(_format_row(row, t.config.schedule.epochs))  # above the progress bar
    _checkpoint(t, best=improved)


def _reduce_sums(t: Trainer) -> dict[str, float]:
    """This epoch's sums as floats, added over ranks (time: the slowest rank)."""
    _check_finite(t)
    _check_finite_state(t)  # before validation spends time on a diverged model
    mine = {k: float(v) for k, v in t.sums.items()}
    every = ddp.gather(t.world, mine)
    out = {k: sum(d.get(k, 0.0) for d in every) for k in mine}
    out["time"] = max(d["time"] for d in every)
    return out


def _check_finite(t: Trainer) -> None:
    """Stop with a clear message, before anything is written, once the loss is NaN or infinite."""
    loss = float(t.sums.get("loss", 0.0))
    if not math.isfinite(loss):
        _diverged(t, f"the training loss became {loss}")


def _check_finite_state(t: Trainer) -> None:
    """Stop before a save once any weight, BatchNorm statistic, EMA or optimizer tensor is NaN or
    infinite (running statistics overflow before the loss does): nothing non-finite is saved."""
    named = [(f"model {k}", v) for k, v in t.model.state_dict().items()]
    if t.ema is not None:
        named += [(f"EMA {k}", v) for k, v in t.ema.module.state_dict().items()]
    names = {id(p): n for n, p in t.model.named_parameters()}
    for param, state in t.optimizer.state.items():
        named += [(f"optimizer {k} of {names.get(id(param))}", v) for k, v in state.items()]
    floating = [(n, v) for n, v in named if torch.is_tensor(v) and v.is_floating_point()]
    finite = torch.stack([torch.isfinite(v).all() for _, v in floating]).cpu()
    if not finite.all():
        name = floating[int((~finite).nonzero()[0])][0]
        _diverged(t, f"{name} became NaN or infinite")


def _diverged(t: Trainer, what: str) -> None:
    """DivergedError naming what broke and the last checkpoint, which is finite (every save is
    checked first), or saying there is none."""
    pointer = t.run_dir / POINTER
    if pointer.is_file():
        step = json.loads(pointer.read_text(encoding="utf-8"))["step"]
        kept = f"the last checkpoint (step {step}) in {t.run_dir} is finite and kept"
    else:
        kept = f"no checkpoint had been written to {t.run_dir} yet"
    raise DivergedError(
        f"{what} in epoch {t.epoch + 1} (step {t.step}): training diverged and stopped before "
        f"saving it; {kept}. Lower optim.lr, keep optim.grad_clip on or use run.precision=fp32, "
        "and start a new run"
    )


def _is_best(t: Trainer, row: dict[str, Any]) -> bool:
    """Record a new best validation robust accuracy among epochs >= eval.from_epoch."""
    robust, best = row.get("val_robust"), t.best["val_robust"]
    if robust is None or t.epoch < t.config.eval.from_epoch:
        return False
    latest = t.config.eval.ties == "latest"  # the authors' advanced trainer keeps ties' latest
    if best is not None and (robust < best if latest else robust <= best):
        return False
    t.best = {"val_robust": robust, "epoch": t.epoch}
    return True


def _checkpoint(t: Trainer, *, best: bool = False) -> None:
    """Every rank's RNG and loader state, then rank 0 writes the checkpoint and weights."""
    _check_finite(t)
    _check_finite_state(t)
    ranks = ddp.gather(t.world, _rank_state(t))
    if t.world.is_main:
        state = {
            "config": t.config.to_dict(),  # what these weights were trained with
            "step": t.step,
            "epoch": t.epoch,
            "mid_epoch": t.mid_epoch,
            "model": t.model.state_dict(),
            "optimizer": t.optimizer.state_dict(),
            "scaler": t.scaler.state_dict(),
            "ema": None if t.ema is None else t.ema.state_dict(),
            "history": t.history,
            "best": t.best,
            "sums": {k: float(v) for k, v in t.sums.items()},
            "ranks": ranks,
        }
        exports = {"last": lambda p: save_weights(t.model, p)}
        if t.ema is not None:
            exports["ema"] = lambda p: save_weights(t.ema.module, p)
        if best:
            exports["best"] = lambda p: save_weights(t.eval_model, p)
        save_checkpoint(t.run_dir, state, exports)
    ddp.barrier(t.world)


def _rank_state(t: Trainer) -> dict[str, Any]:
    state = {
        "torch": torch.get_rng_state(),
        "generator": t.generator.get_state(),
        "loader": t.data.loader.state_dict(),
    }
    if t.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(t.device)
    return state


def _restore(t: Trainer, state: dict[str, Any]) -> None:
    """Put a checkpoint's weights, optimizer, EMA, RNG, loader and counters back; a state that
    does not fit this run (its parts have the wrong shapes or kinds) is a CheckpointError."""
    if len(state["ranks"]) != t.world.world_size:
        raise ConfigError(
            "WORLD_SIZE",
            t.world.world_size,
            f"{len(state['ranks'])} processes, as the run was started with",
        )
    try:
        _put_back(t, state)
    except RobustResNetError:
        raise  # already names what is wrong (a loader state of other settings)
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as err:
        reason = " ".join(str(err).split())[:300] or type(err).__name__
        raise CheckpointError(
            f"{t.run_dir / POINTER}: its state does not fit this run ({reason}); the run cannot "
            "be resumed from it: start a new run with --out"
        ) from err


def _put_back(t: Trainer, state: dict[str, Any]) -> None:
    """The restore itself; torch raises on parts of the wrong shape or kind."""
    t.model.load_state_dict(state["model"])
    t.optimizer.load_state_dict(state["optimizer"])
    t.scaler.load_state_dict(state["scaler"])
    if t.ema is not None:
        t.ema.load_state_dict(state["ema"])
    mine = state["ranks"][t.world.rank]
    torch.set_rng_state(mine["torch"])
    t.generator.set_state(mine["generator"])
    if "cuda" in mine:
        torch.cuda.set_rng_state(mine["cuda"], t.device)
    t.data.loader.load_state_dict(mine["loader"])
    t.step, t.epoch, t.mid_epoch = state["step"], state["epoch"], state["mid_epoch"]
    t.history, t.best, t.sums = list(state["history"]), dict(state["best"]), dict(state["sums"])


def _format_row(row: dict[str, Any], epochs: int) -> str:
    """One line per epoch for the terminal."""
    parts = [f"epoch {row['epoch']:>3}/{epochs}"]
    labels = {
        "train_loss": "loss",
        "train_acc_clean": "acc",
        "train_acc_adv": "adv acc",
        "val_clean": "val clean",
        "val_robust": "val robust",
    }
    for key, label in labels.items():
        if row.get(key) is not None:
            parts.append(f"{label} {row[key]:.4f}")
    parts.append(f"lr {row['lr']:.4g}  {row['images_per_s']:.0f} img/s  {row['epoch_time']:.1f} s")
    return "  ".join(parts)
