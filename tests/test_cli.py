"""The ddpm command end to end on tiny runs, and its one-sentence errors."""
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ddpm.cli import main
from ddpm.evaluate import EvalSettings, evaluate

TINY = ["--set", "model.base_channels=16", "--set", "model.channel_mults=[1, 2]", "--set", "model.num_res_blocks=1",
        "--set", "model.attention_resolutions=[14]", "--set", "model.head_channels=16",
        "--set", "diffusion.num_timesteps=50", "--set", "train.sample_every=0", "--quiet"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    # the run's own [sample] settings differ from every flag default, so a command that ignored them would show
    assert main(["train", "--data", "mnist", "--limit", "64", "--steps", "3", "--batch-size", "16", "--out", str(out),
                 "--set", "data.conditional=true", "--set", "sample.sampler=ddim", "--set", "sample.steps=4",
                 "--set", "sample.eta=0.5", "--set", "sample.guidance=1.5", *TINY]) == 0
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
        (["train", "--data", "imagenet", "--out", "{tmp}/r"], "argument --data: invalid choice: 'imagenet' (choose from 'mnist', 'mnist-idx', 'fashion-mnist', 'cifar10', 'folder')"),
        (["train", "--data", "mnist-idx", "--data-dir", "{tmp}/nowhere", "--out", "{tmp}/r"], "data directory {tmp}/nowhere does not exist"),
        (["train", "--out", "{tmp}/r", "--set", "train.stpes=3"], "unknown key 'stpes' in [train]"),
        (["train", "--out", "{tmp}/r", "--set", "train.steps=-3"], "train.steps must be a positive integer"),
        (["train", "--out", "{tmp}/r", "--set", "train.steps=many"], "[train] steps must be an integer, got 'many'"),
        (["train", "--out", "{tmp}/r", "--set", "model.attention_resolutions=[5]"], "attention_resolutions [5] are never reached"),
        (["train", "--out", "{tmp}/r", "--config", "{tmp}/missing.toml"], "config file {tmp}/missing.toml does not exist"),
        (["sample", "{tmp}/junk.safetensors", "--out", "{tmp}/x.npz"], "is not a ddpm checkpoint"),
        (["sample", "{tmp}", "--out", "{tmp}/x.npz"], "holds no checkpoint"),
        (["sample", "{run}", "--sampler", "euler", "--out", "{tmp}/x.npz"], "argument --sampler: invalid choice: 'euler' (choose from 'ddpm', 'ddim', 'dpm-solver++')"),
        (["sample", "{run}", "--steps", "5000", "--out", "{tmp}/x.npz"], "sample.steps must be in 1..50"),
        (["sample", "{run}", "--steps", "0", "--out", "{tmp}/x.npz"], "argument --steps: must be a positive integer, got 0"),
        (["sample", "{run}", "--label", "12", "--out", "{tmp}/x.npz"], "the label must be in 0..9 for this model, got 12"),
        (["sample", "{run}", "--guidance", "-1", "--out", "{tmp}/x.npz"], "argument --guidance: must be zero or more, got -1"),
        (["sample", "{run}", "--sampler", "ddpm", "--eta", "0.5", "--out", "{tmp}/x.npz"], "sample.eta must be 0 for the ddpm sampler"),
        (["eval", "{run}", "--domain", "--steps", "2,x", "--num", "4"], "--steps must be positive integers or 'all'"),
        (["eval", "{run}", "--domain", "--sampler", "dpm-solver++", "--eta", "1", "--num", "4"], "sample.eta must be 0 for the dpm-solver++ sampler"),
        (["train", "--out", "{tmp}/r", "--set", "sample.guidance=2"], "sample.guidance must be 0 for an unconditional model"),
        (["train", "--out", "{tmp}/r", "--set", "train.label_dropout=1.5"], "train.label_dropout must be in [0, 1)"),
        (["sample", "{run}", "--num", "1", "--steps", "1", "--out", "{tmp}/junk.safetensors/x.npz"], "{tmp}/junk.safetensors is a file, not a folder"),
        (["train", "--out", "{tmp}/r", "--set", "train.progress_samples=0"], "train.progress_samples must be a positive integer"),
        (["demo", "--out", "{tmp}/d", "--finish-within", "0"], "argument --finish-within: must be positive, got 0"),
        (["demo", "--out", "{tmp}/d", "--finish-within", "inf"], "argument --finish-within: must be finite and positive, got inf"),
        (["demo", "--out", "{tmp}/d", "--finish-within", "nan"], "argument --finish-within: must be finite and positive, got nan"),
        (["demo", "--out", "{tmp}/d", "--started-at", "nan"], "argument --started-at: must be a finite number, got nan"),
    ],
)
def test_errors_are_one_sentence_and_exit_2(argv, message, tmp_path, run_dir, capsys):
    """Also argparse's own refusals (choices, types): one line naming the flag, exit 2."""
    (tmp_path / "junk.safetensors").write_bytes(b"definitely not safetensors")
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{run}", str(run_dir)) for a in argv]
    message = message.replace("{tmp}", str(tmp_path))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and message in err[-1] and err[-1].startswith(f"ddpm {argv[0]}: error: ")
    assert "Traceback" not in "\n".join(err)


def test_sample_and_eval_use_the_runs_sample_settings_then_the_flags_given(run_dir, tmp_path, capsys):
    assert main(["sample", str(run_dir), "--num", "2", "--out", str(tmp_path / "a.npz")]) == 0
    assert "(ddim, 4 steps, eta 0.5, guidance w = 1.5," in capsys.readouterr().err  # not the flag defaults of old
    assert main(["sample", str(run_dir), "--num", "2", "--sampler", "ddpm", "--guidance", "0", "--out", str(tmp_path / "b.npz")]) == 0
    assert "(ddpm, 4 steps, checkpoint step" in capsys.readouterr().err  # another sampler: eta goes, steps stay
    assert main(["eval", str(run_dir), "--domain", "--num", "4", "--no-log"]) == 0
    out = capsys.readouterr().out
    assert "ddim" in out and "1.5" in out  # the run's sampler and guidance, not DDIM unguided by default
    rows = evaluate(run_dir, EvalSettings(num=4, fid=False, domain=True, steps=[2, None]), log=False)
    assert [(r["sampler"], r["steps"], r["eta"], r["guidance"]) for r in rows] == [("ddim", 2, 0.5, 1.5), ("ddim", 50, 0.5, 1.5)]


def test_console_script_help_and_no_traceback(tmp_path):
    out = subprocess.run([sys.executable, "-m", "ddpm", "train", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--max-minutes" in out.stdout and "default" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "ddpm", "sample", str(tmp_path), "--out", "x.npz"], capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "holds no checkpoint" in bad.stderr




def test_a_guidance_interval_through_sample_and_eval(run_dir, tmp_path, capsys):
    assert main(["sample", str(run_dir), "--num", "2", "--guidance-interval", "0.1,0.6", "--out", str(tmp_path / "a.npz")]) == 0
    assert "guidance w = 1.5 for t/T in [0.1, 0.6]" in capsys.readouterr().err
    rows = evaluate(run_dir, EvalSettings(num=4, fid=False, domain=True, guidance_interval=(0.1, 0.6)), log=False)
    assert rows[0]["guidance_interval"] == [0.1, 0.6] and rows[0]["guidance"] == 1.5
