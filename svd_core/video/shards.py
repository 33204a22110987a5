"""Clip storage: WebDataset-style tar shards, one or more per source video, published atomically.

Why shards and not one object per clip: LVD has hundreds of millions of clips of ~1 MB. On S3, listing and
fetching that many small objects is slow (a LIST returns 1,000 keys; every GET has ~10-50 ms latency) and
costs per request, while training wants sequential streaming. Tar shards of 100 MB - 1 GB stream at full
bandwidth and are what WebDataset-style loaders read (`<key>.mp4` + `<key>.json` members per sample).

Why per video: a video is the unit of work of the build (one task, retried and skipped as a whole), so its
shards are written exactly once by exactly one task. Shards are built in a local temp folder and published
with `svd_core.storage.put_file` (temp name, then rename / copy-then-publish on S3): a killed run leaves no
half-written shard under its final name. Shard names carry a hash of their member list, and tar headers
carry no times or owners, so a rerun that produces the same clips produces the same shard name and skips
the upload.

A clip's URI is `<shard uri>#<member>`; `open_clip` reads one back.

Byte ranges: every shard is published with a sidecar `<shard>.idx.json` listing where each member's bytes
lie (written from the tar writer's own offsets, so it costs nothing). Publishing a curated table turns the
sidecars of the shards it references into a clip index (svd_core.curation.clip_index), and training then
reads each kept clip with one ranged read (`read_clip_range`) instead of fetching its 1 GB shard. A ranged
read also fetches the member's 512-byte tar header and checks it, so an index that no longer matches its
shard fails loudly instead of decoding the wrong bytes. `member_table` falls back to the tar headers for
shards written before sidecars existed.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

from svd_core import storage as svd_io
from svd_core.errors import InputError, StorageError

SHARD_DIR = "shards"
INDEX_SUFFIX = ".idx.json"
"""Sidecar of a shard: `<shard uri>.idx.json`, its member table (see `member_table`)."""
INDEX_FORMAT = "svd.shard-index/1"
TAR_BLOCK = 512
REPUBLISH_HINT = "republish the dataset (`svd data filter`) to rebuild its clip index from the shards"


class ShardWriter:
    """Collects one video's clips into local tar files of at most ~`max_bytes`, then publishes them."""

    def __init__(self, out_uri: str, video_id: str, max_bytes: int, workdir: Path):
        self.out_uri, self.video_id, self.max_bytes, self.workdir = out_uri, video_id, max_bytes, workdir
        self.done: list[tuple[Path, list[str], dict[str, tuple[int, int]]]] = []
        self.tar: tarfile.TarFile | None = None
        self.path: Path | None = None
        self.members: list[str] = []
        self.offsets: dict[str, tuple[int, int]] = {}
        """Member name -> (offset of its data in the tar, size) of the open shard."""
        self.size = 0

    def add(self, clip_id: str, data: bytes, meta: dict) -> None:
        if self.tar is not None and self.size + len(data) > self.max_bytes:
            self._close()
        if self.tar is None:
            self.path = self.workdir / f"shard-{len(self.done):04d}.tar"
            # Kept open across add() calls and closed in _close(), so no context manager here.
            self.tar = tarfile.open(self.path, "w", format=tarfile.USTAR_FORMAT)  # noqa: SIM115
            self.members, self.offsets, self.size = [], {}, 0
        self._member(f"{clip_id}.mp4", data)
        self._member(f"{clip_id}.json", json.dumps(meta, sort_keys=True).encode())
        self.members.append(clip_id)
        self.size += len(data)

    def publish(self) -> dict[str, str]:
        """Upload every shard and then its sidecar member table (skipping ones already published under the
        same name); clip_id -> clip_uri."""
        self._close()
        uris: dict[str, str] = {}
        for k, (path, members, offsets) in enumerate(self.done):
            digest = hashlib.sha256("\n".join(members).encode()).hexdigest()[:12]
            shard_uri = svd_io.join_uri(self.out_uri, SHARD_DIR, f"{self.video_id}-{k:03d}-{digest}.tar")
            if not svd_io.exists(shard_uri):
                svd_io.put_file(path, shard_uri)
            sidecar = shard_uri + INDEX_SUFFIX
            if not svd_io.exists(sidecar):  # after the shard: a sidecar never names a missing shard
                svd_io.write_bytes(sidecar, _sidecar_bytes(offsets, path.stat().st_size))
            uris.update({clip_id: f"{shard_uri}#{clip_id}.mp4" for clip_id in members})
        return uris

    def _member(self, name: str, data: bytes) -> None:
        assert self.tar is not None
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), 0o644, 0  # no times or owners: same clips, same bytes
        self.tar.addfile(info, io.BytesIO(data))
        # The data ends at the archive's offset, padded to a whole block.
        self.offsets[name] = (self.tar.offset - _padded(len(data)), len(data))

    def _close(self) -> None:
        if self.tar is not None and self.path is not None:
            self.tar.close()
            self.done.append((self.path, self.members, self.offsets))
        self.tar, self.path = None, None


def split_clip_uri(clip_uri: str) -> tuple[str, str]:
    shard_uri, sep, member = clip_uri.rpartition("#")
    if not sep or not shard_uri or not member:
        raise InputError(f"clip URI {clip_uri!r} is not of the form <shard uri>#<member> (see the LVD table)")
    return shard_uri, member


def open_clip(clip_uri: str) -> bytes:
    """The MP4 bytes of one clip from its `clip_uri` (local shards are read in place, remote ones fetched)."""
    shard_uri, member = split_clip_uri(clip_uri)
    if svd_io.is_local(shard_uri):
        path = svd_io.local_path(shard_uri)
        if not path.is_file():
            raise InputError(f"{clip_uri}: shard {path} does not exist; the LVD table points at moved clips")
        with tarfile.open(path, "r:") as tar:
            return _read_member(tar, member, clip_uri)
    with tarfile.open(fileobj=io.BytesIO(svd_io.read_bytes(shard_uri)), mode="r:") as tar:
        return _read_member(tar, member, clip_uri)


def _read_member(tar: tarfile.TarFile, member: str, clip_uri: str) -> bytes:
    try:
        handle = tar.extractfile(member)
    except KeyError:
        handle = None
    if handle is None:
        raise InputError(f"{clip_uri}: the shard has no member {member!r}; the LVD table and shards disagree")
    return handle.read()


# --- byte ranges -----------------------------------------------------------------------------------------
def _padded(size: int) -> int:
    return -(-size // TAR_BLOCK) * TAR_BLOCK


def _sidecar_bytes(offsets: dict[str, tuple[int, int]], shard_bytes: int) -> bytes:
    data = {
        "format": INDEX_FORMAT,
        "shard_bytes": shard_bytes,
        "members": {name: [offset, size] for name, (offset, size) in offsets.items()},
    }
    return (json.dumps(data, sort_keys=True) + "\n").encode()


def read_range(uri: str, start: int, length: int) -> bytes:
    """Bytes [start, start + length) of the object at `uri` (fewer where it ends first), without fetching
    the rest: a local file is read in place, a store with `read_range(uri, start, end)` serves the range
    (s3:// through the platform's S3Store: one ranged GET), any other scheme goes through fsspec's
    `cat_file`."""
    if start < 0 or length < 0:
        raise ValueError(f"read_range({uri!r}, {start}, {length}): start and length must be >= 0")
    if svd_io.is_local(uri):
        path = svd_io.local_path(uri)
        try:
            with path.open("rb") as handle:
                handle.seek(start)
                return handle.read(length)
        except (FileNotFoundError, IsADirectoryError):
            raise StorageError(f"{uri}: no such file") from None
    store = svd_io.store_for(uri)
    ranged = getattr(store, "read_range", None)
    if ranged is not None:
        return bytes(ranged(uri, start, start + length))
    return _fsspec_range(uri, start, start + length, store)


def _fsspec_range(uri: str, start: int, end: int, store: object) -> bytes:
    import fsspec  # only remote ranged reads need it

    options: dict[str, Any] = {}
    endpoint = getattr(store, "endpoint_url", None)  # the S3 store's endpoint (local stack, MinIO)
    if svd_io.scheme_of(uri) == "s3" and endpoint:
        options["endpoint_url"] = endpoint
    try:
        fs, path = fsspec.core.url_to_fs(uri, **options)
        return bytes(fs.cat_file(path, start=start, end=end))
    except FileNotFoundError:
        raise StorageError(f"{uri}: no such object") from None
    except (OSError, ValueError) as exc:
        if isinstance(exc, OSError) and "not satisfiable" in str(exc).lower():
            return b""  # S3's 416 InvalidRange: the range starts past the end of the object
        raise StorageError(f"ranged read of {uri} failed ({exc.__class__.__name__}: {exc})") from exc


def member_table(shard_uri: str) -> dict[str, tuple[int, int]]:
    """Member name -> (offset of its data, size) for the shard at `shard_uri`: from its sidecar (one small
    read), else from its tar headers (read in place when local, one ranged read per member otherwise).
    InputError when the shard does not exist or is not a tar."""
    try:
        raw: bytes | None = svd_io.read_bytes(shard_uri + INDEX_SUFFIX)
    except StorageError:
        raw = None  # no sidecar (a shard from before sidecars): the tar headers below
    if raw is not None:
        try:
            data = json.loads(raw)
            if data.get("format") == INDEX_FORMAT:
                return {str(k): (int(v[0]), int(v[1])) for k, v in data["members"].items()}
        except (ValueError, KeyError, TypeError, IndexError):
            pass  # an unreadable sidecar: the tar headers are the truth
    if not svd_io.exists(shard_uri):
        raise InputError(f"shard {shard_uri} does not exist; the table points at clips that were moved")
    if svd_io.is_local(shard_uri):
        try:
            with tarfile.open(svd_io.local_path(shard_uri), "r:") as tar:
                return {m.name: (m.offset_data, m.size) for m in tar.getmembers() if m.isfile()}
        except tarfile.TarError as exc:
            raise InputError(f"shard {shard_uri} is not a readable tar ({exc}); rebuild it") from exc
    return _walk_headers(shard_uri)


def _walk_headers(shard_uri: str) -> dict[str, tuple[int, int]]:
    """The member table of a remote tar from its headers, one 512-byte ranged read per member; a shard
    with pax or GNU long-name headers (never written by ShardWriter) is fetched whole instead."""
    members: dict[str, tuple[int, int]] = {}
    offset = 0
    while True:
        block = read_range(shard_uri, offset, TAR_BLOCK)
        if len(block) < TAR_BLOCK or block == bytes(TAR_BLOCK):
            return members  # end of archive
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.HeaderError as exc:
            raise InputError(
                f"shard {shard_uri}: bad tar header at byte {offset} ({exc}); rebuild it"
            ) from exc
        if info.type in (
            tarfile.XHDTYPE,
            tarfile.XGLTYPE,
            tarfile.GNUTYPE_LONGNAME,
            tarfile.GNUTYPE_LONGLINK,
        ):
            with svd_io.local_copy(shard_uri) as path, tarfile.open(path, "r:") as tar:
                return {m.name: (m.offset_data, m.size) for m in tar.getmembers() if m.isfile()}
        if info.isfile():
            members[info.name] = (offset + TAR_BLOCK, info.size)
        offset += TAR_BLOCK + _padded(info.size)


def read_clip_range(clip_uri: str, offset: int, length: int) -> bytes:
    """The member `clip_uri` names, read as one byte range of its shard from a clip-index entry (`offset`
    of the member's data, `length`). The member's tar header is read in the same request and must name a
    member of that size: an entry that points elsewhere or past the shard's end raises InputError naming
    the shard and the fix (republish the dataset)."""
    shard_uri, member = split_clip_uri(clip_uri)
    where = f"clip {clip_uri}: its clip-index entry (bytes {offset}..{offset + length} of shard {shard_uri})"
    if offset < TAR_BLOCK or length < 0:
        raise InputError(f"{where} is not a tar member's data range; {REPUBLISH_HINT}")
    try:
        data = read_range(shard_uri, offset - TAR_BLOCK, TAR_BLOCK + length)
    except StorageError as exc:
        raise InputError(f"{where} cannot be read ({exc}); if the shard moved, {REPUBLISH_HINT}") from exc
    if len(data) < TAR_BLOCK + length:
        raise InputError(
            f"{where} lies past the end of the shard (only {len(data)} of the {TAR_BLOCK + length} bytes from "
            f"byte {offset - TAR_BLOCK} exist); the shard changed after the index was written: {REPUBLISH_HINT}"
        )
    try:
        info = tarfile.TarInfo.frombuf(data[:TAR_BLOCK], "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        info = None
    named = info is not None and (info.name == member or len(member.encode()) > 100)
    if info is None or info.size != length or not named:
        found = "no tar header" if info is None else f"member {info.name!r} of {info.size} bytes"
        raise InputError(
            f"{where} does not point at member {member!r} of {length} bytes (found {found}); the shard "
            f"changed after the index was written: {REPUBLISH_HINT}"
        )
    return data[TAR_BLOCK:]
