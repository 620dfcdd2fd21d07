"""Improved DDPM: learned variances, the hybrid and VLB objectives, importance-sampled t, μ̃ prediction, the
Monte-Carlo NLL — each checked against its formula, an exact case or a Monte-Carlo estimate."""
import json

import pytest
import torch

from ddpm import NoiseSchedule, sample
from ddpm.config import RunConfig
from ddpm.errors import DdpmError
from ddpm.metrics.nll import vlb_terms
from ddpm.objectives import training_loss
from ddpm.parameterization import eps_from_x0, mu_from_x0, to_x0_eps, x0_from_mu
from ddpm.timestep_sampler import HISTORY, TimestepSampler
from ddpm.variance import log_variance
from gaussian import MU, S, ddpm_exact_moments, exact_denoiser
from helpers import sklearn_digits, tiny_config
from stats import Z, assert_gaussian_moments

COSINE = NoiseSchedule.from_name("cosine", 100)


def with_variance_head(model, u):
    """A mean-only model with a constant variance output u appended (twice the channels)."""
    def wrapped(x, t, **kw):
        mean = model(x, t, **kw)
        return torch.cat([mean, torch.full_like(mean, u) if not callable(u) else u(x, t)], 1)
    return wrapped


# -- Σ_θ ------------------------------------------------------------------------------------------------
def test_learned_range_lies_between_beta_tilde_and_beta_and_meets_them_at_the_ends():
    t = torch.arange(100)
    like = torch.zeros(100, 1, 2, 2, dtype=torch.float64)
    beta_tilde = COSINE.posterior_log_variance_clipped.exp()  # β̃₁ at t = 0
    beta = COSINE.betas
    at = lambda u: log_variance(COSINE, t, "learned_range", torch.full_like(like, u), like).exp()[:, 0, 0, 0]  # noqa: E731
    torch.testing.assert_close(at(-1.0), beta_tilde, rtol=1e-12, atol=0)
    torch.testing.assert_close(at(1.0), beta, rtol=1e-12, atol=0)
    for u in (-0.7, 0.0, 0.4, 0.99):
        v = at(u)
        assert ((v >= beta_tilde.clamp(max=beta) * (1 - 1e-12)) & (v <= beta.clamp(min=beta_tilde) * (1 + 1e-12))).all()
    # geometric interpolation: u = 0 is √(β β̃)
    torch.testing.assert_close(at(0.0), (beta * beta_tilde).sqrt(), rtol=1e-12, atol=0)
    # "learned" is log Σ itself; the fixed ones are the schedule's
    u = torch.randn_like(like)
    assert torch.equal(log_variance(COSINE, t, "learned", u, like), u)
    torch.testing.assert_close(log_variance(COSINE, t, "fixed_large", None, like)[:, 0, 0, 0], COSINE.fixed_log_variance("fixed_large"))


# -- conversions ------------------------------------------------------------------------------------------
def test_mu_eps_x0_conversions_round_trip():
    t = torch.tensor([0, 1, 30, 99])
    x0, eps = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    abar = COSINE.gather("alphas_cumprod", t, x0)
    x_t = COSINE.q_sample(x0, t, eps)
    posterior = (COSINE.gather("posterior_mean_coef1", t, x0), COSINE.gather("posterior_mean_coef2", t, x0))
    mu = mu_from_x0(x_t, x0, posterior)
    torch.testing.assert_close(mu, COSINE.q_posterior(x0, x_t, t)[0], rtol=1e-12, atol=1e-12)  # DDPM eq. 7
    torch.testing.assert_close(x0_from_mu(x_t, mu, posterior), x0, rtol=1e-9, atol=1e-9)
    x0_back, eps_back = to_x0_eps(mu, x_t, abar, "mu", posterior=posterior)
    torch.testing.assert_close(x0_back, x0, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(eps_back, eps_from_x0(x_t, x0, abar), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(eps_back, eps, rtol=1e-7, atol=1e-7)
    with pytest.raises(DdpmError, match="needs the posterior coefficients"):
        to_x0_eps(mu, x_t, abar, "mu")


# -- objectives -------------------------------------------------------------------------------------------
def leaf_model(shape, channels_out):
    """A 'model' whose output is a leaf tensor, so gradients into the mean and variance parts can be read."""
    out = torch.randn(shape[0], channels_out, *shape[2:], requires_grad=True)
    return out, (lambda x, t: out)


def images(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, 4, 4), generator=g).float() / 127.5 - 1


@pytest.mark.parametrize("loss, mean_gets_vlb_gradient", [("hybrid", False), ("vlb", True), ("rescaled_vlb", True)])
def test_the_hybrid_vlb_term_sends_no_gradient_into_the_mean(loss, mean_gets_vlb_gradient):
    x0 = images()
    out_leaf, model = leaf_model(x0.shape, 2)
    t = torch.tensor([0, 1, 5, 40, 80, 99])
    out = training_loss(model, COSINE, x0, variance="learned_range", loss=loss, t=t, generator=torch.Generator().manual_seed(0))
    out["vlb"].sum().backward()
    mean_grad, var_grad = out_leaf.grad[:, :1], out_leaf.grad[:, 1:]
    assert var_grad.abs().sum() > 0
    assert (mean_grad.abs().sum() > 0) == mean_gets_vlb_gradient or loss == "hybrid"
    if loss == "hybrid":
        # the VLB term's graph reaches only u: the mean's gradient is exactly zero
        assert torch.equal(mean_grad, torch.zeros_like(mean_grad))
        # and the hybrid objective is mse + (T/1000)·L_t per example
        torch.testing.assert_close(out["loss"], out["mse"] + 0.1 * out["vlb"].float())


@pytest.mark.parametrize("variance", ["fixed_small", "learned_range", "learned"])
@pytest.mark.parametrize("prediction", ["eps", "x0", "v", "mu"])
def test_kl_is_zero_when_the_model_is_the_true_posterior(variance, prediction):
    """A model that knows the noise predicts the true posterior mean; with Σ = β̃ (u = −1, or u = log β̃) the KL
    terms vanish for every t ≥ 1, and the L_t that remains at t = 0 is the decoder's."""
    x0 = images(8)
    t = torch.arange(1, 9) * 11
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(3))
    x_t = COSINE.q_sample(x0, t, noise)
    abar = COSINE.gather("alphas_cumprod", t, x0)
    posterior = (COSINE.gather("posterior_mean_coef1", t, x0), COSINE.gather("posterior_mean_coef2", t, x0))
    from ddpm.parameterization import target_for

    mean = target_for(prediction, x0, noise, abar, x_t, posterior)
    u = {"learned_range": torch.full_like(x0, -1.0), "learned": COSINE.gather("posterior_variance", t, x0).log().expand_as(x0)}.get(variance)
    model = (lambda x, tt: mean) if u is None else (lambda x, tt: torch.cat([mean, u], 1))
    out = training_loss(model, COSINE, x0, prediction=prediction, variance=variance, loss="vlb", t=t, noise=noise)
    assert out["vlb"].abs().max() < 1e-4, out["vlb"]


def test_vlb_with_fixed_variance_trains_the_mean_and_matches_the_nll_term():
    """The training objective's L_t is the NLL's term: same x_t, same number (unclipped x̂₀ here and there)."""
    x0 = images(5)
    model = lambda x, t: 0.3 * torch.tanh(x)  # noqa: E731
    T = COSINE.num_timesteps
    nll = vlb_terms(model, COSINE, x0, clip_x0=False, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    noises = {t: torch.randn(x0.shape, generator=g) for t in reversed(range(T))}
    for t in (0, 1, 50, 99):
        out = training_loss(model, COSINE, x0, loss="vlb", t=torch.full((5,), t), noise=noises[t])
        torch.testing.assert_close(out["vlb"].double(), nll["terms"][:, t], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(training_loss(model, COSINE, x0, loss="rescaled_vlb", t=torch.full((5,), t),
                                                 noise=noises[t])["loss"], T * out["loss"])


# -- importance sampling ----------------------------------------------------------------------------------
def test_loss_aware_sampler_is_uniform_until_warm_then_favours_high_loss_and_stays_unbiased():
    T = 20
    sampler = TimestepSampler("loss_aware", T)
    g = torch.Generator().manual_seed(0)
    torch.testing.assert_close(sampler.probabilities(), torch.full((T,), 1 / T, dtype=torch.float64))
    loss_of = lambda t: 0.1 + (t.double() / T) ** 2 * 5  # noqa: E731  (a loss that grows with t)
    for k in range(HISTORY):  # L_t ± 1 in turn: √E[L_t²] = √(L_t² + 1), which E[L_t] = L_t would not give
        t = torch.arange(T)
        sampler.update(t, loss_of(t) + (-1) ** k)
    p = sampler.probabilities()
    assert p.sum().item() == pytest.approx(1.0, abs=1e-12) and (p > 0).all()
    assert p[-1] > 4 * p[0]
    # p_t ∝ √E[L_t²] mixed with 0.001 uniform
    w = (loss_of(torch.arange(T)) ** 2 + 1).sqrt()
    torch.testing.assert_close(p, w / w.sum() * 0.999 + 0.001 / T)
    w = loss_of(torch.arange(T))  # the mean loss the reweighted estimate must reproduce
    # unbiased: E_{t~p}[L_t / (T p_t)] = mean_t L_t; n draws, tolerance Z standard errors of the sample mean
    t, weights = sampler.sample(200_000, "cpu", g)
    estimate = weights.double() * loss_of(t)
    assert abs(estimate.mean() - w.mean()) < Z * estimate.std() / len(estimate) ** 0.5
    # the drawn t follow p (a chi-square-free check: each frequency within Z binomial standard errors)
    freq = torch.bincount(t, minlength=T).double() / len(t)
    assert ((freq - p).abs() <= Z * (p * (1 - p) / len(t)).sqrt()).all()
    # the history keeps the last HISTORY values, and the state round-trips
    sampler.update(torch.tensor([0]), torch.tensor([7.0]))
    assert sampler.history[0, -1] == 7.0 and sampler.count[0] == HISTORY
    other = TimestepSampler("loss_aware", T)
    other.load_state_dict(sampler.state_dict())
    torch.testing.assert_close(other.probabilities(), sampler.probabilities())
    with pytest.raises(DdpmError, match="not this run's"):
        TimestepSampler("loss_aware", T + 1).load_state_dict(sampler.state_dict())


def test_the_training_log_under_importance_sampled_t_estimates_the_uniform_t_means():
    """A run with loss_aware t logs what a uniform run would: its loss, L_t and per-tenth means are weighted by
    1/(T p_t). t drawn ∝ t + 1 from T = 100 with a 'loss' equal to t: the unweighted mean is E_p[t] = 66, the uniform
    one 49.5 (bucket 0: 6 against 4.5); the weighted means hit the uniform ones within Z standard errors."""
    from ddpm.train.trainer import LogWindow

    T, n = 100, 40_000
    p = torch.arange(1, T + 1, dtype=torch.float64) / (T * (T + 1) / 2)
    t = torch.multinomial(p, n, replacement=True, generator=torch.Generator().manual_seed(0))
    weights = 1.0 / (T * p[t])
    window = LogWindow()
    for part in range(0, n, 1000):  # 40 steps of a batch of 1000
        chunk = slice(part, part + 1000)
        f = t[chunk].double()
        window.add(f, t[chunk], T, vlb=2 * f, importance=weights[chunk])
    log = window.summary(window.started + 1)

    def se(mask):  # of the self-normalised estimate Σwf/Σw (delta method)
        w, f = weights[mask], t[mask].double()
        return ((w ** 2 * (f - (w * f).sum() / w.sum()) ** 2).sum().sqrt() / w.sum()).item()

    everything, first = torch.ones(n, dtype=torch.bool), t < 10
    assert abs(log["loss"] - 49.5) < Z * se(everything) < 66 - 49.5
    assert abs(log["vlb_loss"] - 99.0) < 2 * Z * se(everything)
    assert abs(log["loss_per_bucket"][0] - 4.5) < Z * se(first) < 6 - 4.5
    uniform = LogWindow()  # without weights the window is the plain mean
    uniform.add(t[:1000].double(), t[:1000], T)
    assert uniform.summary(uniform.started + 1)["loss"] == pytest.approx(t[:1000].double().mean().item(), rel=1e-12)


# -- sampling ---------------------------------------------------------------------------------------------
def test_learned_range_at_the_beta_tilde_end_samples_exactly_like_fixed_small():
    s = NoiseSchedule.from_name("cosine", 200)
    model = exact_denoiser(s)
    xT = torch.randn(64, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for steps in (None, 20):
        a = sample(model, s, xT, sampler="ddpm", steps=steps, variance="fixed_small", generator=torch.Generator().manual_seed(1))
        b = sample(with_variance_head(model, -1.0), s, xT, sampler="ddpm", steps=steps, variance="learned_range",
                   generator=torch.Generator().manual_seed(1))
        assert torch.equal(a, b)
        c = sample(with_variance_head(model, 1.0), s, xT, sampler="ddpm", steps=steps, variance="learned_range",
                   generator=torch.Generator().manual_seed(1))
        d = sample(model, s, xT, sampler="ddpm", steps=steps, variance="fixed_large", generator=torch.Generator().manual_seed(1))
        # u = 1 is log β_t at every t, fixed_large has β̃₁ at t = 0 — where no noise is added: the same samples
        torch.testing.assert_close(c, d, rtol=1e-12, atol=1e-12)
    # the deterministic samplers ignore the variance head
    for sampler in ("ddim", "dpm-solver++"):
        torch.testing.assert_close(sample(model, s, xT, sampler=sampler, steps=10),
                                   sample(with_variance_head(model, 0.3), s, xT, sampler=sampler, steps=10))


def test_an_exact_denoiser_with_learned_variance_reproduces_the_data():
    s = NoiseSchedule.from_name("linear", 1000)
    xT = torch.randn(20_000, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    model = with_variance_head(exact_denoiser(s), -1.0)
    m, v = ddpm_exact_moments(s, list(range(1000)), "fixed_small")
    x0 = sample(model, s, xT, sampler="ddpm", variance="learned_range", clip_x0=False, generator=torch.Generator().manual_seed(1))
    assert_gaussian_moments(x0, m, v)
    assert_gaussian_moments(x0, MU, S**2, bias_var=0.025, bias_mean=1e-3)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm-solver++"])
def test_a_mu_model_samples_like_the_eps_model_it_equals(sampler):
    s = NoiseSchedule.from_name("cosine", 100)
    eps_model = exact_denoiser(s)
    abar_all = s.alphas_cumprod

    def mu_model(x, t):
        abar = abar_all[t][:, None]
        x0 = (x - (1 - abar).sqrt() * eps_model(x, t)) / abar.sqrt()
        return s.posterior_mean_coef1[t][:, None] * x0 + s.posterior_mean_coef2[t][:, None] * x

    xT = torch.randn(32, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    # unclipped: the Gaussian data leave [−1, 1], and ancestral DDPM clips an ε model's x̂₀ but never a μ̃ model's mean
    a = sample(eps_model, s, xT, sampler=sampler, steps=10, clip_x0=False, generator=torch.Generator().manual_seed(1))
    b = sample(mu_model, s, xT, sampler=sampler, steps=10, prediction="mu", clip_x0=False,
               generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("skip", ["naive", "respace"])
@pytest.mark.parametrize("t", [0, 30])
def test_ancestral_ddpm_steps_to_a_mu_model_s_own_mean_with_clipping_on(t, skip):
    """improved-diffusion's ``p_mean_variance`` with PREVIOUS_X: the mean is the model's output even with
    clip_denoised, which clips only the x̂₀ reported. One step at t is the run's last (no noise): its output is the
    mean. Naive, that is μ̃ itself; respaced, the one-step posterior mean at t, which is x̂₀ — unclipped either way."""
    s = NoiseSchedule.from_name("linear", 50)
    x = torch.randn(16, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    mu_model = lambda x_, t_: 3.0 * x_  # noqa: E731  (its x̂₀ leaves [−1, 1])
    infos = []
    out = sample(mu_model, s, x, sampler="ddpm", prediction="mu", timesteps=[t], skip=skip, clip_x0=True,
                 callback=infos.append)
    implied_x0 = x0_from_mu(x, 3.0 * x, (s.posterior_mean_coef1[t], s.posterior_mean_coef2[t]))
    assert implied_x0.abs().max() > 1.5
    torch.testing.assert_close(out, 3.0 * x if skip == "naive" else implied_x0, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(infos[0].x0_pred, implied_x0.clamp(-1, 1), rtol=1e-12, atol=1e-12)


# -- NLL --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
def test_the_nll_bound_of_a_mu_model_scores_its_raw_mean_with_clipping_on(variance):
    """improved-diffusion's ``_vb_terms_bpd`` with PREVIOUS_X and clip_denoised: the KL terms and the decoder use the
    model's μ̃ as it is (``p_mean_variance`` returns model_mean = model_output); only an ε/x₀ model's x̂₀ is clipped.
    Every term against the numpy transcription (reference_improved_diffusion.py, with the exact normal CDF ddpm
    uses) at the raw mean, for a μ̃ model whose implied x̂₀ = (μ̃ − c₂x_t)/c₁ leaves [−1, 1] at every t (the
    images hold ±1 pixels). μ̃ = 1.05 x_t stays within a few σ of the data at t = 0, where the reference's floor
    of 10⁻¹² on a bin's probability (ddpm has none) would otherwise decide the decoder term."""
    import numpy as np

    from reference_improved_diffusion import Reference, discretized_gaussian_log_likelihood, normal_kl

    s = NoiseSchedule.from_name("linear", 20)
    ref = Reference(s.betas.numpy())
    seen = []

    def mu_model(x_t, t):
        mean = 1.05 * x_t
        seen.append((x_t.double().numpy(), mean.double().numpy(), int(t[0])))
        return mean

    x0 = images(3)
    x0[:, :, 0, :2] = torch.tensor([1.0, -1.0])
    out = vlb_terms(mu_model, s, x0, prediction="mu", variance=variance, clip_x0=True,
                    generator=torch.Generator().manual_seed(0))
    assert sorted(t for _, _, t in seen) == list(range(s.num_timesteps))
    log_var = {"fixed_small": ref.posterior_log_variance_clipped,
               "fixed_large": np.log(np.append(ref.posterior_variance[1], ref.betas[1:]))}[variance]
    x0_np = x0.double().numpy()
    for x_t, mean, t in seen:  # mean: the model's own, unclipped
        implied_x0 = (mean - ref.posterior_mean_coef2[t] * x_t) / ref.posterior_mean_coef1[t]
        assert np.abs(implied_x0).max() > 1.01, t
        if t == 0:
            decoder = discretized_gaussian_log_likelihood(x0_np, mean, 0.5 * log_var[t], exact_cdf=True)
            assert decoder.min() > np.log(1e-11)  # the reference's floor not reached
            expected = -decoder.mean((1, 2, 3)) / np.log(2.0)
        else:
            true_mean, true_log_var = ref.q_posterior(x0_np, x_t, t)
            expected = normal_kl(true_mean, true_log_var, mean, log_var[t]).mean((1, 2, 3)) / np.log(2.0)
        torch.testing.assert_close(out["terms"][:, t], torch.from_numpy(expected), rtol=1e-8, atol=1e-10)


def test_stratified_nll_estimate_covers_the_exact_sum_at_its_stated_rate():
    """R independent K-step estimates of the mean bound over 16 images, each with its standard error, against
    the exact T-step sum (with its own error): |z| < 2 in about 95% of them (binomial tolerance Z·√(pq/R))."""
    s = NoiseSchedule.from_name("linear", 60)
    x0 = images(16, seed=1)
    model = lambda x, t: 0.5 * torch.tanh(2 * x)  # noqa: E731
    exact = vlb_terms(model, s, x0, generator=torch.Generator().manual_seed(100))["total"]
    exact_mean, exact_se = exact.mean(), exact.std() / 4
    R, inside = 60, 0
    for r in range(R):
        est = vlb_terms(model, s, x0, timesteps=6, generator=torch.Generator().manual_seed(r))["total"]
        z = (est.mean() - exact_mean) / (est.var() / 16 + exact_se**2).sqrt()
        inside += bool(z.abs() < 2)
    p = 0.9545
    assert abs(inside / R - p) < Z * (p * (1 - p) / R) ** 0.5 + 1 / R
    full = vlb_terms(model, s, x0, timesteps=60, generator=torch.Generator().manual_seed(100))["total"]
    torch.testing.assert_close(full, exact)  # K = T is the exact sum, draw for draw
    with pytest.raises(DdpmError, match="NLL timesteps must be an integer in 1..60"):
        vlb_terms(model, s, x0, timesteps=61)


def test_nll_with_learned_range_reports_the_variance_fraction():
    s = NoiseSchedule.from_name("linear", 20)
    model = with_variance_head(lambda x, t: 0.5 * x, 0.5)  # f = (0.5 + 1)/2 = 0.75 everywhere
    out = vlb_terms(model, s, images(3), variance="learned_range", generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out["variance_fraction"], torch.full((3, 20), 0.75, dtype=torch.float64))
    assert torch.isfinite(out["total"]).all()


# -- config and runs --------------------------------------------------------------------------------------
@pytest.mark.parametrize("setting, match", [
    ("diffusion.variance=beta", "diffusion.*variance"),
    ("diffusion.loss=kl", "diffusion.*loss"),
    ("diffusion.loss=hybrid", "hybrid adds a VLB term that trains only a learned variance"),
    ("train.timestep_sampler=loss_aware", "importance sampling targets the VLB terms"),
    ("diffusion.prediction=mu diffusion.min_snr_gamma=5", "Min-SNR is defined for eps, x0 and v"),
])
def test_bad_settings_are_refused_in_one_sentence(setting, match):
    with pytest.raises(DdpmError, match=match):
        RunConfig().with_overrides(setting.split())


def test_a_hybrid_loss_aware_learned_range_run_logs_both_losses_and_resumes(tmp_path):
    from ddpm.models import load_model
    from ddpm.train import Trainer

    cfg = tiny_config(diffusion={"variance": "learned_range", "loss": "hybrid"},
                      train={"steps": 4, "log_every": 2, "checkpoint_every": 2, "timestep_sampler": "loss_aware"})
    Trainer(cfg, tmp_path / "run", torch.device("cpu"), data=sklearn_digits(64), quiet=True).run()
    log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in log if r.get("kind", "train") == "train" and "loss" in r]
    assert train and all("vlb_loss" in r and len(r["vlb_per_bucket"]) == 10 for r in train)
    model, config, _ = load_model(tmp_path / "run")
    assert config.diffusion.variance == "learned_range"
    out = model(torch.zeros(2, 1, 8, 8), torch.tensor([3, 3]))
    assert out.shape == (2, 2, 8, 8)  # mean and variance channels
    state = torch.load(sorted((tmp_path / "run" / "checkpoints").glob("*-state.pt"))[-1], weights_only=False)
    assert state["timestep_sampler"]["kind"] == "loss_aware" and state["timestep_sampler"]["count"].sum() == 4 * 32
    # the CLI samples it with nothing but the run directory, ancestral DDPM using the learned Σ
    from ddpm.cli import main

    assert main(["sample", str(tmp_path / "run"), "--num", "4", "--sampler", "ddpm", "--steps", "5",
                 "--out", str(tmp_path / "s.npz")]) == 0
    import numpy as np

    assert np.load(tmp_path / "s.npz")["arr_0"].shape == (4, 8, 8, 1)
    # ddpm eval --nll uses the learned Σ, here as a 5-step stratified estimate; the row is strict JSON
    from ddpm.evaluate import EvalSettings, evaluate

    row = evaluate(tmp_path / "run", EvalSettings(num=2, fid=False, nll=True, nll_images=8, nll_timesteps=5, batch_size=8),
                   log=False)[0]
    assert row["nll_variance"] == "learned_range" and row["nll_timesteps"] == 5
    assert len(row["nll_variance_fraction"]) == 100 and row["nll_variance_fraction"][0] is not None
    assert None in row["nll_variance_fraction"]  # steps that no image drew
    json.dumps(row, allow_nan=False)
    # image i's noise and timesteps come from its own (seed, i) stream: another batch size gives the same bound
    again = evaluate(tmp_path / "run", EvalSettings(num=2, fid=False, nll=True, nll_images=8, nll_timesteps=5, batch_size=3),
                     log=False)[0]
    assert again["nll_bpd"] == pytest.approx(row["nll_bpd"], rel=1e-6)
    assert again["nll_terms_bpd"] == pytest.approx(row["nll_terms_bpd"], rel=1e-6, abs=1e-9)
    # and a resumed run continues with the importance sampler's history
    cfg2 = tiny_config(diffusion={"variance": "learned_range", "loss": "hybrid"},
                       train={"steps": 6, "log_every": 2, "checkpoint_every": 2, "timestep_sampler": "loss_aware"})
    Trainer(cfg2, tmp_path / "run", torch.device("cpu"), resume=True, data=sklearn_digits(64), quiet=True).run()
    state = torch.load(sorted((tmp_path / "run" / "checkpoints").glob("*-state.pt"))[-1], weights_only=False)
    assert state["step"] == 6 and state["timestep_sampler"]["count"].sum() == 6 * 32


def test_stratified_nll_is_unbiased_with_strata_of_unequal_size():
    """A model that returns the true x₀ with σ² = β: each KL term is the variance mismatch ½(log(β/β̃) + β̃/β − 1),
    a function of t alone, so the estimate's mean over many draws must equal the exact sum (K = 7 strata of 59
    steps: sizes 8 and 9), within Z standard errors; weighting every stratum by (T−1)/K instead is off by ≈ 10 of
    them here."""
    s = NoiseSchedule.from_name("linear", 60)
    x0 = images(40_000, seed=2)[:, :, :1, :1].contiguous()

    def model(x, t):
        return x0[: len(x)]

    out = vlb_terms(model, s, x0, prediction="x0", variance="fixed_large", timesteps=7, generator=torch.Generator().manual_seed(0))
    beta, beta_tilde = s.betas[1:], s.posterior_variance[1:]
    exact = (0.5 * (torch.log(beta / beta_tilde) + beta_tilde / beta - 1)).sum() / torch.log(torch.tensor(2.0, dtype=torch.float64))
    kl_sum = out["terms"][:, 1:].sum(1)
    assert abs(kl_sum.mean() - exact) < Z * kl_sum.std() / len(kl_sum) ** 0.5
