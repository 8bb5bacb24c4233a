"""Data-parallel training under `torchrun` or `srun`: process group, gradient averaging, buffer
sync.

Gradients are averaged with one all-reduce per flat bucket after backward instead of wrapping the
model in DistributedDataParallel: the objectives run several forward passes per step (the frozen
inner maximisation, then clean and adversarial passes), which DDP's reducer does not expect.
"""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from ..errors import ConfigError

_BUCKET_BYTES = 25 * 2**20
_SLURM_TASK = ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID")  # what srun sets in each task
# Rendezvous ports derived from the job id fall in [15000, 30000): above the well-known services,
# below Linux's default ephemeral range (32768-60999), whose ports the system hands out itself.
_PORT_BASE, _PORT_SPAN = 15000, 15000


@dataclass(frozen=True)
class World:
    """This process's place among the ranks (a single process is rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def detect_world(environ: Mapping[str, str] | None = None) -> World:
    """This process's place from its launcher's variables: torchrun's RANK / WORLD_SIZE /
    LOCAL_RANK, else srun's SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID; one process otherwise."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" in env or "RANK" in env:
        return World(
            int(env.get("RANK", "0")),
            int(env.get("WORLD_SIZE", "1")),
            int(env.get("LOCAL_RANK", "0")),
        )
    if all(name in env for name in _SLURM_TASK) and int(env["SLURM_NTASKS"]) > 1:
        return World(int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env["SLURM_LOCALID"]))
    return World()


def srun_rendezvous(environ: Mapping[str, str]) -> dict[str, str]:
    """Where srun's tasks meet, as torch's env:// rendezvous reads it: MASTER_ADDR and MASTER_PORT
    as set, else the first host of the step's node list and a port derived from SLURM_JOB_ID (the
    same in every task of the job; consecutive jobs sharing a node get different ones)."""
    nodelist = environ.get("SLURM_STEP_NODELIST") or environ.get("SLURM_NODELIST")
    if not nodelist:
        raise ConfigError("SLURM_NODELIST", nodelist, "the node list srun sets for its tasks")
    port = environ.get("MASTER_PORT")
    if not port:
        job = environ.get("SLURM_JOB_ID", "")
        if not job.isdigit():
            raise ConfigError("SLURM_JOB_ID", job, "the job's number (or MASTER_PORT set)")
        port = str(_PORT_BASE + int(job) % _PORT_SPAN)
    return {
        "MASTER_ADDR": environ.get("MASTER_ADDR") or expand_nodelist(nodelist)[0],
        "MASTER_PORT": port,
    }


def expand_nodelist(nodelist: str) -> list[str]:
    """SLURM's compressed host list as host names: `gpu[01-03,07],cpu3` -> gpu01, gpu02, gpu03,
    gpu07, cpu3 (zero padding kept; several bracket groups in one name multiply)."""
    names = re.findall(r"(?:[^,\[\]]+|\[[^\]]*\])+", nodelist)
    if ",".join(names) != nodelist:  # an empty name or an unclosed bracket
        raise ConfigError("SLURM_NODELIST", nodelist, "host names such as gpu[01-04,07],cpu3")
    hosts: list[str] = []
    for name in names:
        expanded = [""]
        for plain, ranges in re.findall(r"([^\[]*)(?:\[([^\]]*)\])?", name):
            suffixes = _expand_ranges(ranges, nodelist) if ranges else [""]
            expanded = [head + plain + tail for head in expanded for tail in suffixes]
        hosts += expanded
    return hosts


def _expand_ranges(ranges: str, nodelist: str) -> list[str]:
    """`01-03,07` -> 01, 02, 03, 07 (each number as wide as its range's first)."""
    numbers = []
    for part in ranges.split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part.strip())
        if not match:
            raise ConfigError("SLURM_NODELIST", nodelist, "ranges such as [01-04,07]")
        first, last = match.group(1), match.group(2) or match.group(1)
        numbers += [str(n).zfill(len(first)) for n in range(int(first), int(last) + 1)]
    return numbers


def init(device_type: str, timeout_minutes: float = 24 * 60) -> World:
    """Join the process group of the ranks `detect_world` finds (under srun, after setting the
    variables torchrun would have set); a collective may wait `timeout_minutes` (long: a rank
    can be far into its AutoAttack shard)."""
    world = detect_world()
    if not world.active:
        return world
    if "WORLD_SIZE" not in os.environ:  # srun: torch's env:// rendezvous reads these
        os.environ.update(srun_rendezvous(os.environ))
        os.environ.update(
            RANK=str(world.rank), WORLD_SIZE=str(world.world_size), LOCAL_RANK=str(world.local_rank)
        )
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(world.local_rank)
        timeout = datetime.timedelta(minutes=timeout_minutes)
        dist.init_process_group(backend=backend, timeout=timeout)
    return world


def shutdown(world: World) -> None:
    """Leave the process group (no-op for one process)."""
    if world.active and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    """Wait for every rank (no-op for one process)."""
    if world.active:
        dist.barrier()


def broadcast_parameters(world: World, model: nn.Module) -> None:
    """Give every rank rank 0's parameters and buffers."""
    if world.active:
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, src=0)


def broadcast_buffers(world: World, model: nn.Module) -> None:
    """Rank 0's BatchNorm running statistics everywhere, as DistributedDataParallel does."""
    if world.active:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def average_gradients(world: World, model: nn.Module) -> None:
    """Replace each gradient by its mean over ranks, in flat buckets of about 25 MiB."""
    if not world.active:
        return
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    bucket: list[torch.Tensor] = []
    size = 0
    for grad in grads:
        bucket.append(grad)
        size += grad.numel() * grad.element_size()
        if size >= _BUCKET_BYTES:
            _reduce_bucket(bucket, world.world_size)
            bucket, size = [], 0
    if bucket:
        _reduce_bucket(bucket, world.world_size)


def _reduce_bucket(bucket: list[torch.Tensor], world_size: int) -> None:
    flat = _flatten_dense_tensors(bucket)
    dist.all_reduce(flat)
    flat.div_(world_size)
    for grad, reduced in zip(bucket, _unflatten_dense_tensors(flat, bucket), strict=True):
        grad.copy_(reduced)


def gather(world: World, obj: Any) -> list[Any]:
    """`obj` from every rank, in rank order (on every rank)."""
    if not world.active:
        return [obj]
    out: list[Any] = [None] * world.world_size
    dist.all_gather_object(out, obj)
    return out


def max_over_ranks(world: World, value: int, device: torch.device) -> int:
    """The largest `value` of all ranks, on every rank (`value` itself for one process)."""
    if not world.active:
        return value
    tensor = torch.tensor([value], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())
