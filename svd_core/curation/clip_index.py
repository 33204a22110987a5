"""The clip index of a published clip table: per clip, the shard holding it and its bytes' place in it.

LVD-F keeps about a quarter of LVD's clips, spread over every LVD shard; a trainer that fetched whole
shards would download four times what it reads. Publishing a table (svd_core.curation.publish) therefore
writes `<name>_clips.parquet` beside it:

    clip_id, clip_uri, shard_uri, offset, length

where `offset`/`length` locate the clip's member data inside its tar shard, so training range-reads each
clip (svd_core.video.shards.read_clip_range). Offsets come from each shard's sidecar member table, written
by the shard writer (one small read per shard, on a thread pool), or from the tar headers of older shards.
The distinct shards and their members are streamed through Parquet files and joined to the table on
DuckDB, so memory stays bounded however many clips the table has.

A table whose clips are not in shards (no `clip_uri`, or URIs without `#member`), or whose shards are
gone (the synthetic tables of tests and benches), gets no index; the reason is recorded and training
falls back to reading whole shards.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from svd_core.curation.config import TableEngineConfig
from svd_core.curation.table import quote_str, table_session
from svd_core.errors import InputError
from svd_core.video.shards import member_table

CLIP_INDEX_KIND = "clip_index"
"""Key of the index in a published version's `files`."""
CLIP_INDEX_COLUMNS = ("clip_id", "clip_uri", "shard_uri", "offset", "length")
MEMBER_SCHEMA = pa.schema(
    [("shard_uri", pa.string()), ("member", pa.string()), ("offset", pa.int64()), ("length", pa.int64())]
)
SHARD_SQL = "regexp_extract(clip_uri, '^(.*)#[^#]*$', 1)"
MEMBER_SQL = "regexp_extract(clip_uri, '#([^#]*)$', 1)"


@dataclass(frozen=True)
class ClipIndexResult:
    """What `write_clip_index` did."""

    path: Path | None
    """The local index file, or None when no index was written."""
    rows: int
    """Clips indexed."""
    shards: int
    """Distinct shards the clips live in."""
    skipped: str | None = None
    """Why no index was written (None when one was)."""

    def summary(self) -> dict[str, Any]:
        """JSON-ready record for the version's manifest."""
        if self.path is None:
            return {"skipped": self.skipped}
        return {"rows": self.rows, "shards": self.shards}


def write_clip_index(
    table_path: Path,
    out_path: Path,
    workers: int = 16,
    engine: TableEngineConfig | None = None,
) -> ClipIndexResult:
    """Write the clip index of the local Parquet table `table_path` to `out_path` (see the module
    docstring); `workers` shard member tables are fetched at a time."""
    with table_session(engine) as session:
        clips = session.open(str(table_path), "clips")
        if not {"clip_id", "clip_uri"} <= set(clips.columns):
            return ClipIndexResult(None, 0, 0, "the table has no clip_id/clip_uri columns")
        unsharded = session.scalar(f"SELECT count(*) FROM clips WHERE clip_uri IS NULL OR {SHARD_SQL} = ''")
        if unsharded:
            return ClipIndexResult(
                None, 0, 0, f"{unsharded} clip URI(s) name no shard member (<shard>#<member>)"
            )
        shards_path = session.copy_to_parquet(
            f"SELECT DISTINCT {SHARD_SQL} AS shard_uri FROM clips ORDER BY shard_uri",
            session.scratch("shards.parquet"),
        )
        members_path = session.scratch("members.parquet")
        shards, missing = _write_members(shards_path, members_path, workers)
        if missing is not None:
            return ClipIndexResult(None, 0, shards, missing)
        session.open(str(members_path), "members")
        joined = (
            "SELECT c.clip_id, c.clip_uri, m.shard_uri, m.offset, m.length FROM clips c "
            f"LEFT JOIN members m ON m.shard_uri = {SHARD_SQL.replace('clip_uri', 'c.clip_uri')} "
            f"AND m.member = {MEMBER_SQL.replace('clip_uri', 'c.clip_uri')}"
        )
        absent = session.run(f"SELECT clip_uri FROM ({joined}) WHERE shard_uri IS NULL LIMIT 3")
        if absent:
            count = session.scalar(f"SELECT count(*) FROM ({joined}) WHERE shard_uri IS NULL")
            examples = ", ".join(quote_str(str(r[0])) for r in absent)
            return ClipIndexResult(
                None, 0, shards, f"{count} clip(s) are not members of their shard (e.g. {examples})"
            )
        session.copy_to_parquet(joined, out_path)
        return ClipIndexResult(out_path, clips.rows, shards)


def _write_members(shards_path: Path, members_path: Path, workers: int) -> tuple[int, str | None]:
    """Stream every shard's member table into `members_path`; (shards, why not) where the second is set
    when a shard is missing or unreadable (then the index is skipped)."""
    shards = 0
    with ThreadPoolExecutor(max(1, workers)) as pool, pq.ParquetWriter(members_path, MEMBER_SCHEMA) as writer:
        for batch in pq.ParquetFile(shards_path).iter_batches(
            batch_size=max(64, 8 * workers), columns=["shard_uri"]
        ):
            uris = [str(u) for u in batch.column(0).to_pylist()]
            shards += len(uris)
            try:
                tables = list(pool.map(member_table, uris))
            except InputError as exc:
                return shards, f"shard member tables unavailable ({exc})"
            rows: dict[str, list[Any]] = {"shard_uri": [], "member": [], "offset": [], "length": []}
            for uri, members in zip(uris, tables, strict=True):
                for name, (offset, length) in members.items():
                    rows["shard_uri"].append(uri)
                    rows["member"].append(name)
                    rows["offset"].append(offset)
                    rows["length"].append(length)
            writer.write_table(pa.table(rows, schema=MEMBER_SCHEMA))
    return shards, None
