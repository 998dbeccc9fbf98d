"""Where this process stands in a (possibly multi-GPU, multi-node) run: the device, torchrun's process group
and the DDP wrapping of the networks.

Launch with `torchrun`: each process reads RANK/WORLD_SIZE/LOCAL_RANK from the environment, joins a process
group (nccl on CUDA, gloo on CPU) and trains a DDP replica on its share of each global batch. Only rank 0
(`DistributedContext.is_main`) logs and writes checkpoints. One process (no torchrun) needs none of this.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from siam_depth_core.training.config import TrainConfig


@dataclass
class DistributedContext:
    """This process's place in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialised_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def local_batch(self, global_batch: int) -> int:
        """This process's share of a global batch; ValueError when the processes cannot share it evenly."""
        if global_batch % self.world_size:
            raise ValueError(f"batch_size {global_batch} (global) is not divisible by the {self.world_size} "
                             "processes")
        return global_batch // self.world_size


def init_distributed(device: torch.device) -> DistributedContext:
    """Join the process group described by torchrun's RANK/WORLD_SIZE/LOCAL_RANK (1 process: nothing to do)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    initialised_here = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        initialised_here = True
    return DistributedContext(rank, world_size, local_rank, initialised_here)


def select_device(config: TrainConfig, local_rank: int) -> torch.device:
    """cuda:<local_rank> when asked for (or 'auto' with CUDA present), else CPU."""
    if config.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch sees no CUDA device; use device: cpu or auto")
    if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def replicate(module: nn.Module, device: torch.device, ctx: DistributedContext) -> nn.Module:
    """`module` wrapped in DistributedDataParallel when the run has several processes, else `module` itself."""
    if ctx.world_size <= 1:
        return module
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=device_ids)
