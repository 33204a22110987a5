"""The LVD table: long videos -> clips in tar shards + one row per clip with every score.

Work is split into per-video units a flow can map (`process_video`) and one `finalize_lvd` that writes
`OUT/lvd.parquet` and `OUT/quarantine.parquet`. `build_lvd` runs both in-process (threads).

Exactly-once and resumable: a video is content-addressed (`video_id` = hash of its bytes) and its result
is stored atomically as `OUT/_parts/<video_id>-<pipeline key>.json` after its shards are published; a rerun
with the same config and scorers finds the part and skips the video, and a video cut off midway is redone
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
import pyarrow.parquet as pq

from svd_core import storage as svd_io
from svd_core.curation.config import LvdConfig
from svd_core.curation.schema import LVD_COLUMNS, LVD_SCHEMA, QUARANTINE_SCHEMA
from svd_core.curation.scorer_base import ClipScorer
from svd_core.curation.sources import VideoSource, resolve_sources
from svd_core.errors import InputError, StorageError
from svd_core.video.clips import ClipOutput, PassStats, clip_id_for, split_video
from svd_core.video.cuts import CUTS_VERSION
from svd_core.video.decode import BadVideo, DecodeTimeout, probe_video
from svd_core.video.shards import ShardWriter

log = logging.getLogger("svd.lvd")
PARTS_DIR = "_parts"


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


def scorer_versions(cfg: LvdConfig, scorers: Sequence[ClipScorer]) -> dict[str, str]:
    versions = {
        "cuts": f"{CUTS_VERSION}:{cfg.cuts.config_hash()[:8]}",
        "clips": f"{cfg.clips.codec}:crf{cfg.clips.crf}:{cfg.clips.preset}:max{cfg.clips.max_short_side}"
        + (f":{cfg.clips.x264_params}" if cfg.clips.x264_params else ""),
    }
    versions.update({s.name: s.version for s in scorers})
    return versions


def pipeline_key(cfg: LvdConfig, scorers: Sequence[ClipScorer]) -> str:
    """Hash of everything that changes a video's result (not the run settings or the time limit)."""
    data = cfg.to_dict()
    for key in ("run", "device"):
        data.pop(key, None)
    data["decode"].pop("timeout_s", None)
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
    try:
        with svd_io.local_copy(source.uri) as path:
            video_id = file_sha256(path)
            part_uri = svd_io.join_uri(out_uri, PARTS_DIR, f"{video_id}-{pipeline_key(cfg, scorers)}.json")
            if svd_io.exists(part_uri):
                result = VideoResult.from_json(svd_io.read_bytes(part_uri))
                result.reused, result.source_uri = True, source.uri
                result.seconds = time.perf_counter() - started
                if result.quarantine is not None:
                    result.quarantine["source_uri"] = source.uri  # same bytes may come under another name
                return result
            result = _process_local(path, source, video_id, cfg, out_uri, scorers)
    except StorageError as exc:
        if svd_io.is_local(source.uri) and not svd_io.exists(source.uri):
            return _quarantined(
                source.uri, None, BadVideo(source.uri, "probe", f"cannot read: {exc}"), started
            )
        raise
    result.seconds = time.perf_counter() - started
    if result.final:
        svd_io.write_bytes(part_uri, result.to_json())
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
    try:
        return _run_with_timeout(
            lambda: _cut_score_store(path, source, video_id, cfg, out_uri, scorers),
            cfg.decode.timeout_s,
            source.uri,
        )
    except BadVideo as exc:
        log.info("quarantined %s (%s): %s", source.uri, exc.stage, exc.reason)
        return _quarantined(source.uri, video_id, exc, started)


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
            f"timed out: no result within decode.timeout_s={timeout_s:g} s "
            "(a decoder hang, or raise the limit for very long videos)",
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
) -> VideoResult:
    deadline = time.monotonic() + cfg.decode.timeout_s
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
            raise DecodeTimeout(source.uri, "decode", "timed out before publishing (decode.timeout_s)")
        uris = shards.publish()
    for row in rows:
        row["clip_uri"] = uris[row["clip_id"]]
    seconds = {**stats.seconds, **score_stats.seconds}
    info = {
        "frames_decoded": stats.frames_decoded,
        "decode_passes": stats.decode_passes,
        "cuts": [asdict(c) for c in stats.cuts],
        "seconds": seconds,
        "probe": {"codec": probe.codec, "width": probe.width, "height": probe.height, "fps": probe.fps},
    }
    return VideoResult(source.uri, video_id, [{k: r.get(k) for k in LVD_COLUMNS} for r in rows], stats=info)


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


def build_lvd(
    sources: str | Sequence[str | VideoSource],
    out_uri: str,
    cfg: LvdConfig,
    scorers: Sequence[ClipScorer] | None = None,
    progress: Callable[[VideoResult, int, int], None] | None = None,
) -> LvdSummary:
    """Build the LVD table from `sources` (folder, prefix, manifest or list) into `out_uri`, in this process.

    Videos run on `cfg.run.max_workers` threads (decoding, encoding and OpenCV release the GIL). An
    unexpected error on one video is quarantined with its message so the others still finish.
    """
    items = (
        resolve_sources(sources)
        if isinstance(sources, str)
        else [s if isinstance(s, VideoSource) else VideoSource(s) for s in sources]
    )
    scorers = list(scorers) if scorers is not None else default_scorers(cfg)
    started = time.perf_counter()
    results: list[VideoResult] = []
    with ThreadPoolExecutor(max_workers=cfg.run.max_workers, thread_name_prefix="lvd") as pool:
        futures = {pool.submit(process_video, s, cfg, out_uri, scorers): s for s in items}
        for future in as_completed(futures):
            results.append(_result_or_quarantine(future, futures[future]))
            if progress is not None:
                progress(results[-1], len(results), len(items))
    order = {s.uri: k for k, s in enumerate(items)}
    results.sort(key=lambda r: order.get(r.source_uri, 0))
    return finalize_lvd(out_uri, results, time.perf_counter() - started)


def _result_or_quarantine(future: Any, source: VideoSource) -> VideoResult:
    try:
        return future.result()
    except Exception as exc:
        log.exception("unexpected error on %s", source.uri)
        reason = f"unexpected error: {exc.__class__.__name__}: {exc}"
        return VideoResult(
            source.uri, None, quarantine={"source_uri": source.uri, "reason": reason, "stage": "decode"}
        )
