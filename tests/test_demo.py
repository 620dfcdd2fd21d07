"""``ddpm demo`` (the README's first command): every promised file, and the overall time budget that stops
training early enough for the work after it (whose size the budget predicts exactly)."""
import json
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from ddpm.cli import main
from ddpm.config import RunConfig
from ddpm.demo import FIXED_SECONDS_AFTER_TRAINING, FORWARDS_PER_TRAINED_IMAGE, STEPS_BEFORE_ESTIMATE, FinishBy, \
    evaluations_after_training
from ddpm.nets.unet import UNet
from ddpm.train import Trainer
from ddpm.checkpoint import list_checkpoints
from helpers import sklearn_digits, tiny_config


@pytest.mark.slow
def test_demo_end_to_end_on_a_tiny_budget(tmp_path, monkeypatch):
    """~1 s of training, then everything the demo promises. The network's evaluations after training (the
    EMA / loaded models run in eval mode; training forwards do not) are exactly the number the overall
    budget reserves time for."""
    evaluated = []
    forward = UNet.forward

    def counting_forward(self, x, t, y=None):
        if not self.training:
            evaluated.append(x.shape[0])
        return forward(self, x, t, y)

    monkeypatch.setattr(UNet, "forward", counting_forward)
    out = tmp_path / "demo"
    assert main(["demo", "--max-minutes", "0.02", "--out", str(out)]) == 0
    npz = np.load(out / "samples.npz")
    assert npz["arr_0"].shape == (100, 28, 28, 1) and npz["arr_1"].tolist() == list(range(10)) * 10
    assert Image.open(out / "samples.png").size == (2 * (10 * 30 + 2), 2 * (10 * 30 + 2))  # one class per column
    summary = (out / "summary.md").read_text()
    assert "classifier-free guidance w = 2" in summary and "2×2 patches" in summary and "stopped by time budget" in summary
    assert (out / "report.html").is_file()
    config = RunConfig.from_dict(json.loads((out / "config.json").read_text()))
    step = list_checkpoints(out)[-1][0]
    assert 0 < step < config.train.sample_every  # so the last progress grid is drawn after training
    # samples, last grid and reverse GIF (guided: 2 passes); the sampler rows; the report's guidance sweep (w = 0: 1 pass)
    assert sum(evaluated) == evaluations_after_training(config, step) == \
        (100 + 20 + 4) * 50 * 2 + 8 * 4 * 20 * 2 + (1 + 2 + 2 + 2 + 2) * 10 * 50


def demo_config() -> RunConfig:
    """The demo preset as the trainer resolves it on MNIST (ten classes)."""
    return RunConfig.from_toml("mnist-demo").with_overrides(["model.num_classes=10"])


def test_no_progress_grid_is_reserved_when_training_stops_on_one():
    config = demo_config()
    every = config.train.sample_every
    assert evaluations_after_training(config, every - 1) - evaluations_after_training(config, every) == 20 * 50 * 2
    assert evaluations_after_training(config, 0) == evaluations_after_training(config, every + 1)


@pytest.mark.slow
def test_a_demo_whose_budget_is_spent_says_its_samples_are_untrained(tmp_path, capsys):
    """An install that took the whole budget: the demo still writes every file and says why they are noise."""
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--started-at", str(time.time() - 600), "--finish-within", "9.25"]) == 0
    assert "left time for only 0 training steps" in capsys.readouterr().err
    assert "stopped by the demo's overall time budget" in (out / "summary.md").read_text()
    assert (out / "samples.png").is_file() and (out / "report.html").is_file()


def fake_trainer(steps: int, seconds: float):
    """What FinishBy reads of a demo Trainer that has trained ``steps`` steps (from step 100) in ``seconds``."""
    return SimpleNamespace(step=100 + steps, start_step=100, started=time.time() - seconds, config=demo_config())


def test_finish_by_reserves_the_predicted_time_after_training():
    trainer = fake_trainer(steps=1000, seconds=200.0)  # 32 000 images in 200 s: 160 trained images/s
    evaluations = evaluations_after_training(trainer.config, trainer.step)
    after = FIXED_SECONDS_AFTER_TRAINING + evaluations / (FORWARDS_PER_TRAINED_IMAGE * 160.0)
    assert FinishBy(time.time()).seconds_after_training(trainer) == pytest.approx(after, rel=1e-3)
    assert FinishBy(time.time() + after + 5)(trainer) is None
    assert FinishBy(time.time() + after - 5)(trainer) == "the demo's overall time budget"
    # a machine half as fast needs twice the time for the same evaluations
    slow = FinishBy(time.time()).seconds_after_training(fake_trainer(steps=1000, seconds=400.0))
    assert slow - FIXED_SECONDS_AFTER_TRAINING == pytest.approx(2 * (after - FIXED_SECONDS_AFTER_TRAINING), rel=1e-3)
    # too few steps to trust the throughput: only the fixed part is reserved
    early = fake_trainer(steps=STEPS_BEFORE_ESTIMATE - 1, seconds=0.001)
    assert FinishBy(time.time()).seconds_after_training(early) == FIXED_SECONDS_AFTER_TRAINING


def test_a_trainer_stops_at_a_deadline_already_past_and_runs_to_the_end_otherwise(tmp_path):
    config = tiny_config(train={"steps": 6})
    data = sklearn_digits(64)
    late = Trainer(config, tmp_path / "late", torch.device("cpu"), data=data, quiet=True)
    summary = late.run(stop_when=FinishBy(time.time()))
    assert summary["steps"] == 0 and summary["stopped_by"] == "the demo's overall time budget"
    early = Trainer(config, tmp_path / "early", torch.device("cpu"), data=data, quiet=True)
    summary = early.run(stop_when=FinishBy(time.time() + 3600))
    assert summary["steps"] == 6 and summary["stopped_by"] == "steps"
