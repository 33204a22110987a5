"""Training clips from an LVD(-F) Parquet table: frames at a target fps plus SVD's micro-conditioning.

Item `i` is a function of (seed, i) only, so any DataLoader worker produces the same item and a resumed
run sees the same data. Per item:

Every random choice of an item (rate, window start, cond_aug and its noise seed, caption) is drawn from
(seed, epoch, index): each epoch sees each clip at a fresh rate and window with fresh conditioning noise
and caption (the paper samples these per training step), and a resumed run that knows its epoch draws
exactly the same items again. `set_epoch` moves to the next epoch.

- `frames` (T, 3, H, W) float32 in [-1, 1]: `num_frames` source frames at an integer target rate drawn
  uniformly from the rates the clip supports within [fps_min, fps_max] (a rate above the clip's own fps
  would repeat frames and is never used), from a uniform start; resized to cover the stage resolution and
  centre-cropped.
- `fps_id` = target fps - 1: diffusers' pipeline feeds `fps - 1` to the UNet ("micro-conditioned on
  fps-1 during training"), so a user asking for 7 fps gets the model trained on 7 fps clips.
- `motion_bucket_id` in 0..255 from `flow_score` by quantile bucketing over the table: the clip's mid-rank
  quantile q of the flow scores gives floor(256 q) (clamped to 255). The median clip lands on 127/128, the
  released default of 127. A clip without a flow score gets 127. See `MotionBuckets`.
- `cond_aug` ~ exp(N(-3.0, 0.5^2)) (paper/generative-models: conditioning-frame noise log-normal (-3, 0.5))
  and `cond_noise_seed`, the seed of that pixel noise (so the noisy conditioning latent can be cached).
- `input_ids` (77,) when a tokenizer is given: the caption, sampled per item from `caption_weights` over
  the caption columns that are non-null for that row (the paper samples CoCa / VideoBLIP / LLM captions
  with 0.5 / 0.25 / 0.25); an item with no caption gets "" (unconditional).

Streaming (svd_core.data.streaming, configured by `stream`, a StreamConfig): a table published with a
clip index (svd_core.curation.clip_index, `<name>_clips.parquet` beside it, named in the version's
manifest) is read one clip at a time by byte range, never whole shards; without one, whole shards are read
(local ones in place, remote ones copied once into `shard_cache_dir`). Clip bytes pass through a
per-process memory LRU and, when remote, a node-local disk LRU, both bounded. Frames are decoded from the
keyframe before the window, not from frame 0. Only the table columns items use are read
(`table_columns()`; `table_read` records what was read), and a remote table's projection is fetched once
per node.

Clips too short for `num_frames` at any allowed rate are skipped when the dataset is built (from the
table's fps and num_frames; `skipped_too_short` counts them); if none is left the build raises InputError.
A clip whose decoded frame count falls short of its table row raises InputError naming the clip.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import pandas as pd
import torch

from svd_core import storage as svd_io
from svd_core.curation.clip_index import CLIP_INDEX_KIND
from svd_core.curation.publish import CURRENT_FILE, current_version
from svd_core.data.config import StreamConfig, stream_config
from svd_core.data.streaming import (
    DiskClipCache,
    ShardReader,
    TableRead,
    decode_window,
    disk_cache,
    read_projected,
)
from svd_core.data.transforms import (
    feasible_fps,
    frame_indices,
    resize_and_center_crop,
    span_frames,
    to_model_range,
)
from svd_core.errors import InputError, StorageError

DEFAULT_MOTION_BUCKET = 127
REQUIRED_COLUMNS = ("clip_id", "clip_uri", "fps", "num_frames")

Tokenize = Callable[[str], torch.Tensor]


def resolve_table_uri(uri: str) -> str:
    """A `.parquet` URI as given; a published dataset folder (`OUT/<name>` with a CURRENT pointer, as
    `svd data filter` writes) -> the table of its current version."""
    if uri.endswith(".parquet") or not svd_io.exists(svd_io.join_uri(uri, CURRENT_FILE)):
        return uri
    parent, _, name = uri.rstrip("/").rpartition("/")
    version = current_version(parent, name)
    assert version is not None  # its CURRENT pointer exists (checked above)
    return version.files["table"]


def clip_index_uri(table_uri: str) -> str | None:
    """The clip index published with the table at `table_uri` (its version folder's manifest names it), or
    None for a table published without one, or not published at all."""
    folder, sep, _ = table_uri.rstrip("/").rpartition("/")
    if not sep:
        return None
    manifest = svd_io.join_uri(folder, "manifest.json")
    try:
        files = json.loads(svd_io.read_bytes(manifest)).get("files") or {}
    except (StorageError, ValueError, AttributeError):
        return None
    rel = files.get(CLIP_INDEX_KIND) if isinstance(files, dict) else None
    return svd_io.join_uri(folder, str(rel)) if rel else None


RANGE_COLUMNS = ("_clip_offset", "_clip_length")
"""Columns the clip index adds to the training table: where each clip's bytes lie in its shard."""


def attach_clip_index(
    table: pd.DataFrame, index_uri: str, disk_cache: DiskClipCache | None = None
) -> pd.DataFrame:
    """`table` with each clip's byte range from the clip index at `index_uri` (RANGE_COLUMNS; null for a
    clip the index does not list, which is then read from its whole shard). Only the index's clip_uri,
    offset and length columns are read."""
    index, _ = read_projected(
        index_uri,
        ["clip_uri", "offset", "length"],
        disk_cache=disk_cache,
        what="clip index",
        hint="republish the dataset (`svd data filter`) to rebuild it",
    )
    index = index.drop_duplicates("clip_uri").rename(
        columns={"offset": RANGE_COLUMNS[0], "length": RANGE_COLUMNS[1]}
    )
    merged = table.drop(columns=[c for c in RANGE_COLUMNS if c in table.columns]).merge(
        index, on="clip_uri", how="left", validate="many_to_one"
    )
    return merged.reset_index(drop=True)


def read_table(
    uri: str, columns: Sequence[str] | None = None, disk_cache: DiskClipCache | None = None
) -> pd.DataFrame:
    """The Parquet table at `uri` (path, file:// or s3://), validated to have rows and the needed columns:
    all of its columns, or REQUIRED_COLUMNS plus those of `columns` it has (no other column is read)."""
    return read_training_table(uri, columns, disk_cache)[0]


def read_training_table(
    uri: str, columns: Sequence[str] | None = None, disk_cache: DiskClipCache | None = None
) -> tuple[pd.DataFrame, TableRead]:
    """`read_table` and what the read cost (columns read and skipped, bytes; svd_core.data.streaming)."""
    table, read = read_projected(uri, REQUIRED_COLUMNS, columns, disk_cache)
    if table.empty:
        raise InputError(f"training table {uri} has no rows; check the filter thresholds that produced it")
    return table.reset_index(drop=True), read


class MotionBuckets:
    """flow_score -> motion_bucket_id by the score's mid-rank quantile among the reference scores."""

    def __init__(self, scores: np.ndarray):
        finite = scores[np.isfinite(scores)]
        self.sorted = np.sort(finite)

    def bucket(self, score: float | None) -> int:
        if score is None or not np.isfinite(score) or self.sorted.size == 0:
            return DEFAULT_MOTION_BUCKET
        below = np.searchsorted(self.sorted, score, side="left")
        upto = np.searchsorted(self.sorted, score, side="right")
        quantile = (below + upto) / 2 / self.sorted.size
        return int(min(255, math.floor(256 * quantile)))


@dataclass(frozen=True)
class SamplePlan:
    """Everything item `i` needs, decided before any decoding."""

    row: int
    clip_uri: str
    target_fps: int
    indices: list[int]
    motion_bucket_id: int
    cond_aug: float
    cond_noise_seed: int
    caption: str
    byte_range: tuple[int, int] | None = None
    """(offset, length) of the clip in its shard from the clip index; None reads the whole shard."""


def _float_or_none(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _byte_range(row: pd.Series) -> tuple[int, int] | None:
    offset, length = (row.get(c) for c in RANGE_COLUMNS)
    if offset is None or length is None or pd.isna(offset) or pd.isna(length):
        return None
    return int(offset), int(length)


class VideoClipDataset(torch.utils.data.Dataset):
    """Map-style dataset over the usable rows of an LVD table (see the module docstring)."""

    @classmethod
    def from_config(cls, cfg: Any, *args: Any, **kwargs: Any) -> Self:
        """The dataset a training task's config describes: `cfg.data` (table, fps range, shard cache, item
        cap, and `stream`: caches and seeking, StreamConfig's defaults when the section has none), the clip
        shape (`num_frames`, `height`, `width`), `trainer.seed` and the objective's `cond_aug_*`.
        `args`/`kwargs` go to the constructor on top (a subclass's own arguments, a tokenizer, caption
        weights). The one place that maps a stage config to its dataset."""
        data = cfg.data
        common: dict[str, Any] = {
            "num_frames": cfg.num_frames,
            "height": cfg.height,
            "width": cfg.width,
            "fps_min": data.fps_min,
            "fps_max": data.fps_max,
            "seed": cfg.trainer.seed,
            "cond_aug_mean": cfg.objective.cond_aug_mean,
            "cond_aug_std": cfg.objective.cond_aug_std,
            "shard_cache_dir": data.shard_cache_dir,
            "max_items": data.max_items,
            "stream": getattr(data, "stream", None),
        }
        return cls(data.table_uri, *args, **{**common, **kwargs})

    def __init__(
        self,
        table_uri: str,
        num_frames: int,
        height: int,
        width: int,
        fps_min: int = 3,
        fps_max: int = 30,
        seed: int = 0,
        cond_aug_mean: float = -3.0,
        cond_aug_std: float = 0.5,
        caption_weights: Mapping[str, float] | None = None,
        tokenize: Tokenize | None = None,
        shard_cache_dir: str | None = None,
        max_items: int | None = None,
        use_clip_index: bool = True,
        stream: StreamConfig | Mapping[str, Any] | None = None,
        extra_columns: Sequence[str] = (),
    ):
        self.stream = stream_config(stream)
        self.caption_weights = dict(caption_weights or {"caption": 1.0})
        self.extra_columns = tuple(extra_columns)
        table_uri = resolve_table_uri(table_uri)
        disk = disk_cache(self.stream, "tables") if self.stream.table_cache else None
        table, self.table_read = read_training_table(table_uri, self.table_columns(), disk)
        self.clip_index_uri = clip_index_uri(table_uri) if use_clip_index else None
        if self.clip_index_uri is not None:
            table = attach_clip_index(table, self.clip_index_uri, disk)
        self.table_uri = table_uri
        self.num_frames, self.height, self.width = num_frames, height, width
        self.fps_min, self.fps_max, self.seed = fps_min, fps_max, seed
        self.cond_aug_mean, self.cond_aug_std = cond_aug_mean, cond_aug_std
        self.tokenize = tokenize
        if tokenize is not None:
            absent = [c for c in self.caption_weights if c not in table.columns]
            if absent:
                raise InputError(
                    f"training table {table_uri} lacks caption columns {absent} (data.caption_weights)"
                )
        flow = table["flow_score"] if "flow_score" in table.columns else pd.Series(np.nan, index=table.index)
        self.motion = MotionBuckets(pd.to_numeric(flow, errors="coerce").to_numpy(dtype=float))
        usable = [
            i
            for i, (fps, frames) in enumerate(zip(table["fps"], table["num_frames"], strict=True))
            if feasible_fps(float(fps), int(frames), num_frames, fps_min, fps_max)
        ]
        self.skipped_too_short = len(table) - len(usable)
        if not usable:
            raise InputError(
                f"training table {table_uri}: none of its {len(table)} clips has {num_frames} frames at any "
                f"rate in [{fps_min}, {fps_max}] fps; lower num_frames or fps_min, or use longer clips"
            )
        self.table = table.iloc[usable[:max_items] if max_items else usable].reset_index(drop=True)
        self.reader = ShardReader(shard_cache_dir, self.stream)
        self.epoch = 0

    def table_columns(self) -> list[str]:
        """The table columns items are made from: REQUIRED_COLUMNS (always), then `flow_score`, the caption
        columns of `caption_weights` and `extra_columns` where the table has them; nothing else is read."""
        return list(
            dict.fromkeys([*REQUIRED_COLUMNS, "flow_score", *self.caption_weights, *self.extra_columns])
        )

    def __len__(self) -> int:
        return len(self.table)

    def set_epoch(self, epoch: int) -> None:
        """Draw the next items for `epoch` (the trainer's BatchStream calls this before each epoch's
        DataLoader, whose workers copy the dataset with it, as DistributedSampler.set_epoch)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = epoch

    def plan(self, index: int, epoch: int | None = None) -> SamplePlan:
        """The sampling decisions of item `index` in `epoch` (default: the current one), deterministic in
        (seed, epoch, index); no decoding. Every epoch draws a new rate, window, cond_aug and caption."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} clips")
        row = self.table.iloc[index]
        rng = np.random.default_rng([self.seed, self.epoch if epoch is None else epoch, index])
        native_fps, native_frames = float(row["fps"]), int(row["num_frames"])
        rates = feasible_fps(native_fps, native_frames, self.num_frames, self.fps_min, self.fps_max)
        target = int(rates[rng.integers(len(rates))])
        last_start = native_frames - 1 - span_frames(native_fps, target, self.num_frames)
        start = int(rng.integers(last_start + 1))
        cond_aug = float(np.exp(self.cond_aug_mean + self.cond_aug_std * rng.standard_normal()))
        return SamplePlan(
            row=index,
            clip_uri=str(row["clip_uri"]),
            target_fps=target,
            indices=frame_indices(native_fps, target, self.num_frames, start),
            motion_bucket_id=self.motion.bucket(_float_or_none(row.get("flow_score"))),
            cond_aug=cond_aug,
            cond_noise_seed=int(rng.integers(2**62)),
            caption=self._pick_caption(row, rng),
            byte_range=_byte_range(row),
        )

    def _pick_caption(self, row: pd.Series, rng: np.random.Generator) -> str:
        options = [
            (str(row[c]), w)
            for c, w in self.caption_weights.items()
            if c in row.index and not pd.isna(row[c])
        ]
        options = [(text, w) for text, w in options if w > 0 and text]
        if not options:
            return ""
        weights = np.array([w for _, w in options], dtype=float)
        return options[int(rng.choice(len(options), p=weights / weights.sum()))][0]

    def conditioning(self, plan: SamplePlan) -> dict[str, torch.Tensor]:
        """The item's tensors other than pixels (also what a latent-cache item carries)."""
        item = {
            "index": torch.tensor(plan.row, dtype=torch.int64),
            "fps_id": torch.tensor(plan.target_fps - 1, dtype=torch.float32),
            "motion_bucket_id": torch.tensor(plan.motion_bucket_id, dtype=torch.float32),
            "cond_aug": torch.tensor(plan.cond_aug, dtype=torch.float32),
            "cond_noise_seed": torch.tensor(plan.cond_noise_seed, dtype=torch.int64),
        }
        if self.tokenize is not None:
            item["input_ids"] = self.tokenize(plan.caption)
        return item

    def load_frames(self, plan: SamplePlan) -> torch.Tensor:
        data = self.reader.read(plan.clip_uri, plan.byte_range)
        frames = decode_frames(data, plan.indices, plan.clip_uri, seek=self.stream.seek)
        return to_model_range(resize_and_center_crop(frames, self.height, self.width))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        plan = self.plan(index)
        return {**self.conditioning(plan), "frames": self.load_frames(plan)}


def decode_frames(data: bytes, indices: list[int], source: str, seek: bool = True) -> np.ndarray:
    """Decode the frames at `indices` (presentation order) of an encoded clip: (N, H, W, 3) uint8 RGB, from
    the keyframe at or before the first of them when `seek` (svd_core.data.streaming.decode_window)."""
    return decode_window(data, indices, source, seek=seek).frames
