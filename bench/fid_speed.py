"""Inception feature extraction throughput (the cost of FID) against this machine's convolution ceiling.

    .venv/bin/python bench/fid_speed.py [--images 96]

Measures, in one run: the FLOPs of one Inception forward at 299×299 (counted by torch's FlopCounterMode),
the achieved GFLOP/s of a large 3×3 convolution (the ceiling) in both memory layouts, and the feature
throughput of the network in fp32 (contiguous and channels-last) and bf16 autocast, with the relative FID
change bf16 causes on real MNIST digits. Prints a Markdown table for BENCHMARKS.md.
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
from ddpm.metrics.inception import SIZE, InceptionFeatures


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


def throughput(extractor: InceptionFeatures, images: torch.Tensor, dtype=None) -> tuple[float, np.ndarray]:
    def run():
        if dtype is None:
            return extractor(images)
        with torch.autocast("cpu", dtype=dtype):
            return extractor(images)
    extractor(images[: extractor.batch_size])  # warm-up
    start = time.perf_counter()
    feats = run()
    return len(images) / (time.perf_counter() - start), feats


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=96)
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
                     None, conv_ceiling(layout)))
    results = {}
    for name, batch, channels_last, dtype in [("fp32 contiguous", 32, False, None), ("fp32 channels-last", 32, True, None),
                                              ("fp32 channels-last", 64, True, None), ("bf16 autocast channels-last", 32, True, torch.bfloat16)]:
        ext.batch_size, ext.channels_last = batch, channels_last
        ips, feats = throughput(ext, images, dtype)
        results[(name, batch)] = feats
        rows.append((f"Inception features, {name}, batch {batch}", ips, ips * flops / 1e9))
    print("| what | images/s | GFLOP/s |\n|---|---|---|")
    for name, ips, gflops in rows:
        print(f"| {name} | {'' if ips is None else f'{ips:.2f}'} | {gflops:.0f} |")
    # does bf16 change the FID? compare both feature sets of A with fp32 features of other digits B
    ext.batch_size, ext.channels_last = 32, True
    b = FeatureStats.from_features(ext(test[5000:5000 + args.images]), "f")
    fid32 = frechet_distance(FeatureStats.from_features(results[("fp32 channels-last", 32)], "f"), b)
    fid16 = frechet_distance(FeatureStats.from_features(results[("bf16 autocast channels-last", 32)], "f"), b)
    print(f"FID of {args.images} vs {args.images} MNIST test digits: fp32 {fid32:.3f}, bf16 {fid16:.3f} "
          f"({100 * abs(fid16 - fid32) / fid32:.2f}% apart)")


if __name__ == "__main__":
    main()
