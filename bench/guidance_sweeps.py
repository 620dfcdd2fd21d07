"""How guidance steers an MNIST model, measured with the shipped MNIST classifier (issue 14).

    .venv/bin/python bench/guidance_sweeps.py cfg RUN [--weights 0,0.5,1,2,4] [--intervals 0:1,0.2:1] [--num 500]
    .venv/bin/python bench/guidance_sweeps.py classifier RUN CLF [--scales 0,0.5,1,2,4,8] [--num 500]
    .venv/bin/python bench/guidance_sweeps.py mixture RUN [--pairs 3:5,1:7,0:6] [--weights 0,2] [--num 500] [--picture P.png]

Every setting draws ``--num`` samples with the same seeds (labels cycling 0..9) and the run's sampler and steps:
- ``cfg``: classifier-free guidance of a class- or onehot-context-conditional run at each weight w, in each guidance
  interval (fractions of T);
- ``classifier``: classifier guidance of RUN (unconditional or not) by the noise-aware classifier CLF at each scale s;
- ``mixture``: a onehot-context run asked for the 50/50 mixture of two digits' contexts: how many samples read as
  either digit, as each, and as something else.
Per setting: the share read as the asked digit (± binomial standard error), the classifier FID against the MNIST
test split (128-d features of the same classifier, its diversity measure), the background level (the mean of each
sample's darker half of pixels, 0..255; MNIST's own test digits measured the same way for reference) and the
sampling time.
"""
from __future__ import annotations

import argparse
import time

import torch

from ddpm.data import load_dataset
from ddpm.conditioning import labels_for, one_hot
from ddpm.denoiser import Denoiser
from ddpm.generation import generate
from ddpm.metrics.domain import DomainFeatures
from ddpm.metrics.fid import dataset_stats
from ddpm.metrics.frechet import FeatureStats, frechet_distance
from ddpm.models import load_classifier


def background(images: torch.Tensor) -> float:
    """Mean over samples of the mean of each sample's darker half of pixels (uint8 [N, 1, H, W] → 0..255)."""
    flat = images.flatten(1).float().sort(dim=1).values
    return flat[:, : flat.shape[1] // 2].mean().item()


def share(hit: torch.Tensor) -> str:
    p = hit.double().mean().item()
    return f"{100 * p:.1f}% ± {100 * (p * (1 - p) / len(hit)) ** 0.5:.1f}"


class Scorer:
    def __init__(self):
        self.domain = DomainFeatures("mnist")
        self.reference = dataset_stats("mnist:test", self.domain)

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, float]:
        """(the digits read [N], classifier FID)."""
        feats, logits = self.domain.classify(images)
        return logits.argmax(1), frechet_distance(FeatureStats.from_features(feats, self.domain.feature, "samples"), self.reference)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=("cfg", "classifier", "mixture"))
    ap.add_argument("run")
    ap.add_argument("classifier", nargs="?")
    ap.add_argument("--num", type=int, default=500)
    ap.add_argument("--weights", default="0,0.5,1,2,4")
    ap.add_argument("--intervals", default="0:1")
    ap.add_argument("--scales", default="0,0.5,1,2,4,8")
    ap.add_argument("--pairs", default="3:5,1:7,0:6")
    ap.add_argument("--picture", help="mixture: save one grid row per pair and weight here")
    args = ap.parse_args()
    denoiser = Denoiser.from_pretrained(args.run)
    config, step, s = denoiser.config, denoiser.step, denoiser.config.sample
    plan = denoiser.plan(guidance=0.0)
    score = Scorer()
    test = load_dataset("mnist", split="test")
    print(f"run {args.run} (step {step}), {s.sampler} {s.steps} steps, {args.num} samples per row, seed 0; MNIST test "
          f"background level {background(test.images[:args.num]):.1f}")
    weights = [float(w) for w in args.weights.split(",")]

    def timed(**options) -> tuple[torch.Tensor, float]:
        started = time.time()
        return generate(denoiser, plan.replace(**options), args.num, seed=0, batch_size=250), time.time() - started

    if args.mode in ("cfg", "classifier"):
        labels = labels_for(10, args.num)
        if args.mode == "cfg":
            intervals = [tuple(float(v) for v in iv.split(":")) for iv in args.intervals.split(",")]
            settings = [(f"w = {w:g}", f"[{lo:g}, {hi:g}]", dict(guidance=w, guidance_interval=(lo, hi)))
                        for lo, hi in intervals for w in weights if w or (lo, hi) == intervals[0]]  # w = 0 once
        else:
            classifier = load_classifier(args.classifier, config)
            settings = [(f"s = {v:g}", "", dict(classifier=classifier, classifier_scale=v)) for v in map(float, args.scales.split(","))]
        print("| setting | interval (t/T) | asked digit | classifier FID | background | sampling s |\n|---|---|---|---|---|---|")
        for name, interval, options in settings:
            images, seconds = timed(labels=labels, **options)
            read, fid = score(images)
            print(f"| {name} | {interval} | {share(read == labels)} | {fid:.1f} | {background(images):.1f} | {seconds:.0f} |", flush=True)
        return
    rows = []
    print("| pair | w | read as either | as the first | as the second | other | classifier FID |\n|---|---|---|---|---|---|---|")
    for pair in args.pairs.split(","):
        a, b = (int(v) for v in pair.split(":"))
        mix = 0.5 * one_hot(torch.tensor([a]), config.model.context_dim) + 0.5 * one_hot(torch.tensor([b]), config.model.context_dim)
        for w in weights:
            images, _ = timed(contexts=mix, guidance=w)
            read, fid = score(images)
            rows.append(images[:10])
            either = (read == a) | (read == b)
            print(f"| {a} + {b} | {w:g} | {share(either)} | {share(read == a)} | {share(read == b)} | {share(~either)} | {fid:.1f} |",
                  flush=True)
    if args.picture:
        from ddpm.viz.images import save_grid

        save_grid(torch.cat(rows), args.picture, nrow=10, scale=2)


if __name__ == "__main__":
    main()
