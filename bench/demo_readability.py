"""How many generated digits are readable, judged by the shipped MNIST domain classifier (99.54% test
accuracy): a sample counts as readable when the classifier's top probability is ≥ 0.9.

    .venv/bin/python bench/demo_readability.py runs/demo/samples.npz [more.npz …]
"""
from __future__ import annotations

import sys

import numpy as np
import torch

from ddpm.metrics.domain import DomainFeatures, domain_scores


def main() -> None:
    domain = DomainFeatures("mnist")
    print(f"classifier: {domain.info}")
    for path in sys.argv[1:]:
        images = torch.from_numpy(np.load(path)["arr_0"]).permute(0, 3, 1, 2).contiguous()
        _, logits = domain.classify(images)
        s = domain_scores(logits, splits=1)
        p = logits.softmax(1)
        readable_classes = torch.bincount(p.argmax(1)[p.max(1).values >= 0.9], minlength=10).tolist()
        print(f"{path}: {len(images)} samples, readable (p ≥ 0.9) {100 * s.confident:.0f}%, "
              f"classes of readable {readable_classes}, IS analogue {s.inception_score:.2f}")


if __name__ == "__main__":
    main()
