"""How many generated digits are readable: a small CNN trained here on MNIST (≈1 min on 2 CPU cores)
classifies the samples; a sample counts as readable when the classifier's top probability is ≥ 0.9.

    .venv/bin/python bench/demo_readability.py runs/demo/samples.npz [more.npz …]

This is a stop-gap for the demo target until the shipped domain classifier (issue 4) exists.
"""
from __future__ import annotations

import sys
import time

import numpy as np
import torch
from torch import nn

from ddpm.data import load_dataset


def classifier() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))


def train(epochs: int = 2) -> nn.Module:
    torch.manual_seed(0)
    data, test = load_dataset("mnist"), load_dataset("mnist", split="test")
    net = classifier()
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(data)).split(128):
            x, y = data.batch(idx)
            loss = nn.functional.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        x, y = test.batch(torch.arange(len(test)))
        acc = (net(x).argmax(1) == y).float().mean().item()
    print(f"classifier test accuracy {acc:.4f}")
    return net


def main() -> None:
    start = time.time()
    net = train()
    print(f"trained in {time.time() - start:.0f} s")
    for path in sys.argv[1:]:
        images = torch.from_numpy(np.load(path)["arr_0"]).permute(0, 3, 1, 2).float() / 127.5 - 1
        with torch.no_grad():
            p = net(images).softmax(1)
        conf, cls = p.max(1)
        readable = (conf >= 0.9).float().mean().item()
        hist = torch.bincount(cls[conf >= 0.9], minlength=10).tolist()
        print(f"{path}: {len(images)} samples, readable (p ≥ 0.9) {100 * readable:.0f}%, classes of readable {hist}")


if __name__ == "__main__":
    main()
