"""Sampling wall time and peak memory: our samplers on our U-Nets, and diffusers' DDPM pipeline on its
UNet2DModel of equal size, on the same CPU in one run (the models of bench/train_throughput.py).

A DDPM step costs one network forward plus a few tensor ops whatever the step count, so the 1000-step
rows are timed on their first --measure steps and scaled ×1000/measure (marked "scaled"). Each row runs in
its own process, so its peak RSS is its own (PyTorch itself is ≈ 300 MB of it).
    bench/.venv/bin/python bench/sampling_speed.py [--batches 64,1000]
"""
from __future__ import annotations

import argparse
import platform
import resource
import subprocess
import sys
import time

import torch

from ddpm import NoiseSchedule, sample
from train_throughput import models

SAME, PATCH, DIFFUSERS = "ddpm UNet, same layout", "ddpm UNet, patch 2", "diffusers UNet2DModel"
# (model, sampler, nominal steps); the diffusers row uses its own DDPMScheduler
ROWS = [(PATCH, "ddpm", 1000), (PATCH, "ddim", 50), (PATCH, "dpm-solver++", 20),
        (SAME, "ddpm", 1000), (DIFFUSERS, "ddpm", 1000)]


@torch.inference_mode()
def measure(model_prefix: str, sampler: str, nominal: int, batch: int, measure_steps: int) -> str:
    torch.manual_seed(0)
    name, make = next((n, m) for n, m in models().items() if n.startswith(model_prefix))
    net = make().eval()
    schedule = NoiseSchedule.from_name("linear", 1000)
    x_T = torch.randn(batch, 1, 28, 28)
    for _ in range(2):  # oneDNN builds its kernels on the first calls
        net(x_T, torch.full((batch,), 500))
    measured = measure_steps if nominal == 1000 else nominal
    start = time.perf_counter()
    if model_prefix == DIFFUSERS:
        from diffusers import DDPMScheduler

        sched = DDPMScheduler(num_train_timesteps=1000)
        sched.set_timesteps(1000)
        x = x_T
        for t in sched.timesteps[:measured]:
            x = sched.step(net(x, t.expand(batch)), t, x).prev_sample
    elif measured == nominal:
        sample(net, schedule, x_T, sampler=sampler, steps=nominal, generator=torch.Generator().manual_seed(0))
    else:  # the first `measured` steps of the full ancestral chain
        sample(net, schedule.respace(list(range(1000 - measured, 1000))), x_T, sampler=sampler,
               generator=torch.Generator().manual_seed(0))
    seconds = (time.perf_counter() - start) * nominal / measured
    tag = "" if measured == nominal else f" (scaled from {measured})"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n = sum(p.numel() for p in net.parameters())
    return f"| {batch} | {name} ({n / 1e6:.2f}M) | {sampler} | {nominal} | {seconds:.1f}{tag} | {seconds * 64 / batch:.1f} | {peak:.0f} |"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", default="64,1000")
    ap.add_argument("--measure", type=int, default=10, help="steps actually run for the 1000-step DDPM rows")
    ap.add_argument("--samplers", default="ddpm,ddim,dpm-solver++", help="only these samplers' rows")
    ap.add_argument("--models", default="patch,same,diffusers", help="only these models' rows")
    ap.add_argument("--only", nargs=4, metavar=("MODEL", "SAMPLER", "STEPS", "BATCH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.only:
        model, sampler, steps, batch = args.only
        print(measure(model, sampler, int(steps), int(batch), args.measure))
        return
    print(f"# {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print("| batch | model | sampler | steps | seconds | s per 64 images | peak RSS (MB) |")
    print("|---|---|---|---|---|---|---|")
    for batch in args.batches.split(","):
        for model, sampler, steps in ROWS:
            key = {PATCH: "patch", SAME: "same", DIFFUSERS: "diffusers"}[model]
            if sampler not in args.samplers.split(",") or key not in args.models.split(","):
                continue
            child = [sys.executable, __file__, "--only", model, sampler, str(steps), batch, "--measure", str(args.measure)]
            print(subprocess.run(child, check=True, capture_output=True, text=True).stdout.strip(), flush=True)


if __name__ == "__main__":
    main()
