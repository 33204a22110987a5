"""Prefect flow for the LVD build: one task per source video (mapped over workers), then one finalize task.

Thin on purpose: the work is `svd_core.curation.lvd.process_video` / `finalize_lvd`; this module only picks
a task runner from `LvdConfig.run` and maps. Task retries cover transient errors (storage); bad videos are
already quarantined by `process_video` and a task that still fails after its retries is quarantined here,
so one video never fails the build. Reruns skip finished videos through the per-video result files.

Task runners: `threads` (ThreadPoolTaskRunner, one machine), `processes` (a local Dask cluster of
`run.max_workers` single-threaded worker processes), `dask` (an existing cluster at `run.dask_address`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from prefect import flow, task, unmapped
from prefect.cache_policies import NONE
from prefect.task_runners import ThreadPoolTaskRunner

from svd_core.config import load_config
from svd_core.curation.config import LvdConfig, RunConfig
from svd_core.curation.lvd import LvdSummary, VideoResult, default_scorers, finalize_lvd, process_video
from svd_core.curation.scorer_base import ClipScorer
from svd_core.curation.sources import VideoSource, resolve_sources

_SCORERS: dict[str, list[ClipScorer]] = {}
_SCORERS_LOCK = threading.Lock()


def scorers_for(cfg: LvdConfig) -> list[ClipScorer]:
    """Scorers built once per worker process and config (learned models load once, not per video)."""
    key = cfg.config_hash()
    with _SCORERS_LOCK:
        if key not in _SCORERS:
            _SCORERS[key] = default_scorers(cfg)
        return _SCORERS[key]


def make_task_runner(run: RunConfig) -> Any:
    if run.task_runner == "threads":
        return ThreadPoolTaskRunner(max_workers=run.max_workers)
    from prefect_dask import DaskTaskRunner

    if run.task_runner == "dask":
        return DaskTaskRunner(address=run.dask_address)
    return DaskTaskRunner(
        cluster_kwargs={"n_workers": run.max_workers, "threads_per_worker": 1, "processes": True}
    )


@task(name="lvd-video", retries=2, retry_delay_seconds=5, cache_policy=NONE)
def process_video_task(source: VideoSource, cfg: LvdConfig, out: str) -> VideoResult:
    return process_video(source, cfg, out, scorers_for(cfg))


@task(name="lvd-finalize", cache_policy=NONE)
def finalize_task(out: str, results: list[VideoResult], elapsed_s: float) -> LvdSummary:
    return finalize_lvd(out, results, elapsed_s)


@flow(name="build-lvd", log_prints=True)
def build_lvd_flow(source: str, out: str, cfg: LvdConfig) -> LvdSummary:
    """Long videos under `source` -> clips + `out/lvd.parquet` + `out/quarantine.parquet`."""
    started = time.perf_counter()
    sources = resolve_sources(source)
    video_task = process_video_task.with_options(
        retries=cfg.run.task_retries, retry_delay_seconds=cfg.run.retry_delay_s
    )
    futures = video_task.map(sources, cfg=unmapped(cfg), out=unmapped(out))
    results = [_result_or_quarantine(future, s) for future, s in zip(futures, sources, strict=True)]
    return finalize_task(out, results, time.perf_counter() - started)


def _result_or_quarantine(future: Any, source: VideoSource) -> VideoResult:
    outcome = future.result(raise_on_failure=False)
    if isinstance(outcome, VideoResult):
        return outcome
    reason = f"task failed after retries: {outcome.__class__.__name__}: {outcome}"
    return VideoResult(
        source.uri, None, quarantine={"source_uri": source.uri, "reason": reason, "stage": "decode"}
    )


def run_build_lvd(
    source: str, out: str, config_path: str | None = None, overrides: Sequence[str] = ()
) -> LvdSummary:
    """Load the config (file + dotted overrides) and run the flow on the task runner it names."""
    cfg = load_config(LvdConfig, config_path, overrides)
    return build_lvd_flow.with_options(task_runner=make_task_runner(cfg.run))(source, out, cfg)
