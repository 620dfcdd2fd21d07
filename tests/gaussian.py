"""An exact denoiser: for data x₀ ~ N(μ, diag(s²)) the optimal predictions are known in closed form.

x_t = √ᾱ x₀ + √(1−ᾱ) ε is Gaussian with mean √ᾱ μ and variance ᾱ s² + 1 − ᾱ, and jointly Gaussian with
ε, so E[ε | x_t] = √(1−ᾱ) (x_t − √ᾱ μ) / (ᾱ s² + 1 − ᾱ) and E[x₀ | x_t] = μ + k (x_t − √ᾱ μ) with
k = √ᾱ s² / (ᾱ s² + 1 − ᾱ). Every sampler driven by it is an affine map of x_T (plus noise).
"""
import torch

from ddpm import NoiseSchedule
from ddpm.parameterization import v_from_x0_eps, x0_from_eps

MU = torch.tensor([-0.5, 0.2, 0.0, 0.5], dtype=torch.float64)
S = torch.tensor([0.3, 0.5, 0.7, 1.0], dtype=torch.float64)


def exact_denoiser(schedule: NoiseSchedule, prediction: str = "eps", mu=MU, s=S, calls: list | None = None):
    """model(x_t [B, D], t [B]) for the ORIGINAL schedule; records the t it is called with in ``calls``."""
    abar_all = schedule.alphas_cumprod

    def model(x, t):
        if calls is not None:
            calls.append(t.clone())
        abar = abar_all[t].to(x.dtype)[:, None]
        m, v = mu.to(x.dtype), (s**2).to(x.dtype)
        eps = (1 - abar).sqrt() * (x - abar.sqrt() * m) / (abar * v + 1 - abar)
        if prediction == "eps":
            return eps
        x0 = x0_from_eps(x, eps, abar)
        return x0 if prediction == "x0" else v_from_x0_eps(x0, eps, abar)

    return model


def gain(abar: float, mu=MU, s=S) -> torch.Tensor:
    """k_t of E[x₀ | x_t] = μ + k_t (x_t − √ᾱ μ)."""
    return abar**0.5 * s**2 / (abar * s**2 + 1 - abar)


def ode_solution(schedule: NoiseSchedule, x_T: torch.Tensor, t_first: int, mu=MU, s=S) -> torch.Tensor:
    """The probability-flow ODE from x_T at original step t_first to t = 0, then E[x₀ | x_{t=0}].

    The ODE keeps z = (x_t − √ᾱ_t μ)/√(ᾱ_t s² + 1 − ᾱ_t) constant; the last map is the final denoising
    step every deterministic sampler here ends with.
    """
    a_T, a_0 = schedule.alphas_cumprod[t_first].item(), schedule.alphas_cumprod[0].item()
    z = (x_T - a_T**0.5 * mu) / (a_T * s**2 + 1 - a_T).sqrt()
    x_0 = a_0**0.5 * mu + (a_0 * s**2 + 1 - a_0).sqrt() * z
    return mu + gain(a_0, mu, s) * (x_0 - a_0**0.5 * mu)


def ddpm_exact_moments(coefs: NoiseSchedule, indices: list[int], variance: str, mu=MU, s=S):
    """Exact mean and variance [D] of the ancestral sampler's output, from x_T ~ N(0, I).

    Each step x ← c₁ E[x₀ | x] + c₂ x + σ z = A x + B + σ z is affine, so the moments propagate as
    m ← A m + B, v ← A² v + σ² (no noise on the last step).
    """
    m, v = torch.zeros_like(mu), torch.ones_like(mu)
    for n, i in enumerate(reversed(indices)):
        abar = coefs.alphas_cumprod[i].item()
        k = gain(abar, mu, s)
        c1, c2 = coefs.posterior_mean_coef1[i].item(), coefs.posterior_mean_coef2[i].item()
        A, B = c1 * k + c2, c1 * (mu - k * abar**0.5 * mu)
        sigma2 = 0.0 if n == len(indices) - 1 else (coefs.betas[i] if variance == "fixed_large" else coefs.posterior_variance[i]).item()
        m, v = A * m + B, A**2 * v + sigma2
    return m, v
