"""Resume on a different number of ranks: DeepSpeed universal checkpoints, EMA shards included.

A ZeRO-3 checkpoint holds each rank's flat partition of the fp32 weights and of Adam's moments, laid out for
the world size that wrote it. DeepSpeed's `ds_to_universal` turns it into one file per parameter and state,
which any world size loads with `checkpoint.load_universal`. Our EMA is kept the same way (one flat shadow
per optimizer group and rank, `ShardedEma`), so it is converted by the same tool: a copy of the optimizer
files whose fp32 groups are replaced by the EMA shadows converts into an "ema" universal checkpoint, which a
new world loads into its master weights and copies into its own EMA shards before the real weights load.

Layout, under the step folder it converts (made once, by rank 0, published by a rename):

    step-N/universal/model/     the weights and optimizer state (`ds_to_universal` output)
    step-N/universal/ema/       the EMA, as fp32 weights in the same format
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import torch

from svd_core.errors import InputError

UNIVERSAL_DIR = "universal"
MODEL_TAG = "model"
EMA_TAG = "ema"
RESHARDABLE_STAGES = (3,)
"""ZeRO stages whose checkpoints convert here (the platform trains at stage 3; stage 0 needs no conversion:
every rank holds the full state)."""
_ZERO3_OPTIM_GLOB = "*zero_pp_rank_*_optim_states.pt"


def universal_root(step_dir: Path) -> Path:
    return Path(step_dir) / UNIVERSAL_DIR


def convert(step_dir: Path, ema_shards: list[list[torch.Tensor]] | None) -> Path:
    """Convert `step_dir` (ZeRO-3) to universal form under `step_dir/universal`, once; returns that folder.

    `ema_shards[r]` is rank r's EMA shadow (one flat tensor per optimizer group), or None without EMA.
    """
    root = universal_root(step_dir)
    if (root / MODEL_TAG).is_dir() and (ema_shards is None or (root / EMA_TAG).is_dir()):
        return root
    staging = step_dir / f".universal-{uuid.uuid4().hex}"
    try:
        _ds_to_universal(step_dir, staging / MODEL_TAG)
        if ema_shards is not None:
            ema_input = staging / "ema-input"
            _ema_as_optimizer_files(step_dir, ema_input, ema_shards)
            _ds_to_universal(ema_input, staging / EMA_TAG)
            shutil.rmtree(ema_input)
        if root.exists():  # a conversion without EMA from an earlier resume: replace it whole
            shutil.rmtree(root)
        staging.rename(root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def _ds_to_universal(input_folder: Path, output_folder: Path) -> None:
    """DeepSpeed's converter, as its own process (it forks worker pools and prints progress)."""
    output_folder.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "deepspeed.checkpoint.ds_to_universal", "--input_folder", str(input_folder),
           "--output_folder", str(output_folder), "--num_extract_workers", "1", "--num_merge_workers", "1"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise InputError(
            f"could not convert checkpoint {input_folder} to a universal checkpoint (for a different number "
            f"of ranks): {proc.stderr.strip()[-1500:]}; resume with the ranks that wrote it"
        )


def _ema_as_optimizer_files(step_dir: Path, dest: Path, ema_shards: list[list[torch.Tensor]]) -> None:
    """A copy of the checkpoint whose fp32 master partitions are the EMA shadows (same flat layout)."""
    dest.mkdir(parents=True)
    optim_files = sorted(step_dir.glob(_ZERO3_OPTIM_GLOB))
    if len(optim_files) != len(ema_shards):
        raise InputError(
            f"checkpoint {step_dir} has {len(optim_files)} optimizer files but {len(ema_shards)} EMA shards; "
            "it is damaged: delete its `complete` file"
        )
    for path in step_dir.glob("*_model_states.pt"):
        (dest / path.name).symlink_to(path.resolve())
    for path in optim_files:
        rank = _dp_rank(path)
        state = torch.load(path, map_location="cpu", weights_only=False)
        groups = state["optimizer_state_dict"]["fp32_flat_groups"]
        shadow = ema_shards[rank]
        if [t.numel() for t in groups] != [t.numel() for t in shadow]:
            raise InputError(f"EMA shard of rank {rank} in {step_dir} does not match its optimizer partition")
        state["optimizer_state_dict"]["fp32_flat_groups"] = [
            s.view_as(g) for s, g in zip(shadow, groups, strict=True)
        ]
        torch.save(state, dest / path.name)


def _dp_rank(path: Path) -> int:
    # zero_pp_rank_<dp>_mp_rank_<mp>_optim_states.pt (a bf16_ prefix with bf16 weights)
    return int(path.name.split("zero_pp_rank_")[1].split("_", 1)[0])


def position_for_world(batch: int, old_world: int, new_world: int) -> int:
    """Micro-batches per rank already taken in the epoch, for `new_world` ranks: the DistributedSampler
    deals the epoch's permutation out rank by rank, so `batch * old_world` items of it are consumed, and the
    global batch (micro x accumulation x world) is the config's unit, so the count divides evenly."""
    consumed = batch * old_world
    if consumed % new_world:
        raise InputError(
            f"the checkpoint stands after {consumed} micro-batches of its epoch, which {new_world} ranks "
            "cannot split evenly; resume with a number of ranks that divides it (keep the global batch)"
        )
    return consumed // new_world
