"""Trainer hooks: callbacks at the right steps that leave training unchanged, and the loggers behind one interface
(metrics.jsonl as it always was; TensorBoard scalars equal to its records; a clear sentence without TensorBoard)."""
import json
import random
import sys

import numpy as np
import pytest
import torch

from ddpm.checkpoint import list_checkpoints
from ddpm.errors import DdpmError
from ddpm.train import Callback, JsonlLogger, Trainer, every
from helpers import sklearn_digits, tiny_config

CPU = torch.device("cpu")


def records_of(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


class Recorder(Callback):
    """Every hook call as (hook, trainer.step, argument)."""

    def __init__(self):
        self.calls = []

    def on_step(self, trainer):
        self.calls.append(("step", trainer.step, None))

    def on_log(self, trainer, record):
        self.calls.append(("log", trainer.step, dict(record)))

    def on_checkpoint(self, trainer, path):
        assert path.is_file() and (trainer.step, path) in list_checkpoints(trainer.out)  # complete when announced
        self.calls.append(("checkpoint", trainer.step, path))

    def on_end(self, trainer, summary):
        self.calls.append(("end", trainer.step, summary))


def test_callbacks_are_called_at_the_right_steps(tmp_path):
    config = tiny_config(train={"steps": 7, "log_every": 3, "checkpoint_every": 3, "keep_checkpoints": 5})
    trainer = Trainer(config, tmp_path / "run", CPU, data=sklearn_digits(64), quiet=True)
    recorder, every_2 = Recorder(), []
    summary = trainer.run(callbacks=[recorder, every(2, lambda t: every_2.append(t.step))])

    assert every_2 == [2, 4, 6]
    assert [(hook, step) for hook, step, _ in recorder.calls] == [
        ("step", 1), ("step", 2), ("log", 3), ("checkpoint", 3), ("step", 3), ("step", 4), ("step", 5),
        ("log", 6), ("checkpoint", 6), ("step", 6), ("log", 7), ("step", 7), ("checkpoint", 7), ("end", 7)]
    # on_log gets exactly what metrics.jsonl holds; on_checkpoint each checkpoint's path; on_end run()'s summary
    assert [arg for hook, _, arg in recorder.calls if hook == "log"] == records_of(tmp_path / "run")
    assert [arg for hook, _, arg in recorder.calls if hook == "checkpoint"] == [p for _, p in list_checkpoints(tmp_path / "run")]
    assert recorder.calls[-1][2] is summary and summary["steps"] == 7


def test_every_needs_a_positive_number_of_steps():
    with pytest.raises(DdpmError, match=r"^every\(n, fn\) needs n, a number of steps, to be a positive integer, got 0$"):
        every(0, print)


class Meddler(Callback):
    """A callback that draws from every global RNG and leaves the network in eval mode, as careless ones do."""

    def on_step(self, trainer):
        torch.rand(100), np.random.rand(10), random.random()
        trainer.model.eval()

    on_log = on_checkpoint = lambda self, trainer, arg: self.on_step(trainer)


def test_callbacks_leave_the_trained_weights_bit_identical(tmp_path):
    # dropout and label dropout draw from the global RNG: a callback that shifted it would change the weights
    config = tiny_config(data={"conditional": True}, model={"dropout": 0.3},
                         train={"steps": 6, "log_every": 2, "checkpoint_every": 3, "keep_checkpoints": 5})
    plain = Trainer(config, tmp_path / "plain", CPU, data=sklearn_digits(64), quiet=True)
    plain.run()
    hooked = Trainer(config, tmp_path / "hooked", CPU, data=sklearn_digits(64), quiet=True)
    hooked.run(callbacks=[Meddler(), Recorder(), every(1, lambda t: None)])
    for a, b in [(plain.model, hooked.model), (plain.ema, hooked.ema)]:
        for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
            assert torch.equal(x, y), name
    assert hooked.model.training
    losses = lambda run: [r["loss_per_bucket"] for r in records_of(run)]  # noqa: E731
    assert losses(tmp_path / "plain") == losses(tmp_path / "hooked")


def test_jsonl_logger_writes_one_flushed_json_line_per_record(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"kind": "eval", "step": 0}\n')  # a resumed run appends to what is there
    records = [{"kind": "train", "step": 1, "loss": 0.5, "loss_per_bucket": [0.25, None]},
               {"kind": "train", "step": 2, "loss": 1e-7, "lr": 2e-4}]
    logger = JsonlLogger(path)
    logger.write(records[0])
    assert path.read_text().endswith(json.dumps(records[0]) + "\n")  # flushed: readable while the run goes on
    logger.write(records[1])
    logger.close()
    assert path.read_text() == '{"kind": "eval", "step": 0}\n' + "".join(json.dumps(r) + "\n" for r in records)


def test_trainer_log_is_the_jsonl_of_its_records(tmp_path):
    config = tiny_config(train={"steps": 4, "log_every": 2})
    recorder = Recorder()
    Trainer(config, tmp_path / "run", CPU, data=sklearn_digits(64), quiet=True).run(callbacks=[recorder])
    logged = [arg for hook, _, arg in recorder.calls if hook == "log"]
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == "".join(json.dumps(r) + "\n" for r in logged)
    assert [list(r)[:3] for r in logged] == [["kind", "step", "loss"]] * 2
    assert not (tmp_path / "run" / "tensorboard").exists()  # only when train.log_to asks for it


def tensorboard_scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def expected_scalars(records):
    """What TensorBoardLogger should hold for ``records``: numbers as float32, per-bucket lists per bucket."""
    expected = {}
    for r in records:
        for key, value in r.items():
            if key in ("kind", "step"):
                continue
            if isinstance(value, list):
                for i, v in enumerate(value):
                    if v is not None:
                        expected.setdefault(f"train_buckets/{key.removesuffix('_per_bucket')}_{i}", []).append(
                            (r["step"], float(np.float32(v))))
            else:
                expected.setdefault(f"train/{key}", []).append((r["step"], float(np.float32(value))))
    return expected


def test_tensorboard_scalars_equal_the_jsonl_records(tmp_path):
    pytest.importorskip("tensorboard")
    config = tiny_config(train={"steps": 5, "log_every": 2, "log_to": "jsonl+tensorboard"})
    Trainer(config, tmp_path / "run", CPU, data=sklearn_digits(64), quiet=True).run()
    records = records_of(tmp_path / "run")
    assert [r["step"] for r in records] == [2, 4, 5]
    scalars = tensorboard_scalars(tmp_path / "run" / "tensorboard")
    assert {"train/loss", "train/lr", "train/images_per_s", "train/skipped_steps", "train_buckets/loss_9"} <= set(scalars)
    assert scalars == expected_scalars(records)


def test_tensorboard_logger_leaves_out_what_is_not_a_number(tmp_path):
    pytest.importorskip("tensorboard")
    from ddpm.train import TensorBoardLogger

    with TensorBoardLogger(tmp_path / "tb") as logger:
        logger.write({"kind": "train", "step": 3, "loss": 0.25, "loss_per_bucket": [None, 0.5, None], "compiled": True,
                      "note": "text"})
    assert tensorboard_scalars(tmp_path / "tb") == {"train/loss": [(3, 0.25)], "train_buckets/loss_1": [(3, 0.5)]}


def test_tensorboard_of_a_resumed_run_shows_each_step_once(tmp_path):
    pytest.importorskip("tensorboard")
    config = tiny_config(train={"steps": 6, "log_every": 1, "checkpoint_every": 2, "keep_checkpoints": 5,
                                "log_to": "jsonl+tensorboard"})
    run = tmp_path / "run"
    Trainer(config, run, CPU, data=sklearn_digits(64), quiet=True).run()
    # back to step 2: metrics.jsonl drops the records after it, TensorBoard hides the events after it
    Trainer(None, run, CPU, data=sklearn_digits(64), quiet=True, resume=list_checkpoints(run)[0][1]).run()
    records = records_of(run)
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert tensorboard_scalars(run / "tensorboard") == expected_scalars(records)


def test_missing_tensorboard_is_one_sentence_before_any_file(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # None in sys.modules: the import fails, as when not installed
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    config = tiny_config(train={"steps": 2, "log_to": "jsonl+tensorboard"})
    with pytest.raises(DdpmError) as caught:
        Trainer(config, tmp_path / "run", CPU, data=sklearn_digits(64), quiet=True)
    assert str(caught.value) == ("train.log_to = 'jsonl+tensorboard' needs the tensorboard package, which is not "
                                 "installed: pip install ddpm[tensorboard] (or set train.log_to = \"jsonl\")")
    assert not (tmp_path / "run").exists()
    # the default asks nothing of TensorBoard
    Trainer(tiny_config(train={"steps": 2}), tmp_path / "run", CPU, data=sklearn_digits(64), quiet=True).run()
