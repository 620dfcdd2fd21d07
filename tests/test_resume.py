"""Never lose a run: exact resume (in process, after SIGKILL at random moments, after SIGTERM), checkpoint
corruption detected with the previous one offered, non-finite steps skipped, code-running pickles refused."""
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ddpm.cli import main
from ddpm.errors import TrainingDiverged
from ddpm.train import Trainer
from ddpm.checkpoint import list_checkpoints, load_state, state_path
from helpers import drop_state_digest, sklearn_digits, tiny_config
from test_data import make_idx_dir

CPU = torch.device("cpu")


def final_tensors(run: Path) -> dict[str, torch.Tensor]:
    """Weights, EMA and optimizer moments of a run's latest checkpoint, plus its step."""
    step, path = list_checkpoints(run)[-1]
    tensors = load_file(str(path))
    optim = load_state(path)["optimizer"]["state"]
    for i, s in optim.items():
        tensors[f"optim.{i}.exp_avg"], tensors[f"optim.{i}.exp_avg_sq"] = s["exp_avg"], s["exp_avg_sq"]
    tensors["step"] = torch.tensor(step)
    return tensors


def assert_identical(a: dict, b: dict):
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


# -- in process ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("improved", [False, True])
def test_resume_is_bit_exact_in_process(tmp_path, improved):
    """Also for improved DDPM: learned Σ, hybrid loss and the loss-aware timestep sampler, which on T = 10 has
    its full history (10 per step) after 4 steps, so the resumed part samples t by the restored history."""
    extra = {"diffusion": {"num_timesteps": 10, "variance": "learned_range", "loss": "hybrid"},
             "sample": {"steps": 5}} if improved else {}
    sampler = {"timestep_sampler": "loss_aware"} if improved else {}
    config = tiny_config(model={"dropout": 0.1}, train={"steps": 12, "checkpoint_every": 4, "log_every": 2, **sampler}, **extra)
    data = sklearn_digits(100)
    Trainer(config, tmp_path / "straight", CPU, data=data, quiet=True).run()
    half = tiny_config(model={"dropout": 0.1}, train={"steps": 7, "checkpoint_every": 4, "log_every": 2, **sampler}, **extra)
    Trainer(half, tmp_path / "resumed", CPU, data=data, quiet=True).run()
    trainer = Trainer(None, tmp_path / "resumed", CPU, data=data, quiet=True, resume=True)
    assert trainer.step == 7
    trainer.config = trainer.config.with_overrides(["train.steps=12"])
    trainer.run()
    assert_identical(final_tensors(tmp_path / "straight"), final_tensors(tmp_path / "resumed"))
    log = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4, 6, 7, 8, 10, 12]
    assert [s for s, _ in list_checkpoints(tmp_path / "resumed")] == [8, 12]  # keep_checkpoints = 2
    if improved:
        history = load_state(list_checkpoints(tmp_path / "resumed")[-1][1])["timestep_sampler"]
        assert (history["count"] == 10).all()  # warmed up: the last steps drew t from p ∝ √E[L_t²]
        assert torch.equal(history["history"], load_state(list_checkpoints(tmp_path / "straight")[-1][1])["timestep_sampler"]["history"])


def test_resume_from_an_older_checkpoint_sets_newer_ones_aside_and_trims_the_log(tmp_path):
    config = tiny_config(train={"steps": 8, "checkpoint_every": 2, "log_every": 1, "keep_checkpoints": 3})
    data = sklearn_digits(64)
    Trainer(config, tmp_path / "run", CPU, data=data, quiet=True).run()
    older = dict(list_checkpoints(tmp_path / "run"))[4]
    trainer = Trainer(None, tmp_path / "run", CPU, data=data, quiet=True, resume=older)
    assert trainer.step == 4 and [s for s, _ in list_checkpoints(tmp_path / "run")] == [4]
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("*.abandoned")) == [
        "step_00000006-state.pt.abandoned", "step_00000006.safetensors.abandoned",
        "step_00000008-state.pt.abandoned", "step_00000008.safetensors.abandoned"]
    assert [json.loads(x)["step"] for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]


class FaultyForward:
    """Wraps a network so chosen calls return NaN (a numerical fault injected into a real model)."""

    def __init__(self, net, bad_calls):
        self.net, self.bad_calls, self.calls = net, set(bad_calls), 0

    def __call__(self, *args, **kwargs):
        out = self.net.forward_clean(*args, **kwargs)
        self.calls += 1
        return out * float("nan") if self.calls in self.bad_calls else out


def inject(trainer, bad_calls):
    net = trainer.model
    net.forward_clean = net.forward
    net.forward = FaultyForward(net, bad_calls)


def test_non_finite_losses_are_skipped_and_counted(tmp_path):
    trainer = Trainer(tiny_config(train={"steps": 10}), tmp_path / "run", CPU, data=sklearn_digits(64), quiet=True)
    inject(trainer, bad_calls={3, 4})
    summary = trainer.run()
    assert summary["steps"] == 10 and summary["skipped_steps"] == 2
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_non_finite_gradients_are_skipped(tmp_path):
    trainer = Trainer(tiny_config(train={"steps": 6}), tmp_path / "run", CPU, data=sklearn_digits(64), quiet=True)
    calls = []
    first = next(trainer.model.parameters())
    first.register_hook(lambda g: g * float("inf") if len(calls.append(0) or calls) == 2 else g)
    summary = trainer.run()
    assert summary["skipped_steps"] == 1 and summary["steps"] == 6
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_persistent_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    config = tiny_config(train={"steps": 50, "checkpoint_every": 4, "max_bad_steps": 3})
    trainer = Trainer(config, tmp_path / "run", CPU, data=sklearn_digits(64), quiet=True)
    inject(trainer, bad_calls=range(7, 100))
    with pytest.raises(TrainingDiverged, match="not finite 3 steps in a row at step 6; training stopped"):
        trainer.run()
    (step, path), = list_checkpoints(tmp_path / "run")[-1:]
    assert step == 4
    assert all(torch.isfinite(t).all() for t in load_file(str(path)).values())


# -- loading: corruption and unsafe pickles ----------------------------------------------------------------
@pytest.fixture()
def two_checkpoints(tmp_path):
    Trainer(tiny_config(train={"steps": 4, "checkpoint_every": 2}), tmp_path / "run", CPU, data=sklearn_digits(64), quiet=True).run()
    return tmp_path / "run", [p for _, p in list_checkpoints(tmp_path / "run")]


def test_truncated_checkpoint_is_detected_and_the_previous_offered(two_checkpoints, capsys):
    run, (older, latest) = two_checkpoints
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])
    assert main(["sample", str(run), "--num", "1", "--steps", "1", "--out", str(run / "x.png")]) == 2
    err = capsys.readouterr().err
    assert f"{latest} is not a ddpm checkpoint or is truncated" in err and f"the previous checkpoint {older} (step 2) is intact" in err
    # the offered way out works (the run's data are the digits it was trained on, not the MNIST its config names)
    Trainer(None, run, CPU, resume=older, data=sklearn_digits(64), quiet=True).run()
    assert [s for s, _ in list_checkpoints(run)] == [2, 4]


def test_flipped_bit_is_caught_by_the_checksum(two_checkpoints, capsys):
    run, (older, latest) = two_checkpoints
    raw = bytearray(latest.read_bytes())
    raw[-3] ^= 0x10  # inside the last tensor's data: the safetensors header is still valid
    latest.write_bytes(bytes(raw))
    assert main(["sample", str(run), "--num", "1", "--steps", "1", "--out", str(run / "x.png")]) == 2
    assert "is corrupt (its tensors do not match the checksum" in capsys.readouterr().err


def test_a_state_pickle_that_runs_code_is_refused(two_checkpoints, tmp_path, capsys):
    run, (_, latest) = two_checkpoints
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    state_path(latest).write_bytes(pickle.dumps({"step": Exploit()}, protocol=2))
    assert main(["train", "--resume", str(run), "--quiet"]) == 2  # the weights' record of the state's checksum
    assert "is not the resume state written with step_00000004.safetensors" in capsys.readouterr().err
    drop_state_digest(latest)  # a checkpoint from before that record: the pickle is still never run
    assert main(["train", "--resume", str(run), "--quiet"]) == 2
    assert "is not a valid resume state" in capsys.readouterr().err
    assert not marker.exists()


def test_existing_run_is_kept_without_force(two_checkpoints, capsys):
    run, paths = two_checkpoints
    before = {p: p.read_bytes() for p in paths}
    assert main(["train", "--out", str(run), "--steps", "2", "--quiet"]) == 2
    assert "already holds a run; continue it (--resume) or replace it (--force)" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in paths} == before


# -- real processes: SIGKILL at random moments, SIGTERM ------------------------------------------------------
TRAIN = ["--data", "mnist-idx", "--steps", "150", "--batch-size", "8", "--seed", "5",
         "--set", "model.base_channels=16", "--set", "model.channel_mults=[1, 2]", "--set", "model.num_res_blocks=1",
         "--set", "model.attention_resolutions=[14]", "--set", "model.head_channels=16", "--set", "model.dropout=0.1",
         "--set", "diffusion.num_timesteps=50", "--set", "train.sample_every=0", "--set", "train.checkpoint_every=7",
         "--set", "train.log_every=5", "--quiet"]


def ddpm(*args) -> list[str]:
    return [sys.executable, "-m", "ddpm", "train", *args]


@pytest.fixture(scope="module")
def idx_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("idx")
    make_idx_dir(root, n_train=200, n_test=10)
    return root


@pytest.fixture(scope="module")
def straight_run(idx_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight") / "run"
    subprocess.run(ddpm("--data-dir", str(idx_data), "--out", str(out), *TRAIN), check=True, capture_output=True)
    return final_tensors(out)


def latest_step(run: Path) -> int:
    found = list_checkpoints(run)
    return found[-1][0] if found else -1


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_is_bit_exact(idx_data, straight_run, tmp_path):
    # Each kill lands a random 0-1.5 s after the run has written a new checkpoint, so every attempt is killed
    # mid-training (possibly mid-write) however slowly the machine starts Python and torch.
    out = tmp_path / "run"
    rng = random.Random(0)
    kills = 0
    for attempt in range(6):
        argv = ddpm("--out", str(out), "--resume", "--quiet") if (out / "config.json").exists() else \
            ddpm("--data-dir", str(idx_data), "--out", str(out), *TRAIN)
        latest = latest_step(out)
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 300
        while proc.poll() is None and time.time() < deadline and latest_step(out) <= latest:
            time.sleep(0.02)
        try:
            proc.wait(timeout=rng.uniform(0.0, 1.5))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
        else:
            break
    assert kills >= 3
    finish = subprocess.run(ddpm("--out", str(out), "--resume", "--quiet"), capture_output=True, text=True)
    assert finish.returncode == 0, finish.stderr
    assert_identical(straight_run, final_tensors(out))
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 150  # no duplicated or half-written records


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_resume_is_bit_exact(idx_data, straight_run, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(ddpm("--data-dir", str(idx_data), "--out", str(out), *TRAIN), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    log = out / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (log.exists() and log.read_text().count("\n") >= 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    step = list_checkpoints(out)[-1][0]
    assert f"SIGTERM at step {step}: checkpoint saved; continue with ddpm train --resume {out}" in err
    assert 0 < step < 150
    finish = subprocess.run(ddpm("--resume", str(out), "--quiet"), capture_output=True, text=True)
    assert finish.returncode == 0, finish.stderr
    assert_identical(straight_run, final_tensors(out))
