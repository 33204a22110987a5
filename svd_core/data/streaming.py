"""Training's streaming data path: clip bytes by range, two bounded caches, seeking decode, projected tables.

- Clip bytes (`ShardReader`): a clip listed in the clip index is one ranged read of its shard
  (svd_core.video.shards.read_clip_range); reads pass through a per-process in-memory LRU (`ClipCache`,
  `stream.cache_bytes`) and, for remote shards, a node-local disk LRU shared by every process of the node
  (`DiskClipCache`, `stream.disk_cache_bytes`). DataLoader workers are started anew each epoch, so the disk
  tier is what carries clips from one epoch to the next; local shards are never copied.
- Decoding (`decode_window`): the clip's packets are demuxed (no decoding) to learn each frame's
  presentation index from its timestamp; decoding starts at the last keyframe at or before the window's
  first frame instead of at frame 0. Every decoded frame is mapped back by timestamp, so the frames are
  exactly those a decode from frame 0 gives; a clip whose timestamps do not allow that (missing or
  repeated pts, a frame the index cannot place) is decoded from frame 0.
- Tables (`read_projected`): only the columns the dataset uses are read from the Parquet file (its footer,
  then those column chunks: pyarrow over the local file, or over an fsspec file for remote ones, s3fs at
  the store's endpoint for s3://). A remote table's projection is kept in the node's disk cache, keyed by
  the object's size and ETag/mtime, so the ranks of a node fetch it once.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tarfile
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from svd_core import storage as svd_io
from svd_core.data.config import StreamConfig
from svd_core.errors import InputError, StorageError
from svd_core.video.decode import ClipDisplay
from svd_core.video.shards import read_clip_range

LOW_WATERMARK = 0.9
"""An eviction pass of the disk cache frees space down to this fraction of its bound, so a full cache does
not rescan on every write."""
STALE_TEMP_S = 3600.0
"""Temp files of a disk cache older than this were left by a killed writer and are removed by a scan."""


# --- caches ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CacheStats:
    """Counters of one cache (per process)."""

    hits: int
    misses: int
    evictions: int
    bytes: int
    items: int


class ClipCache:
    """Thread-safe in-memory LRU of byte strings, at most `max_bytes` in total (0 stores nothing).

    A value larger than the whole bound is not stored. Two threads missing the same key both load it (no
    single-flight); the cache stays consistent. Pickling (spawned DataLoader workers) gives an empty cache
    with the same bound.
    """

    def __init__(self, max_bytes: int):
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise ValueError(f"ClipCache max_bytes must be an int >= 0 (0 turns it off), got {max_bytes!r}")
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = self.evictions = 0

    def get(self, key: str) -> bytes | None:
        with self._lock:
            data = self._items.get(key)
            if data is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return data

    def put(self, key: str, data: bytes) -> None:
        if len(data) > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= len(old)
            self._items[key] = data
            self._bytes += len(data)
            while self._bytes > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self._bytes -= len(evicted)
                self.evictions += 1

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._items

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self.hits, self.misses, self.evictions, self._bytes, len(self._items))

    def __getstate__(self) -> dict[str, Any]:
        return {"max_bytes": self.max_bytes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["max_bytes"])  # type: ignore[misc]


class DiskClipCache:
    """A node-local LRU of files under `root`, bounded by `max_bytes`, shared by the processes of a node.

    Writes are atomic (temp file, then rename), a hit refreshes the file's mtime (the LRU order), and a
    process that sees the cache over its bound deletes the least recently used files down to
    LOW_WATERMARK of it. Each process counts what it writes and rescans the folder when its count passes
    the bound or every `rescan_every` writes, so the folder can exceed the bound by what other processes
    wrote since a process's last scan; a file deleted under a reader is a miss, never an error.
    """

    def __init__(self, root: str | Path, max_bytes: int, rescan_every: int = 64):
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise ValueError(f"DiskClipCache max_bytes must be an int >= 0, got {max_bytes!r}")
        if rescan_every < 1:
            raise ValueError(f"DiskClipCache rescan_every must be >= 1, got {rescan_every}")
        self.root, self.max_bytes, self.rescan_every = Path(root), max_bytes, rescan_every
        self._lock = threading.Lock()
        self._estimate: int | None = None
        self._puts = 0
        self.hits = self.misses = self.evictions = 0

    def path(self, key: str) -> Path:
        digest = hashlib.sha256(key.encode()).hexdigest()
        return self.root / digest[:2] / digest[2:40]

    def get(self, key: str) -> bytes | None:
        path = self.path(key)
        try:
            data = path.read_bytes()
            os.utime(path)
        except OSError:  # absent, or evicted by another process meanwhile
            with self._lock:
                self.misses += 1
            return None
        with self._lock:
            self.hits += 1
        return data

    def put(self, key: str, data: bytes) -> None:
        if len(data) > self.max_bytes:
            return
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f"{svd_io.TEMP_MARK}{uuid.uuid4().hex}"
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)
            return  # a full or read-only disk costs the cache, never the read
        with self._lock:
            self._puts += 1
            if self._estimate is None or self._puts % self.rescan_every == 0:
                self._estimate = self._scan_total()
            else:
                self._estimate += len(data)
            if self._estimate > self.max_bytes:
                self._estimate = self._evict()

    def _entries(self) -> list[tuple[float, int, Path]]:
        entries: list[tuple[float, int, Path]] = []
        now = time.time()
        if not self.root.is_dir():
            return entries
        for sub in os.scandir(self.root):
            if not sub.is_dir():
                continue
            for entry in os.scandir(sub.path):
                try:
                    st = entry.stat()
                except OSError:
                    continue
                if entry.name.startswith(svd_io.TEMP_MARK):
                    if now - st.st_mtime > STALE_TEMP_S:
                        Path(entry.path).unlink(missing_ok=True)
                    continue
                entries.append((st.st_mtime, st.st_size, Path(entry.path)))
        return entries

    def _scan_total(self) -> int:
        return sum(size for _, size, _ in self._entries())

    def _evict(self) -> int:
        entries = sorted(self._entries(), key=lambda e: e[0])
        total = sum(size for _, size, _ in entries)
        target = int(self.max_bytes * LOW_WATERMARK)
        for _, size, path in entries:
            if total <= target:
                break
            with contextlib.suppress(FileNotFoundError):  # another process evicted it first
                path.unlink()
            total -= size
            self.evictions += 1
        return total

    def stats(self) -> CacheStats:
        entries = self._entries()
        with self._lock:
            return CacheStats(
                self.hits, self.misses, self.evictions, sum(s for _, s, _ in entries), len(entries)
            )

    def __getstate__(self) -> dict[str, Any]:
        return {"root": str(self.root), "max_bytes": self.max_bytes, "rescan_every": self.rescan_every}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["root"], state["max_bytes"], state["rescan_every"])  # type: ignore[misc]


def disk_cache(stream: StreamConfig, kind: str) -> DiskClipCache | None:
    """The node-local disk cache of `stream` for `kind` ("clips" or "tables"), or None when its disk tier
    is off (no `disk_cache_dir`, or `disk_cache_bytes` 0)."""
    if not stream.disk_cache_dir or stream.disk_cache_bytes == 0:
        return None
    return DiskClipCache(Path(stream.disk_cache_dir).expanduser() / kind, stream.disk_cache_bytes)


# --- decoding --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DecodedWindow:
    """Frames of one window and what decoding them cost."""

    frames: np.ndarray
    """(N, H, W, 3) uint8 RGB, in the order of the requested indices."""
    decoded: int
    """Frames the decoder produced to get them."""
    start: int
    """Presentation index of the first frame decoded: the keyframe seeked to, 0 when decoded from frame 0."""
    seeked: bool
    """Whether the keyframe path was taken (False: decoded from frame 0)."""


def decode_window(data: bytes, indices: Sequence[int], source: str, seek: bool = True) -> DecodedWindow:
    """Decode the frames at presentation `indices` of an encoded clip (see the module docstring). InputError
    when the clip cannot be decoded or has fewer frames than the window needs."""
    if not indices:
        raise ValueError(f"clip {source}: no frame indices to decode")
    if min(indices) < 0:
        raise ValueError(f"clip {source}: frame indices must be >= 0, got {min(indices)}")
    try:
        if seek and min(indices) > 0:
            with av.open(io.BytesIO(data), "r") as container:
                window = _decode_from_keyframe(container, indices)
            if window is not None:
                return window
        with av.open(io.BytesIO(data), "r") as container:
            return _decode_from_start(container, indices, source)
    except (av.error.FFmpegError, IndexError) as exc:
        raise InputError(f"clip {source} cannot be decoded ({exc.__class__.__name__}: {exc})") from exc


def _decode_from_start(container: Any, indices: Sequence[int], source: str) -> DecodedWindow:
    wanted, last = set(indices), max(indices)
    found: dict[int, np.ndarray] = {}
    decoded = 0
    display = ClipDisplay(container.streams.video[0])  # stream-copied clips keep rotation, SAR, 10-bit/HDR
    for position, frame in enumerate(container.decode(video=0)):
        if position > last:
            break
        decoded += 1
        if position in wanted:
            found[position] = display(frame).to_ndarray(format="rgb24")
    if len(found) < len(wanted):
        got = max(found) + 1 if found else 0
        raise InputError(
            f"clip {source} has fewer frames than its table row says (needs frame {last}, decoded {got}); "
            "rebuild the table or drop the clip"
        )
    return DecodedWindow(np.stack([found[i] for i in indices]), decoded, 0, False)


def _decode_from_keyframe(container: Any, indices: Sequence[int]) -> DecodedWindow | None:
    """The window decoded from the last keyframe at or before its first frame, or None when the clip's
    timestamps cannot place every frame (the caller then decodes from frame 0)."""
    stream = container.streams.video[0]
    packets = list(container.demux(stream))  # decode order; the last ones are the decoder's flush packets
    real = [p for p in packets if p.size]
    if not real or any(p.pts is None for p in real):
        return None
    order = sorted(int(p.pts) for p in real)
    first, last = min(indices), max(indices)
    if len(set(order)) != len(order) or last >= len(order):
        return None  # repeated timestamps, or a clip too short: decoding from 0 decides (and names it)
    rank = {pts: i for i, pts in enumerate(order)}
    target = order[first]
    start_at = None
    for position, packet in enumerate(packets):
        if packet.size and packet.is_keyframe and int(packet.pts) <= target:
            start_at = position  # the last such keyframe in decode order
    if start_at is None:
        return None
    wanted = set(indices)
    found: dict[int, np.ndarray] = {}
    decoded = 0
    display = ClipDisplay(stream)
    start_rank = rank[int(packets[start_at].pts)]
    for packet in packets[start_at:]:
        for frame in packet.decode():
            index = rank.get(frame.pts) if frame.pts is not None else None
            if index is None:
                return None
            decoded += 1
            if index in wanted and index not in found:
                found[index] = display(frame).to_ndarray(format="rgb24")
        if len(found) == len(wanted):
            break
    if len(found) < len(wanted):
        return None
    return DecodedWindow(np.stack([found[i] for i in indices]), decoded, start_rank, True)


# --- clip bytes ------------------------------------------------------------------------------------------
def cache_key(clip_uri: str, byte_range: tuple[int, int] | None) -> str:
    """Cache key of a clip's bytes: its URI, and its byte range in the shard when the index gave one."""
    return clip_uri if byte_range is None else f"{clip_uri}@{byte_range[0]}+{byte_range[1]}"


@dataclass(frozen=True)
class ReadStats:
    """Where one process's clip reads were served from."""

    reads: int
    """Reads from the clip's source (a ranged read, a member read of a local shard, or a whole object)."""
    bytes_read: int
    """Bytes those reads returned."""
    memory: CacheStats
    disk: CacheStats | None


class ShardReader:
    """Reads `<shard tar uri>#<member>` clips (or a whole object when the URI has no `#member`).

    With a byte range from the clip index, only that range (and the member's tar header) is read, wherever
    the shard is. Without one, a local tar is read in place; a remote one is copied once per process into
    `cache_dir` (temp name, then rename, so concurrent workers never see a partial copy): the fallback for
    tables published without an index. Each tar's member table is read once and members are then read by
    offset. Every read goes through the caches of `stream` (see the module docstring); `stats()` counts
    what reached the source.
    """

    def __init__(self, cache_dir: str | None = None, stream: StreamConfig | None = None):
        self.stream = stream or StreamConfig()
        self.cache_dir = Path(cache_dir) if cache_dir else Path(tempfile.gettempdir()) / "svd-shards"
        self.memory = ClipCache(self.stream.cache_bytes)
        self.disk = disk_cache(self.stream, "clips")
        self._paths: dict[str, Path] = {}
        self._members: dict[str, dict[str, tuple[int, int]]] = {}
        self._lock = threading.Lock()
        self.reads = self.bytes_read = 0

    def read(self, clip_uri: str, byte_range: tuple[int, int] | None = None) -> bytes:
        key = cache_key(clip_uri, byte_range)
        data = self.memory.get(key)
        if data is not None:
            return data
        shard, sep, _ = clip_uri.rpartition("#")
        # Local shards are read in place; a remote one without a byte range is copied whole into cache_dir.
        remote = not svd_io.is_local(shard or clip_uri) and (byte_range is not None or not sep)
        disk = self.disk if remote else None
        data = disk.get(key) if disk is not None else None
        if data is None:
            data = self._fetch(clip_uri, byte_range)
            with self._lock:
                self.reads += 1
                self.bytes_read += len(data)
            if disk is not None:
                disk.put(key, data)
        self.memory.put(key, data)
        return data

    def stats(self) -> ReadStats:
        with self._lock:
            reads, read_bytes = self.reads, self.bytes_read
        return ReadStats(reads, read_bytes, self.memory.stats(), self.disk.stats() if self.disk else None)

    def _fetch(self, clip_uri: str, byte_range: tuple[int, int] | None) -> bytes:
        shard, sep, member = clip_uri.rpartition("#")
        if not sep:
            return svd_io.read_bytes(clip_uri)
        if byte_range is not None:
            return read_clip_range(clip_uri, *byte_range)
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

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self.reads = self.bytes_read = 0  # a spawned worker counts its own reads


# --- tables ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TableRead:
    """What reading a training table cost."""

    uri: str
    columns: tuple[str, ...]
    """The columns read (requested and present in the file)."""
    skipped: tuple[str, ...]
    """The file's other columns, not read."""
    bytes_read: int
    """Bytes read from the table's file (or from its node-local copy)."""
    file_bytes: int
    """Size of the table's file."""
    source: str
    """local (the file in place), ranged (a remote file's footer and column chunks), node-cache (the node's
    copy of an earlier projection), whole (a store without ranged reads: the object is fetched whole)."""


class _CountingFile(io.RawIOBase):
    """A read-only file that counts the bytes read through it (pyarrow reads the Parquet file through it)."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return int(self.inner.seek(offset, whence))

    def tell(self) -> int:
        return int(self.inner.tell())

    def readinto(self, buffer: Any) -> int:
        data = self.inner.read(len(buffer))
        buffer[: len(data)] = data
        self.bytes_read += len(data)
        return len(data)

    def read(self, size: int = -1) -> bytes:
        data = self.inner.read() if size is None or size < 0 else self.inner.read(size)
        self.bytes_read += len(data)
        return bytes(data)

    def close(self) -> None:
        self.inner.close()
        super().close()


def _fsspec_file(uri: str) -> tuple[Any, dict[str, Any]] | None:
    """(open file, info) of a remote object through fsspec with no read-ahead, or None when fsspec has no
    filesystem for the scheme (the store is then asked for the whole object)."""
    import fsspec  # only remote tables need it

    scheme = svd_io.scheme_of(uri)
    try:
        fsspec.get_filesystem_class(scheme)
    except (ValueError, ImportError):
        return None
    options: dict[str, Any] = {}
    if scheme == "s3":
        endpoint = getattr(svd_io.store_for(uri), "endpoint_url", None)
        if endpoint:
            options["endpoint_url"] = endpoint
    fs, path = fsspec.core.url_to_fs(uri, **options)
    info = dict(fs.info(path))
    return fs.open(path, "rb", cache_type="none"), info


def _fingerprint(uri: str, info: dict[str, Any], columns: Iterable[str]) -> str | None:
    version = next(
        (
            str(info[k])
            for k in ("ETag", "etag", "mtime", "LastModified", "last_modified", "created")
            if info.get(k)
        ),
        None,
    )
    if version is None:
        return None  # no way to tell a rewritten object: no node copy
    blob = json.dumps([uri, int(info.get("size") or 0), version, sorted(columns)])
    return "table:" + hashlib.sha256(blob.encode()).hexdigest()


def _choose(
    names: Sequence[str], required: Sequence[str], optional: Sequence[str] | None, where: str
) -> list[str]:
    missing = [c for c in required if c not in names]
    if missing:
        raise InputError(f"{where} lacks columns {missing}; expected the LVD schema")
    if optional is None:
        return list(names)
    chosen = dict.fromkeys([*required, *(c for c in optional if c in names)])
    return list(chosen)


def read_projected(
    uri: str,
    required: Sequence[str],
    optional: Sequence[str] | None = (),
    disk_cache: DiskClipCache | None = None,
    what: str = "training table",
    hint: str = "run the LVD build/filter first",
) -> tuple[pd.DataFrame, TableRead]:
    """The `required` columns of the Parquet table at `uri` plus those of `optional` it has (None: all of
    its columns), reading no other column's data; with `disk_cache`, a remote table's projection is kept in
    (and served from) the node's cache. InputError naming the `what` at `uri` when it cannot be read (with
    `hint`), is not Parquet or lacks a required column."""
    where = f"{what} {uri}"
    try:
        if svd_io.is_local(uri):
            path = svd_io.local_path(uri)
            try:
                raw: Any = path.open("rb")
            except (FileNotFoundError, IsADirectoryError):
                raise StorageError(f"{uri}: no such file") from None
            return _project(raw, uri, where, required, optional, path.stat().st_size, "local")
        try:
            opened = _fsspec_file(uri)
        except FileNotFoundError:
            raise StorageError(f"{uri}: no such object") from None
        except (OSError, ValueError, ImportError):
            opened = None  # an fsspec filesystem that cannot reach it: ask the store for the whole object
        if opened is None:
            data = svd_io.read_bytes(uri)
            return _project(io.BytesIO(data), uri, where, required, optional, len(data), "whole")
        handle, info = opened
        if disk_cache is None:
            return _project(handle, uri, where, required, optional, int(info.get("size") or 0), "ranged")
        return _project_cached(handle, info, uri, where, required, optional, disk_cache)
    except StorageError as exc:
        raise InputError(f"{where} cannot be read ({exc}); {hint}") from exc


def _project_cached(
    handle: Any,
    info: dict[str, Any],
    uri: str,
    where: str,
    required: Sequence[str],
    optional: Sequence[str] | None,
    disk_cache: DiskClipCache,
) -> tuple[pd.DataFrame, TableRead]:
    size = int(info.get("size") or 0)
    counted = _CountingFile(handle)
    try:
        parquet = _open_parquet(counted, where)
        names = parquet.schema_arrow.names
        columns = _choose(names, required, optional, where)
        skipped = tuple(c for c in names if c not in columns)
        key = _fingerprint(uri, info, columns)
        cached = disk_cache.get(key) if key is not None else None
        if cached is not None:
            frame = pq.read_table(pa.BufferReader(cached)).to_pandas()
            read = counted.bytes_read + len(cached)
            return frame, TableRead(uri, tuple(columns), skipped, read, size, "node-cache")
        table = _read_columns(parquet, columns, where)
    finally:
        counted.close()
    if key is not None:
        sink = io.BytesIO()
        pq.write_table(table, sink)
        disk_cache.put(key, sink.getvalue())
    return table.to_pandas(), TableRead(uri, tuple(columns), skipped, counted.bytes_read, size, "ranged")


def _open_parquet(handle: Any, where: str) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(handle, pre_buffer=True)
    except Exception as exc:  # pyarrow raises several types for a non-Parquet file
        raise InputError(f"{where} is not a Parquet file ({exc.__class__.__name__})") from exc


def _read_columns(parquet: pq.ParquetFile, columns: list[str], where: str) -> pa.Table:
    try:
        return parquet.read(columns=columns)
    except (OSError, ValueError) as exc:
        raise InputError(f"{where} cannot be read ({exc.__class__.__name__}: {exc})") from exc


def _project(
    raw: Any,
    uri: str,
    where: str,
    required: Sequence[str],
    optional: Sequence[str] | None,
    size: int,
    source: str,
) -> tuple[pd.DataFrame, TableRead]:
    counted = _CountingFile(raw)
    try:
        parquet = _open_parquet(counted, where)
        names = parquet.schema_arrow.names
        columns = _choose(names, required, optional, where)
        table = _read_columns(parquet, columns, where)
    finally:
        counted.close()
    skipped = tuple(c for c in names if c not in columns)
    read = counted.bytes_read if source != "whole" else size  # a whole fetch moved every byte
    return table.to_pandas(), TableRead(uri, tuple(columns), skipped, read, size, source)
