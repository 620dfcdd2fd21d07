"""Does a guidance interval remove the grey backgrounds of guided MNIST samples? (issue 14)

    .venv/bin/python bench/guidance_interval.py RUN [--num 500] [--intervals 0:1,0:0.6,0.2:1,0.1:0.6] [--weight 2]

For a class-conditional run, draws ``--num`` samples (labels cycling 0..9, the same seeds for every setting)
with the run's sampler and steps: unguided (w = 0), then guided with w = ``--weight`` in each interval (as
fractions of T). Per setting: the background level (the mean of each sample's darker half of pixels, 0..255;
MNIST's own test digits measured the same way for reference), the share of samples the shipped MNIST classifier
reads as the asked digit (± binomial standard error) and the classifier FID against the MNIST test split,
with the sampling time.
"""
from __future__ import annotations

import argparse
import time

import torch

from ddpm.data import load_dataset
from ddpm.generate import generate, labels_for
from ddpm.metrics.domain import DomainFeatures
from ddpm.metrics.fid import dataset_stats
from ddpm.metrics.frechet import FeatureStats, frechet_distance
from ddpm.models import build_schedule, load_model


def background(images: torch.Tensor) -> float:
    """Mean over samples of the mean of each sample's darker half of pixels (uint8 [N, 1, H, W] → 0..255)."""
    flat = images.flatten(1).float().sort(dim=1).values
    return flat[:, : flat.shape[1] // 2].mean().item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--num", type=int, default=500)
    ap.add_argument("--weight", type=float, default=2.0)
    ap.add_argument("--intervals", default="0:1,0:0.6,0.2:1,0.1:0.6")
    args = ap.parse_args()
    model, config, step = load_model(args.run)
    schedule = build_schedule(config)
    labels = labels_for(config.model.num_classes, args.num)
    shape = (config.data.channels, config.data.image_size, config.data.image_size)
    domain = DomainFeatures("mnist")
    reference = dataset_stats("mnist:test", domain)
    test = load_dataset("mnist", split="test")
    print(f"run {args.run} (step {step}), {config.sample.sampler} {config.sample.steps} steps, {args.num} samples, "
          f"MNIST test background level {background(test.images[:args.num]):.1f}")
    print("| w | interval (t/T) | background (0..255) | asked digit | classifier FID | sampling s |\n|---|---|---|---|---|---|")
    settings = [(0.0, (0.0, 1.0))] + [(args.weight, tuple(float(v) for v in iv.split(":"))) for iv in args.intervals.split(",")]
    for weight, interval in settings:
        started = time.time()
        images = generate(model, schedule, num=args.num, shape=shape, sampler=config.sample.sampler, steps=config.sample.steps,
                          labels=labels, guidance=weight, guidance_interval=interval, seed=0, batch_size=250)
        seconds = time.time() - started
        feats, logits = domain.classify(images)
        asked = (logits.argmax(1) == labels).double().mean().item()
        se = (asked * (1 - asked) / args.num) ** 0.5
        fid = frechet_distance(FeatureStats.from_features(feats, domain.feature, "samples"), reference)
        print(f"| {weight:g} | [{interval[0]:g}, {interval[1]:g}] | {background(images):.1f} | {100 * asked:.1f}% ± {100 * se:.1f} | "
              f"{fid:.2f} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
