"""Resumable checkpoints: DeepSpeed's sharded model/optimizer state plus each rank's own trainer state.

Layout under `run_dir/checkpoints/`:

    step-N/                     one checkpoint (DeepSpeed's tag), written by every rank
      mp_rank_00_model_states.pt, *optim_states.pt   DeepSpeed (client state: step, data position)
      trainer/rank-R.pt         rank R's RNG states (torch, CUDA, numpy, python, noise generator), EMA shard
      complete                  JSON marker, written by rank 0 after every rank finished: the checkpoint's
                                only proof of completeness
    latest                      text `step-N`, replaced atomically after `complete` (for tools and people)

A crash while saving leaves a folder without `complete`; `find_resume_point` never picks it, and the next
save of that step deletes it first. Rank files are written to a temporary name and renamed into place.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from svd_core.errors import InputError

COMPLETE_MARKER = "complete"
LATEST_POINTER = "latest"
_STEP_DIR = re.compile(r"^step-(\d+)$")


@dataclass
class DataPosition:
    """Where every rank's data stream stands: epoch and micro-batches already taken in it."""

    epoch: int = 0
    batch: int = 0


@dataclass(frozen=True)
class CheckpointInfo:
    """What `complete` records; a resumed run checks it against its own layout before loading."""

    step: int
    world_size: int
    zero_stage: int
    epoch: int
    batch: int
    written_at: float


def checkpoint_root(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def step_tag(step: int) -> str:
    return f"step-{step}"


def is_complete(step_dir: Path) -> bool:
    return (step_dir / COMPLETE_MARKER).is_file()


def read_info(step_dir: Path) -> CheckpointInfo:
    return CheckpointInfo(**json.loads((step_dir / COMPLETE_MARKER).read_text()))


def step_dirs(root: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every `step-N` folder under `root`, complete or not, by step."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir()]
    return sorted(found)


def find_resume_point(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of `run_dir`, or None. Incomplete folders are never returned."""
    complete = [path for _, path in step_dirs(checkpoint_root(run_dir)) if is_complete(path)]
    return complete[-1] if complete else None


def discard_unresumable_metrics(run_dir: Path, resume: bool = True) -> int:
    """Drop the metrics rows a (re)started run will not keep: those after the checkpoint it resumes from
    (a crashed attempt's last steps, which the resumed run trains again), or all of them for a run that
    starts from step 0. Called before the ranks start, so that anyone following the file (the launcher's
    `on_metrics`, an MLflow logger) only ever sees the run's final history; the trainer does the same on
    resume. Returns how many rows were dropped."""
    from svd_core.training.metrics import METRICS_FILE, truncate_after

    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return 0
    step_dir = find_resume_point(run_dir) if resume else None
    return truncate_after(path, read_info(step_dir).step if step_dir is not None else 0)


def check_compatible(info: CheckpointInfo, step_dir: Path, world_size: int, zero_stage: int) -> None:
    """ZeRO shards and EMA shards are laid out per rank and stage: a different stage never resumes; a
    different number of ranks resumes through a universal checkpoint (ZeRO-3, `universal.py`) or directly
    at stage 0 (every rank holds the full state)."""
    from svd_core.training.universal import RESHARDABLE_STAGES

    resharding = info.world_size != world_size
    if info.zero_stage != zero_stage or (resharding and zero_stage not in (0, *RESHARDABLE_STAGES)):
        raise InputError(
            f"checkpoint {step_dir} was written by {info.world_size} ranks at ZeRO stage {info.zero_stage}, "
            f"but this run has ranks={world_size}, zero_stage={zero_stage}; resume with "
            f"zero_stage={info.zero_stage} (and ranks={info.world_size} unless the stage is 0 or 3), "
            "or start a new run directory"
        )


def _atomic_torch_save(obj: Any, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".tmp-{uuid.uuid4().hex}-{dest.name}"
    try:
        torch.save(obj, tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(dest: Path, text: str) -> None:
    tmp = dest.parent / f".tmp-{uuid.uuid4().hex}-{dest.name}"
    try:
        tmp.write_text(text)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def replace_dir(new: Path, dest: Path) -> None:
    """Swap folder `new` into `dest` with renames only, so `dest` is never a half-written folder."""
    old = dest.parent / f".{dest.name}-old-{uuid.uuid4().hex}"
    if dest.exists():
        os.replace(dest, old)
    os.replace(new, dest)
    if old.exists():
        shutil.rmtree(old)


def rank_state_path(step_dir: Path, rank: int) -> Path:
    return step_dir / "trainer" / f"rank-{rank}.pt"


def write_rank_state(step_dir: Path, rank: int, state: dict[str, Any]) -> None:
    _atomic_torch_save(state, rank_state_path(step_dir, rank))


def read_rank_state(step_dir: Path, rank: int) -> dict[str, Any]:
    path = rank_state_path(step_dir, rank)
    if not path.is_file():
        raise InputError(
            f"checkpoint {step_dir} lacks {path.name}; it is damaged: delete its `complete` file"
        )
    # Only tensors and plain values are stored, so the safe loader suffices.
    return torch.load(path, map_location="cpu", weights_only=True)


def prepare_step_dir(root: Path, step: int) -> Path:
    """Rank 0, before a save: drop a leftover partial folder of the same step from a crashed attempt."""
    step_dir = root / step_tag(step)
    if step_dir.exists() and not is_complete(step_dir):
        shutil.rmtree(step_dir)
    root.mkdir(parents=True, exist_ok=True)
    return step_dir


def publish(root: Path, info: CheckpointInfo, keep_last: int) -> Path:
    """Rank 0, after every rank wrote its part: mark complete, move `latest`, prune old checkpoints."""
    step_dir = root / step_tag(info.step)
    atomic_write_text(step_dir / COMPLETE_MARKER, json.dumps(asdict(info)))
    atomic_write_text(root / LATEST_POINTER, step_tag(info.step))
    prune(root, keep_last)
    return step_dir


def prune(root: Path, keep_last: int) -> list[Path]:
    """Delete complete checkpoints beyond the newest `keep_last`, and partial ones older than the newest."""
    folders = step_dirs(root)
    complete = [(s, p) for s, p in folders if is_complete(p)]
    if not complete:
        return []
    newest = complete[-1][0]
    doomed = [p for _, p in complete[:-keep_last]]
    doomed += [p for s, p in folders if not is_complete(p) and s < newest]
    for path in doomed:
        # Remove the marker first: a folder half-deleted by a crash must read as incomplete.
        (path / COMPLETE_MARKER).unlink(missing_ok=True)
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def make_info(step: int, world_size: int, zero_stage: int, position: DataPosition) -> CheckpointInfo:
    return CheckpointInfo(step, world_size, zero_stage, position.epoch, position.batch, time.time())


# --- RNG states (stored as tensors and plain values, loadable with weights_only=True) --------------------


def capture_rng_state(generator: torch.Generator) -> dict[str, Any]:
    """Every random stream a rank draws from: torch (CPU, CUDA), numpy, python, and the noise generator."""
    # The global RandomState is MT19937, so the legacy form is always the 5-tuple (the stub allows a dict).
    np_state = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state(legacy=True))
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np_state
    py_version, py_internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
        "numpy": {
            "kind": np_kind,
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "python": {"version": py_version, "internal": torch.tensor(py_internal), "gauss": py_gauss},
        "generator": generator.get_state(),
    }


def restore_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["kind"], keys, npy["pos"], npy["has_gauss"], npy["gauss"]))
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["internal"].tolist()), py["gauss"]))
    generator.set_state(state["generator"])


# --- data position: a DistributedSampler stream that can start mid-epoch ---------------------------------


class BatchStream:
    """Micro-batches for one rank: DistributedSampler order (seeded, reshuffled per epoch), resumable.

    Resuming slices the epoch's index list instead of loading and discarding the consumed items. The
    DataLoader gets its own seeded generator, so creating it never draws from the global torch RNG (which
    would shift every later random draw and break exact resume).
    """

    def __init__(self, dataset: Any, cfg: Any, rank: int, world: int, device: torch.device) -> None:
        from torch.utils.data import DistributedSampler

        self.dataset, self.cfg, self.device = dataset, cfg, device
        self.sampler: DistributedSampler[int] = DistributedSampler(
            dataset, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed, drop_last=True
        )
        self.batches_per_epoch = len(self.sampler) // cfg.micro_batch_size
        if self.batches_per_epoch == 0:
            raise InputError(
                f"the dataset has {len(dataset)} items but one micro-batch on every rank needs "
                f"ranks*micro_batch_size = {world * cfg.micro_batch_size}; use more data or smaller batches"
            )
        self.position = DataPosition()
        self._batches: Iterator[Any] | None = None

    def seek(self, position: DataPosition) -> None:
        self.position = DataPosition(position.epoch, position.batch)
        self._batches = None

    def _open_epoch(self) -> None:
        from torch.utils.data import DataLoader

        if self.position.batch >= self.batches_per_epoch:
            self.position = DataPosition(self.position.epoch + 1, 0)
        mbs = self.cfg.micro_batch_size
        self.sampler.set_epoch(self.position.epoch)
        if hasattr(self.dataset, "set_epoch"):  # per-epoch augmentation draws (before workers copy it)
            self.dataset.set_epoch(self.position.epoch)
        indices = list(self.sampler)[self.position.batch * mbs : self.batches_per_epoch * mbs]
        loader = DataLoader(
            self.dataset,
            batch_size=mbs,
            sampler=indices,
            num_workers=self.cfg.num_workers,
            drop_last=True,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + self.position.epoch),
        )
        self._batches = iter(loader)

    def next_batch(self) -> dict[str, Any]:
        if self._batches is None or self.position.batch >= self.batches_per_epoch:
            self._open_epoch()
        assert self._batches is not None
        batch = next(self._batches)
        self.position = DataPosition(self.position.epoch, self.position.batch + 1)
        return {
            k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()
        }
