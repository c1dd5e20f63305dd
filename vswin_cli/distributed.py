"""Run plumbing: which device, which share of the inputs (torchrun rank), barriers, gathers, a clean exit.

Under `torchrun` every process has RANK, WORLD_SIZE and LOCAL_RANK in its environment; without it a run
is rank 0 of 1. `tag` shards its inputs and meets the other ranks only at the end (a gloo barrier, made
when first needed: ranks finish their shards at different times); `eval` and `train` join the process
group at start (`setup_device`).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from vswin_cli.errors import UsageError


@dataclass(frozen=True)
class Shard:
    """This process's share of the inputs under torchrun: every `world_size`-th item from `rank`."""

    rank: int = 0
    world_size: int = 1

    def take(self, items: list) -> list:
        """This rank's items: the same split in every run (so each rank's output resumes on its own)."""
        return list(items)[self.rank::self.world_size]


def current_shard() -> Shard:
    """The shard torchrun assigned (RANK, WORLD_SIZE environment variables); one shard otherwise."""
    return Shard(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")))


def resolve_device(device: str = "auto") -> torch.device:
    """The `--device` value as a usable torch device: "auto" is this rank's GPU when CUDA works, else the CPU.

    Raises:
        ConfigError: an unknown device name, or a CUDA device this machine does not have.
    """
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    multi = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank) if multi else torch.device("cuda")
        return torch.device("cpu")
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device {device!r} is not a device name",
                          hint="use auto, cpu, cuda or cuda:N (see `vswin env` for what this machine has)") from None
    if parsed.type == "cpu":
        return parsed
    if parsed.type != "cuda":
        raise UsageError(f"--device {device}: only cpu and cuda devices are supported", hint="use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        reason = "this PyTorch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise UsageError(f"--device {device}: {reason}",
                          hint="use --device cpu (or auto); `vswin env` shows the devices PyTorch sees")
    count = torch.cuda.device_count()
    if parsed.index is not None and parsed.index >= count:
        raise UsageError(f"--device {device}: this machine has {count} CUDA device(s)",
                          hint=f"use cuda:0 ... cuda:{count - 1}")
    if parsed.index is None and multi:
        return torch.device("cuda", local_rank)
    return parsed


def setup_device(device: str = "auto") -> tuple[torch.device, int, int]:
    """(device, rank, world size); under torchrun this also joins the process group (NCCL on CUDA, else gloo)."""
    shard = current_shard()
    run_device = resolve_device(device)
    if shard.world_size > 1 and not dist.is_initialized():
        if run_device.type == "cuda":
            torch.cuda.set_device(run_device)
        dist.init_process_group(backend="nccl" if run_device.type == "cuda" else "gloo")
    return run_device, shard.rank, shard.world_size


def barrier() -> None:
    """Wait for every rank; joins a gloo group for the wait if none is active (ranks may be hours apart)."""
    created = not dist.is_initialized()
    if created:
        dist.init_process_group("gloo", timeout=timedelta(days=2))
    dist.barrier()
    if created:
        dist.destroy_process_group()


def gather_to_rank0(items: list) -> list:
    """All processes' lists concatenated on rank 0 (others get []); the input itself when not distributed."""
    if not (dist.is_available() and dist.is_initialized()):
        return items
    gathered = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(items, gathered, dst=0)
    return [x for part in gathered for x in part] if gathered is not None else []


def exit_distributed(code: int) -> None:
    """End a torchrun worker: wait for every rank, leave the process group, flush, `os._exit(code)`.

    A gloo group torn down by the interpreter's own shutdown sometimes aborts the process after all
    its work is done ("terminate called without an active exception", SIGABRT), which torchrun reports
    as a failure of the whole job. Leaving the group
    explicitly and skipping the interpreter's finalisation avoids that. Only called when a process
    group is active; every command has finished and closed its files by then. If a rank failed
    instead, torchrun stops the others, so the barrier cannot wait forever.
    """
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
