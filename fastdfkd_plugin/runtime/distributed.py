"""Multi-process runs under ``torchrun``: one process per device, PyTorch's own collectives.

Every process synthesises its own batches (its own latents and labels) and trains the
student under DistributedDataParallel. The meta-generator stays identical everywhere:
it starts from rank 0's weights, and each meta step and BN-momentum update is averaged
across processes before it is applied. NCCL on GPUs, gloo on CPU.
"""

from __future__ import annotations

import atexit
import importlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..errors import FastDFKDError
from .devices import resolve_device


@dataclass(frozen=True)
class Context:
    """This process's place in the run."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def main(self) -> bool:
        """Rank 0 writes files and shows progress."""
        return self.rank == 0


def setup(device: str = "auto") -> Context:
    """Join the process group ``torchrun`` describes in the environment; a single process needs none."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Context(0, 1, resolve_device(device))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    wanted = resolve_device(device)
    if wanted.type == "cuda":
        if torch.cuda.device_count() <= local_rank:
            raise FastDFKDError(f"process {local_rank} has no GPU of its own ({torch.cuda.device_count()} visible); "
                                "start at most one process per GPU (--nproc-per-node)")
        wanted = torch.device("cuda", local_rank)
        torch.cuda.set_device(wanted)
    if not dist.is_initialized():
        importlib.import_module("torch._dynamo")  # before the group exists, or the group outlives teardown()
        dist.init_process_group(backend="nccl" if wanted.type == "cuda" else "gloo")
        atexit.register(teardown)
    return Context(dist.get_rank(), dist.get_world_size(), wanted)


def teardown() -> None:
    """Leave the process group; :func:`setup` arranges it at exit.

    Without it, gloo's worker threads outlive the interpreter and the process can die
    with SIGABRT ("terminate called without an active exception") after the run succeeded.
    Leaving only ends the threads if nothing else holds the group: torch._dynamo, when
    first imported after the group exists (DistributedDataParallel imports it), keeps it
    alive for good, so :func:`setup` imports it first.
    """
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def average_(tensors: list[torch.Tensor]) -> None:
    """Average ``tensors`` in place across processes (one flattened all-reduce)."""
    if not tensors:
        return
    flat = torch.cat([t.reshape(-1).float() for t in tensors])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for tensor in tensors:
        tensor.copy_(flat[offset : offset + tensor.numel()].view_as(tensor))
        offset += tensor.numel()


def any_(flag: bool, device: torch.device) -> bool:
    """True on every process if ``flag`` is true on any (so all stop at the same step)."""
    value = torch.tensor([float(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def broadcast_buffers(module: nn.Module) -> None:
    """Give every process rank 0's buffers (BN statistics drift per process between DDP forwards)."""
    for buffer in module.buffers():
        dist.broadcast(buffer, src=0)


def share_meta_generator(synthesizer) -> None:
    """Start every process from rank 0's meta-generator and average every later update."""
    for tensor in synthesizer.generator.state_dict().values():
        dist.broadcast(tensor, src=0)
    synthesizer.average_across_processes = average_


def checksum(module: nn.Module) -> torch.Tensor:
    """A cheap fingerprint of ``module``'s weights: the sum of all of them, in float64."""
    return torch.stack([t.detach().double().sum() for t in module.state_dict().values() if t.is_floating_point()]).sum()


def check_in_sync(modules: dict[str, nn.Module], device: torch.device) -> None:
    """Refuse to go on if any process holds different weights for these modules."""
    for name, module in modules.items():
        local = checksum(module).to(device).view(1)
        gathered = [torch.zeros_like(local) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, local)
        values = torch.cat(gathered)
        if not torch.allclose(values, values[0].expand_as(values), rtol=1e-9, atol=1e-6):
            raise FastDFKDError(f"the processes hold different {name} weights ({values.tolist()}); "
                                "this is a bug, please report it with the command line")
