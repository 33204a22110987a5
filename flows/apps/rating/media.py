"""Turn a task's sample URI into a local file the app can stream with HTTP range requests.

Local paths and file:// URIs are served in place; other schemes (s3://) are copied once into a cache
folder through `svd_core.storage`, because browsers seek and loop videos with range requests, which a local
file answers cheaply. The URI always comes from the database, never from the request, so a client cannot
name a path of its own (no traversal).

Downloads hold a lock per URI, not one for the app: two raters' pages (or one page's two players) fetch
different videos from S3 at the same time, while concurrent requests for the same video wait for its one
download instead of starting another.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import uuid
from pathlib import Path, PurePosixPath

from svd_core import storage as svd_io
from svd_core.errors import StorageError

MEDIA_TYPES = {
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".mkv": "video/x-matroska",
    ".mov": "video/quicktime",
    ".gif": "image/gif",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
}


def media_type_of(uri: str) -> str:
    return MEDIA_TYPES.get(PurePosixPath(uri.split("?", 1)[0]).suffix.lower(), "application/octet-stream")


class MediaResolver:
    """Resolve sample URIs (relative ones against `media_root`) to local files."""

    def __init__(self, media_root: str | None = None, cache_dir: str | Path | None = None) -> None:
        self.media_root = media_root
        self._cache_dir = Path(cache_dir) if cache_dir else None
        self._locks_guard = threading.Lock()  # held only to look up a URI's lock, never during a download
        self._locks: dict[str, threading.Lock] = {}  # one small lock per sample URI the app has served

    def absolute_uri(self, uri: str) -> str:
        if "://" in uri or Path(uri).is_absolute() or self.media_root is None:
            return uri
        return svd_io.join_uri(self.media_root, uri)

    def local_file(self, uri: str) -> Path:
        full = self.absolute_uri(uri)
        if svd_io.is_local(full):
            path = svd_io.local_path(full)
            if not path.is_file():
                raise StorageError(f"sample {full} does not exist; check the study's sample URIs")
            return path
        return self._cached(full)

    def _cached(self, uri: str) -> Path:
        cache_dir = self._cache()
        suffix = PurePosixPath(uri).suffix
        path = cache_dir / f"{hashlib.sha256(uri.encode()).hexdigest()}{suffix}"
        if path.is_file():
            return path
        with self._lock_for(uri):  # one download per URI; other URIs download meanwhile
            if not path.is_file():
                tmp = cache_dir / f".part-{uuid.uuid4().hex}{suffix}"
                try:
                    svd_io.store_for(uri).get_file(uri, tmp)
                    os.replace(tmp, path)
                finally:
                    tmp.unlink(missing_ok=True)
        return path

    def _lock_for(self, uri: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(uri, threading.Lock())

    def _cache(self) -> Path:
        with self._locks_guard:  # two first requests must not make two temporary folders
            if self._cache_dir is None:
                self._cache_dir = Path(tempfile.mkdtemp(prefix="svd-rating-media-"))
            self._cache_dir.mkdir(parents=True, exist_ok=True)
            return self._cache_dir
