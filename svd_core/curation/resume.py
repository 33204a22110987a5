"""Cheap resume: a finished source video is recognised before it is downloaded.

A source's fingerprint is its URI, its size and its ETag (S3) or modification time (local files), read from
the store's metadata (`stat`: one HEAD request on S3, `os.stat` locally), plus the pipeline key. After the
LVD build stores a video's result (`OUT/_parts/<video_id>-<key>.json`) it records
`OUT/_sources/<fingerprint>.json` naming the video id, so a rerun finds the result without fetching or
hashing the source: content hashing happens only for sources that are processed. A changed object (new
size, ETag or mtime) or a store without `stat` falls back to download + content hash, which still reuses
the stored result when the bytes are the same.

Failures that may pass on a retry (the time limit) are not stored, so a rerun tries the video again; so
that a video that always times out is not retried forever, `record_timeout` counts them per video and
pipeline key in `OUT/_attempts/<video_id>-<key>.json`, and the build makes the `run.max_attempts`-th final.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from svd_core import storage as svd_io

SOURCES_DIR = "_sources"
ATTEMPTS_DIR = "_attempts"


def source_stat(uri: str) -> dict[str, Any] | None:
    """Size and change marker of `uri` without reading it; None where the store cannot tell (or no object)."""
    if svd_io.is_local(uri):
        path = svd_io.local_path(uri)
        if not path.is_file():
            return None
        info = path.stat()
        return {"size": info.st_size, "mtime_ns": info.st_mtime_ns}
    stat = getattr(svd_io.store_for(uri), "stat", None)  # optional: S3Store has it
    return None if stat is None else stat(uri)


def fingerprint(uri: str, key: str) -> str | None:
    """Hash of (URI, size, ETag or mtime, pipeline key), or None when the store gives no metadata."""
    info = source_stat(uri)
    if not info:
        return None
    return hashlib.sha256(json.dumps([uri, info, key], sort_keys=True).encode()).hexdigest()[:32]


def _index_uri(out_uri: str, fp: str) -> str:
    return svd_io.join_uri(out_uri, SOURCES_DIR, f"{fp}.json")


def lookup(out_uri: str, fp: str) -> str | None:
    """The video id recorded for this fingerprint by an earlier run, or None."""
    uri = _index_uri(out_uri, fp)
    if not svd_io.exists(uri):
        return None
    try:
        return str(json.loads(svd_io.read_bytes(uri))["video_id"])
    except (ValueError, KeyError, TypeError):
        return None  # a damaged entry only costs a download


def record(out_uri: str, fp: str, video_id: str, source_uri: str) -> None:
    data = {"video_id": video_id, "source_uri": source_uri}
    svd_io.write_bytes(_index_uri(out_uri, fp), json.dumps(data, sort_keys=True).encode())


def _attempts_uri(out_uri: str, video_id: str, key: str) -> str:
    return svd_io.join_uri(out_uri, ATTEMPTS_DIR, f"{video_id}-{key}.json")


def timeouts(out_uri: str, video_id: str, key: str) -> int:
    """How many earlier runs of this pipeline key hit the time limit on this video."""
    uri = _attempts_uri(out_uri, video_id, key)
    if not svd_io.exists(uri):
        return 0
    try:
        return int(json.loads(svd_io.read_bytes(uri))["timeouts"])
    except (ValueError, KeyError, TypeError):
        return 0  # a damaged entry only costs one more attempt


def record_timeout(out_uri: str, video_id: str, key: str, limit_s: float) -> int:
    """Count one more run that hit the time limit (`limit_s`) on this video; returns the count so far."""
    count = timeouts(out_uri, video_id, key) + 1
    data = {"timeouts": count, "last_limit_s": limit_s}
    svd_io.write_bytes(_attempts_uri(out_uri, video_id, key), json.dumps(data, sort_keys=True).encode())
    return count
