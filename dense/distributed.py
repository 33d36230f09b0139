"""Process-group helpers: the same code runs alone or under ``torchrun``."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from dense.errors import DenseError


@dataclass(frozen=True)
class Context:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: str = "auto") -> Context:
    """Join the process group when launched by torchrun (NCCL on GPU, gloo on CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if resolved.type == "cuda" else "gloo"
        if resolved.type == "cuda":
            torch.cuda.set_device(resolved)
        dist.init_process_group(backend=backend)
    return Context(rank, world_size, local_rank, resolved)


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    resolved = torch.device(device)
    if resolved.type == "cuda" and resolved.index is None:
        resolved = torch.device("cuda", local_rank)
    if resolved.type == "cuda" and resolved.index >= torch.cuda.device_count():
        found = torch.cuda.device_count()
        raise DenseError(f"run.device = {device!r}, but this machine has {found} CUDA GPU(s)")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise DenseError(f"run.device = {device!r}, but MPS is not available here")
    return resolved


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def mean_over_processes(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of ``tensor`` over all processes (``tensor`` itself in a single process)."""
    if not is_distributed():
        return tensor
    total = tensor.clone()
    all_reduce_sum(total)
    return total / dist.get_world_size()


def all_reduce_sum(tensor: torch.Tensor) -> None:
    """Sum ``tensor`` in place over all processes (moving through the backend's device)."""
    if not is_distributed():
        return
    if dist.get_backend() == "nccl":
        on_device = tensor.cuda()
        dist.all_reduce(on_device)
        tensor.copy_(on_device.cpu())
    else:
        dist.all_reduce(tensor)


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Give every process rank 0's buffers (BatchNorm statistics drift apart between the
    forward passes where DDP re-broadcasts them)."""
    if not is_distributed():
        return
    for buffer in module.buffers():
        dist.broadcast(buffer, src=0)


def bf16_autocast(amp: str, device: torch.device) -> bool:
    """Whether ``train.amp`` trains under bf16 autocast on ``device``: ``bf16`` always, ``off``
    never, ``auto`` on CUDA and on CPUs with native bf16 kernels (float32 elsewhere)."""
    if amp == "auto":
        return device.type == "cuda" or (device.type == "cpu" and native_bf16())
    return amp == "bf16"


def channels_last(setting: bool | str, bf16: bool) -> bool:
    """Whether ``train.channels_last`` keeps memory NHWC: ``auto`` when training in bf16
    (where oneDNN's and cuDNN's NHWC kernels are faster; in float32 on the CPU it is not)."""
    return bf16 if setting == "auto" else bool(setting)


def precision_name(bf16: bool) -> str:
    """How a run's log names its precision."""
    return "bf16" if bf16 else "float32"


def native_bf16() -> bool:
    """Whether this CPU has bf16 kernels (oneDNN on AVX-512 BF16 or AMX); without them bf16
    autocast falls back to PyTorch's reference convolutions."""
    return bool(
        torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )
