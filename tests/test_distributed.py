"""torchrun on the CPU with gloo: N processes train, resume and sample exactly as one process does.

Tolerance for weights: DistributedDataParallel averages the ranks' mean gradients, which sums the same
per-example gradients in another order than one process does; in float32 that moves each gradient by a few
units in the last place (~1e-7 relative), and a few Adam steps keep weights within 1e-5 absolute."""
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ddpm.checkpoint import list_checkpoints
from test_data import make_idx_dir

WEIGHT_ATOL = 1e-5
OUR_FRAME = re.compile(r'File "[^"]*/ddpm/[^"]*\.py"')  # a traceback through ddpm's code (torchrun's agent prints its own)
pytestmark = pytest.mark.slow  # every test here launches torchrun processes

TINY = ["--data", "mnist-idx", "--batch-size", "8", "--seed", "3",
        "--set", "model.base_channels=16", "--set", "model.channel_mults=[1, 2]", "--set", "model.num_res_blocks=1",
        "--set", "model.attention_resolutions=[14]", "--set", "model.head_channels=16", "--set", "model.dropout=0.0",
        "--set", "diffusion.num_timesteps=50", "--set", "train.sample_every=0", "--set", "train.log_every=2",
        "--set", "data.conditional=true", "--set", "sample.sampler=ddpm", "--set", "sample.steps=5", "--quiet"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "DDPM_DIST_TIMEOUT": "60"}


def ddpm(*args: str, nproc: int = 1, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """``ddpm ARGS`` in one process, or under ``torchrun --standalone --nproc_per_node nproc``."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc > 1 else [sys.executable]
    kwargs.setdefault("env", ENV)
    out = subprocess.run([*launcher, "-m", "ddpm", *args], capture_output=True, text=True, timeout=300, **kwargs)
    if check:
        assert out.returncode == 0, out.stderr[-3000:]
    return out


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(list_checkpoints(run)[-1][1]))


def assert_close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    worst = max((x - b[k]).abs().max().item() for k, x in a.items() if x.is_floating_point())
    assert worst <= WEIGHT_ATOL, f"weights differ by up to {worst:.2e}"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("idx")
    make_idx_dir(root, n_train=96, n_test=8)
    return root


@pytest.fixture(scope="module")
def one_process(data_dir, tmp_path_factory):
    """Six steps at global batch 8 in one process."""
    out = tmp_path_factory.mktemp("single") / "run"
    ddpm("train", *TINY, "--data-dir", str(data_dir), "--steps", "6", "--out", str(out))
    return out


def test_two_processes_train_the_same_weights_as_one(data_dir, one_process, tmp_path):
    ddpm("train", *TINY, "--data-dir", str(data_dir), "--steps", "6", "--out", str(tmp_path / "two"), nproc=2)
    assert_close(final_weights(tmp_path / "two"), final_weights(one_process))
    one = [l for l in (one_process / "metrics.jsonl").read_text().splitlines()]
    two = [l for l in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert len(one) == len(two) == 3  # one log, written by rank 0 only, over the whole global batch


def test_gradient_accumulation_trains_the_same_weights(data_dir, one_process, tmp_path):
    ddpm("train", *TINY, "--data-dir", str(data_dir), "--steps", "6", "--out", str(tmp_path / "acc"), "--set", "train.accumulate=4",
         nproc=2)
    assert_close(final_weights(tmp_path / "acc"), final_weights(one_process))


def test_a_run_started_on_two_processes_resumes_on_one(data_dir, one_process, tmp_path):
    run = tmp_path / "run"
    ddpm("train", *TINY, "--data-dir", str(data_dir), "--steps", "3", "--out", str(run), nproc=2)
    ddpm("train", "--resume", str(run), "--steps", "6", "--quiet")
    assert_close(final_weights(run), final_weights(one_process))


def test_sampling_on_two_processes_writes_the_same_images(one_process, tmp_path):
    for nproc in (1, 2):
        ddpm("sample", str(one_process), "-n", "5", "--batch-size", "2", "--out", str(tmp_path / f"s{nproc}.npz"), nproc=nproc)
        ddpm("sample", str(one_process), "-n", "5", "--batch-size", "2", "--out", str(tmp_path / f"d{nproc}"), nproc=nproc)
    assert (tmp_path / "s1.npz").read_bytes() == (tmp_path / "s2.npz").read_bytes()
    assert sorted(p.name for p in (tmp_path / "d2").iterdir()) == [f"{i:06d}.png" for i in range(5)]
    assert all((tmp_path / "d1" / p.name).read_bytes() == p.read_bytes() for p in (tmp_path / "d2").iterdir())


def test_eval_and_fid_on_two_processes_score_what_one_process_does(one_process, data_dir, tmp_path):
    """Samples and their features are shared among the ranks: the same scores (features to float tolerance)."""
    import json

    rows = []
    for nproc in (1, 2):
        ddpm("eval", str(one_process), "-n", "6", "--steps", "3", "--domain", "--batch-size", "4",
             "--nll", "--nll-images", "5", "--nll-timesteps", "4", nproc=nproc,
             env={**ENV, "DDPM_CACHE": str(tmp_path / f"eval-cache{nproc}")})  # the reference computed by each
        rows.append(json.loads((one_process / "metrics.jsonl").read_text().splitlines()[-1]))
    one, two = rows
    assert one["kind"] == two["kind"] == "eval" and one["class_histogram"] == two["class_histogram"]
    assert two["domain_fid"] == pytest.approx(one["domain_fid"], rel=1e-6) and two["domain_confident"] == one["domain_confident"]
    # the NLL bound's images shared too (3 and 2), each with its own noise stream: the one-process numbers
    assert two["nll_images"] == one["nll_images"] == 5 and two["nll_bpd"] == pytest.approx(one["nll_bpd"], rel=1e-6)
    assert two["nll_terms_bpd"] == pytest.approx(one["nll_terms_bpd"], rel=1e-6, abs=1e-9)
    ddpm("sample", str(one_process), "-n", "7", "--out", str(tmp_path / "s.npz"))
    fids = [float(ddpm("fid", "--feature", "domain", str(tmp_path / "s.npz"), "mnist-idx:test", "--data-dir", str(data_dir),
                       nproc=nproc, env={**ENV, "DDPM_CACHE": str(tmp_path / f"cache{nproc}")}).stdout.split()[-1]) for nproc in (1, 2)]
    assert fids[1] == pytest.approx(fids[0], rel=1e-6)
    for seed in ("1", "2"):  # two image folders of 5 (shares of 3 and 2): read and extracted by each rank in part
        ddpm("sample", str(one_process), "-n", "5", "--seed", seed, "--out", str(tmp_path / f"folder{seed}"))
    fids = [float(ddpm("fid", str(tmp_path / "folder1"), str(tmp_path / "folder2"), nproc=nproc).stdout.split()[-1]) for nproc in (1, 2)]
    assert fids[1] == pytest.approx(fids[0], rel=1e-5)


def children_running(marker: str) -> list[int]:
    """Processes whose command line (NUL-separated in /proc/PID/cmdline) holds ``marker`` (no pgrep needed)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:  # gone meanwhile
                pass
    return found


def test_sigterm_to_one_rank_stops_every_rank_with_one_checkpoint(data_dir, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "ddpm",
                             "train", *TINY, "--data-dir", str(data_dir), "--steps", "100000", "--out", str(run),
                             "--set", "train.checkpoint_every=100000"], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = run / "metrics.jsonl"
    deadline = time.time() + 240
    while not (log.is_file() and log.read_text().count("\n") >= 2) and time.time() < deadline:
        time.sleep(0.2)
    workers = [pid for pid in children_running(f"--out\0{run}\0") if pid != proc.pid]
    assert len(workers) == 2, workers
    os.kill(max(workers), signal.SIGTERM)  # one rank only
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "SIGTERM at step" in err
    (step, _), = list_checkpoints(run)  # one checkpoint, at the step where every rank stopped
    assert step >= 4


def test_a_non_finite_loss_on_one_rank_skips_the_step_on_every_rank(tmp_path):
    tests = Path(__file__).parent
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          str(tests / "distributed_nan_worker.py"), str(tmp_path / "run")], capture_output=True, text=True,
                         env={**ENV, "PYTHONPATH": str(tests)}, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = sorted(re.findall(r"rank \d: steps \d+ skipped \d+ same weights (?:True|False)", out.stdout))  # the ranks' prints may interleave
    assert lines == ["rank 0: steps 6 skipped 2 same weights True", "rank 1: steps 6 skipped 2 same weights True"]


def test_a_global_batch_that_does_not_divide_is_refused(data_dir, tmp_path):
    out = ddpm("train", *TINY, "--data-dir", str(data_dir), "--steps", "2", "--batch-size", "9", "--out", str(tmp_path / "r"),
               nproc=2, check=False)
    assert out.returncode != 0 and "train.batch_size 9 must divide by the 2 processes" in out.stderr
    assert not OUR_FRAME.search(out.stderr) and not (tmp_path / "r").exists()  # (torchrun's agent prints its own)


def test_a_rank_that_cannot_reach_the_others_gives_up_in_one_sentence(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**ENV, "WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
           "DDPM_DIST_TIMEOUT": "3"}
    started = time.time()
    out = subprocess.run([sys.executable, "-m", "ddpm", "train", "--steps", "1", "--out", str(tmp_path / "r")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2 and time.time() - started < 60
    assert "could not join the 2 processes at 127.0.0.1" in out.stderr and not OUR_FRAME.search(out.stderr)
