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

A clip's URI is `<shard uri>#<member>`; `open_clip` reads one back (training loaders stream whole shards).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

from svd_core import storage as svd_io
from svd_core.errors import InputError

SHARD_DIR = "shards"


class ShardWriter:
    """Collects one video's clips into local tar files of at most ~`max_bytes`, then publishes them."""

    def __init__(self, out_uri: str, video_id: str, max_bytes: int, workdir: Path):
        self.out_uri, self.video_id, self.max_bytes, self.workdir = out_uri, video_id, max_bytes, workdir
        self.done: list[tuple[Path, list[str]]] = []
        self.tar: tarfile.TarFile | None = None
        self.path: Path | None = None
        self.members: list[str] = []
        self.size = 0

    def add(self, clip_id: str, data: bytes, meta: dict) -> None:
        if self.tar is not None and self.size + len(data) > self.max_bytes:
            self._close()
        if self.tar is None:
            self.path = self.workdir / f"shard-{len(self.done):04d}.tar"
            # Kept open across add() calls and closed in _close(), so no context manager here.
            self.tar = tarfile.open(self.path, "w", format=tarfile.USTAR_FORMAT)  # noqa: SIM115
            self.members, self.size = [], 0
        self._member(f"{clip_id}.mp4", data)
        self._member(f"{clip_id}.json", json.dumps(meta, sort_keys=True).encode())
        self.members.append(clip_id)
        self.size += len(data)

    def publish(self) -> dict[str, str]:
        """Upload every shard (skipping ones already published under the same name); clip_id -> clip_uri."""
        self._close()
        uris: dict[str, str] = {}
        for k, (path, members) in enumerate(self.done):
            digest = hashlib.sha256("\n".join(members).encode()).hexdigest()[:12]
            shard_uri = svd_io.join_uri(self.out_uri, SHARD_DIR, f"{self.video_id}-{k:03d}-{digest}.tar")
            if not svd_io.exists(shard_uri):
                svd_io.put_file(path, shard_uri)
            uris.update({clip_id: f"{shard_uri}#{clip_id}.mp4" for clip_id in members})
        return uris

    def _member(self, name: str, data: bytes) -> None:
        assert self.tar is not None
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), 0o644, 0  # no times or owners: same clips, same bytes
        self.tar.addfile(info, io.BytesIO(data))

    def _close(self) -> None:
        if self.tar is not None and self.path is not None:
            self.tar.close()
            self.done.append((self.path, self.members))
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
