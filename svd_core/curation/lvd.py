"""The LVD table: long videos -> clips in tar shards + one row per clip with every score.

Work is split into batches of videos a flow can map (`process_batch`, `plan_batches`; one video is
`process_video`). A batch writes its rows as one Parquet part `OUT/lvd_parts/part-<key>.parquet` next to
the shards and returns only counts (`BatchResult`), so the driver never holds the rows; `finalize_parts`
writes the parts manifest `OUT/lvd_parts/_manifest.json`, `OUT/quarantine.parquet`, and for small tables
(`run.single_file_max_rows`) one merged `OUT/lvd.parquet`. Every reader takes the file or the folder
(svd_core.curation.table). `build_lvd` runs the batches in-process (threads).

Exactly-once and resumable: a video is content-addressed (`video_id` = hash of its bytes) and its result
is stored atomically as `OUT/_parts/<video_id>-<pipeline key>.json` after its shards are published; a rerun
with the same config and scorers finds the part and skips the video (recognised from its URI, size and
ETag/mtime before any download: svd_core.curation.resume), and a video cut off midway is redone
from scratch (its shard names are content hashes, so shards it had already published are reused). Bad
inputs never stop the run: they become quarantine rows with the stage and reason.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from svd_core import storage as svd_io
from svd_core.curation import resume
from svd_core.curation.config import LvdConfig, RunConfig
from svd_core.curation.schema import LVD_COLUMNS, LVD_SCHEMA, QUARANTINE_SCHEMA
from svd_core.curation.scorer_base import ClipScorer
from svd_core.curation.sources import VideoSource, resolve_sources
from svd_core.curation.table import Part, write_manifest
from svd_core.errors import InputError, StorageError
from svd_core.video.clips import ClipOutput, PassStats, clip_id_for, clip_recipe, split_video
from svd_core.video.cuts import CUTS_VERSION
from svd_core.video.decode import BadVideo, DecodeTimeout, header_duration, probe_video, time_limit_s
from svd_core.video.shards import ShardWriter

log = logging.getLogger("svd.lvd")
PARTS_DIR = "_parts"
"""Per-video results (the resume cache)."""
TABLE_PARTS_DIR = "lvd_parts"
"""The table as a dataset: one Parquet part per batch, plus _manifest.json."""


@dataclass
class VideoResult:
    """The outcome of one source video: its clip rows, or a quarantine record."""

    source_uri: str
    video_id: str | None
    rows: list[dict[str, Any]] = field(default_factory=list)
    quarantine: dict[str, str] | None = None
    seconds: float = 0.0
    reused: bool = False
    final: bool = True
    """False for failures that may pass on a retry (time limit, scorer errors): not stored, so reruns retry."""
    stats: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> VideoResult:
        return cls(**json.loads(data))


@dataclass(frozen=True)
class LvdSummary:
    videos: int
    """Source videos that gave at least one clip."""
    clips: int
    hours: float
    """Total clip duration."""
    quarantined: int
    clips_per_s: float
    reused: int
    """Videos skipped because a previous run had finished them."""
    lvd_uri: str
    quarantine_uri: str


def default_scorers(cfg: LvdConfig) -> list[ClipScorer]:
    """Motion and camera (sharing one Farneback flow), then the learned scorers whose weights are set."""
    from svd_core.curation.camera import CameraMotionScorer
    from svd_core.curation.motion import FarnebackFlow, MotionScorer

    flow = FarnebackFlow(cfg.scoring)
    scorers: list[ClipScorer] = [MotionScorer(flow), CameraMotionScorer(flow, cfg.camera)]
    try:
        from svd_core.curation.learned import build_learned_scorers
    except ModuleNotFoundError as exc:
        log.warning(
            "learned scorers unavailable (%s): text, aesthetic, CLIP and caption columns stay null", exc
        )
        return scorers
    return scorers + list(build_learned_scorers(cfg.models, cfg.device))


def cuts_version(cfg: LvdConfig) -> str:
    """The shot detector actually used (`cuts.detector`) and a hash of the cut settings."""
    if cfg.cuts.detector == "transnet":
        from svd_core.video.transnet import TRANSNET_VERSION  # torch: only when the network is used

        detector = TRANSNET_VERSION
    else:
        detector = CUTS_VERSION
    return f"{detector}:{cfg.cuts.config_hash()[:8]}"


def scorer_versions(cfg: LvdConfig, scorers: Sequence[ClipScorer]) -> dict[str, str]:
    versions = {
        "cuts": cuts_version(cfg),
        "clips": clip_recipe(cfg),
    }
    versions.update({s.name: s.version for s in scorers})
    return versions


def pipeline_key(cfg: LvdConfig, scorers: Sequence[ClipScorer]) -> str:
    """Hash of everything that changes a video's result (not the run settings or the time limit)."""
    data = cfg.to_dict()
    for key in ("run", "device"):
        data.pop(key, None)
    data["decode"].pop("timeout_s", None)
    from svd_core.curation.score_stage import STAGE_SETTINGS  # batching settings: not the scores

    for key in STAGE_SETTINGS:
        data["models"].pop(key, None)
    blob = json.dumps([data, scorer_versions(cfg, scorers)], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()[:32]


def process_video(
    source: VideoSource | str, cfg: LvdConfig, out_uri: str, scorers: Sequence[ClipScorer]
) -> VideoResult:
    """Cut, encode, score and store one source video; bad input gives a quarantine record, not an error.

    Skips the video if `OUT/_parts` holds its result for this pipeline key. Storage errors propagate (the
    flow retries them).
    """
    source = source if isinstance(source, VideoSource) else VideoSource(source)
    started = time.perf_counter()
    key = pipeline_key(cfg, scorers)
    try:
        fingerprint = resume.fingerprint(source.uri, key)
        known = resume.lookup(out_uri, fingerprint) if fingerprint else None
        if known is not None:  # finished by an earlier run: no download, no hashing
            part_uri = svd_io.join_uri(out_uri, PARTS_DIR, f"{known}-{key}.json")
            if svd_io.exists(part_uri):
                return _reused(part_uri, source, started)
        with svd_io.local_copy(source.uri) as path:
            video_id = file_sha256(path)
            part_uri = svd_io.join_uri(out_uri, PARTS_DIR, f"{video_id}-{key}.json")
            if svd_io.exists(part_uri):
                if fingerprint:
                    resume.record(out_uri, fingerprint, video_id, source.uri)
                return _reused(part_uri, source, started)
            result = _process_local(path, source, video_id, cfg, out_uri, scorers)
            if not result.final and result.quarantine is not None and result.quarantine["stage"] == "decode":
                # Hit the time limit (the only decode failure that is retried): final after max_attempts.
                limit = float(result.stats.get("time_limit_s", cfg.decode.timeout_s))
                attempts = resume.record_timeout(out_uri, video_id, key, limit)
                if attempts >= cfg.run.max_attempts:
                    result.final = True
                    result.quarantine["reason"] += f"; timed out in {attempts} runs (run.max_attempts): final"
    except StorageError as exc:
        if svd_io.is_local(source.uri) and not svd_io.exists(source.uri):
            return _quarantined(
                source.uri, None, BadVideo(source.uri, "probe", f"cannot read: {exc}"), started
            )
        raise
    result.seconds = time.perf_counter() - started
    if result.final:
        svd_io.write_bytes(part_uri, result.to_json())
        if fingerprint and result.video_id:
            resume.record(out_uri, fingerprint, result.video_id, source.uri)
    return result


def _reused(part_uri: str, source: VideoSource, started: float) -> VideoResult:
    result = VideoResult.from_json(svd_io.read_bytes(part_uri))
    result.reused, result.source_uri = True, source.uri
    result.seconds = time.perf_counter() - started
    if result.quarantine is not None:
        result.quarantine["source_uri"] = source.uri  # same bytes may come under another name
    return result


def _process_local(
    path: Path,
    source: VideoSource,
    video_id: str,
    cfg: LvdConfig,
    out_uri: str,
    scorers: Sequence[ClipScorer],
) -> VideoResult:
    started = time.perf_counter()
    limit_s = time_limit_s(header_duration(path), cfg.decode, cfg.run)  # scales with the duration
    try:
        result = _run_with_timeout(
            lambda: _cut_score_store(path, source, video_id, cfg, out_uri, scorers, limit_s),
            limit_s,
            source.uri,
        )
    except BadVideo as exc:
        log.info("quarantined %s (%s): %s", source.uri, exc.stage, exc.reason)
        result = _quarantined(source.uri, video_id, exc, started)
    result.stats["time_limit_s"] = limit_s
    return result


def _quarantined(uri: str, video_id: str | None, exc: BadVideo, started: float) -> VideoResult:
    record = {"source_uri": uri, "reason": exc.reason, "stage": exc.stage}
    final = not isinstance(exc, DecodeTimeout) and exc.stage != "score"  # those may pass on a retry
    return VideoResult(uri, video_id, quarantine=record, seconds=time.perf_counter() - started, final=final)


def _run_with_timeout(fn: Callable[[], VideoResult], timeout_s: float, source: str) -> VideoResult:
    """Run `fn` in a worker thread; give up after `timeout_s` (plus a grace period) and quarantine.

    The decode loop also checks the deadline per frame and stops cleanly; the join timeout is the backstop
    for a decoder stuck inside one native call, whose thread is abandoned (it cannot be killed) while the
    run goes on. Its deadline has passed, so if it ever wakes it stops before publishing anything.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=target, name=f"lvd:{source[-40:]}", daemon=True)
    worker.start()
    worker.join(timeout_s + min(30.0, 0.1 * timeout_s))
    if worker.is_alive():
        raise DecodeTimeout(
            source,
            "decode",
            f"timed out: no result within the time limit of {timeout_s:g} s (a decoder hang; for slow "
            "long videos raise decode.timeout_s or run.time_limit_s_per_minute)",
        )
    if "error" in box:
        raise box["error"]
    return box["value"]


def _cut_score_store(
    path: Path,
    source: VideoSource,
    video_id: str,
    cfg: LvdConfig,
    out_uri: str,
    scorers: Sequence[ClipScorer],
    limit_s: float,
) -> VideoResult:
    deadline = time.monotonic() + limit_s
    probe = probe_video(path, source.uri, cfg.decode)
    versions = json.dumps(scorer_versions(cfg, scorers), sort_keys=True)
    recipe = scorer_versions(cfg, scorers)["clips"]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="svd-lvd-") as tmp:
        shards = ShardWriter(out_uri, video_id, int(cfg.clips.shard_max_mb * 2**20), Path(tmp))
        score_stats = PassStats()

        def on_clip(clip: ClipOutput) -> None:
            clip_id = clip_id_for(video_id, clip.first_frame, clip.num_frames, recipe)
            row = _clip_row(clip, clip_id, video_id, source, versions)
            _score(row, clip, source, scorers, score_stats)
            meta = {k: row[k] for k in ("video_id", "source_uri", "start_s", "end_s", "num_frames")}
            shards.add(
                clip_id,
                clip.data,
                {**meta, "first_frame": clip.first_frame, "sha256": hashlib.sha256(clip.data).hexdigest()},
            )
            rows.append(row)

        stats = split_video(path, source.uri, probe, cfg, deadline, on_clip)
        if not rows:
            raise BadVideo(
                source.uri,
                "cuts",
                f"no clip of at least cuts.min_clip_s={cfg.cuts.min_clip_s:g} s "
                f"({stats.frames_decoded} frames decoded, {len(stats.cuts)} cuts)",
            )
        if time.monotonic() > deadline:
            raise DecodeTimeout(
                source.uri, "decode", f"timed out before publishing (time limit {limit_s:g} s)"
            )
        uris = shards.publish()
    for row in rows:
        row["clip_uri"] = uris[row["clip_id"]]
    seconds = {**stats.seconds, **score_stats.seconds}
    info = {
        "frames_decoded": stats.frames_decoded,
        "decode_passes": stats.decode_passes,
        "clips_dropped": stats.dropped,
        "cuts": [asdict(c) for c in stats.cuts],
        "seconds": seconds,
        "probe": {
            **{k: getattr(probe, k) for k in ("codec", "width", "height", "fps", "pix_fmt", "transfer")},
            "interlaced": probe.interlaced,
            "deinterlaced": probe.deinterlace != "none",
        },
    }
    rows = [{k: r.get(k) for k in LVD_COLUMNS} for r in rows]
    return VideoResult(
        source.uri, video_id, rows, quarantine=stats.partial, stats=info
    )  # partial: decode error


def _clip_row(
    clip: ClipOutput, clip_id: str, video_id: str, source: VideoSource, versions: str
) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(LVD_COLUMNS)
    row.update(
        clip_id=clip_id,
        video_id=video_id,
        source_uri=source.uri,
        clip_uri="",
        start_s=clip.start_s,
        end_s=clip.end_s,
        fps=clip.num_frames / clip.duration_s,
        num_frames=clip.num_frames,
        width=clip.width,
        height=clip.height,
        duration_s=clip.duration_s,
        scorer_versions=versions,
    )
    return row


def _score(
    row: dict[str, Any],
    clip: ClipOutput,
    source: VideoSource,
    scorers: Sequence[ClipScorer],
    stats: PassStats,
) -> None:
    """Run every scorer on the clip's shared frames; later scorers see earlier columns (and the metadata)."""
    context = {**row, "title": source.title, "description": source.description}
    for scorer in scorers:
        t0 = time.perf_counter()
        try:
            values = scorer.score(clip.frames, context)
        except Exception as exc:
            raise BadVideo(
                source.uri,
                "score",
                f"scorer {scorer.name!r} failed on the clip at "
                f"{clip.start_s:.2f}-{clip.end_s:.2f} s: {exc.__class__.__name__}: {exc}",
            ) from exc
        stats.add(f"score:{scorer.name}", time.perf_counter() - t0)
        values = {k: v for k, v in values.items() if k in scorer.columns}
        row.update(values)
        context.update(values)


def finalize_lvd(out_uri: str, results: Sequence[VideoResult], elapsed_s: float | None = None) -> LvdSummary:
    """Write `OUT/lvd.parquet` and `OUT/quarantine.parquet` from all video results; raise if no clip came out.

    Rows are deduplicated by clip_id (the same video under two URIs gives the same clips). `elapsed_s` is the
    run's wall time for clips/s (default: the sum of the per-video times).
    """
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for result in results:
        for row in result.rows:
            if row["clip_id"] not in seen:
                seen.add(row["clip_id"])
                rows.append(row)
    quarantine = [r.quarantine for r in results if r.quarantine is not None]
    lvd_uri = svd_io.join_uri(out_uri, "lvd.parquet")
    quarantine_uri = svd_io.join_uri(out_uri, "quarantine.parquet")
    _write_parquet(quarantine_uri, pa.Table.from_pylist(quarantine, schema=QUARANTINE_SCHEMA))
    if not rows:
        reasons = "; ".join(sorted({f"{q['stage']}: {q['reason']}" for q in quarantine})[:5])
        raise InputError(
            f"no clips from {len(results)} input video(s): all were quarantined ({reasons}); see "
            f"{quarantine_uri}. Check the source path, or relax the limits in the LVD config"
        )
    _write_parquet(lvd_uri, pa.Table.from_pylist(rows, schema=LVD_SCHEMA))
    elapsed = elapsed_s if elapsed_s is not None else sum(r.seconds for r in results)
    return LvdSummary(
        videos=sum(1 for r in results if r.rows),
        clips=len(rows),
        hours=sum(r["duration_s"] for r in rows) / 3600,
        quarantined=len(quarantine),
        clips_per_s=len(rows) / elapsed if elapsed > 0 else 0.0,
        reused=sum(1 for r in results if r.reused),
        lvd_uri=lvd_uri,
        quarantine_uri=quarantine_uri,
    )


def _write_parquet(uri: str, table: pa.Table) -> None:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    svd_io.write_bytes(uri, buffer.getvalue())  # atomic: temp name, then rename / publish


@dataclass
class BatchResult:
    """What a batch task hands back to the driver: a part name and counts, never the rows."""

    part: str | None
    """File name of the batch's Parquet part under OUT/lvd_parts (None: no clip came out)."""
    rows: int
    videos: list[tuple[str, int, float]] = field(default_factory=list)
    """(video_id, clip rows, clip hours) of each video with clips in the part, in source order."""
    quarantine: list[dict[str, str]] = field(default_factory=list)
    reused: int = 0
    """Videos a previous run had finished."""
    sources: int = 0
    seconds: float = 0.0


def plan_batches(sources: Sequence[VideoSource], run: RunConfig) -> list[list[VideoSource]]:
    """Split `sources` (in order) into batches of at most `run.batch_size`, and into at least
    `run.max_workers` batches when there are that many videos, so every worker gets work."""
    if not sources:
        return []
    size = max(1, min(run.batch_size, -(-len(sources) // run.max_workers)))
    return [list(sources[k : k + size]) for k in range(0, len(sources), size)]


def batch_part_name(sources: Sequence[VideoSource], key: str) -> str:
    """A part's name follows from its sources and the pipeline key, so a rerun rewrites the same part."""
    digest = hashlib.sha256("\n".join([key, *(s.uri for s in sources)]).encode()).hexdigest()[:16]
    return f"part-{digest}.parquet"


def process_batch(
    sources: Sequence[VideoSource | str],
    cfg: LvdConfig,
    out_uri: str,
    scorers: Sequence[ClipScorer],
    max_workers: int = 1,
    on_video: Callable[[VideoResult], None] | None = None,
) -> BatchResult:
    """Process a batch of videos (on `max_workers` threads) and write its rows as one Parquet part.

    Bad videos become quarantine records; an unexpected error on one video is quarantined with its
    message so the others still finish. Rows are deduplicated by clip_id within the batch.
    """
    items = [s if isinstance(s, VideoSource) else VideoSource(s) for s in sources]
    started = time.perf_counter()
    results: dict[int, VideoResult] = {}
    with ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix="lvd") as pool:
        futures = {
            pool.submit(_process_with_retries, s, cfg, out_uri, scorers): k for k, s in enumerate(items)
        }
        for future in as_completed(futures):
            k = futures[future]
            results[k] = _result_or_quarantine(future, items[k])
            if on_video is not None:
                on_video(results[k])
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    videos: list[tuple[str, int, float]] = []
    for k in range(len(items)):
        fresh = [r for r in results[k].rows if r["clip_id"] not in seen]
        seen.update(r["clip_id"] for r in fresh)
        if fresh and results[k].video_id is not None:
            videos.append((str(results[k].video_id), len(fresh), sum(r["duration_s"] for r in fresh) / 3600))
        rows += fresh
    part = None
    if rows:
        part = batch_part_name(items, pipeline_key(cfg, scorers))
        table = pa.Table.from_pylist(rows, schema=LVD_SCHEMA)
        _write_parquet(svd_io.join_uri(out_uri, TABLE_PARTS_DIR, part), table)
    return BatchResult(
        part=part,
        rows=len(rows),
        videos=videos,
        quarantine=[r.quarantine for r in results.values() if r.quarantine is not None],
        reused=sum(1 for r in results.values() if r.reused),
        sources=len(items),
        seconds=time.perf_counter() - started,
    )


def _process_with_retries(
    source: VideoSource, cfg: LvdConfig, out_uri: str, scorers: Sequence[ClipScorer]
) -> VideoResult:
    """`process_video`, retrying storage errors `run.task_retries` times; then the video is quarantined
    (one lost video does not fail, and so re-run, its whole batch)."""
    for attempt in range(cfg.run.task_retries + 1):
        try:
            return process_video(source, cfg, out_uri, scorers)
        except StorageError as exc:
            if attempt == cfg.run.task_retries:
                reason = f"task failed after retries: {exc.__class__.__name__}: {exc}"
                return VideoResult(
                    source.uri,
                    None,
                    quarantine={"source_uri": source.uri, "reason": reason, "stage": "decode"},
                )
            time.sleep(cfg.run.retry_delay_s)
    raise AssertionError("unreachable")


def finalize_parts(
    out_uri: str, batches: Sequence[BatchResult], elapsed_s: float, single_file_max_rows: int = 1_000_000
) -> LvdSummary:
    """Publish the parts manifest and `OUT/quarantine.parquet` from the batches' counts; raise if no clip
    came out. A video found in two batches (the same bytes under two URIs) is kept in the first part and
    skipped in the others through the manifest. Tables up to `single_file_max_rows` rows are also merged
    (streamed, one row group at a time) into `OUT/lvd.parquet`, which is then the summary's table URI."""
    quarantine = [q for b in batches for q in b.quarantine]
    quarantine_uri = svd_io.join_uri(out_uri, "quarantine.parquet")
    _write_parquet(quarantine_uri, pa.Table.from_pylist(quarantine, schema=QUARANTINE_SCHEMA))
    parts: list[Part] = []
    seen: set[str] = set()
    clips, hours = 0, 0.0
    for batch in batches:
        if batch.part is None:
            continue
        skip = [vid for vid, _, _ in batch.videos if vid in seen]
        kept = [(vid, n, h) for vid, n, h in batch.videos if vid not in seen]
        seen.update(vid for vid, _, _ in kept)
        rows = batch.rows - sum(n for vid, n, _ in batch.videos if vid in skip)
        clips, hours = clips + rows, hours + sum(h for _, _, h in kept)
        parts.append(Part(batch.part, rows, tuple(skip)))
    if clips == 0:
        reasons = "; ".join(sorted({f"{q['stage']}: {q['reason']}" for q in quarantine})[:5])
        sources = sum(b.sources for b in batches)
        raise InputError(
            f"no clips from {sources} input video(s): all were quarantined ({reasons}); see "
            f"{quarantine_uri}. Check the source path, or relax the limits in the LVD config"
        )
    parts_uri = svd_io.join_uri(out_uri, TABLE_PARTS_DIR)
    write_manifest(parts_uri, parts, {"schema": "lvd"})
    single_uri = svd_io.join_uri(out_uri, "lvd.parquet")
    if clips <= single_file_max_rows:
        _merge_parts(parts_uri, parts, single_uri)
        lvd_uri = single_uri
    else:
        if svd_io.exists(single_uri):  # a smaller earlier build's file would be stale
            svd_io.store_for(single_uri).delete(single_uri)
        lvd_uri = parts_uri
    return LvdSummary(
        videos=len(seen),
        clips=clips,
        hours=hours,
        quarantined=len(quarantine),
        clips_per_s=clips / elapsed_s if elapsed_s > 0 else 0.0,
        reused=sum(b.reused for b in batches),
        lvd_uri=lvd_uri,
        quarantine_uri=quarantine_uri,
    )


def conform_to_lvd(batch: pa.RecordBatch) -> pa.RecordBatch:
    """`batch` in LVD_SCHEMA's column order, with the nullable columns it lacks (a part written before they
    existed, e.g. the per-caption columns) added as nulls; a missing non-nullable column is an error."""
    missing = [f.name for f in LVD_SCHEMA if f.name not in batch.schema.names]
    required = [name for name in missing if not LVD_SCHEMA.field(name).nullable]
    if required:
        raise InputError(
            f"an LVD part lacks the required column(s) {required}; it was not written by the LVD build: "
            "rebuild it (svd data build-lvd)"
        )
    columns = [
        batch.column(f.name).cast(f.type)
        if f.name in batch.schema.names
        else pa.nulls(batch.num_rows, f.type)
        for f in LVD_SCHEMA
    ]
    return pa.RecordBatch.from_arrays(columns, schema=LVD_SCHEMA)


def _merge_parts(parts_uri: str, parts: Sequence[Part], uri: str) -> None:
    with tempfile.TemporaryDirectory(prefix="svd-lvd-merge-") as tmp:
        merged = Path(tmp) / "lvd.parquet"
        with pq.ParquetWriter(merged, LVD_SCHEMA) as writer:
            for part in parts:
                with svd_io.local_copy(svd_io.join_uri(parts_uri, part.path), tmp) as path:
                    for batch in pq.ParquetFile(path).iter_batches(batch_size=65536):
                        if part.skip_video_ids:
                            skip = pa.array(part.skip_video_ids, pa.string())
                            batch = batch.filter(pc.invert(pc.is_in(batch.column("video_id"), skip)))
                        writer.write_batch(conform_to_lvd(batch))
        svd_io.put_file(merged, uri)  # atomic


def build_lvd(
    sources: str | Sequence[str | VideoSource],
    out_uri: str,
    cfg: LvdConfig,
    scorers: Sequence[ClipScorer] | None = None,
    progress: Callable[[VideoResult, int, int], None] | None = None,
) -> LvdSummary:
    """Build the LVD table from `sources` (folder, prefix, manifest or list) into `out_uri`, in this process.

    Batches (`plan_batches`) run one after another, each on `cfg.run.max_workers` threads (decoding,
    encoding and OpenCV release the GIL), each writing its part.
    """
    items = (
        resolve_sources(sources)
        if isinstance(sources, str)
        else [s if isinstance(s, VideoSource) else VideoSource(s) for s in sources]
    )
    scorers = list(scorers) if scorers is not None else default_scorers(cfg)
    started = time.perf_counter()
    done = 0

    def on_video(result: VideoResult) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(result, done, len(items))

    batches = [
        process_batch(batch, cfg, out_uri, scorers, cfg.run.max_workers, on_video)
        for batch in plan_batches(items, cfg.run.model_copy(update={"max_workers": 1}))
    ]
    return finalize_parts(out_uri, batches, time.perf_counter() - started, cfg.run.single_file_max_rows)


def _result_or_quarantine(future: Any, source: VideoSource) -> VideoResult:
    try:
        return future.result()
    except Exception as exc:
        log.exception("unexpected error on %s", source.uri)
        reason = f"unexpected error: {exc.__class__.__name__}: {exc}"
        return VideoResult(
            source.uri, None, quarantine={"source_uri": source.uri, "reason": reason, "stage": "decode"}
        )
