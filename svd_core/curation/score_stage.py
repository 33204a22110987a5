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

Batched scoring. The stage is a producer/consumer: `decode_workers` threads decode clips ahead (up to
2 x `batch_clips` of them), and the scorers run on groups of `batch_clips` clips. A scorer with
`score_batch` (the learned ones: CLIP score, aesthetic, captioners; see
svd_core.curation.scorer_base.BatchClipScorer) stacks the frames of the whole group into one forward pass
on its device (`device` / `models.device`: `auto` is CUDA when visible, else CPU, where batching pays too:
bench/bench_scoring_batch.py); the others (flow, camera) score clip by clip. Batched scores equal the
clip-by-clip ones up to float rounding. Sizes: `models.batch_clips`, `models.decode_workers`.

Across machines (`score_stored_clips_dask`, `svd data score --dask tcp://HOST:8786`): per group of
`batch_clips` clips one decode task (no resource: any worker, CPU) and one scoring task that depends on it
and requests one unit of the worker resource `models.gpu_resource` ("GPU"). Start one worker per GPU with
that resource and CPU-only workers for decoding:

    dask scheduler
    CUDA_VISIBLE_DEVICES=0 dask worker tcp://HOST:8786 --nthreads 2 --resources GPU=1 --preload flows.integrations.s3
    CUDA_VISIBLE_DEVICES=1 dask worker tcp://HOST:8786 --nthreads 2 --resources GPU=1 --preload flows.integrations.s3
    dask worker tcp://HOST:8786 --nworkers 8 --nthreads 1 --preload flows.integrations.s3   # decode only
    svd data score --lvd s3://bucket/lvd_parts --out s3://bucket/lvd_scored --scorer clip_score --dask tcp://HOST:8786

A GPU worker builds the scorers on its first scoring task and keeps them on the worker object
(`worker_scorers`), so each GPU holds one model copy, loaded once, and scores one batch at a time. Only the
score columns (clip_id plus a few numbers or captions per clip) come back to the driver, a bounded number
of groups in flight; the driver joins them onto the table as above.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import av
import pyarrow as pa
import pyarrow.parquet as pq

from svd_core import storage as svd_io
from svd_core.curation.config import ScoringConfig, TableEngineConfig
from svd_core.curation.schema import LVD_SCHEMA
from svd_core.curation.scorer_base import ClipScorer, is_batched, score_many
from svd_core.curation.table import Part, quote_ident, quote_str, table_session, write_manifest
from svd_core.errors import ConfigError, InputError
from svd_core.video.decode import ClipDisplay, FrameSampler
from svd_core.video.frames import SampledFrames
from svd_core.video.shards import open_clip

if TYPE_CHECKING:
    from distributed import Client

    from svd_core.curation.config import LvdConfig

STAGE_SUFFIX = "+stored-clips"
"""Appended to a scorer's version in `scorer_versions` when it ran as this stage (frames from the encoded
clip), so stage scores are never mistaken for in-pass ones."""
BATCH_ROWS = 256
"""Clips read per batch from the table, and score rows per write (bounds the stage's memory)."""
BASE_SCORERS = ("flow", "camera")
"""Scorers without learned weights, in run order (before the learned ones)."""
MAX_BATCH_CLIPS = 1024
"""Upper bound of `batch_clips` (models.batch_clips has the same one)."""
STAGE_SETTINGS = ("batch_clips", "decode_workers", "gpu_resource")
"""`models` fields that size the stage but change no model (a worker keeps its models across them)."""
WORKER_CACHE_ATTR = "_svd_stage_scorers"
"""Attribute of a Dask worker holding its scorers (`worker_scorers`)."""


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
    """The scoring frames of one stored clip (decoded from its shard member, never from the source), upright,
    square-pixel and SDR as the LVD pass saw them (a stream-copied clip keeps its source's rotation, SAR
    and transfer)."""
    data = open_clip(clip_uri)
    sampler = FrameSampler(
        cfg.sample_fps, cfg.frames_max_short_side, (int(width), int(height)), cfg.key_frames_short_side
    )
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        display = ClipDisplay(stream)
        start: float | None = None
        for frame in container.decode(stream):
            if frame.time is None:
                continue
            start = frame.time if start is None else start
            sampler.offer(display(frame), float(frame.time - start))
    if not sampler.frames:
        raise InputError(f"clip {clip_uri} decodes to no frame; rebuild its shard (svd data build-lvd)")
    return sampler.build()


def _row_frames(row: Mapping[str, Any], cfg: ScoringConfig) -> SampledFrames:
    return clip_frames(row["clip_uri"], cfg, row["width"], row["height"])


def _check_columns(columns: Sequence[str]) -> list[str]:
    known = {f.name for f in LVD_SCHEMA}
    unknown = sorted(set(columns) - known)
    if unknown:
        raise InputError(
            f"scorer column(s) {unknown} are not LVD columns; add them to svd_core.curation.schema"
        )
    if not columns:
        raise InputError("the chosen scorers fill no LVD column; pick scorers with columns")
    return list(columns)


def _check_sizes(batch_clips: int, decode_workers: int) -> None:
    if not isinstance(batch_clips, int) or not 1 <= batch_clips <= MAX_BATCH_CLIPS:
        raise ConfigError(
            f"models.batch_clips={batch_clips!r}: the score stage's batch size must be a whole number of "
            f"clips from 1 (clip by clip) to {MAX_BATCH_CLIPS}"
        )
    if not isinstance(decode_workers, int) or decode_workers < 1:
        raise ConfigError(
            f"models.decode_workers={decode_workers!r}: at least 1 thread must decode the stored clips"
        )


def available_scorers(cfg: LvdConfig) -> tuple[str, ...]:
    """Scorer names the stage can run with this config, in run order (nothing is loaded)."""
    try:
        from svd_core.curation.learned import learned_scorer_names
    except ModuleNotFoundError:  # no torch/transformers here: the learned scorers are unavailable
        return BASE_SCORERS
    return (*BASE_SCORERS, *learned_scorer_names(cfg.models))


def run_order(cfg: LvdConfig, names: Collection[str]) -> list[str]:
    """`names` in run order; InputError naming the available ones when one is not available."""
    available = available_scorers(cfg)
    unknown = [name for name in names if name not in available]
    if unknown:
        raise InputError(
            f"--scorer {unknown}: not available with this config (available: {sorted(available)}); learned "
            "scorers need their weights set in the config's models section"
        )
    return [name for name in available if name in names]


def stage_scorers(cfg: LvdConfig, names: Collection[str]) -> list[ClipScorer]:
    """The scorers `names`, in run order (the caption chain before the CLIP score that reads its caption),
    loading only their models."""
    names = run_order(cfg, names)
    scorers: list[ClipScorer] = []
    if set(names) & set(BASE_SCORERS):
        from svd_core.curation.camera import CameraMotionScorer
        from svd_core.curation.motion import FarnebackFlow, MotionScorer

        flow = FarnebackFlow(cfg.scoring)
        if "flow" in names:
            scorers.append(MotionScorer(flow))
        if "camera" in names:
            scorers.append(CameraMotionScorer(flow, cfg.camera))
    learned = [name for name in names if name not in BASE_SCORERS]
    if learned:
        from svd_core.curation.learned import build_learned_scorers

        scorers.extend(build_learned_scorers(cfg.models, cfg.device, only=learned))
    return scorers


def score_rows(
    scorers: Sequence[ClipScorer],
    rows: Sequence[Mapping[str, Any]],
    frames: Sequence[SampledFrames],
    columns: Sequence[str],
) -> dict[str, list[Any]]:
    """Run the scorers in order over a group of clips (batched where a scorer can) and return
    `clip_id` plus `columns`, one value per clip. Each scorer sets only its own columns; later scorers
    read earlier results (the CLIP score reads the caption)."""
    contexts: list[dict[str, Any]] = [{**row, "title": None, "description": None} for row in rows]
    for scorer in scorers:
        for context, values in zip(contexts, score_many(scorer, frames, contexts), strict=True):
            context.update({k: v for k, v in values.items() if k in scorer.columns})
    out: dict[str, list[Any]] = {"clip_id": [row["clip_id"] for row in rows]}
    out.update({column: [context.get(column) for context in contexts] for column in columns})
    return out


def _decoded(
    rows: Iterable[dict[str, Any]], scoring: ScoringConfig, workers: int, ahead: int
) -> Iterator[tuple[dict[str, Any], SampledFrames]]:
    """(row, frames) in table order; up to `ahead` clips decode on `workers` threads before they are used."""
    pending: deque[tuple[dict[str, Any], Future[SampledFrames]]] = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="svd-decode") as pool:
        try:
            for row in rows:
                pending.append((row, pool.submit(_row_frames, row, scoring)))
                if len(pending) >= ahead:
                    first, decoding = pending.popleft()
                    yield first, decoding.result()
            while pending:
                first, decoding = pending.popleft()
                yield first, decoding.result()
        finally:  # an error (or a closed consumer) leaves no decode queued behind it
            for _, decoding in pending:
                decoding.cancel()


def _chunks(reader: Iterable[pa.RecordBatch], size: int) -> Iterator[list[dict[str, Any]]]:
    """Table rows in groups of `size` (the last may be shorter)."""
    group: list[dict[str, Any]] = []
    for batch in reader:
        for row in batch.to_pylist():
            group.append(row)
            if len(group) == size:
                yield group
                group = []
    if group:
        yield group


class _ScoreWriter:
    """Buffers score rows and writes them to the score part in row groups of about BATCH_ROWS."""

    def __init__(self, writer: pq.ParquetWriter, schema: pa.Schema) -> None:
        self.writer, self.schema = writer, schema
        self.buffer: dict[str, list[Any]] = {f.name: [] for f in schema}
        self.rows = 0

    def add(self, values: Mapping[str, list[Any]]) -> None:
        for name, column in self.buffer.items():
            column.extend(values[name])
        if len(self.buffer["clip_id"]) >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        count = len(self.buffer["clip_id"])
        if count:
            arrays = [pa.array(self.buffer[f.name], f.type) for f in self.schema]
            self.writer.write_batch(pa.record_batch(arrays, schema=self.schema))
            self.rows += count
            self.buffer = {name: [] for name in self.buffer}


ScoreGroups = Callable[[Iterable[pa.RecordBatch]], Iterator[dict[str, list[Any]]]]
"""Table batches in -> score columns of each scored group of clips out (clip_id + the scorers' columns)."""


def _run_stage(
    lvd_uri: str,
    out_uri: str,
    columns: Sequence[str],
    versions: Mapping[str, str],
    score_groups: ScoreGroups,
    engine: TableEngineConfig | None,
    progress: Callable[[int, int], None] | None,
    started: float,
) -> ScoreSummary:
    """Stream the table through `score_groups` into a score part, then join it onto the table by clip_id."""
    schema = pa.schema([LVD_SCHEMA.field("clip_id"), *(LVD_SCHEMA.field(c) for c in columns)])
    with table_session(engine) as session:
        view = session.open(lvd_uri, "lvd")
        missing = [c for c in ("clip_id", "clip_uri", "width", "height") if c not in view.columns]
        if missing:
            raise InputError(f"{lvd_uri} lacks {missing}; score a table written by `svd data build-lvd`")
        scores_path = session.scratch("scores.parquet")
        done = 0
        reader = session.con.sql(f"SELECT * FROM {view.ident}").to_arrow_reader(BATCH_ROWS)
        with pq.ParquetWriter(scores_path, schema) as parquet:
            writer = _ScoreWriter(parquet, schema)
            for values in score_groups(reader):
                writer.add(values)
                done += len(values["clip_id"])
                if progress is not None:
                    progress(done, view.rows)
            writer.flush()
        replaced = ", ".join(f"s.{quote_ident(c)} AS {quote_ident(c)}" for c in columns if c in view.columns)
        # A table written before a scorer's column existed (e.g. the per-caption columns) gains it.
        added = "".join(f", s.{quote_ident(c)} AS {quote_ident(c)}" for c in columns if c not in view.columns)
        patch = quote_str(json.dumps(dict(versions), sort_keys=True))
        versions_sql = (
            f"CAST(json_merge_patch(coalesce(v.scorer_versions, '{{}}'), {patch}) AS VARCHAR) AS scorer_versions"
            if "scorer_versions" in view.columns
            else ""
        )
        replace = ", ".join(x for x in (replaced, versions_sql) if x)
        selected = f"v.* REPLACE ({replace})" if replace else "v.*"
        table_path = session.scratch("part-00000.parquet")
        session.copy_to_parquet(
            f"SELECT {selected}{added} FROM {view.ident} AS v "
            f"LEFT JOIN read_parquet({quote_str(str(scores_path))}) AS s ON v.clip_id = s.clip_id",
            table_path,
        )
        svd_io.put_file(table_path, svd_io.join_uri(out_uri, "part-00000.parquet"))
        write_manifest(out_uri, [Part("part-00000.parquet", view.rows)], {"scored": dict(versions)})
    return ScoreSummary(done, tuple(columns), dict(versions), out_uri, time.perf_counter() - started)


def score_stored_clips(
    lvd_uri: str,
    out_uri: str,
    scorers: Sequence[ClipScorer],
    scoring: ScoringConfig | None = None,
    engine: TableEngineConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
    *,
    batch_clips: int = 8,
    decode_workers: int = 2,
) -> ScoreSummary:
    """Run `scorers` over the clips of the table at `lvd_uri` in this process, `batch_clips` clips at a
    time (decoded ahead on `decode_workers` threads); write the table with their columns to `out_uri` (a
    part folder: `part-00000.parquet` + `_manifest.json`)."""
    started = time.perf_counter()
    scoring = scoring or ScoringConfig()
    _check_sizes(batch_clips, decode_workers)
    columns = _check_columns([c for s in scorers for c in s.columns])
    versions = {s.name: f"{s.version}{STAGE_SUFFIX}" for s in scorers}
    # Clip-by-clip scorers gain nothing from waiting for a whole group: they take groups of one.
    size = batch_clips if any(is_batched(s) for s in scorers) else 1

    def score_groups(reader: Iterable[pa.RecordBatch]) -> Iterator[dict[str, list[Any]]]:
        rows = (row for batch in reader for row in batch.to_pylist())
        group: list[tuple[dict[str, Any], SampledFrames]] = []
        for item in _decoded(rows, scoring, decode_workers, ahead=max(2 * size, decode_workers)):
            group.append(item)
            if len(group) == size:
                yield score_rows(scorers, [r for r, _ in group], [f for _, f in group], columns)
                group = []
        if group:
            yield score_rows(scorers, [r for r, _ in group], [f for _, f in group], columns)

    return _run_stage(lvd_uri, out_uri, columns, versions, score_groups, engine, progress, started)


# --- the Dask path: decode tasks on any worker, scoring tasks on GPU workers (one model copy each) ------

_CACHE_LOCK = threading.Lock()
_PROCESS_CACHE: dict[str, tuple[threading.Lock, list[ClipScorer]]] = {}
"""Scorers built outside a Dask worker (the `worker_scorers` cache of a plain process)."""


def _current_worker() -> Any | None:
    try:
        from distributed import get_worker
    except ImportError:
        return None
    try:
        return get_worker()
    except ValueError:  # not inside a task on a Dask worker
        return None


def worker_scorers(cfg: LvdConfig, names: Sequence[str]) -> tuple[threading.Lock, list[ClipScorer]]:
    """The scorers `names` built from `cfg`, loaded once per Dask worker and reused by all its later tasks.

    They live on the worker object (outside a worker: in this module, once per process), so every worker
    (one per GPU) holds one copy; a task with another config or scorer set replaces them (the old models
    are freed). The lock serialises the scoring tasks sharing them (one batch at a time on the device).
    """
    key = _models_key(cfg, names)
    worker = _current_worker()
    with _CACHE_LOCK:
        cache: dict[str, tuple[threading.Lock, list[ClipScorer]]] | None
        if worker is None:
            cache = _PROCESS_CACHE
        else:
            cache = getattr(worker, WORKER_CACHE_ATTR, None)
            if cache is None:
                cache = {}
                setattr(worker, WORKER_CACHE_ATTR, cache)
        if key not in cache:
            cache.clear()
            cache[key] = (threading.Lock(), stage_scorers(cfg, names))
        return cache[key]


def _models_key(cfg: LvdConfig, names: Sequence[str]) -> str:
    """What the built scorers depend on: the config without the run and batching settings, and the names."""
    data = cfg.to_dict()
    data.pop("run", None)
    for key in STAGE_SETTINGS:
        data["models"].pop(key, None)
    return hashlib.sha256(json.dumps([data, list(names)], sort_keys=True).encode()).hexdigest()


def _worker_name() -> str:
    worker = _current_worker()
    return str(worker.address) if worker is not None else "local"


def _stage_info_task(cfg: LvdConfig, names: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Versions and columns of the scorers (built on a scoring worker, which keeps them for its tasks)."""
    _, scorers = worker_scorers(cfg, names)
    return {s.name: s.version for s in scorers}, [c for s in scorers for c in s.columns]


def _decode_task(rows: list[dict[str, Any]], scoring: ScoringConfig) -> list[SampledFrames]:
    return [_row_frames(row, scoring) for row in rows]


def _score_task(
    cfg: LvdConfig,
    names: Sequence[str],
    columns: Sequence[str],
    rows: list[dict[str, Any]],
    frames: list[SampledFrames],
) -> tuple[str, dict[str, list[Any]]]:
    lock, scorers = worker_scorers(cfg, names)
    with lock:
        return _worker_name(), score_rows(scorers, rows, frames, columns)


@dataclass
class DaskStageStats:
    """What the Dask path of the stage did (filled by `score_stored_clips_dask` when given one)."""

    groups: int = 0
    """Scoring tasks run."""
    workers: set[str] = field(default_factory=set)
    """Addresses of the workers that ran scoring tasks."""


def score_stored_clips_dask(
    lvd_uri: str,
    out_uri: str,
    cfg: LvdConfig,
    names: Sequence[str],
    client: Client | str,
    engine: TableEngineConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
    stats: DaskStageStats | None = None,
) -> ScoreSummary:
    """`score_stored_clips` over a Dask cluster (a `distributed.Client` or a scheduler address): groups of
    `cfg.models.batch_clips` clips decode on any worker and score on workers holding one unit of
    `cfg.models.gpu_resource`, each building the scorers `names` once (see the module docstring)."""
    from distributed import Client as DaskClient

    started = time.perf_counter()
    _check_sizes(cfg.models.batch_clips, cfg.models.decode_workers)
    names = run_order(cfg, names)
    learned = any(name not in BASE_SCORERS for name in names)
    resource = cfg.models.gpu_resource if learned else None  # flow and camera need no GPU
    resources = {resource: 1} if resource else None
    own = isinstance(client, str)
    dask = DaskClient(client) if isinstance(client, str) else client
    try:
        if resource and not _has_resource(dask, resource):
            raise InputError(
                f"no Dask worker offers the resource {resource!r} that scoring tasks request; start GPU "
                f"workers with `dask worker ... --resources {resource}=1` (one per GPU) or set "
                "models.gpu_resource: null to score on any worker"
            )
        info = dask.submit(_stage_info_task, cfg, names, resources=resources, pure=False)
        raw_versions, raw_columns = info.result()
        columns = _check_columns(raw_columns)
        versions = {name: f"{version}{STAGE_SUFFIX}" for name, version in raw_versions.items()}
        in_flight = 2 * max(1, len(dask.scheduler_info().get("workers", {}))) + 2
        run_stats = stats if stats is not None else DaskStageStats()

        def score_groups(reader: Iterable[pa.RecordBatch]) -> Iterator[dict[str, list[Any]]]:
            pending: deque[Any] = deque()
            try:
                for rows in _chunks(reader, cfg.models.batch_clips):
                    frames = dask.submit(_decode_task, rows, cfg.scoring, pure=False)
                    pending.append(
                        dask.submit(
                            _score_task, cfg, names, columns, rows, frames, resources=resources, pure=False
                        )
                    )
                    if len(pending) >= in_flight:
                        yield _collect(pending.popleft(), run_stats)
                while pending:
                    yield _collect(pending.popleft(), run_stats)
            finally:
                for future in pending:
                    future.cancel()

        return _run_stage(lvd_uri, out_uri, columns, versions, score_groups, engine, progress, started)
    finally:
        if own:
            dask.close()


def _collect(future: Any, stats: DaskStageStats) -> dict[str, list[Any]]:
    worker, values = future.result()
    stats.groups += 1
    stats.workers.add(worker)
    return values


def _has_resource(client: Client, resource: str) -> bool:
    workers = client.scheduler_info().get("workers", {})
    return any(resource in (w.get("resources") or {}) for w in workers.values())
