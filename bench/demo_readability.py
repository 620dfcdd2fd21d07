"""How many generated digits are readable, judged by the shipped MNIST domain classifier (99.54% test
accuracy): a sample counts as readable when the classifier's top probability is ≥ 0.9; for conditional
samples (.npz with arr_1 labels) also how many are read, with p ≥ 0.9, as the digit that was asked for.

    .venv/bin/python bench/demo_readability.py runs/demo/samples.npz [more.npz …]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from ddpm.metrics.domain import DomainFeatures, domain_scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("npz", nargs="+", help="sample files: arr_0 uint8 NHWC, optional arr_1 labels")
    args = parser.parse_args()
    domain = DomainFeatures("mnist")
    print(f"classifier: {domain.info}")
    for path in args.npz:
        arrays = np.load(path)
        images = torch.from_numpy(arrays["arr_0"]).permute(0, 3, 1, 2).contiguous()
        _, logits = domain.classify(images)
        s = domain_scores(logits, splits=1)
        p = logits.softmax(1)
        confident = p.max(1).values >= 0.9
        readable_classes = torch.bincount(p.argmax(1)[confident], minlength=10).tolist()
        asked = ""
        if "arr_1" in arrays:
            right = confident & (p.argmax(1) == torch.from_numpy(arrays["arr_1"]))
            asked = f", read as the asked digit {100 * right.float().mean():.0f}%"
        print(f"{path}: {len(images)} samples, readable (p ≥ 0.9) {100 * s.confident:.0f}%{asked}, "
              f"classes of readable {readable_classes}, IS analogue {s.inception_score:.2f}")


if __name__ == "__main__":
    main()
