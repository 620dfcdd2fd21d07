"""The GPU path: training steps/s of the DDPM paper's 35.7M CIFAR-10 model (the ``cifar10`` preset) at batch 128
in each mode up to ``ddpm train --fast``, sampling img·NFE/s, peak memory and Inception features/s, with
diffusers' UNet2DModel of the same size in its fastest mode beside it where it is installed.

    .venv/bin/python bench/gpu.py [--device cuda] [--batch 128] [--steps 50] [--modes fp32,tf32,bf16,bf16+cl,fast]

Each mode is the real training step (``ddpm.train.step.train_step``: loss, backward, clipping, AdamW, EMA) on
random CIFAR-shaped data held on the device, timed after ``--warmup`` steps (torch.compile's compilation is in
the warm-up, and reported separately). The DDPM paper trained at 21 steps/s on a TPU v3-8 (batch 128): the
target for one H100. On a CPU (``--device cpu --batch 4 --steps 2``) it only checks that every path runs.
diffusers is not a dependency of ddpm: ``pip install diffusers`` in the benchmark's environment to get its row.
"""
from __future__ import annotations

import argparse
import copy
import json
import time

import torch

from ddpm.config import RunConfig
from ddpm.models import build_model, build_schedule
from ddpm.train.step import train_step

MODES = {  # train.* settings of each mode; "fast" is what ``ddpm train --fast`` sets
    "fp32": {},
    "tf32": {"tf32": True},
    "bf16": {"precision": "bf16", "tf32": True},
    "bf16+cl": {"precision": "bf16", "tf32": True, "channels_last": True},
    "fast": {"precision": "bf16", "tf32": True, "channels_last": True, "compile": True},
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def config_for(mode: str, batch: int) -> RunConfig:
    config = RunConfig.from_toml("cifar10").with_overrides([f"train.batch_size={batch}"])
    config = config.with_overrides([f"train.{k}={json.dumps(v)}" for k, v in MODES[mode].items()])
    return config.resolved(32, 3, None)


def time_training(mode: str, args, device: torch.device) -> dict:
    config = config_for(mode, args.batch)
    t = config.train
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = t.tf32
    model = build_model(config).to(device)
    if t.channels_last:
        model = model.to(memory_format=torch.channels_last)
    ema = copy.deepcopy(model).requires_grad_(False)
    net = torch.compile(model) if t.compile else model
    schedule = build_schedule(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=t.lr)
    scaler = torch.amp.GradScaler(device.type, enabled=t.precision == "fp16")
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.rand((args.batch, 3, 32, 32), device=device) * 2 - 1
    if t.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    for step in range(args.warmup):
        train_step(net, ema, optimizer, scaler, schedule, x, None, config=config, step=step, noise_gen=gen)
    sync(device)
    warmup_s = time.perf_counter() - started
    started = time.perf_counter()
    for step in range(args.steps):
        train_step(net, ema, optimizer, scaler, schedule, x, None, config=config, step=args.warmup + step, noise_gen=gen)
    sync(device)
    elapsed = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return {"mode": mode, "steps_s": args.steps / elapsed, "img_s": args.steps * args.batch / elapsed, "warmup_s": warmup_s,
            "peak_gib": peak}


@torch.no_grad()
def time_sampling(args, device: torch.device) -> dict:
    """img·NFE/s of the EMA network's forward (what every sampler's step costs), fp32 and bf16 autocast."""
    config = config_for("fp32", args.batch)
    model = build_model(config).to(device).eval()
    x = torch.randn((args.batch, 3, 32, 32), device=device)
    t = torch.full((args.batch,), 500, device=device)
    out = {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            model(x, t)
            sync(device)
            started = time.perf_counter()
            for _ in range(args.steps):
                model(x, t)
            sync(device)
        out[f"sample_{name}_img_nfe_s"] = args.steps * args.batch / (time.perf_counter() - started)
    return out


def time_inception(args, device: torch.device) -> dict:
    from ddpm.metrics.inception import InceptionFeatures

    extractor = InceptionFeatures(device=device, batch_size=args.batch)
    images = torch.randint(0, 256, (max(args.batch, 64), 3, 32, 32), dtype=torch.uint8)
    extractor(images[: args.batch])
    sync(device)
    started = time.perf_counter()
    extractor(images)
    sync(device)
    return {"inception_img_s": len(images) / (time.perf_counter() - started)}


def time_diffusers(args, device: torch.device) -> dict | None:
    """diffusers' UNet2DModel at the DDPM CIFAR-10 layout (35.7M), bf16 autocast + channels-last + compile."""
    try:
        from diffusers import UNet2DModel
    except ImportError:
        return None
    model = UNet2DModel(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(128, 256, 256, 256),
                        layers_per_block=2, down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
                        up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D")).to(device)
    model = model.to(memory_format=torch.channels_last)
    step_fn = torch.compile(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-4)
    x = torch.randn((args.batch, 3, 32, 32), device=device).contiguous(memory_format=torch.channels_last)
    t = torch.randint(0, 1000, (args.batch,), device=device)

    def one() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = (step_fn(x, t).sample.float() - x).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(args.warmup):
        one()
    sync(device)
    started = time.perf_counter()
    for _ in range(args.steps):
        one()
    sync(device)
    elapsed = time.perf_counter() - started
    return {"mode": "diffusers UNet2DModel bf16+cl+compile", "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "steps_s": args.steps / elapsed, "img_s": args.steps * args.batch / elapsed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--modes", default=",".join(MODES))
    args = ap.parse_args()
    device = torch.device(args.device)
    print(f"device {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, torch {torch.__version__}, "
          f"batch {args.batch}, {args.steps} timed steps after {args.warmup}")
    print("| mode | steps/s | images/s | warm-up s | peak GiB |\n|---|---|---|---|---|")
    for mode in args.modes.split(","):
        r = time_training(mode, args, device)
        print(f"| {r['mode']} | {r['steps_s']:.2f} | {r['img_s']:.0f} | {r['warmup_s']:.1f} | {r['peak_gib']:.2f} |", flush=True)
    d = time_diffusers(args, device)
    print(f"| {d['mode']} ({d['params_m']:.1f}M) | {d['steps_s']:.2f} | {d['img_s']:.0f} | | |" if d else
          "diffusers not installed: no UNet2DModel row")
    print(time_sampling(args, device))
    print(time_inception(args, device))


if __name__ == "__main__":
    main()
