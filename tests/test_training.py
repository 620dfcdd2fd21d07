"""The trainer on sklearn's 8×8 digits: it learns, logs, checkpoints and round-trips exactly."""
import json

import pytest
import torch

from ddpm.errors import DdpmError
from ddpm.denoiser import Denoiser
from ddpm.generation import generate
from ddpm.sampling.plan import SamplingPlan
from ddpm.models import build_schedule, load_model
from ddpm.train import Trainer
from ddpm.train.trainer import progress_grid_size
from helpers import sklearn_digits, tiny_config

CPU = torch.device("cpu")


def test_short_training_lowers_the_loss(tmp_path):
    config = tiny_config(train={"steps": 150, "log_every": 25})
    trainer = Trainer(config, tmp_path / "run", CPU, data=sklearn_digits(), quiet=True)
    summary = trainer.run()
    assert summary["steps"] == 150 and summary["stopped_by"] == "steps"
    log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [25, 50, 75, 100, 125, 150]
    # a fresh ε-model's loss is E‖ε‖² = 1; a model that learned something predicts ε far better
    assert log[0]["loss"] > 0.3 and log[-1]["loss"] < 0.5 * log[0]["loss"]
    assert len(log[-1]["loss_per_bucket"]) == 10 and log[-1]["images_per_s"] > 0
    # the noisiest tenth of timesteps is the easiest to predict ε for
    buckets = [b for b in log[-1]["loss_per_bucket"] if b is not None]
    assert buckets[-1] < buckets[0]


def test_checkpoint_round_trip_gives_identical_samples(tmp_path):
    config = tiny_config(train={"steps": 10})
    trainer = Trainer(config, tmp_path / "run", CPU, data=sklearn_digits(64), quiet=True)
    trainer.run()
    model, loaded_config, step = load_model(tmp_path / "run", device=CPU)
    assert step == 10 and loaded_config == trainer.config
    for a, b in zip(model.state_dict().values(), trainer.ema.state_dict().values()):
        assert torch.equal(a, b)
    plan = SamplingPlan(sampler="ddpm", steps=20)
    loaded = Denoiser.from_pretrained(tmp_path / "run")
    x = generate(trainer.denoiser(), plan, 6, seed=3)
    y = generate(loaded, plan, 6, seed=3)
    assert x.dtype == torch.uint8 and torch.equal(x, y)
    z = generate(loaded, plan, 6, seed=4)
    assert not torch.equal(x, z)


def test_progress_grids_from_a_fixed_latent(tmp_path):
    config = tiny_config(train={"steps": 4, "sample_every": 2})
    Trainer(config, tmp_path / "run", CPU, data=sklearn_digits(64), quiet=True).run()
    grids = sorted(p.name for p in (tmp_path / "run" / "progress").iterdir())
    assert grids == ["step_0000002.png", "step_0000004.png"]


@pytest.mark.parametrize("classes, progress_samples, num, size", [
    (0, 64, 8, 8),      # never more than sample.num
    (0, 5, 64, 5),
    (10, 64, 100, 60),  # conditional: whole rows of the ten classes
    (10, 20, 100, 20),
    (10, 3, 100, 10),   # at least one row
])
def test_progress_grid_size(classes, progress_samples, num, size):
    config = tiny_config(model={"num_classes": classes or None}, train={"progress_samples": progress_samples}, sample={"num": num})
    assert progress_grid_size(config) == size


def test_conditional_training_and_time_budget(tmp_path):
    config = tiny_config(data={"conditional": True}, train={"steps": 10_000, "max_minutes": 0.02})
    trainer = Trainer(config, tmp_path / "run", CPU, data=sklearn_digits(64), quiet=True)
    summary = trainer.run()
    assert summary["stopped_by"] == "time budget" and 0 < summary["steps"] < 10_000
    model, cfg, _ = load_model(tmp_path / "run")
    assert cfg.model.num_classes == 10 and model.label_embed is not None


def test_existing_run_is_not_overwritten(tmp_path):
    config = tiny_config(train={"steps": 2})
    Trainer(config, tmp_path / "run", CPU, data=sklearn_digits(64), quiet=True).run()
    with pytest.raises(ValueError, match="already holds a run; continue it \\(resume=True\\) or replace it \\(force=True\\)"):
        Trainer(config, tmp_path / "run", CPU, data=sklearn_digits(64), quiet=True)
    Trainer(config, tmp_path / "run", CPU, data=sklearn_digits(64), quiet=True, force=True)


def test_resume_applies_the_one_rule_of_what_may_change(tmp_path):
    config = tiny_config(train={"steps": 4})
    Trainer(config, tmp_path / "run", CPU, data=sklearn_digits(64), quiet=True).run()
    # how long to train may change: the requested config is not ignored (it was before)
    longer = tiny_config(train={"steps": 8})
    trainer = Trainer(longer, tmp_path / "run", CPU, data=sklearn_digits(64), quiet=True, resume=True)
    assert trainer.step == 4 and trainer.config.train.steps == 8
    assert trainer.run()["steps"] == 8
    # anything else is refused, naming the keys, instead of being silently dropped
    other = tiny_config(train={"steps": 8, "lr": 1e-4}, diffusion={"schedule": "cosine"})
    with pytest.raises(DdpmError, match="keeps its saved config except train.steps and train.max_minutes and train.log_to; this one changes "
                                        "diffusion.schedule, train.lr"):
        Trainer(other, tmp_path / "run", CPU, data=sklearn_digits(64), quiet=True, resume=True)
    # no config: the saved one as it is
    assert Trainer(None, tmp_path / "run", CPU, data=sklearn_digits(64), quiet=True, resume=True).config.train.steps == 8


def test_fp16_overflow_skips_the_step_without_counting_it(tmp_path):
    config = tiny_config(train={"steps": 3, "precision": "fp16", "log_every": 1})
    trainer = Trainer(config, tmp_path / "run", CPU, data=sklearn_digits(64), quiet=True)
    calls = []

    def overflow_once(grad):  # an inf gradient on the first backward pass only, as an fp16 overflow gives
        calls.append(1)
        return torch.full_like(grad, float("inf")) if len(calls) == 1 else grad

    first = next(trainer.model.parameters())
    first.register_hook(overflow_once)
    summary = trainer.run()
    # four optimiser attempts: the skipped one advanced neither the step counter nor the EMA, and is counted
    assert len(calls) == 4 and summary["steps"] == 3 and summary["skipped_steps"] == 1
    log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3] and log[-1]["skipped_steps"] == 1
    assert trainer.scaler.get_scale() < 2.0**16  # the scaler lowered its scale once


def test_a_time_budget_is_the_progress_bar_total_and_a_log_gets_plain_lines(tmp_path, capsys):
    config = tiny_config(train={"steps": 100_000, "max_minutes": 0.01})
    trainer = Trainer(config, tmp_path / "run", CPU, data=sklearn_digits(64))
    trainer.run()
    assert trainer.bar.unit == "s" and trainer.bar.total == round(0.6)  # seconds of budget, not 100 000 steps
    err = capsys.readouterr().err
    assert "\r" not in err and "training (time budget)" in err  # stderr is not a terminal here: plain lines


def test_min_snr_runs_log_the_plain_squared_error_beside_the_weighted_loss(tmp_path):
    """The first step of two runs that differ only in the weighting sees the same model, batch and noise: the
    logged ``loss`` (plain MSE) is the same, the ``weighted_loss`` is not (and is absent without weighting)."""
    logs = {}
    for name, gamma in (("plain", None), ("min-snr", 5.0)):
        config = tiny_config(diffusion={"min_snr_gamma": gamma}, train={"steps": 1, "log_every": 1})
        Trainer(config, tmp_path / name, CPU, data=sklearn_digits(64), quiet=True).run()
        logs[name] = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()
                      if json.loads(line).get("kind", "train") == "train"][0]
    plain, weighted = logs["plain"], logs["min-snr"]
    assert "weighted_loss" not in plain
    assert weighted["loss"] == pytest.approx(plain["loss"], rel=1e-6)
    assert weighted["loss_per_bucket"] == pytest.approx(plain["loss_per_bucket"], rel=1e-6)
    # ε-prediction's Min-SNR weight min(SNR, 5)/SNR is < 1 wherever SNR > 5: the objective is smaller
    assert weighted["weighted_loss"] < 0.99 * weighted["loss"]


def test_one_step_applies_warm_up_clipping_and_the_ema_by_value():
    """train_step with plain SGD (θ ← θ − lr·g) on a tiny U-Net: the learning rate of step n is lr·(n+1)/warm-up,
    the gradient is clipped to norm grad_clip, and the EMA is decay·EMA + (1 − decay)·θ with the warm-up decay
    min(ema_decay, (1 + n)/(10 + n)): 0.1 at step 0, 2/11 at step 1, 0.4 at step 5, ema_decay (0.9) from step 80 on."""
    import copy

    from ddpm.models import build_model
    from ddpm.train.step import train_step

    config = tiny_config(train={"lr": 0.01, "warmup_steps": 4, "grad_clip": 1e-3, "ema_decay": 0.9, "ema_warmup": True})
    config = config.resolved(8, 1, None)
    torch.manual_seed(0)
    model = build_model(config)
    ema = copy.deepcopy(model)
    with torch.no_grad():
        for p in ema.parameters():
            p.add_(0.1)  # an EMA apart from the weights, so that the decay shows
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    x = torch.rand(8, 1, 8, 8) * 2 - 1
    for step, lr, decay in ((0, 0.0025, 0.1), (1, 0.005, 2 / 11), (5, 0.01, 0.4), (100, 0.01, 0.9)):
        before = [p.detach().clone() for p in model.parameters()]
        ema_before = [p.detach().clone() for p in ema.parameters()]
        result = train_step(model, ema, optimizer, scaler, build_schedule(config), x, None, config=config, step=step,
                            noise_gen=torch.Generator().manual_seed(step))
        assert result.applied
        assert optimizer.param_groups[0]["lr"] == pytest.approx(lr, rel=1e-12)
        grads = [p.grad for p in model.parameters()]
        assert torch.sqrt(sum((g.double() ** 2).sum() for g in grads)).item() == pytest.approx(1e-3, rel=1e-4)
        for p, p0, g in zip(model.parameters(), before, grads):
            torch.testing.assert_close(p.detach(), p0 - lr * g, rtol=0, atol=1e-9)
        for e, e0, p in zip(ema.parameters(), ema_before, model.parameters()):
            torch.testing.assert_close(e.detach(), decay * e0 + (1 - decay) * p.detach(), rtol=1e-6, atol=1e-7)
