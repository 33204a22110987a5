"""Scorers as a stage over stored clips: add a scorer (or bump its version) without touching the sources.

`score_stored_clips` streams the LVD table (file or parts, any scheme) in batches, reads each clip from its
tar shard (`clip_uri`), decodes only that short encoded clip into the same `SampledFrames` the one-pass
build gives its scorers (frames sampled at `scoring.sample_fps`, downscaled to
`scoring.frames_max_short_side`), runs the chosen scorers, and writes their columns keyed by `clip_id` to
a score part. DuckDB then joins the part onto the table by `clip_id` (replacing those columns and merging
the scorers' versions into `scorer_versions`) and writes the new table to `out_uri`. Source videos are
never opened and clips are never re-encoded.

The frames come from the encoded clip, not the source decode, so a stage score can differ slightly from
the same scorer run inside the build (one more lossy generation, frames sampled from the clip's own first
frame; on the sample set Farneback flow moved by up to ~40% on single clips); `scorer_versions` records
the stage run as `<version>+stored-clips`, and a filter on that column should be re-resolved.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import av
import pyarrow as pa
import pyarrow.parquet as pq

from svd_core import storage as svd_io
from svd_core.curation.config import ScoringConfig, TableEngineConfig
from svd_core.curation.schema import LVD_SCHEMA
from svd_core.curation.scorer_base import ClipScorer
from svd_core.curation.table import Part, quote_ident, quote_str, table_session, write_manifest
from svd_core.errors import InputError
from svd_core.video.decode import FrameSampler
from svd_core.video.frames import SampledFrames
from svd_core.video.shards import open_clip

STAGE_SUFFIX = "+stored-clips"
"""Appended to a scorer's version in `scorer_versions` when it ran as this stage (frames from the encoded
clip), so stage scores are never mistaken for in-pass ones."""
BATCH_ROWS = 256
"""Clips read per batch from the table (bounds the stage's memory, whatever the table's size)."""


@dataclass(frozen=True)
class ScoreSummary:
    clips: int
    """Clips scored."""
    columns: tuple[str, ...]
    scorer_versions: dict[str, str]
    table_uri: str
    """The new table (a part folder with a manifest)."""
    seconds: float


def clip_frames(clip_uri: str, cfg: ScoringConfig, width: int, height: int) -> SampledFrames:
    """The scoring frames of one stored clip (decoded from its shard member, never from the source)."""
    data = open_clip(clip_uri)
    sampler = FrameSampler(cfg.sample_fps, cfg.frames_max_short_side, (int(width), int(height)))
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        start: float | None = None
        for frame in container.decode(stream):
            if frame.time is None:
                continue
            start = frame.time if start is None else start
            sampler.offer(frame, float(frame.time - start))
    if not sampler.frames:
        raise InputError(f"clip {clip_uri} decodes to no frame; rebuild its shard (svd data build-lvd)")
    return sampler.build()


def _check_columns(scorers: Sequence[ClipScorer]) -> list[str]:
    known = {f.name for f in LVD_SCHEMA}
    columns = [c for s in scorers for c in s.columns]
    unknown = sorted(set(columns) - known)
    if unknown:
        raise InputError(
            f"scorer column(s) {unknown} are not LVD columns; add them to svd_core.curation.schema"
        )
    if not columns:
        raise InputError("the chosen scorers fill no LVD column; pick scorers with columns")
    return columns


def score_stored_clips(
    lvd_uri: str,
    out_uri: str,
    scorers: Sequence[ClipScorer],
    scoring: ScoringConfig | None = None,
    engine: TableEngineConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ScoreSummary:
    """Run `scorers` over the clips of the table at `lvd_uri`; write the table with their columns to
    `out_uri` (a part folder: `part-00000.parquet` + `_manifest.json`)."""
    scoring = scoring or ScoringConfig()
    columns = _check_columns(scorers)
    versions = {s.name: f"{s.version}{STAGE_SUFFIX}" for s in scorers}
    started = time.perf_counter()
    schema = pa.schema([LVD_SCHEMA.field("clip_id"), *(LVD_SCHEMA.field(c) for c in columns)])
    with table_session(engine) as session:
        view = session.open(lvd_uri, "lvd")
        missing = [c for c in ("clip_id", "clip_uri", "width", "height") if c not in view.columns]
        if missing:
            raise InputError(f"{lvd_uri} lacks {missing}; score a table written by `svd data build-lvd`")
        scores_path = session.scratch("scores.parquet")
        done = 0
        reader = session.con.sql(f"SELECT * FROM {view.ident}").to_arrow_reader(BATCH_ROWS)
        with pq.ParquetWriter(scores_path, schema) as writer:
            for batch in reader:
                out: dict[str, list[Any]] = {name: [] for name in ("clip_id", *columns)}
                for row in batch.to_pylist():
                    frames = clip_frames(row["clip_uri"], scoring, row["width"], row["height"])
                    context: dict[str, Any] = {**row, "title": None, "description": None}
                    for scorer in scorers:
                        values = {
                            k: v for k, v in scorer.score(frames, context).items() if k in scorer.columns
                        }
                        context.update(values)
                    out["clip_id"].append(row["clip_id"])
                    for column in columns:
                        out[column].append(context.get(column))
                writer.write_batch(
                    pa.record_batch([pa.array(out[f.name], f.type) for f in schema], schema=schema)
                )
                done += batch.num_rows
                if progress is not None:
                    progress(done, view.rows)
        replaced = ", ".join(f"s.{quote_ident(c)} AS {quote_ident(c)}" for c in columns)
        patch = quote_str(json.dumps(versions, sort_keys=True))
        versions_sql = (
            f"CAST(json_merge_patch(coalesce(v.scorer_versions, '{{}}'), {patch}) AS VARCHAR) AS scorer_versions"
            if "scorer_versions" in view.columns
            else ""
        )
        replace = ", ".join(x for x in (replaced, versions_sql) if x)
        table_path = session.scratch("part-00000.parquet")
        session.copy_to_parquet(
            f"SELECT v.* REPLACE ({replace}) FROM {view.ident} AS v "
            f"LEFT JOIN read_parquet({quote_str(str(scores_path))}) AS s ON v.clip_id = s.clip_id",
            table_path,
        )
        svd_io.put_file(table_path, svd_io.join_uri(out_uri, "part-00000.parquet"))
        write_manifest(out_uri, [Part("part-00000.parquet", view.rows)], {"scored": versions})
    return ScoreSummary(done, tuple(columns), versions, out_uri, time.perf_counter() - started)
