"""Nothing a user types crashes ddpm. For each class of bad input: several members fed through the CLI, each
answered by exit 2 (or the documented code), one sentence naming the setting or file and what was expected, no
traceback, and no file of the user's created, changed or removed (hashes before and after). Then the atomic
writer under a full disk and a kill, and the small promises (seeds, file modes, resume steps)."""
import hashlib
import os
import random
import resource
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from ddpm.checkpoint import list_checkpoints, state_path
from ddpm.cli import main
from ddpm.config import DataConfig, DiffusionConfig, SampleConfig, TrainConfig
from ddpm.errors import DdpmError, TrainingDiverged
from ddpm.nets import MLPConfig, UNetConfig
from ddpm.train import Trainer
from ddpm.validation import INT64_MAX, POSITIVE, SEED, UNIT_HALF_OPEN, Bounds, check_number, numeric_fields
from helpers import drop_state_digest, sklearn_digits, tiny_config
from test_cli import TINY
from test_resume import inject

CPU = torch.device("cpu")


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (and the folders, as ''), by relative path."""
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "")
            for p in sorted(root.rglob("*"))}


def refused(argv: list[str], message: str, capsys, code: int = 2) -> None:
    """``ddpm argv`` ends with ``code`` and one line 'ddpm CMD: error: …' holding ``message``, no traceback."""
    assert main(argv) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith(f"ddpm {argv[0]}: error: ") and message in err[-1], err
    assert "Traceback" not in "\n".join(err)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A folder holding a tiny conditional run and a tiny MLP run (the user's files whose hashes must not move)."""
    root = tmp_path_factory.mktemp("user")
    common = ["--data", "mnist", "--limit", "64", "--steps", "3", "--batch-size", "16"]
    assert main(["train", *common, "--out", str(root / "run"), "--set", "data.conditional=true", *TINY]) == 0
    assert main(["train", *common, "--out", str(root / "mlp"), "--set", "model.architecture=mlp", "--set", "model.hidden=32",
                 "--set", "diffusion.num_timesteps=50", "--quiet"]) == 0
    (root / "empty.npz").write_bytes(b"")
    np.savez(root / "nan-stats.npz", mu=np.full(4, np.nan), sigma=np.eye(4), num=10, feature="domain")
    np.savez(root / "digits.npz", arr_0=np.random.default_rng(0).integers(0, 256, (8, 28, 28, 1), dtype=np.uint8))
    # statistics as wide as the MNIST classifier's features, but of another extractor
    np.savez(root / "other-128.npz", mu=np.zeros(128), sigma=np.eye(128), num=10, feature="inception-2015-12-05")
    (root / "a-file").write_text("not a folder")
    return root


# -- one mechanism: every numeric setting declares its range ------------------------------------------------
@pytest.mark.parametrize("cls", [DataConfig, DiffusionConfig, TrainConfig, SampleConfig, UNetConfig, MLPConfig])
def test_every_numeric_setting_declares_its_range(cls):
    assert numeric_fields(cls) and all(has for _, has in numeric_fields(cls)), [n for n, has in numeric_fields(cls) if not has]


def test_the_universal_rules_hold_whatever_the_bounds():
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(DdpmError, match="must be finite and positive"):
            check_number(bad, False, POSITIVE, "x")
    with pytest.raises(DdpmError, match=r"must be a finite number, got nan"):
        check_number(float("nan"), False, None, "x")
    with pytest.raises(DdpmError, match=r"must be an integer below 2\^63"):
        check_number(2**63, True, None, "x")
    check_number(INT64_MAX, True, SEED, "x")
    with pytest.raises(DdpmError, match=r"x must be in 0\.\.9223372036854775807, got 9223372036854775808"):
        check_number(2**63, True, SEED, "x")
    assert [UNIT_HALF_OPEN.contains(v) for v in (0, 0.5, 1)] == [True, True, False]
    assert Bounds(0, 1, lo_open=True).describe(False) == "in (0, 1]" and Bounds(lo=0, lo_open=True).describe(True) == "a positive integer"


# -- settings checked before work, and bad values never accepted silently -------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["train", "--out", "{ws}/new", "--set", "data.image_size=0"], "data.image_size must be in 4..4096, got 0"),
    (["train", "--out", "{ws}/new", "--set", "model.head_channels=0"], "model.head_channels must be a positive integer, got 0"),
    (["train", "--out", "{ws}/new", "--set", "model.channel_mults=[1, 0]"], "model.channel_mults[1] must be a positive integer"),
    (["train", "--out", "{ws}/new", "--set", "train.weight_decay=nan"], "train.weight_decay must be in [0, 1], got nan"),
    (["train", "--out", "{ws}/new", "--set", "train.weight_decay=-0.1"], "train.weight_decay must be in [0, 1], got -0.1"),
    (["train", "--out", "{ws}/new", "--set", "train.seed=18446744073709551616"], "train.seed must be in 0..9223372036854775807"),
    (["train", "--out", "{ws}/new", "--seed", "18446744073709551616"], "argument --seed: must be in 0..9223372036854775807"),
    (["train", "--out", "{ws}/new", "--set", "train.lr=inf"], "train.lr must be in (0, 1], got inf"),
    (["train", "--out", "{ws}/new", "--set", "train.lr=1e300"], "train.lr must be in (0, 1], got 1e+300"),
    (["train", "--out", "{ws}/new", "--set", "train.max_minutes=nan"], "train.max_minutes must be finite and positive, got nan"),
    (["train", "--out", "{ws}/new", "--max-minutes", "-1"], "argument --max-minutes: must be positive, got -1"),
    (["train", "--out", "{ws}/new", "--set", "data.conditional=true", "--set", "sample.guidance=inf"],
     "sample.guidance must be finite and zero or more, got inf"),
    (["train", "--out", "{ws}/new", "--set", "diffusion.min_snr_gamma=-5"], "diffusion.min_snr_gamma must be positive, got -5.0"),
    (["fid", "--batch-size", "0", "{ws}/empty.npz", "{ws}/empty.npz"], "argument --batch-size: must be a positive integer, got 0"),
    (["viz", "schedules", "--num-timesteps", "0", "--out", "{ws}/s.png"], "argument --num-timesteps: must be in 1..10000, got 0"),
    (["sample", "{ws}/run", "--steps", "0", "--out", "{ws}/x.npz"], "argument --steps: must be a positive integer, got 0"),
    (["sample", "{ws}/run", "--guidance", "nan", "--out", "{ws}/x.npz"], "argument --guidance: must be finite and zero or more, got nan"),
    (["sample", "{ws}/run", "--eta", "inf", "--sampler", "ddim", "--out", "{ws}/x.npz"], "argument --eta: must be in [0, 1], got inf"),
    (["sample", "{ws}/run", "--num", "1.5", "--out", "{ws}/x.npz"], "argument -n/--num: must be a positive integer, got '1.5'"),
    (["sample", "{ws}/run", "--label", "-1", "--out", "{ws}/x.npz"], "argument --label: must be zero or more, got -1"),
    (["eval", "{ws}/run", "--domain", "--num", "4", "--guidance", "nan"], "argument --guidance: must be finite and zero or more"),
    (["eval", "{ws}/run", "--nll", "--nll-timesteps", "-3"], "argument --nll-timesteps: must be a positive integer, got -3"),
    (["sample", "{ws}/run", "--guidance-interval", "0.6,0.2", "--out", "{ws}/x.npz"], "argument --guidance-interval: must have LO < HI, got 0.6,0.2"),
    (["sample", "{ws}/run", "--guidance-interval", "0.2,1.5", "--out", "{ws}/x.npz"], "argument --guidance-interval: must be in [0, 1], got 1.5"),
    (["sample", "{ws}/run", "--guidance-interval", "0.2", "--out", "{ws}/x.npz"], "argument --guidance-interval: must be LO,HI"),
    (["train", "--out", "{ws}/new", "--set", "sample.guidance_from=0.5", "--set", "sample.guidance_to=0.5"],
     "sample.guidance_from must be below sample.guidance_to"),
    (["demo", "--out", "{ws}/d", "--max-minutes", "inf"], "argument --max-minutes: must be finite and positive, got inf"),
    (["train", "--out", "{ws}/new", "--fast", "--device", "cpu"], "--fast sets the CUDA path"),
    (["train", "--out", "{ws}/new", "--data", "mnist", "--limit", "10", "--batch-size", "16"],
     "train.batch_size 16 is more than the 10 training images of mnist"),
    (["sample", "{ws}/run", "--device", "cuda:abc", "--out", "{ws}/x.npz"], "unknown device 'cuda:abc'; expected auto, cpu, cuda or cuda:N"),
    (["train", "--resume", "{ws}/run", "--fast"], "--resume continues a run with its saved config"),
])
def test_settings_are_refused_before_any_work(argv, message, workspace, capsys):
    before = snapshot(workspace)
    refused([a.replace("{ws}", str(workspace)) for a in argv], message, capsys)
    assert snapshot(workspace) == before  # eval --guidance nan appends no row to metrics.jsonl; no run folder left


# -- files that are not what they claim ------------------------------------------------------------------------
def mixed_checkpoint(workspace: Path, tmp_path: Path, which: str) -> Path:
    """A copy of the U-Net run with the MLP run's weights or state file in place of its own."""
    import shutil

    run = tmp_path / "mixed"
    shutil.copytree(workspace / "run", run)
    (_, own), = list_checkpoints(run)[-1:]
    (_, other), = list_checkpoints(workspace / "mlp")[-1:]
    source = other if which == "weights" else state_path(other)
    shutil.copy(source, own if which == "weights" else state_path(own))
    return run


@pytest.mark.parametrize("which", ["weights", "state"])
def test_resume_refuses_a_checkpoint_pair_of_two_runs(which, workspace, tmp_path, capsys):
    run = mixed_checkpoint(workspace, tmp_path, which)
    before = snapshot(run)
    refused(["train", "--resume", str(run), "--steps", "5", "--quiet"], "is not the resume state written with step_00000003", capsys)
    assert snapshot(run) == before


def test_resume_refuses_another_networks_optimizer_state_in_an_older_checkpoint(workspace, tmp_path, capsys):
    run = mixed_checkpoint(workspace, tmp_path, "state")
    drop_state_digest(list_checkpoints(run)[-1][1])  # written before the weights recorded their state's checksum
    before = snapshot(run)
    refused(["train", "--resume", str(run), "--steps", "5", "--quiet"], "does not fit this model: its optimizer state is another network's", capsys)
    assert snapshot(run) == before


def test_weights_that_do_not_fit_are_named():
    """Weights of another version of a network (the MLP before its input skip; a U-Net of other widths): one sentence
    naming the missing, unexpected and misshapen parameters."""
    from ddpm.models import load_into
    from ddpm.nets import MLP, MLPConfig

    old = MLP(MLPConfig(image_size=8, hidden=32, depth=2, input_skip=False)).state_dict()
    with pytest.raises(DdpmError, match=r"^run: weights do not fit the model its config describes \(missing skip_gain.weight, "
                                        r"skip_gain.bias; was it written by another version of ddpm\?\)$"):
        load_into(MLP(MLPConfig(image_size=8, hidden=32, depth=2)), old, "run")
    with pytest.raises(DdpmError, match=r"\(unexpected skip_gain.weight, skip_gain.bias; shape input.weight \[16, 64\] for "
                                        r"\[32, 64\], input.bias \[16\] for \[32\], .* and 14 more;"):
        load_into(MLP(MLPConfig(image_size=8, hidden=32, depth=2, input_skip=False)),
                  MLP(MLPConfig(image_size=8, hidden=16, depth=2)).state_dict(), "run")


def test_resume_refuses_data_that_changed(tmp_path):
    Trainer(tiny_config(train={"steps": 2}), tmp_path / "run", CPU, data=sklearn_digits(64), quiet=True).run()
    with pytest.raises(DdpmError, match="data order covers 64 images but the dataset now has 80"):
        Trainer(None, tmp_path / "run", CPU, resume=True, data=sklearn_digits(80), quiet=True)


def test_config_json_that_is_not_an_object(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("[1, 2]")  # a run killed before its first checkpoint, config.json then damaged
    before = snapshot(tmp_path)
    refused(["train", "--resume", str(run), "--quiet"], "config.json must be a table of sections, got list", capsys)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("argv, message", [
    (["fid", "{ws}/empty.npz", "{ws}/run"], "empty.npz is not a readable .npz file (it is empty)"),
    (["fid", "--feature", "domain", "{ws}/nan-stats.npz", "{ws}/nan-stats.npz"], "nan-stats.npz: its mean or covariance holds NaN"),
    (["fid", "{ws}/missing.npz", "{ws}/empty.npz"], "missing.npz does not exist"),
    (["fid", "{ws}/run/config.json", "{ws}/empty.npz"], "is not an image folder, an .npz file"),
    (["fid", "--feature", "domain", "{ws}/digits.npz", "{ws}/other-128.npz"],
     "cannot compare statistics of different feature extractors: domain-mnist and inception-2015-12-05"),
    (["eval", "{ws}/run", "--domain", "--num", "4", "--steps", "2", "--reference", "{ws}/other-128.npz"],
     "cannot compare statistics of different feature extractors: domain-mnist and inception-2015-12-05"),
])
def test_files_that_are_not_what_they_claim(argv, message, workspace, capsys):
    before = snapshot(workspace)
    refused([a.replace("{ws}", str(workspace)) for a in argv], message, capsys)
    assert snapshot(workspace) == before


# -- resources and work thrown away ---------------------------------------------------------------------------
def test_a_sample_count_that_cannot_fit_says_how_many_do(workspace, monkeypatch, capsys):
    import ddpm.sample_files

    monkeypatch.setattr(ddpm.sample_files, "available_memory", lambda: 10_000_000)  # 10 MB: 6377 samples of 28×28 fit
    before = snapshot(workspace)
    refused(["sample", str(workspace / "run"), "--num", "100000", "--out", str(workspace / "big.npz")],
            "100000 samples of 1×28×28 need 0.2 GB of memory for one .npz or .png, more than the 0.0 GB available; about 6377 fit", capsys)
    assert snapshot(workspace) == before


def test_a_folder_of_pngs_is_written_batch_by_batch_with_the_same_images(workspace, tmp_path):
    from PIL import Image

    assert main(["sample", str(workspace / "run"), "--num", "5", "--steps", "2", "--out", str(tmp_path / "all.npz")]) == 0
    assert main(["sample", str(workspace / "run"), "--num", "5", "--steps", "2", "--batch-size", "2", "--out", str(tmp_path / "dir")]) == 0
    whole = np.load(tmp_path / "all.npz")["arr_0"][..., 0]
    assert np.array_equal(whole, np.stack([np.asarray(Image.open(tmp_path / "dir" / f"{i:06d}.png")) for i in range(5)]))


@pytest.mark.parametrize("argv, message", [
    (["sample", "{ws}/run", "--num", "2", "--steps", "1", "--out", "{ws}/a-file/x.npz"], "cannot write {ws}/a-file/x.npz: {ws}/a-file is a file, not a folder"),
    (["sample", "{ws}/run", "--num", "2", "--steps", "1", "--out", "{ws}/a-file/deeper/pngs"], "{ws}/a-file is a file, not a folder"),
    (["viz", "reverse", "{ws}/run", "--out", "{ws}/a-file/r.gif"], "{ws}/a-file is a file, not a folder"),
])
def test_an_unwritable_destination_is_refused_before_sampling(argv, message, workspace, monkeypatch, capsys):
    import ddpm.generation
    import ddpm.viz.process

    def never(*args, **kwargs):
        raise AssertionError("the expensive part ran before the destination was checked")

    monkeypatch.setattr(ddpm.generation, "generate", never)
    monkeypatch.setattr(ddpm.viz.process, "reverse_trajectory", never)
    before = snapshot(workspace)
    refused([a.replace("{ws}", str(workspace)) for a in argv], message.replace("{ws}", str(workspace)), capsys)
    assert snapshot(workspace) == before


def test_fid_stats_with_an_unwritable_cache_computes_nothing(workspace, monkeypatch, capsys):
    import ddpm.data

    monkeypatch.setenv("DDPM_CACHE", str(workspace / "a-file" / "cache"))
    monkeypatch.setattr(ddpm.data, "load_dataset", lambda *a, **k: (_ for _ in ()).throw(AssertionError("computed first")))
    before = snapshot(workspace)
    refused(["fid-stats", "mnist:test", "--feature", "domain"], "a-file is a file, not a folder", capsys)
    assert snapshot(workspace) == before


# -- leftovers ---------------------------------------------------------------------------------------------
def diverging(tmp_path: Path, **kwargs) -> Trainer:
    trainer = Trainer(tiny_config(train={"steps": 20, "checkpoint_every": 10, "max_bad_steps": 2}), tmp_path / "run", CPU,
                      data=sklearn_digits(64), quiet=True, **kwargs)
    inject(trainer, bad_calls=range(100))
    return trainer


def test_a_new_run_that_fails_before_its_first_checkpoint_leaves_nothing(tmp_path):
    with pytest.raises(TrainingDiverged):
        diverging(tmp_path).run()
    assert not (tmp_path / "run").exists()  # the next ddpm train --out to the same place needs no --force
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")  # a folder the user made, with a file of theirs
    with pytest.raises(TrainingDiverged):
        diverging(tmp_path).run()
    assert snapshot(tmp_path / "run") == {"notes.txt": hashlib.sha256(b"mine").hexdigest()}


def test_a_failed_replacement_puts_the_old_run_back(tmp_path):
    Trainer(tiny_config(train={"steps": 2}), tmp_path / "run", CPU, data=sklearn_digits(64), quiet=True).run()
    before = snapshot(tmp_path / "run")
    with pytest.raises(TrainingDiverged):
        diverging(tmp_path, force=True).run()
    assert snapshot(tmp_path / "run") == before


# -- small promises ------------------------------------------------------------------------------------------
def test_train_seed_seeds_every_global_rng(tmp_path):
    draws = []
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        Trainer(tiny_config(train={"steps": 1, "seed": seed}), tmp_path / name, CPU, data=sklearn_digits(64), quiet=True)
        draws.append((torch.rand(1).item(), float(np.random.rand()), random.random()))
    assert draws[0] == draws[1] and all(x != y for x, y in zip(draws[0], draws[2]))
    Trainer(tiny_config(train={"steps": 1, "seed": INT64_MAX}), tmp_path / "d", CPU, data=sklearn_digits(64), quiet=True)


def test_weights_and_state_files_get_the_same_mode(tmp_path):
    Trainer(tiny_config(train={"steps": 1}), tmp_path / "run", CPU, data=sklearn_digits(64), quiet=True).run()
    (_, weights), = list_checkpoints(tmp_path / "run")
    umask = os.umask(0)
    os.umask(umask)
    assert (weights.stat().st_mode & 0o777) == (state_path(weights).stat().st_mode & 0o777) == 0o666 & ~umask


def test_resume_with_fewer_steps_than_done_changes_nothing(workspace, capsys):
    before = snapshot(workspace)
    refused(["train", "--resume", str(workspace / "run"), "--steps", "2", "--quiet"],
            "train.steps = 2 is below the checkpoint's step 3: the run has trained further already", capsys)
    assert snapshot(workspace) == before


# -- the atomic writer under a full disk and a kill -------------------------------------------------------
WRITER = textwrap.dedent("""
    import resource, signal, sys, time
    from ddpm.io import atomic_write
    path, mode = sys.argv[1], sys.argv[2]
    if mode == "full":
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # then a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
    def slowly(f):
        for i in range(64):
            f.write(b"n" * 16384)
            f.flush()
            if mode == "kill":
                print("writing", flush=True)
                time.sleep(0.05)
    atomic_write(path, slowly)
""")


def test_a_full_disk_leaves_the_old_file_and_names_it(tmp_path):
    target = tmp_path / "samples.npz"
    target.write_bytes(b"old" * 100)
    out = subprocess.run([sys.executable, "-c", WRITER, str(target), "full"], capture_output=True, text=True)
    assert out.returncode != 0 and f"File too large: '{target}'" in out.stderr.strip().splitlines()[-1]
    assert target.read_bytes() == b"old" * 100 and sorted(p.name for p in tmp_path.iterdir()) == ["samples.npz"]


def test_a_kill_mid_write_leaves_the_old_file_whole(tmp_path):
    target = tmp_path / "samples.npz"
    target.write_bytes(b"old" * 100)
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target), "kill"], stdout=subprocess.PIPE, text=True)
    for _ in range(3):  # a few chunks are in the temporary file
        assert proc.stdout.readline() == "writing\n"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert target.read_bytes() == b"old" * 100  # never a partial samples.npz; the hidden temporary file is all that is left
    assert all(p.name == "samples.npz" or (p.name.startswith(".samples.npz.") and p.name.endswith(".tmp")) for p in tmp_path.iterdir())


def test_the_cli_names_the_file_a_full_disk_stopped(workspace, tmp_path):
    target = tmp_path / "s.npz"
    target.write_bytes(b"old")

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    out = subprocess.run([sys.executable, "-m", "ddpm", "sample", str(workspace / "run"), "--num", "64", "--steps", "1",
                          "--out", str(target)], capture_output=True, text=True, preexec_fn=limit,
                         env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1] == f"ddpm sample: error: File too large: {target}"
    assert target.read_bytes() == b"old"
