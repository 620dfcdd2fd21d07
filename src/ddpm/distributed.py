"""Several processes on PyTorch's own engine: ``torchrun … -m ddpm …`` (DistributedDataParallel; gloo on CPU,
NCCL on CUDA). One process without torchrun is a world of size 1 and nothing here communicates.

What the rest of ddpm asks of it: who am I (``world()``), split a count over the ranks (``shard``), gather
each rank's rows on every rank (``gather_rows``), one decision for all (``agree_max``). Every rank makes the same
random draws for the whole global batch and keeps its own slice, so N processes see exactly the data, timesteps
and noise one process would (``ddpm.train``); sampling splits by sample index, whose noise depends only on the
seed and the index (``ddpm.rng.SampleNoise``), so the images do not depend on the number of processes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable

import torch
import torch.distributed as dist

from .errors import DdpmError

# How long a rank waits for the others, at the rendezvous and at every collective (a rank that never arrives
# ends the others with one sentence, not a hang forever); $DDPM_DIST_TIMEOUT overrides it.
DEFAULT_TIMEOUT_S = 1800  # PyTorch's own default for gloo


@dataclass(frozen=True)
class World:
    """This process's place: ``rank`` in 0..size−1 (``local_rank`` on its machine)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 writes every file (logs, grids, checkpoints, samples) and draws every progress bar."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device_kind: str) -> World:
    """Join the process group torchrun describes in the environment (backend NCCL for CUDA, else gloo); a
    world of one when not launched by torchrun. A rank that cannot reach the others within $DDPM_DIST_TIMEOUT
    seconds (default 1800) stops with one sentence."""
    if not launched_by_torchrun():
        return World()
    if not dist.is_initialized():
        try:
            timeout = float(os.environ.get("DDPM_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))
        except ValueError:
            raise DdpmError(f"$DDPM_DIST_TIMEOUT must be seconds, got {os.environ['DDPM_DIST_TIMEOUT']!r}") from None
        backend = "nccl" if device_kind == "cuda" else "gloo"
        try:
            dist.init_process_group(backend, timeout=timedelta(seconds=timeout))
            dist.barrier()  # the rendezvous proper: every rank is here
        except (RuntimeError, ValueError, TimeoutError) as e:
            where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
            raise DdpmError(f"rank {os.environ.get('RANK', '?')} could not join the {os.environ.get('WORLD_SIZE')} "
                            f"processes at {where} within {timeout:g} s ({str(e).splitlines()[0]})") from None
    return world()


def world() -> World:
    """The current process's World (size 1 outside a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def finish() -> None:
    """Leave the process group (after the others have arrived: no rank exits while one still sends)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard(count: int, w: World | None = None) -> tuple[int, int]:
    """[start, stop) of ``count`` items that rank ``w.rank`` takes: contiguous, sizes differing by at most one."""
    w = w or world()
    return count * w.rank // w.size, count * (w.rank + 1) // w.size


def gather_rows(x: torch.Tensor, count: int) -> torch.Tensor:
    """Every rank's ``x`` [n_r, …] (its ``shard`` of ``count`` rows), concatenated in rank order on every rank."""
    w = world()
    if not w.distributed:
        return x
    sizes = [shard(count, World(r, w.size))[1] - shard(count, World(r, w.size))[0] for r in range(w.size)]
    padded = torch.zeros((max(sizes), *x.shape[1:]), dtype=x.dtype, device=x.device)
    padded[:len(x)] = x
    parts = [torch.empty_like(padded) for _ in range(w.size)]
    dist.all_gather(parts, padded)
    return torch.cat([p[:n] for p, n in zip(parts, sizes)])


def map_shards(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``f(x)`` computed by the ranks together: each applies ``f`` to its ``shard`` of x's rows [N, …] and the
    results [n_r, …] are gathered in order on every rank. ``f`` must treat rows independently (a feature
    extractor); one process simply returns f(x)."""
    w = world()
    if not w.distributed:
        return f(x)
    start, stop = shard(len(x), w)
    out = f(x[start:stop]) if stop > start else f(x[:1])[:0]  # an empty share still needs the rows' shape
    return gather_rows(out, len(x))


def counting_all_ranks(progress: Callable[[int], None] | None) -> Callable[[int], None] | None:
    """A progress callback for this rank's share of some work that reports the whole: each rank does about as much,
    so n items here stand for n·size (rank 0's bar, the only one drawn, then ends at the total)."""
    size = world().size
    if progress is None or size == 1:
        return progress
    return lambda n: progress(n * size)


def agree_max(value: int, device: torch.device | str = "cpu") -> int:
    """The largest ``value`` over all ranks (one decision for all: stop, skip a step)."""
    if not world().distributed:
        return value
    t = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def barrier() -> None:
    if world().distributed:
        dist.barrier()
