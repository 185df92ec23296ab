"""Processes under torchrun / accelerate launch: which one this is, and what rank 0 decides for all of them."""

import os
import time
from datetime import datetime

# Hydra options that keep ranks > 0 from writing into the run directory: no .hydra/ copy, no ftlab.log (rank 0's).
QUIET_RANK_OVERRIDES = ["hydra.output_subdir=null", "hydra.job_logging.root.handlers=[console]"]
SHARDED = ("fsdp", "deepspeed_zero2", "deepspeed_zero3")


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def join() -> list:
    """Under a launcher with several processes, before Hydra composes anything: join the process group and take rank
    0's start time, which names the run and sweep directories (${start_time:...} in conf/config.yaml), so that every
    rank finds the same directory. Returns the Hydra overrides a rank adds to its command line."""
    if world_size() == 1:
        return []
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():  # accelerate and the Trainer then use this group instead of making their own
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo")
    os.environ["FTLAB_START_TIME"] = repr(share(time.time()))
    return [] if rank() == 0 else QUIET_RANK_OVERRIDES


def share(value):
    """Rank 0's value, on every rank (the value itself in a single process)."""
    import sys

    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def start_time(pattern: str) -> str:
    """The `start_time` resolver: the launch time (rank 0's under a launcher) in strftime format."""
    started = float(os.environ.get("FTLAB_START_TIME") or time.time())
    return datetime.fromtimestamp(started).strftime(pattern)


def device_map(dist_name: str):
    """Where from_pretrained puts the weights. One process: all GPUs (device_map="auto", which also spreads a model
    too big for one GPU); data parallel: each process its own GPU; FSDP/DeepSpeed: the CPU, then the engine shards."""
    import torch

    if not torch.cuda.is_available() or dist_name in SHARDED:
        return None
    if world_size() > 1:
        return {"": int(os.environ.get("LOCAL_RANK", "0"))}
    return "auto"


def describe(dist_name: str, trainer) -> dict:
    """What results.json records of the launch: the engine as accelerate ran it, and whether weights were sharded."""
    from torch.distributed.tensor import DTensor

    record = {
        "dist": dist_name,
        "processes": world_size(),
        "engine": str(trainer.accelerator.distributed_type).split(".")[-1].lower(),
        "sharded_weights": any(isinstance(p, DTensor) for p in trainer.model_wrapped.parameters()),
    }
    if world_size() > 1:
        import torch.distributed as dist

        record["backend"] = dist.get_backend() if dist.is_initialized() else None
    return record
