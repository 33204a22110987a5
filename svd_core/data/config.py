"""`StreamConfig`: how a training process reads clips (byte-range reads, caches, seeking) and its table.

The `stream` section of a training stage's `data` config. Sizes take a byte count or a string with a unit
("512MiB", "16GB"; pydantic's ByteSize syntax); 0 turns a cache off.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ByteSize, ConfigDict, TypeAdapter, field_validator, model_validator

MIB = 1 << 20
GIB = 1 << 30
_BYTE_SIZE = TypeAdapter(ByteSize)


def parse_bytes(value: Any, name: str) -> int:
    """A size in bytes from an int or a string with a unit; ValueError naming `name` for anything else or a
    negative size."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a size in bytes (e.g. 268435456 or '256MiB'), got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("-"):
            raise ValueError(f"{name} must be >= 0 bytes (0 turns it off), got {value!r}")
        try:
            return int(_BYTE_SIZE.validate_python(text))
        except ValueError:
            raise ValueError(
                f"{name} must be a size in bytes (e.g. 268435456 or '256MiB'), got {value!r}"
            ) from None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise ValueError(f"{name} must be a size in bytes (e.g. 268435456 or '256MiB'), got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0 bytes (0 turns it off), got {value}")
    return value


class StreamConfig(BaseModel):
    """Clip reading of `VideoClipDataset` (see svd_core.data.streaming)."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    cache_bytes: int = 256 * MIB
    """In-memory LRU of clip bytes, per process (each DataLoader worker has its own), thread-safe; clips
    past the limit evict the least recently used. 0 turns it off. Workers are started anew each epoch, so
    this tier only helps within an epoch or with num_workers=0; the disk tier carries across epochs."""
    disk_cache_dir: str | None = None
    """Node-local folder shared by every process of the node for copies of remote clips and of the
    projected remote training table (a bounded LRU, see `disk_cache_bytes`); None turns the disk tier off.
    Point it at local scratch (NVMe) for multi-epoch runs on s3:// data; local clips are never copied."""
    disk_cache_bytes: int = 16 * GIB
    """Bound of the node-local disk cache (least recently used files evicted first); 0 turns it off (remote
    clips are then range-read every time they are used)."""
    seek: bool = True
    """Decode from the keyframe at or before a window's first frame instead of from the clip's frame 0 (same
    frames, checked by timestamp; falls back to decoding from frame 0 when the timestamps do not allow it)."""
    table_cache: bool = True
    """With the disk tier on: keep the projected columns of a remote training table (and its clip index)
    there, so the ranks of one node read them from the store once (keyed by the object's URI, size and
    ETag/mtime)."""

    @field_validator("cache_bytes", "disk_cache_bytes", mode="before")
    @classmethod
    def _size(cls, value: Any, info: Any) -> int:
        return parse_bytes(value, info.field_name)

    @model_validator(mode="after")
    def _check(self) -> StreamConfig:
        if self.disk_cache_dir is not None and not self.disk_cache_dir.strip():
            raise ValueError("disk_cache_dir is empty; give a folder, or null to turn the disk tier off")
        return self


def stream_config(value: Any) -> StreamConfig:
    """`value` as a StreamConfig: one as is, None -> the defaults, a mapping -> validated."""
    if value is None:
        return StreamConfig()
    if isinstance(value, StreamConfig):
        return value
    if isinstance(value, dict):
        return StreamConfig.model_validate(value)
    raise TypeError(f"stream must be a StreamConfig, a dict or None, got {type(value).__name__}")
