"""Which timestep grid should the few-step samplers use on the cosine schedule? Measured with an exact denoiser.

Data: a Gaussian x₀ ~ N(m, diag(s²)) in 256 dimensions (m ∈ [−0.5, 0.5], s ∈ [0.05, 0.3], image-like),
whose exact ε-prediction is known in closed form:
    ε*(x_t, t) = σ_t (x_t − α_t m) / (α_t² s² + σ_t²),   α_t = √ᾱ_t, σ_t = √(1 − ᾱ_t).
A trained network is ε* plus an error; here ε̂ = ε* + 0.01·tanh(x_t), a smooth 1% error. For each sampler,
number of evaluations and grid, two numbers, each over 2000 samples from the same x_T:
- ``W2``: the 2-Wasserstein distance (per dimension, RMS over dimensions) between the exact-ε* output and the
  data distribution: the discretisation error plus the start's mismatch;
- ``dev``: the RMS difference between the outputs with ε̂ and with ε*: how much a 1% error in the network
  is amplified.
Grids: from T−1 (before issue 12) and from ``sampling_start`` (λ ≥ −5.1, the shipped rule); for
DPM-Solver++ below 10 evaluations also without lowering the final step to first order.

    .venv/bin/python bench/few_step_grids.py [--schedule cosine]
"""
from __future__ import annotations

import argparse

import torch

from ddpm import NoiseSchedule
from ddpm.sampling import sample
from ddpm.schedules import sampling_start, spaced_timesteps


def gaussian_eps(schedule: NoiseSchedule, m: torch.Tensor, s: torch.Tensor, error: float):
    abar = schedule.alphas_cumprod

    def model(x, t):
        a = abar[t].reshape(-1, 1)
        eps = (1 - a).sqrt() * (x - a.sqrt() * m) / (a * s ** 2 + 1 - a)
        return eps + error * torch.tanh(x)
    return model


def w2(x: torch.Tensor, m: torch.Tensor, s: torch.Tensor) -> float:
    """RMS over dimensions of the per-dimension W2 between N(mean, std²) fitted to x and N(m, s²)."""
    return ((x.mean(0) - m) ** 2 + (x.std(0) - s) ** 2).mean().sqrt().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--schedule", default="cosine")
    parser.add_argument("--num", type=int, default=2000)
    args = parser.parse_args()
    torch.set_default_dtype(torch.float64)
    schedule = NoiseSchedule.from_name(args.schedule, 1000)
    g = torch.Generator().manual_seed(0)
    d = 256
    m = torch.rand(d, generator=g) - 0.5
    s = 0.05 + 0.25 * torch.rand(d, generator=g)
    x_T = torch.randn(args.num, d, generator=g)
    exact, noisy = gaussian_eps(schedule, m, s, 0.0), gaussian_eps(schedule, m, s, 0.01)
    abar = schedule.alphas_cumprod
    T = schedule.num_timesteps
    print(f"schedule {args.schedule}, T = {T}; data N(m, s²) in {d} dims, {args.num} samples; ε̂ = ε* + 0.01 tanh(x_t)")
    print("| sampler | evaluations | grid | first timesteps | W2 (exact ε*) | dev (1% error) |")
    print("|---|---|---|---|---|---|")
    cases = [("dpm-solver++", "logsnr", n) for n in (5, 8, 10, 20)] + [("ddim", "uniform", n) for n in (10, 20, 50)] \
        + [("ddpm", "uniform", n) for n in (50, 250)]
    for sampler, spacing, steps in cases:
        grids = {"from T−1": spaced_timesteps(T, steps, spacing, abar, T - 1),
                 "from λ ≥ −5.1": spaced_timesteps(T, steps, spacing, abar, sampling_start(abar, steps))}
        for name, grid in grids.items():
            variants = [({}, "")]
            if sampler == "dpm-solver++" and steps < 10:
                variants = [({"lower_order_final": True}, ", 1st-order last step"),
                            ({"lower_order_final": False}, ", 2nd-order last step")]
            for options, label in variants:
                run = lambda model: sample(model, schedule, x_T, sampler=sampler, timesteps=grid, clip_x0=False,
                                           generator=torch.Generator().manual_seed(1), **options)
                out, out_noisy = run(exact), run(noisy)
                dev = (out_noisy - out).pow(2).mean().sqrt().item()
                print(f"| {sampler} | {steps} | {name}{label} | {list(reversed(grid))[:3]} | {w2(out, m, s):.4f} | {dev:.4f} |")


if __name__ == "__main__":
    main()
