"""The ddpm command end to end on tiny runs, and its one-sentence errors."""
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ddpm.cli import main

TINY = ["--set", "model.base_channels=16", "--set", "model.channel_mults=[1, 2]", "--set", "model.num_res_blocks=1",
        "--set", "model.attention_resolutions=[14]", "--set", "model.head_channels=16",
        "--set", "diffusion.num_timesteps=50", "--set", "train.sample_every=0", "--quiet"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    assert main(["train", "--data", "mnist", "--limit", "64", "--steps", "3", "--batch-size", "16", "--out", str(out),
                 "--set", "data.conditional=true", *TINY]) == 0
    return out


def test_train_writes_a_run(run_dir):
    assert (sorted((run_dir / "checkpoints").glob("step_*.safetensors"))[-1]).is_file()
    assert (run_dir / "config.json").is_file() and (run_dir / "metrics.jsonl").is_file()


def test_sample_to_npz_png_and_directory(run_dir, tmp_path):
    assert main(["sample", str(run_dir), "--num", "5", "--sampler", "ddim", "--steps", "3", "--out", str(tmp_path / "s.npz")]) == 0
    npz = np.load(tmp_path / "s.npz")
    assert npz["arr_0"].shape == (5, 28, 28, 1) and npz["arr_0"].dtype == np.uint8
    assert npz["arr_1"].tolist() == [0, 1, 2, 3, 4]  # conditional: labels cycle through the classes
    assert main(["sample", str(run_dir), "--num", "4", "--steps", "2", "--label", "7", "--out", str(tmp_path / "g.png")]) == 0
    assert Image.open(tmp_path / "g.png").size == (2 * (2 * 30 + 2), 2 * (2 * 30 + 2))
    assert main(["sample", str(sorted((run_dir / "checkpoints").glob("step_*.safetensors"))[-1]), "--num", "3", "--sampler", "ddpm",
                 "--steps", "5", "--out", str(tmp_path / "dir")]) == 0
    assert sorted(p.name for p in (tmp_path / "dir").iterdir()) == ["000000.png", "000001.png", "000002.png"]


def test_guided_samples_one_class_per_column(run_dir, tmp_path):
    assert main(["sample", str(run_dir), "--num", "20", "--steps", "3", "--guidance", "2", "--out", str(tmp_path / "g.npz")]) == 0
    assert np.load(tmp_path / "g.npz")["arr_1"].tolist() == list(range(10)) * 2
    assert main(["sample", str(run_dir), "--num", "20", "--steps", "3", "--guidance", "2", "--out", str(tmp_path / "g.png")]) == 0
    assert Image.open(tmp_path / "g.png").size == (2 * (10 * 30 + 2), 2 * (2 * 30 + 2))  # 10 columns, 2 rows


def test_same_seed_same_samples(run_dir, tmp_path):
    for name in ("a", "b"):
        main(["sample", str(run_dir), "--num", "3", "--steps", "4", "--seed", "9", "--batch-size", "2", "--out", str(tmp_path / f"{name}.npz")])
    assert np.array_equal(np.load(tmp_path / "a.npz")["arr_0"], np.load(tmp_path / "b.npz")["arr_0"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--data", "imagenet", "--out", "{tmp}/r"], "unknown dataset 'imagenet'; expected one of mnist, mnist-idx, fashion-mnist, cifar10, folder"),
        (["train", "--data", "mnist-idx", "--data-dir", "{tmp}/nowhere", "--out", "{tmp}/r"], "data directory {tmp}/nowhere does not exist"),
        (["train", "--out", "{tmp}/r", "--set", "train.stpes=3"], "unknown key 'stpes' in [train]"),
        (["train", "--out", "{tmp}/r", "--set", "train.steps=-3"], "train.steps must be a positive integer"),
        (["train", "--out", "{tmp}/r", "--set", "train.steps=many"], "[train] steps must be an integer, got 'many'"),
        (["train", "--out", "{tmp}/r", "--set", "model.attention_resolutions=[5]"], "attention_resolutions [5] are never reached"),
        (["train", "--out", "{tmp}/r", "--config", "{tmp}/missing.toml"], "config file {tmp}/missing.toml does not exist"),
        (["sample", "{tmp}/junk.safetensors", "--out", "{tmp}/x.npz"], "is not a ddpm checkpoint"),
        (["sample", "{tmp}", "--out", "{tmp}/x.npz"], "holds no checkpoint"),
        (["sample", "{run}", "--sampler", "euler", "--out", "{tmp}/x.npz"], "unknown sampler 'euler'; expected one of ddpm, ddim, dpm-solver++"),
        (["sample", "{run}", "--steps", "5000", "--out", "{tmp}/x.npz"], "steps must be an integer in 1..50"),
        (["sample", "{run}", "--label", "12", "--out", "{tmp}/x.npz"], "--label must be in 0..9 for this model"),
        (["sample", "{run}", "--guidance", "-1", "--out", "{tmp}/x.npz"], "--guidance must be zero or more, got -1.0"),
        (["train", "--out", "{tmp}/r", "--set", "sample.guidance=2"], "sample.guidance must be 0 for an unconditional model"),
        (["train", "--out", "{tmp}/r", "--set", "train.label_dropout=1.5"], "train.label_dropout must be in [0, 1)"),
        (["sample", "{run}", "--num", "1", "--steps", "1", "--out", "{tmp}/junk.safetensors/x.npz"], "File exists: {tmp}/junk.safetensors"),
        (["train", "--out", "{tmp}/r", "--set", "train.progress_samples=0"], "train.progress_samples must be a positive integer"),
        (["demo", "--out", "{tmp}/d", "--finish-within", "0"], "--finish-within must be positive minutes, not 0"),
        (["demo", "--out", "{tmp}/d", "--finish-within", "inf"], "--finish-within must be positive minutes, not inf"),
        (["demo", "--out", "{tmp}/d", "--finish-within", "nan"], "--finish-within must be positive minutes, not nan"),
        (["demo", "--out", "{tmp}/d", "--started-at", "nan"], "--started-at must be a Unix time in seconds, not nan"),
    ],
)
def test_errors_are_one_sentence_and_exit_2(argv, message, tmp_path, run_dir, capsys):
    (tmp_path / "junk.safetensors").write_bytes(b"definitely not safetensors")
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{run}", str(run_dir)) for a in argv]
    message = message.replace("{tmp}", str(tmp_path))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and message in err[-1] and err[-1].startswith(f"ddpm {argv[0]}: error: ")
    assert "Traceback" not in "\n".join(err)


def test_console_script_help_and_no_traceback(tmp_path):
    out = subprocess.run([sys.executable, "-m", "ddpm.cli", "train", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--max-minutes" in out.stdout and "default" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "ddpm.cli", "sample", str(tmp_path), "--out", "x.npz"], capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "holds no checkpoint" in bad.stderr


