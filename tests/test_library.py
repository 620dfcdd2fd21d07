"""The middle layer: ``Denoiser`` (from_pretrained / save_pretrained), ``SamplingPlan`` and the one ``generate``
that every caller — report, viz, trainer grids, eval, studies — samples through."""
import subprocess
import sys

import pytest
import torch

from ddpm import DEFAULT_SAMPLER, Denoiser, SamplingPlan, generate, sample
from ddpm.config import SampleConfig
from ddpm.errors import DdpmError
from ddpm.metrics.frechet import FeatureStats
from ddpm.schedules import NoiseSchedule
from ddpm.scoring import SampleScores
from ddpm.train import Trainer
from helpers import denoiser_of, sklearn_digits, tiny_config

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def guided_run(tmp_path_factory):
    """A class-conditional run whose [sample] guides (w = 3) only for t/T in [0, 0.3] (a short interval, so that
    guiding everywhere instead would change the samples)."""
    out = tmp_path_factory.mktemp("lib") / "run"
    config = tiny_config(data={"conditional": True}, train={"steps": 6},
                         sample={"sampler": "ddim", "steps": 8, "guidance": 3.0, "guidance_from": 0.0, "guidance_to": 0.3})
    trainer = Trainer(config, out, CPU, data=sklearn_digits(64), quiet=True)
    trainer.run()
    return out, trainer


def test_from_pretrained_carries_everything_a_sampler_needs(guided_run):
    run, trainer = guided_run
    d = Denoiser.from_pretrained(run)
    assert (d.shape, d.prediction, d.variance, d.num_classes, d.context_dim, d.step) == ((1, 8, 8), "eps", "fixed_small", 10, None, 6)
    assert d.num_timesteps == 100 and d.classes_shown == 10 and not d.net.training
    for a, b in zip(d.net.state_dict().values(), trainer.ema.state_dict().values()):  # the EMA weights by default
        assert torch.equal(a, b)
    raw = Denoiser.from_pretrained(run, use_ema=False)
    assert any(not torch.equal(a, b) for a, b in zip(raw.net.state_dict().values(), d.net.state_dict().values()))


def test_save_pretrained_round_trip_and_model_card(guided_run, tmp_path):
    run, _ = guided_run
    d = Denoiser.from_pretrained(run)
    path = d.save_pretrained(tmp_path / "saved")
    assert path.parent.name == "checkpoints" and (tmp_path / "saved" / "config.json").is_file()
    card = (tmp_path / "saved" / "README.md").read_text()
    assert "class-conditional (10 classes)" in card and "linear schedule, T = 100" in card and "6 steps" in card
    again = Denoiser.from_pretrained(tmp_path / "saved")
    assert again.config == d.config and again.step == d.step
    plan = d.plan()
    assert torch.equal(generate(again, plan, 6, seed=1), generate(d, plan, 6, seed=1))
    with pytest.raises(DdpmError, match="already holds a run"):
        d.save_pretrained(tmp_path / "saved")
    with pytest.raises(DdpmError, match="already holds a run"):
        d.save_pretrained(run)


def test_the_run_plan_is_its_sample_section_with_overrides(guided_run):
    d = Denoiser.from_pretrained(guided_run[0])
    plan = d.plan()
    assert (plan.sampler, plan.steps, plan.eta, plan.guidance, plan.guidance_interval) == ("ddim", 8, 0.0, 3.0, (0.0, 0.3))
    other = d.plan(sampler="ddpm", steps=4)
    assert (other.sampler, other.steps, other.eta, other.guidance) == ("ddpm", 4, None, 3.0)  # eta is DDIM's
    with pytest.raises(DdpmError, match="sample.steps must be in 1..100"):
        d.plan(steps=101)


def test_report_pictures_guide_with_the_run_s_interval(guided_run, tmp_path):
    """Defect: the report wrapped classifier-free guidance itself, without the run's interval. Its reverse trajectory
    is now exactly generate()'s first samples with the run's plan, and differs from guiding at every step."""
    from ddpm import report

    run, _ = guided_run
    d = Denoiser.from_pretrained(run)
    captured = {}
    real = report.process.reverse_trajectory

    def spy(*args, **kwargs):
        captured["out"] = real(*args, **kwargs)
        return captured["out"]

    report.process.reverse_trajectory = spy
    try:
        report.make_pictures(run, tmp_path, d, full_ddpm=False, log=lambda *_: None)
    finally:
        report.process.reverse_trajectory = real
    _, final = captured["out"]
    plan = d.plan()
    assert torch.equal(final, generate(d, plan, report.REVERSE_SAMPLES))
    assert not torch.equal(final, generate(d, plan.replace(guidance_interval=(0.0, 1.0)), report.REVERSE_SAMPLES))


def test_viz_and_the_trainer_grid_draw_generate_s_samples(guided_run, tmp_path):
    from ddpm.viz import process

    run, trainer = guided_run
    d = Denoiser.from_pretrained(run)
    plan = d.plan(sampler="ddpm", steps=5)
    record, final = process.reverse_trajectory(d, plan, num=3, seed=2)
    assert torch.equal(final, generate(d, plan, 3, seed=2)) and len(record.steps) == 5
    labels = trainer.progress_labels
    assert torch.equal(trainer.sample_ema(len(labels), seed=trainer.progress_seed, labels=labels),
                       generate(d, d.plan(labels=labels), len(labels), seed=trainer.progress_seed))


def test_eval_scores_exactly_the_samples_generate_draws(guided_run, monkeypatch):
    from ddpm import evaluate as evaluation

    run, _ = guided_run
    seen = []

    def spy(images, extractor, reference, **kwargs):  # what reaches the scoring, scored as nothing
        seen.append(images)
        return SampleScores(extractor.feature, len(images), 0.0, None)

    # the 8×8 digits have no Inception reference computed here: a stand-in extractor and reference (not the subject)
    monkeypatch.setattr(evaluation, "score_samples", spy)
    monkeypatch.setattr(evaluation, "feature_extractor", lambda *a, **k: type("Fake", (), {"feature": "fake"})())
    monkeypatch.setattr(evaluation, "dataset_stats", lambda *a, **k: FeatureStats.from_features(
        torch.randn(20, 3).double().numpy(), "fake", "stand-in"))
    evaluation.evaluate(run, evaluation.EvalSettings(num=12, steps=[4], bootstrap_draws=0, seed=5, batch_size=5), log=False)
    d = Denoiser.from_pretrained(run)
    assert torch.equal(seen[0], generate(d, d.plan(steps=4), 12, seed=5))


def test_a_plan_refuses_what_its_sampler_does_not_take():
    with pytest.raises(DdpmError, match="the dpm-solver\\+\\+ sampler takes no eta"):
        SamplingPlan(sampler="dpm-solver++", eta=0.5)
    with pytest.raises(DdpmError, match="the ddim sampler takes no skip"):
        SamplingPlan(sampler="ddim", skip="naive")
    with pytest.raises(DdpmError, match="unknown sampler"):
        SamplingPlan(sampler="euler")
    for bad in (dict(eta=1.5, sampler="ddim"), dict(steps=0), dict(steps=2.5), dict(guidance=-1.0),
                dict(guidance=float("inf")), dict(guidance_interval=(0.5, 0.5)), dict(classifier_scale=1.0),
                dict(order=3), dict(spacing="log"), dict(labels=torch.zeros(0, dtype=torch.long)),
                dict(contexts=torch.zeros(0, 3)), dict(clip_x0=1)):
        with pytest.raises(DdpmError):
            SamplingPlan(**bad)
    plan = SamplingPlan(sampler="ddim", eta=0.3, spacing="quadratic")
    assert plan.replace(sampler="ddpm") == SamplingPlan(sampler="ddpm", spacing="quadratic")  # eta went with DDIM
    assert plan.describe() == "ddim, 20 steps, eta 0.3, spacing quadratic"


def test_defaults_have_one_home():
    """The sampler and clipping defaults of the bare sampler, the plan and a run's [sample] agree."""
    plan, settings = SamplingPlan(), SampleConfig()
    assert (plan.sampler, plan.steps, plan.clip_x0) == (settings.sampler, settings.steps, settings.clip_x0)
    assert plan.sampler == DEFAULT_SAMPLER
    import inspect

    from ddpm.sampling import SAMPLERS

    assert inspect.signature(sample).parameters["sampler"].default == DEFAULT_SAMPLER
    assert tuple(SAMPLERS) == tuple(__import__("ddpm.sampling.plan", fromlist=["x"]).SAMPLER_NAMES)
    for fn in SAMPLERS.values():
        assert inspect.signature(fn).parameters["clip_x0"].default == plan.clip_x0


def test_generate_conditions_sample_i_on_row_i_mod_n_whatever_the_split():
    schedule = NoiseSchedule.from_name("linear", 20)
    d = denoiser_of(lambda x, t, y=None: 0.1 * x + 0.01 * y.view(-1, 1, 1, 1), schedule, (1, 4, 4), num_classes=3)
    plan = SamplingPlan(sampler="ddim", steps=4, labels=torch.tensor([2, 0]))
    whole = generate(d, plan, 5, seed=1)
    assert torch.equal(whole[3:], generate(d, plan, 2, seed=1, first_index=3))
    assert torch.equal(whole, generate(d, plan.replace(labels=torch.tensor([2, 0, 2, 0, 2])), 5, seed=1))
    assert torch.equal(whole, generate(d, plan, 5, seed=1, batch_size=2))


def test_python_m_ddpm_runs_the_command():
    out = subprocess.run([sys.executable, "-m", "ddpm", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "usage: ddpm" in out.stdout
