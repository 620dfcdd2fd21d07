"""Does bf16 autocast train like fp32? The demo recipe trained twice from the same seed (same weights, data
order and noise), once in fp32 and once under bf16 autocast, and the logged losses compared window by window.

    .venv/bin/python bench/bf16_loss_curve.py [--steps 200] [--batch 16] [--device cpu|cuda] [--out DIR]

Only the arithmetic differs between the two runs, so the curves should agree to within the loss's own
window-to-window noise; the script prints both, their relative difference, and that noise for scale.
On a CPU without native bf16 (AVX-512-BF16/AMX) bf16 is emulated and much slower: keep --steps small there.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ddpm.config import RunConfig
from ddpm.train import Trainer


def train(precision: str, args: argparse.Namespace, root: Path) -> tuple[np.ndarray, np.ndarray, float]:
    config = RunConfig.from_toml("mnist-demo").with_overrides([
        f"train.precision={precision}", f"train.steps={args.steps}", f"train.batch_size={args.batch}",
        "train.max_minutes=1000", f"train.log_every={args.window}", "train.sample_every=0",
        f"train.checkpoint_every={args.steps}"])
    started = time.perf_counter()
    Trainer(config, root / precision, torch.device(args.device), quiet=True).run()
    seconds = time.perf_counter() - started
    records = [json.loads(line) for line in (root / precision / "metrics.jsonl").read_text().splitlines()]
    records = [r for r in records if r.get("kind") == "train"]
    return np.array([r["step"] for r in records]), np.array([r["loss"] for r in records]), seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--window", type=int, default=20, help="steps per logged loss")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, help="also save the two curves as a PNG here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        steps, fp32, t32 = train("fp32", args, Path(tmp))
        _, bf16, t16 = train("bf16", args, Path(tmp))
    rel = np.abs(bf16 - fp32) / fp32
    noise = np.median(np.abs(np.diff(fp32[len(fp32) // 2:])) / fp32[len(fp32) // 2 + 1:])
    print(f"# {args.device}, {torch.get_num_threads()} threads, torch {torch.__version__}; demo model, batch {args.batch}, "
          f"{args.steps} steps; fp32 {t32:.0f} s, bf16 {t16:.0f} s")
    print("| step | fp32 loss | bf16 loss | relative difference |")
    print("|---|---|---|---|")
    for s, a, b, r in zip(steps, fp32, bf16, rel):
        print(f"| {s} | {a:.4f} | {b:.4f} | {r:.1%} |")
    print(f"# second half: mean relative difference {rel[len(rel) // 2:].mean():.1%}; "
          f"fp32's own window-to-window change {noise:.1%} (median)")
    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.6))
        ax.plot(steps, fp32, label="fp32")
        ax.plot(steps, bf16, label="bf16 autocast", ls="--")
        ax.set(xlabel="step", ylabel=f"loss (mean over {args.window} steps)", yscale="log", title="demo model: fp32 vs bf16")
        ax.legend()
        args.out.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.out / "bf16_loss_curve.png", dpi=120, bbox_inches="tight")


if __name__ == "__main__":
    main()
