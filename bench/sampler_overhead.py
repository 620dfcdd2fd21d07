"""Sampler overhead: the time a sampler spends outside the model call, against a small U-Net's forward pass.

Each sampler runs twice from the same x_T: once with the U-Net and once with a model that returns a
precomputed tensor (cost ≈ 0). overhead = t(null model) / t(U-Net); the model call count is identical.
Run: .venv/bin/python bench/sampler_overhead.py
"""
from __future__ import annotations

import platform
import time

import torch

from ddpm import NoiseSchedule, rng, sample
from ddpm.nets import UNet, UNetConfig


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    torch.manual_seed(0)
    cfg = UNetConfig(image_size=28, base_channels=32, channel_mults=(1, 2, 2), num_res_blocks=1, attention_resolutions=(7,), dropout=0.0)
    unet = UNet(cfg).eval()
    schedule = NoiseSchedule.from_name("linear", 1000)
    batch = 64
    x_T = torch.randn(batch, 1, 28, 28)
    canned = torch.randn_like(x_T) * 0.1

    def null_model(x, t):
        return canned

    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"U-Net {sum(p.numel() for p in unet.parameters()) / 1e6:.2f}M params, batch {batch}, 28×28")
    print("| sampler | steps | noise | with U-Net (s) | null model (s) | overhead |")
    print("|---|---|---|---|---|---|")
    one = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    per_sample = lambda: rng.SampleNoise(0, range(batch))  # noqa: E731  (what generate() uses)
    for sampler, steps, noise, g in [("ddpm", 100, "one generator", one), ("ddpm", 100, "per-sample streams", per_sample),
                                     ("ddim", 50, "one generator", one), ("dpm-solver++", 20, "one generator", one)]:
        with torch.inference_mode(False):
            t_unet = best_of(lambda: sample(unet, schedule, x_T, sampler=sampler, steps=steps, generator=g()), repeats=2)
            t_null = best_of(lambda: sample(null_model, schedule, x_T, sampler=sampler, steps=steps, generator=g()), repeats=5)
        print(f"| {sampler} | {steps} | {noise} | {t_unet:.3f} | {t_null:.4f} | {100 * t_null / t_unet:.2f}% |")


if __name__ == "__main__":
    main()
