"""Training throughput of our U-Net against diffusers' UNet2DModel at equal size, side by side in one run.

Each model is timed in every mode (fp32, bf16 autocast, channels-last, torch.compile) on the same
batch; we report images/s and achieved GFLOP/s (forward + backward FLOPs counted by
torch.utils.flop_counter), and a 3×3 convolution's fwd+bwd GFLOP/s as the CPU ceiling.
diffusers is NOT a dependency of ddpm: install it only in the benchmark's environment:

    python3 -m venv bench/.venv && bench/.venv/bin/pip install torch==2.13.0 diffusers -e .
    bench/.venv/bin/python bench/train_throughput.py [--batch 128] [--modes fp32,bf16,cl,compile]
"""
from __future__ import annotations

import argparse
import platform
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from ddpm.nets import UNet, UNetConfig


def ours(base: int) -> torch.nn.Module:
    return UNet(UNetConfig(image_size=28, base_channels=base, channel_mults=(1, 2, 2), num_res_blocks=2,
                           attention_resolutions=(7,), head_channels=64, dropout=0.0))


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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--modes", default="fp32,bf16,cl,cl+bf16,compile")
    args = ap.parse_args()
    torch.manual_seed(0)
    reference = DiffusersWrapper()
    n_ref = sum(p.numel() for p in reference.parameters())
    base = min(range(16, 129, 4), key=lambda b: abs(sum(p.numel() for p in ours(b).parameters()) - n_ref))
    x = torch.randn(args.batch, 1, 28, 28)
    t = torch.randint(0, 1000, (args.batch,))
    print(f"# {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, batch {args.batch}, 28×28")
    print(f"# 3×3 conv 64→64 fwd+bwd ceiling: {conv_ceiling(args.batch):.0f} GFLOP/s (fp32, channels-last)")
    print("| model | params | mode | images/s | GFLOP/img (fwd+bwd) | GFLOP/s |")
    print("|---|---|---|---|---|---|")
    for name, make in [("diffusers UNet2DModel", DiffusersWrapper), (f"ddpm UNet (base {base})", lambda: ours(base))]:
        for mode in args.modes.split(","):
            torch.manual_seed(0)
            model = make()
            xx = x
            if "cl" in mode:
                model = model.to(memory_format=torch.channels_last)
                xx = x.contiguous(memory_format=torch.channels_last)
            flops = count_flops(model, xx, t) / args.batch
            run = torch.compile(model) if "compile" in mode else model
            rate = time_training(run, xx, t, "bf16" if "bf16" in mode else "fp32", args.steps)
            n = sum(p.numel() for p in model.parameters())
            print(f"| {name} | {n / 1e6:.2f}M | {mode} | {rate:.1f} | {flops / 1e9:.3f} | {rate * flops / 1e9:.0f} |", flush=True)


if __name__ == "__main__":
    main()
