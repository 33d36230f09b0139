"""Does bf16 autocast pay on this CPU? Which convolution kernel it runs, and its speed.

PyTorch runs bf16 convolutions through oneDNN only where the CPU has bf16 instructions
(AVX-512 BF16 or AMX); elsewhere autocast falls back to the reference im2col kernel
(``_slow_conv2d``). This prints what oneDNN reports, the kernel each dtype takes and the time
of one 3×3 convolution's forward + backward at a ResNet-18 stage-2 size, float32 against bf16
autocast, in the same run.

    python experiments/benchmarks/bf16_kernels.py [--repeats N]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from dense.distributed import native_bf16
from dense.errors import run_script


def conv_step(x: torch.Tensor, w: torch.Tensor, bf16: bool) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        y = F.conv2d(x, w, padding=1)
    y.float().sum().backward()


def kernels(x: torch.Tensor, w: torch.Tensor, bf16: bool) -> list[str]:
    with torch.profiler.profile() as profile:
        conv_step(x, w, bf16)
    names = {event.key for event in profile.key_averages()}
    return sorted(n for n in names if "conv" in n and ("mkldnn" in n or "slow" in n))


def seconds(x: torch.Tensor, w: torch.Tensor, bf16: bool, repeats: int) -> float:
    conv_step(x, w, bf16)  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        conv_step(x, w, bf16)
    return (time.perf_counter() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    x = torch.randn(8, 64, 48, 64, requires_grad=True)
    w = torch.randn(64, 64, 3, 3, requires_grad=True)
    print(f"oneDNN available: {torch.backends.mkldnn.is_available()}")
    print(f"native bf16 kernels: {native_bf16()}")
    times = {}
    for name, bf16 in (("float32", False), ("bf16 autocast", True)):
        times[name] = seconds(x, w, bf16, args.repeats)
        print(f"{name:14s} {1000 * times[name]:8.1f} ms  kernels: {', '.join(kernels(x, w, bf16))}")
    print(f"bf16 ÷ float32 speed: {times['float32'] / times['bf16 autocast']:.2f}×")


if __name__ == "__main__":
    run_script(main)
