"""Data-parallel training under ``torchrun`` (torch.distributed, gloo on CPU).

Outside torchrun everything here is a no-op with world size 1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Only rank 0 prints progress and writes files."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def init_from_env() -> DistContext:
    """Join the process group torchrun describes in the environment, if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    if not dist.is_initialized():
        # Training runs on the CPU, so gloo whatever the machine has.
        dist.init_process_group(backend="gloo")
    return DistContext(dist.get_rank(), dist.get_world_size())


def shutdown(ctx: DistContext) -> None:
    if ctx.active and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
