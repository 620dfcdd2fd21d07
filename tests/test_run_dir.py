"""The run directory's lifecycle: --force never destroys the old run before the new one has a checkpoint."""
import pytest
import torch

from ddpm.checkpoint import list_checkpoints
from ddpm.cli import main
from ddpm.errors import TrainingDiverged
from ddpm.train import Trainer, run_dir
from helpers import sklearn_digits, tiny_config

CPU = torch.device("cpu")


def _finished_run(out):
    Trainer(tiny_config(train={"steps": 3}), out, CPU, data=sklearn_digits(64), quiet=True).run()
    return {p.name: p.read_bytes() for p in (out / "checkpoints").iterdir()}


def test_force_with_a_mistyped_data_dir_keeps_the_old_run(tmp_path, capsys):
    out = tmp_path / "run"
    before = _finished_run(out)
    log = (out / "metrics.jsonl").read_bytes()
    # the old code deleted the checkpoints here, before the dataset failed to load
    assert main(["train", "--data", "mnist-idx", "--data-dir", str(tmp_path / "typo"), "--out", str(out), "--force", "--quiet"]) == 2
    assert "data directory" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (out / "checkpoints").iterdir()} == before
    assert (out / "metrics.jsonl").read_bytes() == log


def test_force_sets_the_old_run_aside_until_the_new_one_has_a_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "run"
    before = _finished_run(out)
    trainer = Trainer(tiny_config(train={"steps": 3, "max_bad_steps": 2}), out, CPU, data=sklearn_digits(64), quiet=True,
                      force=True)
    assert {p.name for p in (out / "checkpoints").iterdir()} == set(before)  # building the trainer touches nothing
    monkeypatch.setattr(trainer.model, "forward", lambda x, t, y=None: torch.full_like(x, float("nan")))
    with pytest.raises(TrainingDiverged):
        trainer.run()  # diverges before its first checkpoint: the old run is put back where it was
    assert not list(out.glob(".replaced-*")) and {p.name: p.read_bytes() for p in (out / "checkpoints").iterdir()} == before
    assert (out / "metrics.jsonl").is_file() and (out / "config.json").is_file()
    # a replacement that succeeds drops what it set aside once its first checkpoint is complete
    (out / "notes.txt").write_text("mine")  # a user's own file in the run directory is never touched
    replacing = Trainer(tiny_config(train={"steps": 2}), out, CPU, data=sklearn_digits(64), quiet=True, force=True)
    drop, seen = run_dir.drop_set_aside, []
    monkeypatch.setattr(run_dir, "drop_set_aside", lambda folder: (seen.append(sorted(p.name for p in folder.iterdir())), drop(folder)))
    replacing.run()
    assert seen == [["checkpoints", "config.json", "metrics.jsonl"]]  # the old run was set aside until then
    assert not list(out.glob(".replaced-*"))
    assert [s for s, _ in list_checkpoints(out)] == [2]
    assert (out / "notes.txt").read_text() == "mine"
