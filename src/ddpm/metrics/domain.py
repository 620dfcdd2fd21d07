"""Domain classifiers for digit-like data, where Inception (trained on photographs) is a poor judge.

A small CNN per dataset (MNIST, Fashion-MNIST), trained by ``scripts/train_domain_classifier.py`` and
shipped in the package (``metrics/weights/*.safetensors``, 1.9 MB each). From it come

* a classifier-feature FID (the Fréchet distance of its 128-d penultimate features),
* an Inception-Score analogue over its 10 classes (``inception_score`` on its logits),
* the share of confidently classified samples (top softmax probability ≥ ``threshold``),
* the histogram of predicted classes (mode dropping shows up here first).
"""
from __future__ import annotations

import importlib.resources
import json
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import DdpmError

WEIGHTS = {"mnist": "mnist.safetensors", "fashion-mnist": "fashion-mnist.safetensors"}
# datasets whose images the digit classifier judges (same 28×28 grayscale digits)
DOMAIN_OF = {"mnist": "mnist", "mnist-idx": "mnist", "fashion-mnist": "fashion-mnist"}
FEATURE_DIM = 128


class DomainClassifier(nn.Module):
    """28×28 grayscale CNN: x [B, 1, 28, 28] in [−1, 1] → logits [B, 10]; ``features`` gives [B, 128]."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        def conv(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

        self.body = nn.Sequential(
            *conv(1, 32), *conv(32, 32), nn.MaxPool2d(2), *conv(32, 64), *conv(64, 64), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 7 * 7, FEATURE_DIM), nn.ReLU())
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(FEATURE_DIM, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))


def weights_path(domain: str):
    return importlib.resources.files("ddpm.metrics") / "weights" / WEIGHTS[domain]


def load_domain_classifier(dataset: str) -> tuple[DomainClassifier, dict]:
    """The shipped classifier for ``dataset`` (eval mode) and its metadata (test accuracy, training recipe)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    domain = DOMAIN_OF.get(dataset)
    if domain is None:
        raise DdpmError(f"no domain classifier for dataset {dataset!r}; there are ones for {', '.join(DOMAIN_OF)}")
    path = weights_path(domain)
    with importlib.resources.as_file(path) as file:
        if not file.is_file():
            raise DdpmError(f"the {domain} classifier weights {file} are missing from the installed package")
        with safe_open(str(file), framework="pt") as f:
            metadata = json.loads((f.metadata() or {}).get("info", "{}"))
        net = DomainClassifier()
        net.load_state_dict(load_file(str(file)))
    return net.eval(), metadata


@dataclass
class DomainScores:
    """What the domain classifier says about a set of images."""

    confident: float          # share of samples with top probability ≥ threshold
    threshold: float
    class_histogram: list[int]
    inception_score: float    # over the classifier's 10 classes (max 10)
    inception_score_std: float


@torch.no_grad()
def classify(net: DomainClassifier, images: torch.Tensor, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 [N, 1, 28, 28] → (features float64 [N, 128], logits float64 [N, 10])."""
    if images.dtype != torch.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != (1, 28, 28):
        raise DdpmError(f"the domain classifier takes 28×28 grayscale uint8 images, got {images.dtype} {tuple(images.shape[1:])}")
    feats, logits = [], []
    for chunk in images.split(batch_size):
        f = net.features(chunk.float() / 127.5 - 1)
        feats.append(f.double())
        logits.append(net.head(f).double())
    return torch.cat(feats), torch.cat(logits)


def domain_scores(logits: torch.Tensor, threshold: float = 0.9, splits: int = 10) -> DomainScores:
    """Confidence share, class histogram and IS analogue from logits [N, K]."""
    from .inception_score import inception_score

    p = logits.softmax(1)
    top, cls = p.max(1)
    score, std = inception_score(logits, splits=min(splits, len(logits)))
    return DomainScores(confident=(top >= threshold).double().mean().item(), threshold=threshold,
                        class_histogram=torch.bincount(cls, minlength=logits.shape[1]).tolist(),
                        inception_score=score, inception_score_std=std)


class DomainFeatures:
    """Feature extractor with the interface of ``InceptionFeatures`` (uint8 images → float64 [N, 128])."""

    dim = FEATURE_DIM

    def __init__(self, dataset: str, device: torch.device | str = "cpu"):
        net, self.info = load_domain_classifier(dataset)
        self.device = torch.device(device)
        self.net = net.to(self.device)
        self.feature = f"domain-{DOMAIN_OF[dataset]}"

    def classify(self, images: torch.Tensor, progress=None) -> tuple[torch.Tensor, torch.Tensor]:
        feats, logits = classify(self.net, images.to(self.device))
        if progress is not None:
            progress(len(images))
        return feats.cpu().numpy(), logits.cpu()

    def __call__(self, images: torch.Tensor, progress=None):
        return self.classify(images, progress)[0]
