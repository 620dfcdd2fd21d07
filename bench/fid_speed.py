"""Inception feature extraction throughput (the cost of FID) against this machine's convolution ceiling.

    .venv/bin/python bench/fid_speed.py [--images 96] [--rounds 2] [--bf16]

Measures, in one run: the FLOPs of one Inception forward at 299×299 (counted by torch's FlopCounterMode),
the achieved GFLOP/s of a large 3×3 convolution (the ceiling) in both memory layouts, and the feature
throughput, side by side in interleaved rounds, of the shipped TorchScript graph (what ddpm ran before) and
of ddpm's eager port of it (contiguous, channels-last, batch 64, torch.compile; with --bf16 also bf16
autocast and the relative FID change it causes on real MNIST digits), each with its largest feature
difference from the TorchScript graph. Prints a Markdown table for BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from ddpm.data import load_dataset
from ddpm.metrics.frechet import FeatureStats, frechet_distance
from ddpm.metrics.inception import SIZE, InceptionFeatures, torchscript_port


def conv_ceiling(channels_last: bool, repeats: int = 3) -> float:
    x = torch.randn(32, 192, 35, 35)
    w = torch.randn(192, 192, 3, 3)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    flops = 2 * 32 * 192 * 192 * 9 * 35 * 35
    with torch.inference_mode():
        F.conv2d(x, w, padding=1)
        start = time.perf_counter()
        for _ in range(repeats):
            F.conv2d(x, w, padding=1)
    return flops * repeats / (time.perf_counter() - start) / 1e9


def inception_flops(net) -> float:
    x = torch.zeros(1, 3, SIZE, SIZE)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        net(x)
    return counter.get_total_flops()


def timed(extractor: InceptionFeatures, images: torch.Tensor, dtype=None) -> tuple[float, np.ndarray]:
    """Seconds to extract the features of ``images`` and the features, under autocast to ``dtype`` if given."""
    with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        start = time.perf_counter()
        feats = extractor(images)
        return time.perf_counter() - start, feats


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=2, help="timed passes over the images per network (best kept)")
    parser.add_argument("--bf16", action="store_true", help="also time bf16 autocast (slow where the CPU lacks native bf16)")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    test = load_dataset("mnist", split="test").images
    images = test[: args.images]
    ext = InceptionFeatures()
    flops = inception_flops(ext.net)
    print(f"Inception-v3 forward at 299×299: {flops / 1e9:.2f} GFLOP per image")
    rows = []
    for layout in (False, True):
        rows.append((f"3×3 conv 192→192 at 35×35, batch 32, {'channels-last' if layout else 'contiguous'}",
                     None, conv_ceiling(layout), None))
    eager = ext.net
    start = time.perf_counter()
    compiled = torch.compile(eager)
    with torch.inference_mode():
        compiled(torch.zeros(ext.batch_size, 3, SIZE, SIZE).contiguous(memory_format=torch.channels_last))
    print(f"torch.compile warm-up: {time.perf_counter() - start:.0f} s")
    # (name, network, batch, channels-last, autocast dtype); the first, the shipped graph frozen (what ddpm ran before
    # the eager port), is the reference for the features
    candidates = [("TorchScript graph (frozen), channels-last, batch 32 — before", torch.jit.freeze(torchscript_port()), 32, True, None),
                  ("eager port, contiguous, batch 32", eager, 32, False, None),
                  ("**eager port, channels-last, batch 32 — what ddpm uses**", eager, 32, True, None),
                  ("eager port, channels-last, batch 64", eager, 64, True, None),
                  ("eager port + torch.compile, channels-last, batch 32", compiled, 32, True, None)]
    if args.bf16:
        candidates.append(("eager port, bf16 autocast, channels-last, batch 32", eager, 32, True, torch.bfloat16))
    seconds = {name: [] for name, *_ in candidates}
    features = {}
    for _ in range(args.rounds):  # interleaved, so that a change in the machine's load hits every network alike
        for name, net, batch, channels_last, dtype in candidates:
            ext.net, ext.batch_size, ext.channels_last = net, batch, channels_last
            ext(images[:batch])  # warm-up at this batch size and layout
            s, features[name] = timed(ext, images, dtype)
            seconds[name].append(s)
    reference = features[candidates[0][0]]
    for name, *_ in candidates:
        ips = len(images) / min(seconds[name])
        rows.append((name, ips, ips * flops / 1e9, np.abs(features[name] - reference).max()))
    print("| what | images/s | GFLOP/s | max |Δ feature| vs TorchScript |\n|---|---|---|---|")
    for name, ips, gflops, delta in rows:
        print(f"| {name} | {'' if ips is None else f'{ips:.2f}'} | {gflops:.0f} | {'' if delta is None else f'{delta:.1e}'} |")
    before, after = (len(images) / min(seconds[candidates[i][0]]) for i in (0, 2))
    print(f"eager port / TorchScript graph: {after / before:.2f}× (best of {args.rounds} interleaved rounds of {args.images} images)")
    if args.bf16:  # does bf16 change the FID? both feature sets of A against fp32 features of other digits B
        ext.net, ext.batch_size, ext.channels_last = eager, 32, True
        b = FeatureStats.from_features(ext(test[5000:5000 + args.images]), "f")
        fid32 = frechet_distance(FeatureStats.from_features(features[candidates[2][0]], "f"), b)
        fid16 = frechet_distance(FeatureStats.from_features(features[candidates[-1][0]], "f"), b)
        print(f"FID of {args.images} vs {args.images} MNIST test digits: fp32 {fid32:.3f}, bf16 {fid16:.3f} "
              f"({100 * abs(fid16 - fid32) / fid32:.2f}% apart)")


if __name__ == "__main__":
    main()
