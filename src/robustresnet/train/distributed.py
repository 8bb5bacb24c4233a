"""Data-parallel training under `torchrun`: process group, gradient averaging, buffer sync.

Gradients are averaged with one all-reduce per flat bucket after backward instead of wrapping the
model in DistributedDataParallel: the objectives run several forward passes per step (the frozen
inner maximisation, then clean and adversarial passes), which DDP's reducer does not expect.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

_BUCKET_BYTES = 25 * 2**20


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


def init(device_type: str, timeout_minutes: float = 24 * 60) -> World:
    """Join the process group that torchrun describes in RANK / WORLD_SIZE / LOCAL_RANK; a
    collective may wait `timeout_minutes` (long: a rank can be far into its AutoAttack shard)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return World()
    world = World(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
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
