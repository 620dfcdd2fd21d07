"""ε ↔ x₀ ↔ v conversions: round trips and consistency with x_t = √ᾱ x₀ + √(1−ᾱ) ε."""
import pytest
import torch

from ddpm.parameterization import (
    eps_from_v,
    eps_from_x0,
    score_from_eps,
    target_for,
    to_x0_eps,
    v_from_x0_eps,
    x0_from_eps,
    x0_from_v,
)

g = torch.Generator().manual_seed(0)
X0 = torch.randn(64, 3, dtype=torch.float64, generator=g)
EPS = torch.randn(64, 3, dtype=torch.float64, generator=g)
ABAR = torch.rand(64, 1, dtype=torch.float64, generator=g).clamp(1e-4, 1 - 1e-4)
XT = ABAR.sqrt() * X0 + (1 - ABAR).sqrt() * EPS


def test_round_trips():
    torch.testing.assert_close(x0_from_eps(XT, EPS, ABAR), X0, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(eps_from_x0(XT, X0, ABAR), EPS, rtol=1e-9, atol=1e-9)
    v = v_from_x0_eps(X0, EPS, ABAR)
    torch.testing.assert_close(x0_from_v(XT, v, ABAR), X0, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(eps_from_v(XT, v, ABAR), EPS, rtol=1e-9, atol=1e-9)


def test_v_is_the_velocity_of_the_angle():
    """With ᾱ = cos²φ, x_t = cos φ x₀ + sin φ ε and v = dx_t/dφ (Salimans & Ho 2022)."""
    phi = torch.acos(ABAR.sqrt())
    dphi = 1e-6
    x_plus = torch.cos(phi + dphi) * X0 + torch.sin(phi + dphi) * EPS
    x_minus = torch.cos(phi - dphi) * X0 + torch.sin(phi - dphi) * EPS
    torch.testing.assert_close((x_plus - x_minus) / (2 * dphi), v_from_x0_eps(X0, EPS, ABAR), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_to_x0_eps_inverts_the_target(prediction):
    out = target_for(prediction, X0, EPS, ABAR)
    x0, eps = to_x0_eps(out, XT, ABAR, prediction)
    torch.testing.assert_close(x0, X0, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(eps, EPS, rtol=1e-9, atol=1e-9)


def test_clipping_keeps_the_pair_consistent():
    x0, eps = to_x0_eps(EPS, XT, ABAR, "eps", clip_x0=True)
    assert x0.abs().max() <= 1.0
    torch.testing.assert_close(ABAR.sqrt() * x0 + (1 - ABAR).sqrt() * eps, XT, rtol=1e-9, atol=1e-9)


def test_score_is_gradient_of_log_density():
    """For x₀ = 0, q(x_t) = N(0, (1−ᾱ)I) and ε = x_t/√(1−ᾱ): the score is −x_t/(1−ᾱ)."""
    eps = XT / (1 - ABAR).sqrt()
    torch.testing.assert_close(score_from_eps(eps, ABAR), -XT / (1 - ABAR))


def test_scalar_alpha_bar():
    x0, eps = to_x0_eps(EPS[:, :1], XT[:, :1], 0.5, "eps")
    torch.testing.assert_close(x0, (XT[:, :1] - 0.5**0.5 * EPS[:, :1]) / 0.5**0.5)


def test_unknown_prediction():
    with pytest.raises(ValueError, match="unknown prediction 'score'; expected one of eps, x0, v"):
        to_x0_eps(EPS, XT, ABAR, "score")
