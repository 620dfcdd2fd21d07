"""L_simple: targets, per-example losses and timestep sampling."""
import pytest
import torch

from ddpm import NoiseSchedule, training_loss
from ddpm.parameterization import eps_from_x0, target_for

S = NoiseSchedule.from_name("cosine", 100)


def oracle(x0_true, prediction):
    """A model that knows x₀ and answers exactly what ``prediction`` asks for."""

    def model(x_t, t):
        abar = S.alphas_cumprod[t].to(x_t.dtype).reshape(-1, 1, 1, 1)
        eps = eps_from_x0(x_t, x0_true, abar)
        return target_for(prediction, x0_true, eps, abar)

    return model


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_oracle_has_zero_loss(prediction):
    x0 = torch.rand(16, 1, 4, 4, dtype=torch.float64) * 2 - 1
    out = training_loss(oracle(x0, prediction), S, x0, prediction=prediction, generator=torch.Generator().manual_seed(0))
    assert out["loss"].shape == (16,) and out["t"].shape == (16,)
    assert out["loss"].max() < 1e-12


def test_zero_model_loss_is_the_target_energy():
    x0 = torch.rand(8, 1, 4, 4) * 2 - 1
    noise = torch.randn_like(x0)
    t = torch.arange(8) * 12
    out = training_loss(lambda x, t: torch.zeros_like(x), S, x0, t=t, noise=noise)
    torch.testing.assert_close(out["loss"], noise.pow(2).mean(dim=(1, 2, 3)))
    torch.testing.assert_close(out["x_t"], S.q_sample(x0, t, noise))
    assert torch.equal(out["t"], t)
    out = training_loss(lambda x, t: torch.zeros_like(x), S, x0, t=t, noise=noise, prediction="x0")
    torch.testing.assert_close(out["loss"], x0.pow(2).mean(dim=(1, 2, 3)))


def test_timesteps_are_uniform():
    """Counts over T = 100 bins from 100 000 draws: a χ² statistic with 99 degrees of freedom."""
    n, T = 100_000, 100
    x0 = torch.zeros(n, 1)
    out = training_loss(lambda x, t: torch.zeros_like(x), S, x0, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(out["t"], minlength=T).double()
    chi2 = ((counts - n / T) ** 2 / (n / T)).sum().item()
    assert chi2 < 99 + 5 * (2 * 99) ** 0.5  # mean 99, sd √198
    assert out["t"].min() == 0 and out["t"].max() == T - 1


def test_respaced_schedule_calls_model_with_original_timesteps():
    r = S.respaced(10)
    seen = []
    training_loss(lambda x, t: seen.append(t) or torch.zeros_like(x), r, torch.zeros(64, 2))
    assert set(seen[0].tolist()) <= set(r.timesteps.tolist())


def test_wrong_output_shape():
    with pytest.raises(ValueError, match=r"model returned \(4, 1\) for x_t of shape \(4, 2\); expected x_t.s shape, or twice its channels"):
        training_loss(lambda x, t: x[:, :1], S, torch.zeros(4, 2))


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_min_snr_weighting_caps_the_x0_weight(prediction):
    """In x₀-error terms every target's weight becomes min(SNR, γ): ε error = SNR·x₀ error, v error = (SNR+1)·x₀ error."""
    from ddpm.objectives import min_snr_weight, training_loss
    from ddpm.schedules import NoiseSchedule

    schedule = NoiseSchedule.from_name("linear", 1000)
    x0 = torch.rand(6, 1, 4, 4) * 2 - 1
    t = torch.tensor([0, 10, 100, 300, 600, 999])
    noise = torch.randn_like(x0)
    model = lambda x_t, t_: torch.zeros_like(x_t)  # noqa: E731
    plain = training_loss(model, schedule, x0, prediction=prediction, t=t, noise=noise)
    weighted = training_loss(model, schedule, x0, prediction=prediction, t=t, noise=noise, min_snr_gamma=5.0)
    snr = schedule.snr()[t]
    x0_factor = {"eps": snr, "x0": torch.ones_like(snr), "v": snr + 1}[prediction]  # target error per unit x₀ error
    assert torch.allclose(min_snr_weight(schedule, t, prediction, 5.0) * x0_factor, snr.clamp(max=5.0), rtol=1e-12)
    assert torch.allclose(weighted["mse"], plain["loss"])
    assert torch.allclose(weighted["loss"], plain["loss"] * min_snr_weight(schedule, t, prediction, 5.0).float(), rtol=1e-6)
    huge = training_loss(model, schedule, x0, prediction=prediction, t=t, noise=noise, min_snr_gamma=1e9)
    if prediction == "eps":  # γ above every SNR: weight 1, L_simple itself
        assert torch.allclose(huge["loss"], plain["loss"])
