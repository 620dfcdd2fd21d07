"""The run directory's lifecycle: a new run, ``--force`` over an old one, resuming, and what resuming from an
older checkpoint sets aside.

Nothing of a user's run is deleted before its replacement is complete: ``--force`` moves the old run's files
aside (``RUN/.replaced-*/``) only once the new run has validated its config, loaded its data and built its
model, and drops them only after the new run's first checkpoint is complete; checkpoints newer than a resumed
one are renamed ``*.abandoned``, never deleted.
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from ..checkpoint import CHECKPOINT_DIR, list_checkpoints, resolve_checkpoint, state_path
from ..config import RunConfig
from ..errors import DdpmError
from ..io import atomic_write_text

from ..run_files import CONFIG_FILE, LOG_FILE
# What a run writes into its directory; --force sets exactly these aside (a user's own files stay where they are).
RUN_FILES = (CHECKPOINT_DIR, LOG_FILE, CONFIG_FILE, "progress", "tensorboard", "report", "report.html", "samples.png", "samples.npz",
             "summary.md")
SET_ASIDE_PREFIX = ".replaced-"


def holds_run(out: Path) -> bool:
    return bool(list_checkpoints(out)) or (out / CONFIG_FILE).exists()


def check_new_run(out: Path, force: bool) -> None:
    """A new run may go into ``out`` if it holds none, or with ``force`` (the old one is set aside later)."""
    if holds_run(out) and not force:
        raise DdpmError(f"{out} already holds a run; continue it (resume=True) or replace it (force=True)")


def set_aside_old_run(out: Path) -> Path | None:
    """Move the files of the run in ``out`` into ``out/.replaced-<time>/``; that folder, or None if there were none."""
    present = [out / name for name in RUN_FILES if (out / name).exists()]
    if not present:
        return None
    folder = Path(tempfile.mkdtemp(prefix=f"{SET_ASIDE_PREFIX}{time.strftime('%Y%m%d-%H%M%S')}-", dir=out))
    for path in present:
        path.rename(folder / path.name)
    print(f"note: the previous run in {out} is set aside in {folder.name}/ until this run's first checkpoint is complete",
          file=sys.stderr)
    return folder


# What a new run creates before its first checkpoint; removed again if it ends without one (``undo_new_run``).
STARTED_FILES = (CHECKPOINT_DIR, LOG_FILE, CONFIG_FILE, "progress", "tensorboard")


def undo_new_run(out: Path, created: list[str], made_folder: bool, set_aside: Path | None) -> None:
    """A new run that ended (an error, a divergence) before its first complete checkpoint leaves nothing behind
    that would block the next ``ddpm train --out`` to the same place: the files of ``created`` (names of
    STARTED_FILES it created) are removed, the run it was replacing is put back from ``set_aside``, and ``out``
    itself goes if this run made it and it is now empty. (A kill, which runs no code, still leaves config.json:
    ``--resume`` then starts the run again from step 0.)"""
    for name in created:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    if set_aside is not None and set_aside.is_dir():
        for path in set_aside.iterdir():
            path.rename(out / path.name)
        set_aside.rmdir()
        print(f"note: the previous run in {out} is back in place", file=sys.stderr)
    if made_folder:
        try:
            out.rmdir()
        except OSError:  # the user put something there meanwhile: leave it
            pass


def drop_set_aside(folder: Path | None) -> None:
    """Delete what ``set_aside_old_run`` moved, once the new run has a complete checkpoint."""
    if folder is not None and folder.is_dir():
        shutil.rmtree(folder)


def resume_point(out: Path, checkpoint: Path | None = None) -> tuple[Path | None, RunConfig]:
    """(checkpoint to resume from or None, the run's saved config). ``checkpoint`` None: the latest. A run killed
    before its first checkpoint restarts from step 0 with its config.json, the same as never having started."""
    from ..checkpoint import load_config

    if checkpoint is not None or list_checkpoints(out):
        path = resolve_checkpoint(checkpoint or out)
        return path, load_config(path)  # metadata only: the Trainer reads (and verifies) the tensors once
    saved = out / CONFIG_FILE
    if not saved.is_file():
        raise DdpmError(f"{out} holds no run to resume (no checkpoints and no {CONFIG_FILE})")
    try:
        raw = json.loads(saved.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DdpmError(f"{saved} is not valid JSON ({e})") from None
    print(f"note: {out} has no checkpoint yet; starting it again from step 0 with its {CONFIG_FILE}", file=sys.stderr)
    return None, RunConfig.from_dict(raw, str(saved))


def forget_after(out: Path, step: int) -> None:
    """Resuming from ``step``: set aside later checkpoints (renamed *.abandoned, never deleted) and drop training
    log records after it, so the continued run's log has no duplicate steps."""
    for later, path in list_checkpoints(out):
        if later > step:
            for p in (path, state_path(path)):
                if p.exists():
                    p.rename(p.with_name(p.name + ".abandoned"))
            print(f"note: set aside {path.name} (step {later}), newer than the resumed step {step}", file=sys.stderr)
    log = out / LOG_FILE
    if log.is_file():
        lines = log.read_text().splitlines(keepends=True)
        keep = [line for line in lines if _record_step(line) <= step]
        if len(keep) != len(lines):
            atomic_write_text(log, "".join(keep))


def _record_step(line: str) -> int:
    """The step of a training log record; evaluation records count as step 0 (always kept) and a line that does
    not parse (half-written when the process was killed) as infinitely late (dropped)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return sys.maxsize
    if not isinstance(record, dict):
        return sys.maxsize
    return int(record.get("step", 0)) if record.get("kind", "train") == "train" else 0
