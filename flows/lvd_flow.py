"""Prefect flow for the LVD build: one task per batch of source videos (mapped over workers), then one
finalize task.

Thin on purpose: the work is `svd_core.curation.lvd.process_batch` / `finalize_parts`; this module only
picks a task runner from `LvdConfig.run`, splits the sources into `run.batch_size` batches
(`plan_batches`: 1M videos at batch_size=1000 are ~1k task runs) and maps. Each batch task writes its rows
as one Parquet part next to the shards and returns counts only, so the flow process never holds the rows.
Task retries cover transient errors (storage); bad videos are already quarantined inside the batch, and a
batch task that still fails after its retries has its videos quarantined here, so a batch never fails the
build. Reruns skip finished videos through the per-video result files. The nightly `build_dataset` flow
runs this flow as its LVD step, so it fans out the same way.

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
from svd_core.curation.lvd import (
    BatchResult,
    LvdSummary,
    default_scorers,
    finalize_parts,
    plan_batches,
    process_batch,
)
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


@task(name="lvd-batch", retries=2, retry_delay_seconds=5, cache_policy=NONE)
def process_batch_task(sources: list[VideoSource], cfg: LvdConfig, out: str) -> BatchResult:
    return process_batch(sources, cfg, out, scorers_for(cfg))


@task(name="lvd-finalize", cache_policy=NONE)
def finalize_task(
    out: str, batches: list[BatchResult], elapsed_s: float, single_file_max_rows: int
) -> LvdSummary:
    return finalize_parts(out, batches, elapsed_s, single_file_max_rows)


@flow(name="build-lvd", log_prints=True)
def build_lvd_flow(source: str, out: str, cfg: LvdConfig) -> LvdSummary:
    """Long videos under `source` -> clips + `out/lvd_parts/` (+ `out/lvd.parquet` when small) +
    `out/quarantine.parquet`."""
    started = time.perf_counter()
    batches = plan_batches(resolve_sources(source), cfg.run)
    batch_task = process_batch_task.with_options(
        retries=cfg.run.task_retries, retry_delay_seconds=cfg.run.retry_delay_s
    )
    futures = batch_task.map(batches, cfg=unmapped(cfg), out=unmapped(out))
    results = [_batch_or_quarantine(future, b) for future, b in zip(futures, batches, strict=True)]
    return finalize_task(out, results, time.perf_counter() - started, cfg.run.single_file_max_rows)


def _batch_or_quarantine(future: Any, batch: Sequence[VideoSource]) -> BatchResult:
    outcome = future.result(raise_on_failure=False)
    if isinstance(outcome, BatchResult):
        return outcome
    reason = f"task failed after retries: {outcome.__class__.__name__}: {outcome}"
    quarantine = [{"source_uri": s.uri, "reason": reason, "stage": "decode"} for s in batch]
    return BatchResult(part=None, rows=0, quarantine=quarantine, sources=len(batch))


def run_build_lvd(
    source: str, out: str, config_path: str | None = None, overrides: Sequence[str] = ()
) -> LvdSummary:
    """Load the config (file + dotted overrides) and run the flow on the task runner it names."""
    cfg = load_config(LvdConfig, config_path, overrides)
    return build_lvd_flow.with_options(task_runner=make_task_runner(cfg.run))(source, out, cfg)
