"""Classifier guidance: the noise-aware classifier, its training through the Trainer, the guided mean and noise
estimate against autograd, a two-Gaussian mixture where guidance has an exact answer, and the CLI's refusals."""
import math

import pytest
import torch
from torch import nn

from ddpm.cli import main
from ddpm.config import classifier_config
from ddpm.errors import DdpmError
from ddpm.guidance import ClassifierFreeGuidance, ClassifierGuidance
from ddpm.nets import ClassifierConfig, NoisyClassifier, UNet, UNetConfig
from ddpm.parameterization import target_for, to_x0_eps
from ddpm.sampling import SAMPLERS, ddpm
from ddpm.schedules import NoiseSchedule
from ddpm.train import Trainer
from helpers import generate_with, sklearn_digits, tiny_config
from stats import Z


def randomised(net: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # zero-initialised output layers would make every output 0
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return net.eval()


def tiny_classifier(num_classes: int = 10) -> NoisyClassifier:
    return randomised(NoisyClassifier(ClassifierConfig(image_size=8, base_channels=8, channel_mults=(1, 2),
                                                       attention_resolutions=(4,), head_channels=8, norm_groups=4,
                                                       num_classes=num_classes)))


def tiny_denoiser(out_channels: int | None = None, num_classes: int | None = None) -> UNet:
    return randomised(UNet(UNetConfig(image_size=8, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                                      attention_resolutions=(4,), head_channels=8, dropout=0.0, norm_groups=4,
                                      num_classes=num_classes), out_channels=out_channels), seed=1)


def log_p_gradient(classifier, x, t, y):
    """∇_x log p(y | x, t), by autograd, independently of the wrapper."""
    x = x.clone().requires_grad_(True)
    torch.log_softmax(classifier(x, t), -1)[torch.arange(len(y)), y].sum().backward()
    return x.grad


def test_classifier_maps_noisy_images_and_timesteps_to_logits_and_starts_uniform():
    clf = NoisyClassifier(ClassifierConfig(image_size=8, base_channels=8, channel_mults=(1, 2), attention_resolutions=(4,),
                                           head_channels=8, norm_groups=4, num_classes=7))
    logits = clf(torch.randn(5, 1, 8, 8), torch.tensor([0, 10, 20, 30, 99]))
    assert logits.shape == (5, 7)
    assert torch.equal(logits, torch.zeros(5, 7))  # zero-initialised head: the uniform prediction, loss log K
    t_dependent = tiny_classifier()
    x = torch.randn(1, 1, 8, 8)
    assert not torch.allclose(t_dependent(x, torch.tensor([1])), t_dependent(x, torch.tensor([90])))
    with pytest.raises(DdpmError, match="number of classes"):
        NoisyClassifier(ClassifierConfig(image_size=8, attention_resolutions=(), norm_groups=4))


def guided_diffusion_variance(schedule, variance, t, u=None):
    """``p_mean_variance``'s "variance" at index t in guided-diffusion, the Σ its ``condition_mean`` scales the gradient
    by (a numpy-free transcription of its table): FIXED_SMALL the posterior variance (0 at t = 0, unlike the clipped
    log-variance of the noise), FIXED_LARGE append(β̃₁, β[1:]), LEARNED_RANGE exp(f log β + (1 − f) log β̃ clipped)."""
    betas = schedule.betas
    abar = torch.cumprod(1 - betas, 0)
    abar_prev = torch.cat([torch.ones(1, dtype=abar.dtype), abar[:-1]])
    posterior_variance = betas * (1 - abar_prev) / (1 - abar)
    if variance == "fixed_small":
        return posterior_variance[t].item()
    if variance == "fixed_large":
        return torch.cat([posterior_variance[1:2], betas[1:]])[t].item()
    min_log = torch.log(torch.cat([posterior_variance[1:2], posterior_variance[1:]]))[t]
    frac = (u.double() + 1) / 2
    return torch.exp(frac * torch.log(betas[t]) + (1 - frac) * min_log).float()


@pytest.mark.parametrize("t", [40, 0])
@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large", "learned_range"])
def test_ancestral_mean_moves_by_s_sigma_squared_times_the_gradient(variance, t):
    """Dhariwal & Nichol's Algorithm 1 as guided-diffusion's ``p_sample`` does it: μ' = μ + Σ s∇ log p(y | x_t) with
    Σ = ``p_mean_variance``'s variance. A single naive step at t is the sampler's last (no noise), so its output is
    the mean itself. At t = 0 Σ is 0 for ``fixed_small`` (β̃₀ = 0: the last step is not guided), β̃₁ for
    ``fixed_large`` and the learned Σ_θ for ``learned_range``."""
    schedule, clf = NoiseSchedule.from_name("linear", 100), tiny_classifier()
    learned = variance == "learned_range"
    net = tiny_denoiser(out_channels=2 if learned else None)
    x, y, s = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(2)), torch.tensor([0, 3, 5, 9]), 3.0
    options = dict(timesteps=[t], skip="naive", variance=variance, cond={"y": y})
    plain = ddpm(lambda x_, t_, y=None: net(x_, t_), schedule, x, **options)
    guided = ddpm(ClassifierGuidance(net, clf, s, schedule), schedule, x, **options)
    u = net(x, torch.full((4,), t))[:, 1:] if learned else None
    sigma2 = guided_diffusion_variance(schedule, variance, t, u)
    shift = sigma2 * s * log_p_gradient(clf, x, torch.full((4,), t), y)
    if variance == "fixed_small" and t == 0:
        assert sigma2 == 0.0 and torch.equal(guided, plain)
    else:  # the shift itself (~1e-5 at t = 0, where Σ is small), well above float32 rounding (~1e-7 here)
        assert shift.abs().max() > 5e-6
        torch.testing.assert_close(guided - plain, shift, rtol=0.05, atol=3e-7)
    torch.testing.assert_close(guided, plain + shift, rtol=1e-5, atol=1e-6)


class LinearClassifier(nn.Module):
    """Two classes with logits ±k·Σx: log p(y | x) has an analytic, everywhere non-zero gradient."""

    def forward(self, x, t):
        z = 0.05 * x.flatten(1).sum(1)
        return torch.stack([z, -z], 1)


@pytest.mark.parametrize("sampler", ["ddim", "dpm-solver++"])
def test_algorithm_2_shifts_the_clipped_estimate_as_guided_diffusion_does(sampler):
    """With clipping, guided-diffusion's ``ddim_sample`` clips x̂₀ in ``p_mean_variance``, recomputes ε̂ from it, shifts
    that ε̂ (``condition_score``) and steps with the shifted pair, x̂₀' = clamp(x̂₀) + (1−ᾱ)/√ᾱ · s∇ left unclipped.
    Transcribed here for a run over t = 60 → 0 with an ε̂ whose x̂₀ leaves [−1, 1]; DPM-Solver++'s first update is
    first order, the same DDIM step. Clipping the shifted x̂₀ instead would give a different answer (checked)."""
    schedule = NoiseSchedule.from_name("linear", 100)
    wild = lambda x, t, y=None: -3 * x  # noqa: E731  (x̂₀ = (1 + 3√(1−ᾱ)) x / √ᾱ)
    clf, s = LinearClassifier(), 4.0
    x_T = torch.randn(6, 1, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    infos = []
    out = SAMPLERS[sampler](ClassifierGuidance(wild, clf, s, schedule), schedule, x_T, timesteps=[0, 60], clip_x0=True,
                            cond={"y": y}, callback=infos.append)

    abar = schedule.alphas_cumprod
    sqrt_recip, sqrt_recipm1 = (1 / abar).sqrt(), (1 / abar - 1).sqrt()

    def condition_score(x, t):  # p_mean_variance(clip_denoised=True), then condition_score
        pred_xstart = (sqrt_recip[t] * x - sqrt_recipm1[t] * wild(x, t)).clamp(-1, 1)
        eps = (sqrt_recip[t] * x - pred_xstart) / sqrt_recipm1[t]
        grad = s * log_p_gradient(clf, x.float(), torch.full((len(x),), t), y).double()
        eps = eps - (1 - abar[t]).sqrt() * grad
        return sqrt_recip[t] * x - sqrt_recipm1[t] * eps, eps, pred_xstart, grad

    x0_60, eps_60, clipped_60, grad_60 = condition_score(x_T, 60)
    x_0 = x0_60 * abar[0].sqrt() + (1 - abar[0]).sqrt() * eps_60  # ddim_sample, η = 0, from t = 60 to t = 0
    x0_0, _, _, _ = condition_score(x_0, 0)
    torch.testing.assert_close(infos[0].x0_pred, x0_60, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(infos[1].x_t, x_0, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out, x0_0, rtol=1e-6, atol=1e-6)
    # the test can tell the orders apart: the shifted x̂₀ leaves [−1, 1], so clipping it again would move it
    raw_60 = sqrt_recip[60] * x_T - sqrt_recipm1[60] * wild(x_T, 60)
    shift_60 = (1 - abar[60]) / abar[60].sqrt() * grad_60
    assert (x0_60 - (raw_60 + shift_60).clamp(-1, 1)).abs().max() > 0.05 and x0_60.abs().max() > 1.05


@pytest.mark.parametrize("prediction", ["eps", "x0", "v", "mu"])
def test_noise_estimate_moves_by_minus_s_sqrt_one_minus_alpha_bar_times_the_gradient(prediction):
    """Algorithm 2: ε̂' = ε̂ − √(1−ᾱ) s∇ log p(y | x_t), whatever the model predicts (the wrapper answers in the
    model's own parameterisation; converted back, its ε̂ is the shifted one and x_t is unchanged)."""
    schedule, clf, eps_net = NoiseSchedule.from_name("cosine", 100), tiny_classifier(), tiny_denoiser()
    x, t, y, s = torch.randn(3, 1, 8, 8), torch.tensor([3, 50, 97]), torch.tensor([2, 4, 8]), 2.5
    abar = schedule.gather("alphas_cumprod", t, x)
    posterior = (schedule.gather("posterior_mean_coef1", t, x), schedule.gather("posterior_mean_coef2", t, x))

    def model(x_t, t_, y=None):  # the same network, answering in ``prediction``
        eps = eps_net(x_t, t_)
        x0, _ = to_x0_eps(eps, x_t, abar, "eps")
        return target_for(prediction, x0, eps, abar, x_t, posterior)

    out = ClassifierGuidance(model, clf, s, schedule, prediction)(x, t, y)
    _, eps = to_x0_eps(out, x, abar, prediction, posterior=posterior if prediction == "mu" else None)
    expected = eps_net(x, t) - (1 - abar).sqrt() * s * log_p_gradient(clf, x, t, y)
    torch.testing.assert_close(eps, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_scale_zero_is_unguided_sampling_bit_for_bit_and_a_positive_scale_is_not(sampler):
    schedule, clf, net = NoiseSchedule.from_name("linear", 50), tiny_classifier(), tiny_denoiser()
    x_T, y = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(5)), torch.tensor([1, 2, 3, 4])
    run = lambda model: SAMPLERS[sampler](model, schedule, x_T, steps=10, cond={"y": y},  # noqa: E731
                                          generator=torch.Generator().manual_seed(9))
    plain = run(lambda x, t, y=None: net(x, t))
    assert torch.equal(run(ClassifierGuidance(net, clf, 0.0, schedule)), plain)
    guided = run(ClassifierGuidance(net, clf, 5.0, schedule))
    assert guided.isfinite().all() and (guided - plain).abs().max() > 1e-3


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_classifier_guidance_on_top_of_classifier_free_guidance_passes_through_every_sampler(sampler):
    """A conditional model, classifier-free guided, then classifier guided: both shifts, in every sampler."""
    schedule, clf, net = NoiseSchedule.from_name("linear", 50), tiny_classifier(), tiny_denoiser(num_classes=10)
    labels = torch.tensor([0, 4, 7])
    common = dict(num=3, shape=(1, 8, 8), sampler=sampler, steps=6, labels=labels, seed=1, clip_x0=False)
    cfg = generate_with(net, schedule, guidance=1.5, **common)
    both = generate_with(net, schedule, guidance=1.5, classifier=clf, classifier_scale=4.0, **common)
    assert both.shape == (3, 1, 8, 8) and not torch.equal(both, cfg)
    assert torch.equal(generate_with(net, schedule, guidance=1.5, classifier=clf, classifier_scale=0.0, **common), cfg)
    # the labels reach the conditional model too: the inner wrapper is the classifier-free guided model
    wrapped = ClassifierGuidance(ClassifierFreeGuidance(net, 1.5, 10), clf, 1.0, schedule, pass_labels=True)
    out, _ = wrapped.output_and_gradient(torch.randn(3, 1, 8, 8), torch.tensor([5, 5, 5]), labels)
    assert out.shape == (3, 1, 8, 8)
    # without labels the model's classes are asked for in turn (0, 1, 2 here), the classifier guiding towards them
    no_labels = {k: v for k, v in common.items() if k != "labels"}
    assert torch.equal(generate_with(net, schedule, guidance=1.5, classifier=clf, classifier_scale=4.0, **no_labels),
                       generate_with(net, schedule, guidance=1.5, classifier=clf, classifier_scale=4.0,
                                **{**common, "labels": torch.arange(3)}))


# -- a mixture of two Gaussians, where guidance has an exact answer ------------------------------------------------

M, SD = 0.3, 0.3  # components N(−M, SD²) and N(+M, SD²), weights 1/2


class MixtureDenoiser(nn.Module):
    """E[ε | x_t] for the 1-D mixture: Σ_k p(k | x_t) √(1−ᾱ)(x_t − √ᾱ μ_k)/(ᾱ SD² + 1 − ᾱ)."""

    def __init__(self, schedule):
        super().__init__()
        self.schedule = schedule

    def posterior(self, x, t):
        abar = self.schedule.alphas_cumprod[t].to(x.dtype).view(-1, 1, 1, 1)
        means = torch.tensor([-M, M], dtype=x.dtype).view(1, 2, 1, 1) * abar.sqrt()
        var = abar * SD**2 + 1 - abar
        log_w = -(x - means) ** 2 / (2 * var)  # equal weights and variances: p(k | x_t) ∝ exp(log_w)
        return torch.softmax(log_w, dim=1), abar, means, var

    def forward(self, x, t, y=None):
        p, abar, means, var = self.posterior(x, t)
        return (p * (1 - abar).sqrt() * (x - means) / var).sum(1, keepdim=True)


class MixtureClassifier(nn.Module):
    """The exact p(k | x_t) of the same mixture, as logits [B, 2]."""

    def __init__(self, denoiser):
        super().__init__()
        self.denoiser = denoiser

    def forward(self, x, t):
        return self.denoiser.posterior(x, t)[0].clamp_min(1e-30).log().flatten(1)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_guidance_with_scale_one_samples_the_requested_component_of_a_mixture(sampler):
    """With exact scores and s = 1, classifier guidance samples p(x | y) = N(+M, SD²): P(x₀ > 0) = Φ(M/SD) = 0.841,
    against 1/2 unguided. Tolerance: Z binomial standard errors plus 0.01 for the 250-step discretisation."""
    schedule = NoiseSchedule.from_name("linear", 1000)
    denoiser = MixtureDenoiser(schedule)
    n = 4000
    y = torch.ones(n, dtype=torch.long)
    x_T = torch.randn(n, 1, 1, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    common = dict(steps=250, cond={"y": y}, generator=torch.Generator().manual_seed(1))
    share = lambda x: (x > 0).double().mean().item()  # noqa: E731
    expected = 0.5 * (1 + math.erf(M / SD / math.sqrt(2)))
    for scale, target in ((0.0, 0.5), (1.0, expected)):
        model = ClassifierGuidance(denoiser, MixtureClassifier(denoiser), scale, schedule)
        x0 = SAMPLERS[sampler](model, schedule, x_T, **common)
        got = share(x0)
        assert abs(got - target) < Z * (target * (1 - target) / n) ** 0.5 + 0.01, (scale, got, target)
    # and guided toward the other component, the mirror image
    away = SAMPLERS[sampler](ClassifierGuidance(denoiser, MixtureClassifier(denoiser), 1.0, schedule), schedule, x_T,
                             **{**common, "cond": {"y": torch.zeros(n, dtype=torch.long)}})
    assert abs(share(away) - (1 - expected)) < Z * (expected * (1 - expected) / n) ** 0.5 + 0.01


# -- training a classifier and the CLI ---------------------------------------------------------------------------

def test_classifier_trains_through_the_trainer_and_learns_the_digits(tmp_path):
    """The Trainer (checkpoints, log, resume) trains the classifier; on nearly clean 8×8 digits it beats chance."""
    base = tiny_config(data={"conditional": True})
    config = classifier_config(base).with_overrides(
        ["train.steps=150", "train.batch_size=32", "train.log_every=50", "train.warmup_steps=10", "train.lr=3e-3",
         "model.base_channels=16", "model.channel_mults=[1, 2]", "model.attention_resolutions=[4]", "model.head_channels=16"])
    data = sklearn_digits(600)
    trainer = Trainer(config, tmp_path / "clf", torch.device("cpu"), data=data, quiet=True)
    summary = trainer.run()
    assert summary["steps"] == 150 and not (tmp_path / "clf" / "progress").exists()  # a classifier draws no grids
    import json

    records = [json.loads(line) for line in (tmp_path / "clf" / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["loss"] > records[-1]["loss"] and "accuracy_per_bucket" in records[-1]
    from ddpm.metrics.noisy_accuracy import noisy_accuracy

    result = noisy_accuracy(trainer.ema, trainer.schedule, data, bands=4, seed=0)
    assert result["accuracy_per_band"][0] > 0.1 + Z * (0.09 / len(data)) ** 0.5  # t < T/4: far above chance
    assert result["accuracy_per_band"][0] > result["accuracy_per_band"][-1]  # pure noise says less


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An unconditional tiny diffusion run and a classifier for it, trained a few steps through the CLI (MNIST)."""
    root = tmp_path_factory.mktemp("runs")
    common = ["--limit", "256", "--batch-size", "32", "--quiet", "--device", "cpu"]
    model = ["--set", "model.base_channels=16", "--set", "model.channel_mults=[1,2]", "--set", "model.attention_resolutions=[14]"]
    assert main(["train", "--out", str(root / "run"), "--steps", "3", *common, *model, "--set", "train.sample_every=0",
                 "--set", "diffusion.num_timesteps=100"]) == 0
    assert main(["train-classifier", str(root / "run"), "--out", str(root / "clf"), "--steps", "3", "--eval-images", "20",
                 *common, *model]) == 0
    return root


def test_train_classifier_writes_a_classifier_run_with_its_accuracy_per_band(runs):
    import json

    from ddpm.checkpoint import load_config

    config = load_config(runs / "clf")
    assert config.model.ARCHITECTURE == "classifier" and config.model.num_classes == 10
    assert (config.diffusion.schedule, config.diffusion.num_timesteps) == ("linear", 100)  # the run's schedule
    last = json.loads((runs / "clf" / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["kind"] == "classifier_eval" and last["images"] == 20 and len(last["accuracy_per_band"]) == 10


def test_sample_and_eval_with_a_classifier(runs, tmp_path, capsys):
    out = tmp_path / "s.npz"
    assert main(["sample", str(runs / "run"), "--classifier", str(runs / "clf"), "--classifier-scale", "2", "--label", "3",
                 "-n", "4", "--steps", "5", "--out", str(out)]) == 0
    import numpy as np

    assert np.load(out)["arr_1"].tolist() == [3, 3, 3, 3]


@pytest.mark.parametrize("flags, message", [
    (["--classifier-scale", "-1"], "must be zero or more"),
    (["--classifier-scale", "nan"], "must be finite"),
    (["--classifier-scale", "2"], "needs --classifier"),
    (["--label", "10", "--classifier", "{clf}"], "the label must be in 0..9"),
    (["--classifier", "{run}"], "is a diffusion model, not a classifier"),
    (["--classifier", "{other}"], "trained for other images or another diffusion"),
])
def test_bad_classifier_flags_are_one_sentence(runs, tmp_path, capsys, flags, message):
    if "{other}" in flags and not (runs / "other").exists():  # a classifier of another schedule and T
        assert main(["train", "--out", str(runs / "other-run"), "--steps", "1", "--limit", "64", "--batch-size", "32",
                     "--quiet", "--set", "train.sample_every=0", "--set", "diffusion.schedule=cosine",
                     "--set", "diffusion.num_timesteps=50", "--set", "model.attention_resolutions=[]"]) == 0
        assert main(["train-classifier", str(runs / "other-run"), "--out", str(runs / "other"), "--steps", "1", "--limit", "64",
                     "--batch-size", "32", "--eval-images", "10", "--quiet", "--set", "model.attention_resolutions=[]"]) == 0
        capsys.readouterr()
    flags = [f.format(clf=runs / "clf", run=runs / "run", other=runs / "other") for f in flags]
    out = tmp_path / "x.npz"
    assert main(["sample", str(runs / "run"), "-n", "2", "--steps", "2", "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not out.exists()


def test_a_classifier_is_not_sampled_and_a_diffusion_run_is_not_resumed_as_one(runs, capsys):
    assert main(["sample", str(runs / "clf"), "-n", "2", "--out", str(runs / "x.png")]) == 2
    assert "is a noise-aware classifier, not a diffusion model" in capsys.readouterr().err
    assert main(["train-classifier", "--resume", str(runs / "run")]) == 2
    assert "is a diffusion run, not a classifier" in capsys.readouterr().err
    assert main(["train-classifier", str(runs / "clf"), "--out", str(runs / "clf2")]) == 2
    assert "is a classifier already" in capsys.readouterr().err
    assert not (runs / "clf2").exists()


@pytest.mark.parametrize("section, key, value, said", [
    ("data", "image_size", 16, "image size 28 (the model's: 16)"), ("data", "channels", 3, "channels 1 (the model's: 3)"),
    ("model", "num_classes", 5, "classes 10 (the model's: 5)"), ("diffusion", "schedule", "cosine", "schedule linear"),
    ("diffusion", "num_timesteps", 200, "T 100 (the model's: 200)")])
def test_classifier_of_other_images_schedule_or_classes_is_refused(runs, section, key, value, said):
    from dataclasses import replace

    from ddpm.checkpoint import load_config
    from ddpm.models import load_classifier

    config = load_config(runs / "run")
    assert load_classifier(runs / "clf", config) is not None
    other = replace(config, **{section: replace(getattr(config, section), **{key: value})})
    with pytest.raises(DdpmError, match="trained for other images or another diffusion") as e:
        load_classifier(runs / "clf", other)
    assert said in str(e.value)


def test_the_report_of_a_classifier_draws_its_accuracy_per_band(runs):
    assert main(["report", str(runs / "clf")]) == 0
    page = (runs / "clf" / "report.html").read_text()
    assert "Classifier accuracy on noisy test images" in page and (runs / "clf" / "report" / "classifier_accuracy.png").exists()


def test_eval_with_a_classifier_logs_its_scale_and_the_asked_class_share(runs, capsys):
    import json

    assert main(["eval", str(runs / "run"), "--classifier", str(runs / "clf"), "--classifier-scale", "1.5", "-n", "10",
                 "--steps", "2", "--domain"]) == 0
    table = capsys.readouterr().out
    assert "clf s" in table and "asked class" in table
    row = json.loads((runs / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert row["classifier_scale"] == 1.5 and row["classifier"] == str(runs / "clf")
    assert 0 <= row["domain_asked"] <= 1 and row["domain_asked_se"] == pytest.approx((row["domain_asked"] * (1 - row["domain_asked"]) / 10) ** 0.5)


def test_a_classifier_run_resumes_with_more_steps_and_is_scored_again(runs, capsys):
    import json

    assert main(["train-classifier", "--resume", str(runs / "clf"), "--steps", "5", "--eval-images", "10", "--quiet"]) == 0
    records = [json.loads(line) for line in (runs / "clf" / "metrics.jsonl").read_text().splitlines()]
    assert [r["checkpoint_step"] for r in records if r.get("kind") == "classifier_eval"][-1] == 5
    assert "accuracy on 10 noisy mnist:test images" in capsys.readouterr().err


def test_a_classifier_s_labels_are_not_taken_for_a_context_model_s_vectors():
    """A model on 3-d context vectors guided by a 10-class classifier: the labels are the classifier's; the model gets
    the null context (or the vectors given), never a one-hot of a label."""
    schedule, clf = NoiseSchedule.from_name("linear", 50), tiny_classifier()
    net = randomised(UNet(UNetConfig(image_size=8, base_channels=8, channel_mults=(1, 2), attention_resolutions=(4,),
                                     head_channels=8, norm_groups=4, context_dim=3)))
    common = dict(num=2, shape=(1, 8, 8), sampler="ddim", steps=4, seed=0, labels=torch.tensor([7, 9]))
    guided = generate_with(net, schedule, classifier=clf, classifier_scale=2.0, **common)
    from ddpm import rng
    from ddpm.data import to_uint8

    noise = rng.SampleNoise(0, range(2))  # by hand: the wrapper given only y, so the model sees no context (the null)
    by_hand = SAMPLERS["ddim"](ClassifierGuidance(net, clf, 2.0, schedule), schedule, rng.randn((2, 1, 8, 8), noise, "cpu"),
                               steps=4, clip_x0=True, generator=noise, cond={"y": torch.tensor([7, 9])})
    assert torch.equal(guided, to_uint8(by_hand))
    with_vectors = generate_with(net, schedule, classifier=clf, classifier_scale=2.0, contexts=torch.tensor([[1.0, 0, 0]]), **common)
    assert with_vectors.shape == guided.shape and not torch.equal(with_vectors, guided)
