"""Output folders: one policy for every command that writes (pretrain, finetune, multitask, export, quantize, prune).

- `check_output_folder` runs before anything is loaded or written: it refuses a target that is a file, that is,
  contains or lies inside one of the run's inputs (checkpoint, data files, corpus folder), that contains the working
  directory or the home folder, and, without `--overwrite` (or `--resume`), one that already holds files.
- `OutputFolder` is where the run writes: a staging folder beside the target, `.<name>.sora-hf-new`, that
  `commit()` swaps in only after the run has finished, so a run that fails or is killed leaves the previous one
  (or nothing) exactly as it was. Pre-training writes a new or empty target in place instead (`in_place=True`), so
  that a killed run can `--resume` from its checkpoints; it stages only when it replaces an earlier run.
- `complete_checkpoints` lists the `checkpoint-N` folders a Trainer run can resume from, newest first, skipping
  (and naming) any that a kill left half-written.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..validation.errors import RecipeError

logger = logging.getLogger(__name__)

STAGING_SUFFIX = ".sora-hf-new"
RETIRED_SUFFIX = ".sora-hf-old"
STAGING_MARKER = ".sora-hf-staging"  # written into a staging folder, so that only ours is ever removed
_CHECKPOINT = re.compile(r"^checkpoint-\d+$")


class OutputFolderError(RecipeError):
    """An output folder that a command refuses to write (`output_dir` is a recipe key; export, quantize and prune
    take it as an argument)."""


def _resolved(path: str | os.PathLike[str]) -> Path:
    return Path(path).expanduser().resolve()


def _is_within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def check_output_folder(
    target: str | os.PathLike[str],
    *,
    inputs: Iterable[str | os.PathLike[str] | None] = (),
    overwrite: bool = False,
    resume: bool = False,
    can_resume: bool = False,
    what: str = "output_dir",
) -> Path:
    """Refuse an output folder that this run must not write; returns the target as given (nothing is touched).

    `inputs`: the run's local inputs (folders or files; None and Hub ids that do not exist locally are ignored).
    `can_resume`: the command takes `--resume` (the refusal suggests it only then)."""
    target = Path(target).expanduser()
    resolved = _resolved(target)
    if target.exists() and not target.is_dir():
        raise OutputFolderError(f"{what} {target} exists and is a file, not a folder")
    for name, protected in (("the working directory", Path.cwd()), ("your home folder", Path.home())):
        if _is_within(_resolved(protected), resolved):
            relation = "is" if _resolved(protected) == resolved else "contains"
            raise OutputFolderError(f"{what} {target} {relation} {name}; write the run into a folder of its own")
    for item in inputs:
        if item is None or not Path(item).expanduser().exists():
            continue
        source = _resolved(item)
        if source == resolved:
            raise OutputFolderError(f"{what} {target} is an input of this run ({item}); choose another folder")
        if _is_within(source, resolved):
            raise OutputFolderError(f"{what} {target} contains an input of this run ({item}); choose another folder")
        if _is_within(resolved, source):
            raise OutputFolderError(f"{what} {target} lies inside an input of this run ({item}); choose another one")
    if target.is_dir() and any(target.iterdir()) and not (overwrite or resume):
        options = "--overwrite to replace it (after the new run has finished)"
        if can_resume:
            options += " or --resume to continue from its last checkpoint"
        raise OutputFolderError(f"{what} {target} already holds files; pass {options}")
    return target


class OutputFolder:
    """Where a run writes: the target itself, or a staging folder beside it that `commit()` swaps in.

    `main_process`: in a distributed run every rank builds the same OutputFolder; only the main one clears a stale
    staging folder and swaps."""

    def __init__(
        self,
        target: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        resume: bool = False,
        in_place: bool = False,
        main_process: bool = True,
    ):
        self.target = Path(target).expanduser()
        self.main_process = main_process
        holds_files = self.target.is_dir() and any(self.target.iterdir())
        staged = not resume and (overwrite and holds_files or not in_place)
        self.staging = self.target.parent / f".{self.target.name}{STAGING_SUFFIX}" if staged else None
        self.committed = False
        # writing in place: what the target held before, so that a failed run removes only what it added
        self.existed: set[str] | None = None

    @property
    def path(self) -> Path:
        """The folder to write into now."""
        return self.staging or self.target

    @property
    def retired(self) -> Path:
        """Where the previous run waits, for a moment, while `commit()` swaps the new one in."""
        return self.target.parent / f".{self.target.name}{RETIRED_SUFFIX}"

    def __enter__(self) -> OutputFolder:
        if self.staging is not None and self.main_process:
            if self.retired.exists():  # a replacement killed between its two renames: that is the user's old run
                raise OutputFolderError(
                    f"{self.retired} holds a run that an interrupted replacement of {self.target} left; move it back "
                    f"to {self.target} (or remove it) first"
                )
            _remove_ours(self.staging)
            self.staging.mkdir(parents=True)
            (self.staging / STAGING_MARKER).write_text("a sora-hf run being written; removed when it ends\n")
        elif self.staging is None:
            self.existed = {p.name for p in self.target.iterdir()} if self.target.is_dir() else set()
            self.target.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None or not self.main_process:
            return
        if self.staging is not None:
            _remove_ours(self.staging)  # the failed run's partial output; the previous run is untouched
            if self.target.exists():
                logger.warning("the run failed; %s was left as it was", self.target)
        elif self.existed is not None:
            self._remove_partial()

    def _remove_partial(self) -> None:
        """A run written in place failed: remove what it added except complete checkpoints (which `--resume`
        continues from), and the target itself when the run created it and nothing resumable is left."""
        if not self.target.is_dir():
            return
        for path in self.target.iterdir():
            if path.name in self.existed:
                continue
            if path.is_dir() and _CHECKPOINT.match(path.name) and checkpoint_problem(path) is None:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        if not self.existed and not any(self.target.iterdir()):
            self.target.rmdir()

    def commit(self) -> Path:
        """Put the finished run in place of the target (a rename on the same filesystem); returns the target."""
        if self.staging is None or not self.main_process or self.committed:
            self.committed = True
            return self.target
        if self.target.exists():
            os.replace(self.target, self.retired)
        os.replace(self.staging, self.target)
        (self.target / STAGING_MARKER).unlink(missing_ok=True)
        shutil.rmtree(
            self.retired, ignore_errors=True
        )  # the run --overwrite replaces, now that the new one is in place
        self.committed = True
        logger.info("replaced %s with the new run", self.target)
        return self.target


def _remove_ours(staging: Path) -> None:
    """Remove a staging folder that an earlier, killed run of ours left; refuse to touch anything else."""
    if not staging.exists():
        return
    if not (staging / STAGING_MARKER).is_file():
        raise OutputFolderError(f"{staging} exists and was not written by sora-hf; move it away first")
    shutil.rmtree(staging)


def checkpoint_problem(folder: Path) -> str | None:
    """Why a Trainer `checkpoint-N` folder cannot be resumed from (None: it is complete).

    Trainer writes the weights, then optimizer, scheduler and RNG states, and `trainer_state.json` last; a kill
    in between leaves a folder without (a whole) trainer_state.json, or with a truncated weights file."""
    from .checkpoints import CheckpointError, check_weight_files

    state_file = folder / "trainer_state.json"
    if not state_file.is_file():
        return "no trainer_state.json (the save was interrupted)"
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "trainer_state.json is not whole (the save was interrupted)"
    step = folder.name.rsplit("-", 1)[-1]
    if str(state.get("global_step")) != step:
        return f"trainer_state.json says step {state.get('global_step')}, the folder name says {step}"
    try:
        check_weight_files(folder)
    except CheckpointError as error:
        return str(error)
    return None


def complete_checkpoints(output_dir: str | os.PathLike[str]) -> tuple[list[Path], dict[str, str]]:
    """The resumable `checkpoint-N` folders of a run, newest first, and the skipped ones with why."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return [], {}
    found = [p for p in folder.iterdir() if p.is_dir() and p.name.startswith("checkpoint-")]
    found = [p for p in found if p.name.rsplit("-", 1)[-1].isdigit()]
    found.sort(key=lambda p: int(p.name.rsplit("-", 1)[-1]), reverse=True)
    complete, skipped = [], {}
    for path in found:
        problem = checkpoint_problem(path)
        if problem is None:
            complete.append(path)
        else:
            skipped[path.name] = problem
    return complete, skipped


def last_complete_checkpoint(output_dir: str | os.PathLike[str]) -> Path | None:
    """The newest resumable checkpoint of a run; logs a warning naming each newer one it skipped."""
    complete, skipped = complete_checkpoints(output_dir)
    for name, problem in skipped.items():
        if not complete or int(name.rsplit("-", 1)[-1]) > int(complete[0].name.rsplit("-", 1)[-1]):
            logger.warning("--resume: skipping %s: %s", name, problem)
    return complete[0] if complete else None


# ---------------------------------------------------------------------------------------------------------------
# a full disk

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
# torch.save reports a failed write as a RuntimeError from its zip writer, without the errno
_TORCH_WRITE_FAILED = ("PytorchStreamWriter failed", "file write failed", "inline_container", "unexpected pos")
_LOW_SPACE = 64 * 2**20  # bytes free under which a failed torch write is taken for a full disk


def _free_bytes(folder: Path) -> int | None:
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    try:
        return shutil.disk_usage(existing).free if existing is not None else None
    except OSError:
        return None


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def is_disk_full(error: BaseException, folder: str | os.PathLike[str]) -> bool:
    """Whether `error` (or one it was raised from) says the disk under `folder` is full (or over quota)."""
    for item in _chain(error):
        if isinstance(item, OSError) and item.errno in _NO_SPACE:
            return True
        if isinstance(item, RuntimeError) and any(text in str(item) for text in _TORCH_WRITE_FAILED):
            free = _free_bytes(Path(folder).expanduser())
            return free is not None and free < _LOW_SPACE
    return False


def _size(count: int | None) -> str:
    if count is None:
        return "unknown"
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return str(count)


@contextlib.contextmanager
def disk_space_errors(folder: str | os.PathLike[str], outcome: str | None = None) -> Iterator[None]:
    """Report a full disk while a run writes `folder` as one line, `no space left on <folder>`, with `outcome` (what
    was kept) or, by default, what the folder holds now; any other error passes unchanged."""
    folder = Path(folder).expanduser()
    try:
        yield
    except Exception as error:
        if not is_disk_full(error, folder):
            raise
        if outcome is None:
            checkpoints = complete_checkpoints(folder)[0] if folder.is_dir() else []
            if checkpoints:
                outcome = (
                    f"the run stopped; its complete checkpoints are kept (the newest: {checkpoints[0].name}): free "
                    "some space and run again with --resume"
                )
            elif folder.exists():
                outcome = "the run was not saved; the folder was left as it was before the run"
            else:
                outcome = "the run was not saved and nothing was left behind"
        raise OutputFolderError(f"no space left on {folder} ({_size(_free_bytes(folder))} free): {outcome}") from error


__all__ = [
    "OutputFolder",
    "OutputFolderError",
    "check_output_folder",
    "checkpoint_problem",
    "complete_checkpoints",
    "disk_space_errors",
    "is_disk_full",
    "last_complete_checkpoint",
]
