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

Clips too short for `num_frames` at any allowed rate are skipped when the dataset is built (from the
table's fps and num_frames; `skipped_too_short` counts them); if none is left the build raises InputError.
A clip whose decoded frame count falls short of its table row raises InputError naming the clip.
"""

from __future__ import annotations

import hashlib
import io as pyio
import math
import os
import tarfile
import tempfile
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import av
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch

from svd_core import storage as svd_io
from svd_core.curation.publish import CURRENT_FILE, current_version
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


def read_table(uri: str) -> pd.DataFrame:
    """The Parquet table at `uri` (file:// path or s3://), validated to have rows and the needed columns."""
    try:
        data = svd_io.read_bytes(uri)
    except StorageError as exc:
        raise InputError(
            f"training table {uri} cannot be read ({exc}); run the LVD build/filter first"
        ) from exc
    try:
        table = pq.read_table(pyio.BytesIO(data)).to_pandas()
    except Exception as exc:  # pyarrow raises several types for a non-Parquet file
        raise InputError(f"training table {uri} is not a Parquet file ({exc.__class__.__name__})") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(f"training table {uri} lacks columns {missing}; expected the LVD schema")
    if table.empty:
        raise InputError(f"training table {uri} has no rows; check the filter thresholds that produced it")
    return table.reset_index(drop=True)


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


def _float_or_none(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


class VideoClipDataset(torch.utils.data.Dataset):
    """Map-style dataset over the usable rows of an LVD table (see the module docstring)."""

    @classmethod
    def from_config(cls, cfg: Any, *args: Any, **kwargs: Any) -> Self:
        """The dataset a training task's config describes: `cfg.data` (table, fps range, shard cache, item
        cap), the clip shape (`num_frames`, `height`, `width`), `trainer.seed` and the objective's
        `cond_aug_*`. `args`/`kwargs` go to the constructor on top (a subclass's own arguments, a tokenizer,
        caption weights). The one place that maps a stage config to its dataset."""
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
    ):
        table_uri = resolve_table_uri(table_uri)
        table = read_table(table_uri)
        self.table_uri = table_uri
        self.num_frames, self.height, self.width = num_frames, height, width
        self.fps_min, self.fps_max, self.seed = fps_min, fps_max, seed
        self.cond_aug_mean, self.cond_aug_std = cond_aug_mean, cond_aug_std
        self.caption_weights = dict(caption_weights or {"caption": 1.0})
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
        self.reader = ShardReader(shard_cache_dir)
        self.epoch = 0

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
        data = self.reader.read(plan.clip_uri)
        frames = decode_frames(data, plan.indices, plan.clip_uri)
        return to_model_range(resize_and_center_crop(frames, self.height, self.width))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        plan = self.plan(index)
        return {**self.conditioning(plan), "frames": self.load_frames(plan)}


class ShardReader:
    """Reads `<shard tar uri>#<member>` clips (or a whole object when the URI has no `#member`).

    A local tar is read in place; a remote one (s3://) is copied once per process into `cache_dir` (temp
    name, then rename, so concurrent workers never see a partial copy). Each tar's member table is read once
    and members are then read by offset.
    """

    def __init__(self, cache_dir: str | None = None):
        self.cache_dir = Path(cache_dir) if cache_dir else Path(tempfile.gettempdir()) / "svd-shards"
        self._paths: dict[str, Path] = {}
        self._members: dict[str, dict[str, tuple[int, int]]] = {}

    def read(self, clip_uri: str) -> bytes:
        shard, sep, member = clip_uri.rpartition("#")
        if not sep:
            return svd_io.read_bytes(clip_uri)
        path = self._local_shard(shard)
        members = self._members.get(shard)
        if members is None:
            members = self._members[shard] = self._member_table(path, shard)
        if member not in members:
            raise InputError(
                f"clip {clip_uri}: member {member!r} is not in shard {shard}; the table is stale"
            )
        offset, size = members[member]
        with path.open("rb") as handle:
            handle.seek(offset)
            return handle.read(size)

    @staticmethod
    def _member_table(path: Path, shard: str) -> dict[str, tuple[int, int]]:
        try:
            with tarfile.open(path) as tar:
                return {m.name: (m.offset_data, m.size) for m in tar.getmembers() if m.isfile()}
        except tarfile.TarError as exc:
            raise InputError(f"shard {shard} is not a readable tar ({exc}); re-run the clip writer") from exc

    def _local_shard(self, shard: str) -> Path:
        if shard in self._paths:
            return self._paths[shard]
        if svd_io.is_local(shard):
            path = svd_io.local_path(shard)
            if not path.is_file():
                raise InputError(f"shard {shard} does not exist; the table points at clips that were moved")
        else:
            path = self.cache_dir / (hashlib.sha256(shard.encode()).hexdigest()[:24] + ".tar")
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.parent / f"{svd_io.TEMP_MARK}{uuid.uuid4().hex}.tar"
                try:
                    svd_io.store_for(shard).get_file(shard, tmp)
                    os.replace(tmp, path)
                finally:
                    tmp.unlink(missing_ok=True)
        self._paths[shard] = path
        return path


def decode_frames(data: bytes, indices: list[int], source: str) -> np.ndarray:
    """Decode the frames at `indices` (presentation order) of an encoded clip: (N, H, W, 3) uint8 RGB."""
    wanted = set(indices)
    last = max(indices)
    found: dict[int, np.ndarray] = {}
    try:
        with av.open(pyio.BytesIO(data), "r") as container:
            for position, frame in enumerate(container.decode(video=0)):
                if position > last:
                    break
                if position in wanted:
                    found[position] = frame.to_ndarray(format="rgb24")
    except (av.error.FFmpegError, IndexError) as exc:
        raise InputError(f"clip {source} cannot be decoded ({exc.__class__.__name__}: {exc})") from exc
    if len(found) < len(wanted):
        decoded = max(found) + 1 if found else 0
        raise InputError(
            f"clip {source} has fewer frames than its table row says (needs frame {last}, decoded {decoded}); "
            "rebuild the table or drop the clip"
        )
    return np.stack([found[i] for i in indices])
