"""Where the long source videos come from: a local folder, an `s3://` prefix, one file, or a manifest.

A manifest is a CSV or Parquet table with a `uri` column (absolute URIs, or paths relative to the
manifest's folder) and optional `title` and `description` columns, which travel with the video to the
scorers (the metadata caption). Folders and prefixes are listed through `svd_core.storage.list_uris`, so the
same call works on S3 once the platform registered its backend; only files with a video extension count
(a `.json` or `.txt` next to the videos is not an input).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import PurePosixPath

import pandas as pd

from svd_core import storage as svd_io
from svd_core.errors import InputError, StorageError

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".flv", ".wmv", ".3gp"}
)
MANIFEST_EXTENSIONS = frozenset({".csv", ".parquet"})


@dataclass(frozen=True)
class VideoSource:
    """One long source video and the metadata that came with it."""

    uri: str
    title: str | None = None
    description: str | None = None


def _suffix(uri: str) -> str:
    return PurePosixPath(uri.split("?", 1)[0]).suffix.lower()


def resolve_sources(source: str) -> list[VideoSource]:
    """The videos behind `source` (folder, prefix, single video or manifest), sorted, without duplicates."""
    if _suffix(source) in MANIFEST_EXTENSIONS:
        return read_manifest(source)
    if _suffix(source) in VIDEO_EXTENSIONS and svd_io.exists(source):
        return [VideoSource(source)]
    try:
        uris = svd_io.list_uris(source)
    except StorageError as exc:
        raise InputError(f"cannot list videos under {source!r}: {exc}") from exc
    videos = [VideoSource(uri) for uri in sorted(set(uris)) if _suffix(uri) in VIDEO_EXTENSIONS]
    if not videos:
        raise InputError(
            f"no videos under {source!r}: expected files ending in {', '.join(sorted(VIDEO_EXTENSIONS))}, "
            "or a manifest (.csv/.parquet with a `uri` column); create one with `svd data sample --out DIR`"
        )
    return videos


def read_manifest(manifest_uri: str) -> list[VideoSource]:
    """Sources listed in a CSV/Parquet manifest (`uri`, optional `title`, `description`)."""
    try:
        raw = svd_io.read_bytes(manifest_uri)
    except StorageError as exc:
        raise InputError(f"cannot read manifest {manifest_uri!r}: {exc}") from exc
    try:
        table = (
            pd.read_parquet(io.BytesIO(raw))
            if _suffix(manifest_uri) == ".parquet"
            else pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False)
        )
    except Exception as exc:  # pandas raises many types for malformed files
        raise InputError(f"manifest {manifest_uri!r} is not a readable table: {exc}") from exc
    if "uri" not in table.columns:
        raise InputError(
            f"manifest {manifest_uri!r} has no `uri` column (columns: {list(table.columns)}); add one with "
            "one video URI or path per row"
        )
    base = manifest_uri.rsplit("/", 1)[0] if "/" in manifest_uri else "."
    seen: set[str] = set()
    out = []
    for record in table.to_dict("records"):
        uri = _text(record.get("uri"))
        if not uri:
            continue
        if "://" not in uri and not uri.startswith("/"):
            uri = svd_io.join_uri(base, uri)
        if uri not in seen:
            seen.add(uri)
            out.append(VideoSource(uri, _text(record.get("title")), _text(record.get("description"))))
    if not out:
        raise InputError(f"manifest {manifest_uri!r} lists no videos (the `uri` column is empty)")
    return out


def _text(value: object) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None
