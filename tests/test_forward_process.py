"""q(x_t | x_0) in closed form against Monte-Carlo and against T composed one-step transitions."""
import pytest
import torch

from ddpm import NoiseSchedule
from stats import assert_gaussian_moments

N = 20_000
X0 = torch.tensor([-1.0, -0.3, 0.4, 1.0], dtype=torch.float64)


@pytest.mark.parametrize("name", ["linear", "cosine", "sigmoid"])
@pytest.mark.parametrize("t", [0, 10, 500, 999])
def test_q_sample_marginal_matches_closed_form(name, t):
    s = NoiseSchedule.from_name(name, 1000)
    g = torch.Generator().manual_seed(t)
    x0 = X0.expand(N, -1)
    tt = torch.full((N,), t)
    xt = s.q_sample(x0, tt, torch.randn(x0.shape, generator=g, dtype=torch.float64))
    abar = s.alphas_cumprod[t]
    assert_gaussian_moments(xt, abar.sqrt() * X0, (1 - abar).expand(4))


def test_composed_one_step_transitions_match_closed_form():
    """x_t = √α_t x_{t−1} + √β_t z, applied t+1 times from x_0, has the marginal N(√ᾱ_t x_0, 1 − ᾱ_t)."""
    s = NoiseSchedule.from_name("linear", 1000)
    g = torch.Generator().manual_seed(0)
    x = X0.expand(N, -1).clone()
    check = {0, 99, 499, 999}
    for t in range(1000):
        x = s.alphas[t].sqrt() * x + s.betas[t].sqrt() * torch.randn(x.shape, generator=g, dtype=torch.float64)
        if t in check:
            abar = s.alphas_cumprod[t]
            assert_gaussian_moments(x, abar.sqrt() * X0, (1 - abar).expand(4))


@pytest.mark.parametrize("name", ["linear", "cosine", "sigmoid"])
def test_composed_transitions_exactly(name):
    """The same composition done on the moments: ∏√α_s = √ᾱ_t and v_t = α_t v_{t−1} + β_t = 1 − ᾱ_t."""
    s = NoiseSchedule.from_name(name, 1000)
    scale, var = 1.0, 0.0
    for t in range(1000):
        scale, var = scale * s.alphas[t].sqrt().item(), s.alphas[t].item() * var + s.betas[t].item()
        assert abs(scale - s.sqrt_alphas_cumprod[t].item()) < 1e-12
        assert abs(var - (1 - s.alphas_cumprod[t].item())) < 1e-12


def test_q_sample_batches_timesteps_independently():
    s = NoiseSchedule.from_name("cosine", 100)
    x0 = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    noise = torch.randn_like(x0)
    t = torch.tensor([0, 50, 99])
    xt = s.q_sample(x0, t, noise)
    for b in range(3):
        want = s.sqrt_alphas_cumprod[t[b]] * x0[b] + s.sqrt_one_minus_alphas_cumprod[t[b]] * noise[b]
        torch.testing.assert_close(xt[b], want)


def test_q_sample_keeps_float32():
    s = NoiseSchedule.from_name("linear", 10)
    x0 = torch.randn(2, 3)
    assert s.q_sample(x0, torch.tensor([1, 2]), torch.randn(2, 3)).dtype == torch.float32
