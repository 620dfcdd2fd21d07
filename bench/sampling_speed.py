"""Sampling wall time and peak memory: our samplers on our U-Net, and diffusers' DDPM pipeline on its
UNet2DModel of equal size, on the same CPU in one run.

A DDPM step costs one network forward plus a few tensor ops whatever the step count, so each sampler is
timed on --steps-measured steps and also reported scaled to its nominal count (marked "scaled").
    bench/.venv/bin/python bench/sampling_speed.py [--batches 64,1000]
"""
from __future__ import annotations

import argparse
import platform
import resource
import time

import torch

from ddpm import NoiseSchedule, sample
from train_throughput import DiffusersWrapper, ours


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@torch.inference_mode()
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", default="64,1000")
    ap.add_argument("--measure", type=int, default=10, help="steps actually run for the 1000-step DDPM rows")
    args = ap.parse_args()
    torch.manual_seed(0)
    reference = DiffusersWrapper().eval()
    n_ref = sum(p.numel() for p in reference.parameters())
    base = min(range(16, 129, 4), key=lambda b: abs(sum(p.numel() for p in ours(b).parameters()) - n_ref))
    net = ours(base).eval()
    schedule = NoiseSchedule.from_name("linear", 1000)
    print(f"# {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"ours {sum(p.numel() for p in net.parameters()) / 1e6:.2f}M, diffusers {n_ref / 1e6:.2f}M parameters")
    print("| batch | what | steps | seconds | s per 64 images | peak RSS (MB) |")
    print("|---|---|---|---|---|---|")
    for batch in map(int, args.batches.split(",")):
        x_T = torch.randn(batch, 1, 28, 28)
        t_warm = torch.full((batch,), 500)
        for _ in range(2):  # warm both models up (oneDNN builds its kernels on the first calls)
            net(x_T, t_warm), reference(x_T, t_warm)
        rows = [("ours ddpm", "ddpm", 1000, args.measure), ("ours ddim", "ddim", 50, 50), ("ours dpm-solver++", "dpm-solver++", 20, 20)]
        for label, sampler, nominal, measured in rows:
            start = time.perf_counter()
            if measured == nominal:
                sample(net, schedule, x_T, sampler=sampler, steps=nominal, generator=torch.Generator().manual_seed(0))
            else:  # the first `measured` steps of the full ancestral chain, then scale
                short = schedule.respace(list(range(1000 - measured, 1000)))
                sample(net, short, x_T, sampler=sampler, generator=torch.Generator().manual_seed(0))
            seconds = (time.perf_counter() - start) * nominal / measured
            tag = "" if measured == nominal else f" (scaled from {measured})"
            print(f"| {batch} | {label} | {nominal} | {seconds:.1f}{tag} | {seconds * 64 / batch:.1f} | {peak_rss_mb():.0f} |", flush=True)
        from diffusers import DDPMScheduler

        sched = DDPMScheduler(num_train_timesteps=1000)
        sched.set_timesteps(1000)
        x = x_T.clone()
        start = time.perf_counter()
        for t in sched.timesteps[: args.measure]:
            x = sched.step(reference(x, t.expand(batch)), t, x).prev_sample
        seconds = (time.perf_counter() - start) * 1000 / args.measure
        print(f"| {batch} | diffusers DDPMScheduler + UNet2DModel | 1000 | {seconds:.1f} (scaled from {args.measure}) | "
              f"{seconds * 64 / batch:.1f} | {peak_rss_mb():.0f} |", flush=True)


if __name__ == "__main__":
    main()
