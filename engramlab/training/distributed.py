"""Data-parallel meta-training through ``torchrun`` (DistributedDataParallel).

``torchrun --nproc_per_node N -m engramlab.cli train PRESET`` starts N processes with
``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` set. The Trainer then initialises the process group (nccl on
CUDA, gloo on CPU), wraps the memory in DDP through ``LossModule`` (so ``model.loss(batch)`` runs
inside DDP's forward and its gradient hooks average gradients over ranks), gives each rank its own
episode stream (``source.batch(step, rank)``), and lets rank 0 alone write checkpoints and logs.

Example::

    info = env_info()                 # DistInfo(world_size=2, rank=1, local_rank=1) under torchrun
    device = device_for(info, "auto") # cuda:<local_rank> when CUDA is available, else cpu
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from engramlab.errors import BadConfig


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in a distributed run (world_size 1 = not distributed)."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as e:
        raise BadConfig(f"environment variable {name} must be an integer, got {value!r}") from e


def env_info() -> DistInfo:
    """The run's layout: from the initialised process group if any, else from torchrun's variables."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_world_size(), dist.get_rank(), _env_int("LOCAL_RANK", dist.get_rank()))
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", rank)
    if world_size < 1 or not 0 <= rank < world_size:
        raise BadConfig(f"inconsistent WORLD_SIZE={world_size} and RANK={rank}")
    return DistInfo(world_size, rank, local_rank)


def device_for(info: DistInfo, device: str | torch.device = "auto") -> torch.device:
    """The device of this process: "auto" is CUDA (``cuda:<local_rank>`` when distributed) if available."""
    if isinstance(device, str) and device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise BadConfig(f"unknown device {device!r}: {e}") from e
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise BadConfig(f"device '{device}' requested but CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", info.local_rank if info.distributed else torch.cuda.current_device())
    return device


def init_process_group(info: DistInfo, device: torch.device) -> bool:
    """Initialise the default process group for ``info`` (nccl on CUDA, gloo on CPU).

    Returns True when this call created the group (the caller then destroys it), False when a group
    already existed or the run is not distributed.
    """
    if not info.distributed or dist.is_initialized():
        return False
    if not dist.is_available():
        raise BadConfig("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)
    return True


def destroy_process_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class LossModule(nn.Module):
    """Makes ``model.loss(batch)`` the forward of a module, so DDP can wrap any memory."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch):
        return self.model.loss(batch)


def wrap(model: nn.Module, device: torch.device, find_unused_parameters: bool = False) -> DistributedDataParallel:
    """DDP around ``LossModule(model)``; calling it with a batch returns ``model.loss(batch)``."""
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(
        LossModule(model), device_ids=device_ids, find_unused_parameters=find_unused_parameters
    )


def all_reduce_mean(x: Tensor) -> Tensor:
    """The mean of ``x`` over ranks (``x`` itself when not distributed)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        x = x.clone()
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        x /= dist.get_world_size()
    return x


def barrier() -> None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
