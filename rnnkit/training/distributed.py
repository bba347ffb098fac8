"""Multi-process training under torchrun: process-group setup and the few collectives the loop needs."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from rnnkit.errors import UsageError


@dataclass
class DistEnv:
    """This process's place: world size, rank, local rank; `enabled` when WORLD_SIZE > 1."""

    world: int = 1
    rank: int = 0
    local_rank: int = 0
    owns_group: bool = False  # True when we initialised the process group (so we destroy it)

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_pref: str) -> DistEnv:
    """Read torchrun's environment and join the process group: NCCL on GPUs, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistEnv()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_pref != "cpu" and torch.cuda.is_available()
    if device_pref == "cuda" and not torch.cuda.is_available():
        raise UsageError("train.device: cuda, but no CUDA device is available here")
    owns = False
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        owns = True
    return DistEnv(world=dist.get_world_size(), rank=dist.get_rank(), local_rank=local_rank, owns_group=owns)


def device_for(env: DistEnv, device_pref: str) -> torch.device:
    """The device this process trains on (its local GPU under torchrun)."""
    from rnnkit.device import pick_device

    device = pick_device(device_pref)
    if device.type == "cuda" and env.enabled:
        return torch.device("cuda", env.local_rank)
    return device


def all_reduce_(tensor: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Sum `tensor` over processes in place (a no-op in one process)."""
    if env.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_dict(values: dict[str, float], env: DistEnv, device: torch.device) -> dict[str, float]:
    """Sum a dict of floats over processes (every process must hold the same keys)."""
    if not env.enabled:
        return values
    keys = sorted(values)
    packed = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    all_reduce_(packed, env)
    return dict(zip(keys, packed.tolist(), strict=True))


def all_gather_rows(tensor: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Every process's `tensor` (..., rows, ...) joined on dim 1 in rank order (itself in one process)."""
    if not env.enabled:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(env.world)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=1)


def barrier(env: DistEnv) -> None:
    if env.enabled:
        dist.barrier()


def shutdown(env: DistEnv) -> None:
    if env.owns_group and dist.is_initialized():
        dist.destroy_process_group()
