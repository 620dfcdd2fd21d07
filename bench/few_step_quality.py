"""Few-step samplers against ancestral DDPM on a trained run, judged by the shipped domain classifier.

For each sampler setting, guidance weight and seed: ``--num`` samples (labels 0…9 in turn for a conditional
run), scored by the MNIST classifier that ``ddpm eval --domain`` uses: the share read with confidence ≥ 0.9
(± its binomial standard error √(p(1−p)/N)) and the classifier FID against the test split's statistics
(its seed-to-seed spread is the noise to compare against). Settings: ancestral DDPM at 250 steps (the
reference), DPM-Solver++ at 20 evaluations and DDIM (η = 0) at 50, each on the shipped grid (from
``sampling_start``, λ ≥ −5.1) and, for the deterministic ones, on the grid from T−1 (before issue 12).

    .venv/bin/python bench/few_step_quality.py runs/demo [--num 400] [--seeds 0,1] [--guidance 0,2]
"""
from __future__ import annotations

import argparse
import time

import torch

from ddpm import rng
from ddpm.data import to_uint8
from ddpm.guidance import ClassifierFreeGuidance
from ddpm.metrics.domain import DomainFeatures, domain_scores
from ddpm.metrics.fid import dataset_stats
from ddpm.metrics.frechet import FeatureStats, frechet_distance
from ddpm.models import build_schedule, load_model
from ddpm.sampling import sample
from ddpm.schedules import sampling_start, spaced_timesteps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("--num", type=int, default=400)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--guidance", default="0,2")
    parser.add_argument("--batch-size", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    model, config, step = load_model(args.run)
    schedule = build_schedule(config)
    T, abar = schedule.num_timesteps, schedule.alphas_cumprod
    shape = (config.data.channels, config.data.image_size, config.data.image_size)
    domain = DomainFeatures(config.data.dataset)
    reference = dataset_stats(f"{config.data.dataset}:test", domain, data_dir=config.data.data_dir,
                              image_size=config.data.image_size, channels=config.data.channels)
    print(f"run {args.run} (step {step}), {args.num} samples per row, classifier {domain.info}; reference {reference.source}")
    settings = [("ddpm", 250, "uniform", "shipped"), ("dpm-solver++", 20, "logsnr", "shipped"), ("ddim", 50, "uniform", "shipped"),
                ("dpm-solver++", 20, "logsnr", "from T−1"), ("ddim", 50, "uniform", "from T−1")]
    print("| sampler | evaluations | grid | guidance w | seed | readable (p ≥ 0.9) | classifier FID | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for w in [float(v) for v in args.guidance.split(",")]:
        net = ClassifierFreeGuidance(model, w, null_label=config.model.num_classes) if w else model
        for sampler, steps, spacing, grid_name in settings:
            last = sampling_start(abar, steps) if grid_name == "shipped" else T - 1
            grid = spaced_timesteps(T, steps, spacing, abar, last)
            for seed in [int(v) for v in args.seeds.split(",")]:
                started = time.time()
                out = []
                for start in range(0, args.num, args.batch_size):
                    stop = min(start + args.batch_size, args.num)
                    noise = rng.SampleNoise(seed, range(start, stop))
                    x_T = rng.randn((stop - start, *shape), noise)
                    cond = {"y": torch.arange(start, stop) % config.model.num_classes} if config.model.num_classes else None
                    x0 = sample(net, schedule, x_T, sampler=sampler, timesteps=grid, clip_x0=True, cond=cond, generator=noise,
                                prediction=config.diffusion.prediction)
                    out.append(to_uint8(x0))
                images = torch.cat(out)
                feats, logits = domain.classify(images)
                p = domain_scores(logits).confident
                fid = frechet_distance(FeatureStats.from_features(feats, domain.feature, "samples"), reference)
                se = (p * (1 - p) / len(images)) ** 0.5
                print(f"| {sampler} | {steps} | {grid_name} (from t = {grid[-1]}) | {w:g} | {seed} | {100 * p:.1f}% ± {100 * se:.1f} "
                      f"| {fid:.2f} | {time.time() - started:.0f} |", flush=True)


if __name__ == "__main__":
    main()
