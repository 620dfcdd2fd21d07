"""Training throughput of our U-Net against diffusers' UNet2DModel at equal size, side by side in one run.

Each model is timed in every mode (fp32, bf16 autocast, channels-last, torch.compile) on the same
batch; we report images/s and achieved GFLOP/s (forward + backward FLOPs counted by
torch.utils.flop_counter), and a 3×3 convolution's fwd+bwd GFLOP/s as the CPU ceiling.
diffusers is NOT a dependency of ddpm: install it only in the benchmark's environment:

    python3 -m venv bench/.venv && bench/.venv/bin/pip install torch==2.13.0 diffusers -e .
    bench/.venv/bin/python bench/train_throughput.py [--batch 128] [--modes fp32,bf16,cl,compile]

Models: diffusers' UNet2DModel as its MNIST tutorials build it, ours with the same layout (equal FLOPs:
a kernel-for-kernel comparison) and ours as the mnist presets build it (2×2 patches folded into channels,
two levels at 14 and 7 px: fewer FLOPs for the same parameter count). Both of ours are sized to the
diffusers model's parameter count. Each row runs in its own process, so its peak RSS is its own.
"""
from __future__ import annotations

import argparse
import platform
import resource
import subprocess
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from ddpm.nets import UNet, UNetConfig


def ours(base: int) -> torch.nn.Module:
    """Our U-Net with the same layout as the diffusers model below: 3 levels at 28/14/7, attention at 7."""
    return UNet(UNetConfig(image_size=28, base_channels=base, channel_mults=(1, 2, 2), num_res_blocks=2,
                           attention_resolutions=(7,), head_channels=64, dropout=0.0))


def ours_patch2(base: int) -> torch.nn.Module:
    """Our U-Net as the mnist presets build it: 2×2 patches folded into channels, 2 levels at 14/7."""
    return UNet(UNetConfig(image_size=28, base_channels=base, channel_mults=(1, 2), num_res_blocks=1,
                           attention_resolutions=(7,), dropout=0.0, patch_size=2))


def equal_size(make, n_params: int) -> int:
    """The base width whose model is closest to n_params parameters."""
    return min(range(16, 129, 4), key=lambda b: abs(sum(p.numel() for p in make(b).parameters()) - n_params))


class DiffusersWrapper(torch.nn.Module):
    def __init__(self):
        super().__init__()
        from diffusers import UNet2DModel

        # A 28-px MNIST U-Net as diffusers' tutorials build it: 3 levels, attention at the lowest one.
        self.net = UNet2DModel(sample_size=28, in_channels=1, out_channels=1, layers_per_block=2,
                               block_out_channels=(32, 64, 64), norm_num_groups=8,
                               down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                               up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"))

    def forward(self, x, t):
        return self.net(x, t).sample


def count_flops(model, x, t) -> float:
    with FlopCounterMode(display=False) as counter:
        model(x, t).float().pow(2).mean().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def time_training(model, x, t, precision: str, steps: int) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    dtype = torch.bfloat16 if precision == "bf16" else None
    times = []
    for i in range(steps + 2):  # two warm-up steps (compile happens there)
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = (model(x, t).float() - x).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    times = sorted(times[2:])
    return x.shape[0] / times[len(times) // 2]


def conv_ceiling(batch: int) -> float:
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(memory_format=torch.channels_last)
    x = torch.randn(batch, 64, 28, 28).contiguous(memory_format=torch.channels_last).requires_grad_()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        conv(x).sum().backward()
        best = min(best, time.perf_counter() - start)
    return 3 * 2 * batch * 64 * 64 * 9 * 28 * 28 / best / 1e9


def models() -> dict:
    """name → constructor, our two layouts sized to the diffusers model's parameter count."""
    n_ref = sum(p.numel() for p in DiffusersWrapper().parameters())
    base, base_p2 = equal_size(ours, n_ref), equal_size(ours_patch2, n_ref)
    return {"diffusers UNet2DModel": DiffusersWrapper,
            f"ddpm UNet, same layout (base {base})": lambda: ours(base),
            f"ddpm UNet, patch 2 (base {base_p2})": lambda: ours_patch2(base_p2)}


def measure(name: str, mode: str, batch: int, steps: int) -> str:
    """One table row; run in a fresh process so that its peak RSS is its own."""
    torch.manual_seed(0)
    model = models()[name]()
    x = torch.randn(batch, 1, 28, 28)
    t = torch.randint(0, 1000, (batch,))
    if "cl" in mode:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    flops = count_flops(model, x, t) / batch
    run = torch.compile(model) if "compile" in mode else model
    rate = time_training(run, x, t, "bf16" if "bf16" in mode else "fp32", steps)
    n = sum(p.numel() for p in model.parameters())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return f"| {name} | {n / 1e6:.2f}M | {mode} | {rate:.1f} | {flops / 1e9:.3f} | {rate * flops / 1e9:.0f} | {peak:.0f} |"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--modes", default="fp32,bf16,cl,cl+bf16,compile")
    ap.add_argument("--only", nargs=2, metavar=("MODEL", "MODE"), help=argparse.SUPPRESS)  # one row, in a child
    args = ap.parse_args()
    if args.only:
        print(measure(*args.only, args.batch, args.steps))
        return
    print(f"# {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, batch {args.batch}, 28×28")
    print(f"# 3×3 conv 64→64 fwd+bwd ceiling: {conv_ceiling(args.batch):.0f} GFLOP/s (fp32, channels-last)")
    print("| model | params | mode | images/s | GFLOP/img (fwd+bwd) | GFLOP/s | peak RSS (MB) |")
    print("|---|---|---|---|---|---|---|")
    for name in models():
        for mode in args.modes.split(","):
            child = [sys.executable, __file__, "--only", name, mode, "--batch", str(args.batch), "--steps", str(args.steps)]
            print(subprocess.run(child, check=True, capture_output=True, text=True).stdout.strip(), flush=True)


if __name__ == "__main__":
    main()
