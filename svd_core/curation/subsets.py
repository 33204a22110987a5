"""Seeded random subsets of LVD (the paper's LVD-10M), and synthetic LVD tables for demos and tests.

A subset must be reproducible from (seed, clip ids) alone: LVD is rebuilt and re-sharded, so its row
order changes between builds. Each clip is ranked by a keyed hash of its clip_id (BLAKE2b keyed with the
seed, a stable cryptographic function, unlike numpy shuffles or pandas' hash, which depend on row order
or library version); the subset is the lowest-ranked k clips. A smaller subset with the same seed is
therefore a prefix of a larger one.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from svd_core.curation.config import SubsetConfig
from svd_core.curation.schema import CAPTION_COLUMNS, LVD_COLUMNS, LVD_SCHEMA
from svd_core.errors import InputError


def subset_rank(clip_ids: Iterable[object], seed: int) -> np.ndarray:
    """Per clip, an unsigned 64-bit rank that depends only on (clip_id, seed)."""
    keyed = hashlib.blake2b(digest_size=8, key=str(seed).encode())

    def digest(clip_id: object) -> bytes:
        h = keyed.copy()  # cheaper than re-keying per clip
        h.update(str(clip_id).encode())
        return h.digest()

    packed = b"".join(digest(cid) for cid in clip_ids)
    return np.frombuffer(packed, dtype=">u8").astype(np.uint64)


def subset_size(rows: int, cfg: SubsetConfig) -> int:
    """Number of clips the subset takes from a table of `rows` clips."""
    if cfg.size is not None:
        if cfg.size > rows:
            raise InputError(
                f"subset size {cfg.size} exceeds the {rows} clips in LVD; lower size or use fraction instead"
            )
        return cfg.size
    assert cfg.fraction is not None  # guaranteed by SubsetConfig's validator
    return max(1, min(rows, math.ceil(rows * cfg.fraction)))


def check_subset_input(source: str, rows: int, columns: Iterable[str]) -> None:
    """What every subset engine (pandas, DuckDB, Dask) requires of its input table."""
    if rows == 0:
        raise InputError(f"{source} has no rows; build LVD first or check the input path")
    if "clip_id" not in columns:
        raise InputError(f"{source} has no clip_id column; subsets are keyed by clip_id (see LVD_SCHEMA)")


def duplicate_ids_error(source: str, count: int, examples: object) -> InputError:
    """The error every subset engine raises for duplicate clip ids (a subset must be reproducible)."""
    return InputError(
        f"{source} has {count} duplicate clip_id(s) (e.g. {examples}); clip_id must be "
        "unique for a reproducible subset; deduplicate LVD (re-run the LVD build)"
    )


def random_subset(table: pd.DataFrame, cfg: SubsetConfig, source: str = "the LVD table") -> pd.DataFrame:
    """The seeded subset of `table`, ordered by rank (independent of the input's row order)."""
    check_subset_input(source, len(table), table.columns)
    k = subset_size(len(table), cfg)
    clip_ids = table["clip_id"].tolist()  # iterating a list is ~2x faster than an Arrow-backed Series
    ranks = subset_rank(clip_ids, cfg.seed)
    order = np.argsort(ranks, kind="stable")
    sorted_ranks = ranks[order]
    if (sorted_ranks[1:] == sorted_ranks[:-1]).any():
        # Equal ranks mean duplicate clip ids or (practically never) a 64-bit collision.
        _require_unique(table, source)
        frame = pd.DataFrame({"rank": ranks, "clip_id": clip_ids})
        order = frame.sort_values(["rank", "clip_id"], kind="stable").index.to_numpy()
    return table.iloc[order[:k]].reset_index(drop=True)


def _require_unique(table: pd.DataFrame, source: str) -> None:
    duplicated = table["clip_id"].duplicated()
    if duplicated.any():
        examples = table.loc[duplicated, "clip_id"].head(3).tolist()
        raise duplicate_ids_error(source, int(duplicated.sum()), examples)


_WORDS = ("a", "person", "dog", "city", "street", "car", "ocean", "forest", "drone", "sunset", "walking")
_MOTIONS = ["static", "horizontal", "vertical", "zoom_in", "zoom_out", "complex"]


def synthetic_lvd_table(rows: int, seed: int = 0, null_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """A seeded LVD table with plausible score distributions (for tests, demos and benchmarks only).

    Scores are independent draws shaped like real ones: half the clips have no text (text area 0), CLIP
    similarities around 0.28, aesthetics around 5. `null_columns` are left null, as when a scorer is off.
    """
    rng = np.random.default_rng(seed)
    clip_ids = [hashlib.sha256(f"clip-{seed}-{i}".encode()).hexdigest() for i in range(rows)]
    video_ids = [hashlib.sha256(f"video-{seed}-{i // 4}".encode()).hexdigest() for i in range(rows)]
    fps = rng.choice([24.0, 25.0, 30.0], size=rows)
    duration = np.clip(rng.lognormal(mean=np.log(10.0), sigma=0.5, size=rows), 0.5, 120.0)
    start = rng.uniform(0.0, 300.0, size=rows)
    has_text = rng.random(rows) < 0.5
    table = pd.DataFrame(
        {
            "clip_id": clip_ids,
            "video_id": video_ids,
            "source_uri": [f"file:///data/raw/{v[:12]}.mp4" for v in video_ids],
            "clip_uri": [
                f"file:///data/lvd/shard-{i // 1000:06d}.tar#{c}.mp4" for i, c in enumerate(clip_ids)
            ],
            "start_s": start,
            "end_s": start + duration,
            "fps": fps,
            "num_frames": np.maximum(1, np.round(duration * fps)).astype(np.int64),
            "width": np.full(rows, 1024, dtype=np.int64),
            "height": np.full(rows, 576, dtype=np.int64),
            "duration_s": duration,
            "flow_score": rng.gamma(shape=2.0, scale=1.5, size=rows),
            "text_area_ratio": np.where(has_text, rng.beta(1.2, 12.0, size=rows), 0.0),
            "aesthetic_score": np.clip(rng.normal(5.0, 0.8, size=rows), 0.0, 10.0),
            "clip_score": np.clip(rng.normal(0.28, 0.05, size=rows), -1.0, 1.0),
            "caption": [" ".join(rng.choice(_WORDS, size=int(rng.integers(3, 12)))) for _ in range(rows)],
            "caption_source": "image+video+llm",
            "camera_motion": rng.choice(_MOTIONS, size=rows),
            "cam_tx": rng.normal(0.0, 0.05, size=rows),
            "cam_ty": rng.normal(0.0, 0.05, size=rows),
            "cam_zoom": rng.normal(0.0, 0.02, size=rows),
            "scorer_versions": json.dumps({"synthetic": str(seed)}),
        }
    )
    # The chain's other captions: halves of the merged one (no extra draws: the scores stay as they were).
    words = table["caption"].str.split()
    table["caption_image"] = [" ".join(w[: len(w) // 2 + 1]) for w in words]
    table["caption_video"] = [" ".join(w[len(w) // 2 :]) for w in words]
    table["caption_merged"] = table["caption"]
    table["caption_metadata"] = [f"Video {v[:8]}." for v in video_ids]  # as from the source's title
    table["caption_provenance"] = json.dumps(
        {c: "synthetic" for c in sorted(CAPTION_COLUMNS)}, sort_keys=True
    )
    nullable = {f.name for f in LVD_SCHEMA if f.nullable}
    for column in null_columns:
        if column not in nullable:
            raise InputError(f"null_columns: {column!r} is not a nullable LVD column ({sorted(nullable)})")
        table[column] = pd.Series([None] * rows, dtype=table[column].dtype)
    return table[LVD_COLUMNS]
