"""Schedules against their papers' formulas, computed independently here with numpy/math."""
import math

import numpy as np
import pytest
import torch

from ddpm import NoiseSchedule, spaced_timesteps
from ddpm.schedules import MIN_LOG_SNR, sampling_start


def test_linear_matches_ddpm_paper():
    s = NoiseSchedule.from_name("linear", 1000)
    betas = np.linspace(1e-4, 0.02, 1000)
    np.testing.assert_allclose(s.betas.numpy(), betas, rtol=0, atol=1e-12)
    np.testing.assert_allclose(s.alphas_cumprod.numpy(), np.cumprod(1 - betas), rtol=1e-9, atol=1e-12)
    assert s.betas.dtype == torch.float64 and s.alphas_cumprod.dtype == torch.float64
    # The DDPM paper's end point: √ᾱ_T ≈ 0.0064, i.e. L_T ≈ 1e-5 nats/dim.
    assert 1e-5 < s.alphas_cumprod[-1].item() < 1e-4


@pytest.mark.parametrize("T", [250, 4000])
def test_linear_scales_with_T(T):
    s = NoiseSchedule.from_name("linear", T)
    scale = 1000 / T
    np.testing.assert_allclose(s.betas.numpy(), np.linspace(scale * 1e-4, scale * 0.02, T), atol=1e-12)


@pytest.mark.parametrize("T", [50, 1000, 4000])
def test_cosine_matches_improved_ddpm_eq17(T):
    s = NoiseSchedule.from_name("cosine", T)
    f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    expected = np.array([f((t + 1) / T) / f(0) for t in range(T)])
    unclipped = s.betas.numpy() < 0.999
    assert unclipped.sum() >= T - 1  # only the very last β reaches the 0.999 clip
    np.testing.assert_allclose(s.alphas_cumprod.numpy()[unclipped], expected[unclipped], rtol=1e-9, atol=1e-12)


def test_sigmoid_matches_lucidrains_formula():
    T = 1000
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    abar = np.array([(sig(3) - sig(6 * u - 3)) / (sig(3) - sig(-3)) for u in np.arange(T + 1) / T])
    betas = np.clip(1 - abar[1:] / abar[:-1], 0, 0.999)
    s = NoiseSchedule.from_name("sigmoid", T)
    np.testing.assert_allclose(s.betas.numpy(), betas, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["linear", "cosine", "sigmoid"])
@pytest.mark.parametrize("T", [1, 2, 10, 100, 1000, 10_000])
def test_every_schedule_is_valid_for_any_T(name, T):
    s = NoiseSchedule.from_name(name, T)
    assert s.betas.shape == (T,) and s.num_timesteps == T
    assert ((s.betas > 0) & (s.betas <= 0.999)).all()
    assert (s.alphas_cumprod[1:] < s.alphas_cumprod[:-1]).all()
    assert torch.isfinite(s.posterior_log_variance_clipped).all()
    if T >= 50:  # long enough to end near pure noise
        assert s.alphas_cumprod[-1] < 1e-3


def test_posterior_matches_gaussian_conditioning():
    """q(x_{t−1} | x_t, x_0) from the joint Gaussian of (x_{t−1}, x_t) given x_0 (Schur complement)."""
    s = NoiseSchedule.from_name("cosine", 200)
    t = torch.arange(1, 200)
    abar_prev = s.alphas_cumprod[t - 1]
    alpha = s.alphas[t]
    v1 = 1 - abar_prev  # Var(x_{t−1} | x_0)
    cov = alpha.sqrt() * v1  # Cov(x_{t−1}, x_t | x_0)
    v2 = alpha * v1 + (1 - alpha)  # Var(x_t | x_0)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(len(t), 3, dtype=torch.float64, generator=g)
    xt = torch.randn(len(t), 3, dtype=torch.float64, generator=g)
    m1 = abar_prev.sqrt()[:, None] * x0
    m2 = alpha.sqrt()[:, None] * m1
    want_mean = m1 + (cov / v2)[:, None] * (xt - m2)
    want_var = v1 - cov**2 / v2
    mean, var, log_var = s.q_posterior(x0, xt, t)
    torch.testing.assert_close(mean, want_mean, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(var[:, 0], want_var, rtol=1e-10, atol=1e-15)
    torch.testing.assert_close(log_var[:, 0], want_var.log(), rtol=1e-10, atol=1e-12)
    # t = 0: the posterior is a point mass at x_0 (variance 0; its clipped log repeats β̃_1).
    mean0, var0, _ = s.q_posterior(x0[:1], xt[:1], torch.tensor([0]))
    torch.testing.assert_close(mean0, x0[:1], rtol=1e-6, atol=1e-6)
    assert var0.item() == 0.0


@pytest.mark.parametrize("spacing", ["uniform", "quadratic", "logsnr"])
def test_respacing_preserves_alpha_bar(spacing):
    s = NoiseSchedule.from_name("linear", 1000)
    r = s.respaced(37, spacing)
    keep = spaced_timesteps(1000, 37, spacing, s.alphas_cumprod)
    assert r.timesteps.tolist() == keep
    torch.testing.assert_close(r.alphas_cumprod, s.alphas_cumprod[keep], rtol=1e-12, atol=0)
    # a respaced schedule's betas are recomputed: β'_i = 1 − ᾱ_{k_i}/ᾱ_{k_{i−1}}
    torch.testing.assert_close(r.betas[1:], 1 - s.alphas_cumprod[keep][1:] / s.alphas_cumprod[keep][:-1])
    # respacing a respaced schedule keeps the original indices
    rr = r.respace([0, 5, 36])
    assert rr.timesteps.tolist() == [keep[0], keep[5], keep[36]]
    torch.testing.assert_close(rr.alphas_cumprod, s.alphas_cumprod[rr.timesteps], rtol=1e-10, atol=0)


def test_respacing_all_steps_is_identity():
    s = NoiseSchedule.from_name("cosine", 100)
    r = s.respace(range(100))
    torch.testing.assert_close(r.betas, s.betas, rtol=1e-12, atol=1e-15)
    assert s.respaced(100) is s


def test_spacings_golden():
    assert spaced_timesteps(1000, 5) == [0, 250, 500, 749, 999]
    assert spaced_timesteps(10, 10) == list(range(10))
    assert spaced_timesteps(1000, 1) == [999]
    # the DDIM paper's quadratic law ⌊linspace(0, √t_max, S)²⌋, but up to T−1 (the paper's code stops at
    # t_max = 0.8 T, where pure noise is far from q(x_t) on cosine: √ᾱ = 0.31)
    assert spaced_timesteps(1000, 10, "quadratic") == [0, 12, 49, 110, 197, 308, 443, 604, 789, 999]
    assert spaced_timesteps(1000, 10, "quadratic")[:-1] == [int(v) for v in np.linspace(0, np.sqrt(999), 10)[:-1] ** 2]
    assert spaced_timesteps(1000, 4, "uniform", last=995) == [0, 332, 663, 995]
    abar = NoiseSchedule.from_name("linear", 1000).alphas_cumprod
    lam = 0.5 * torch.log(abar / (1 - abar))
    k = spaced_timesteps(1000, 20, "logsnr", abar)
    assert k[0] == 0 and k[-1] == 999 and len(set(k)) == 20
    # each kept step is the one nearest in λ to a uniform grid from λ_{T−1} to λ_0
    grid = torch.linspace(lam[0].item(), lam[-1].item(), 20, dtype=torch.float64)
    assert k == [int((lam - g).abs().argmin()) for g in grid]
    gaps = (lam[k[:-1]] - lam[k[1:]]).numpy()
    assert gaps.max() / gaps.min() < 1.5  # not exactly uniform only because t is an integer


@pytest.mark.parametrize("spacing", ["uniform", "quadratic", "logsnr"])
@pytest.mark.parametrize("S", [2, 3, 17, 500, 999, 1000])
def test_spacings_are_distinct_and_in_range(spacing, S):
    abar = NoiseSchedule.from_name("cosine", 1000).alphas_cumprod
    k = spaced_timesteps(1000, S, spacing, abar)
    assert len(k) == S and all(a < b for a, b in zip(k, k[1:])) and k[0] == 0 and k[-1] == 999
    start = sampling_start(abar, S)
    k = spaced_timesteps(1000, S, spacing, abar, start)
    assert len(k) == S and all(a < b for a, b in zip(k, k[1:])) and k[0] == 0 and k[-1] == start


@pytest.mark.parametrize("name, T, start", [("linear", 1000, 999), ("cosine", 1000, 995), ("sigmoid", 1000, 998),
                                            ("cosine", 4000, 3983), ("linear", 100, 96)])
def test_sampling_start_is_the_last_step_with_log_snr_above_minus_5_1(name, T, start):
    s = NoiseSchedule.from_name(name, T)
    lam = s.log_snr()
    assert sampling_start(s.alphas_cumprod, 10) == start
    assert lam[start] >= MIN_LOG_SNR and (start == T - 1 or lam[start + 1] < MIN_LOG_SNR)
    # λ = ½ log(ᾱ/(1 − ᾱ)) checked against its definition
    torch.testing.assert_close(lam, 0.5 * torch.log(s.snr()), rtol=1e-12, atol=0)
    # more steps than fit below the start push it up: never fewer distinct timesteps than asked for
    assert sampling_start(s.alphas_cumprod, T) == T - 1
    if start < T - 3:
        assert sampling_start(s.alphas_cumprod, start + 3) == start + 2


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: NoiseSchedule.from_name("quadratic", 10), "unknown schedule 'quadratic'; expected one of linear, cosine, sigmoid"),
        (lambda: NoiseSchedule.from_name("linear", 0), "num_timesteps must be an integer in 1..10000"),
        (lambda: NoiseSchedule.from_name("linear", 10_001), "num_timesteps must be an integer in 1..10000"),
        (lambda: NoiseSchedule.from_name("linear", 2.5), "num_timesteps must be an integer"),
        (lambda: spaced_timesteps(10, 11), r"steps must be an integer in 1..10 \(the schedule's T\), got 11"),
        (lambda: spaced_timesteps(10, 0), "steps must be an integer in 1..10"),
        (lambda: spaced_timesteps(10, 3, "cubic"), "unknown spacing 'cubic'; expected one of uniform, quadratic, logsnr"),
        (lambda: NoiseSchedule.from_betas([0.1, 1.5]), r"betas must be finite and in \(0, 1\]"),
        (lambda: NoiseSchedule.from_name("linear", 10).respace([3, 2]), "strictly increasing"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
