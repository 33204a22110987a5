"""`build_dataset`: raw videos -> LVD -> LVD-F (+ subsets) behind the GX gate, logged to MLflow.

One code path: the steps below are plain functions; the Prefect flow wraps each in a task (retries and
caching live in the decorators) and `svd data build` calls the same functions without Prefect. DVC's
`dvc.yaml` runs the CLI stage by stage for lineage, so all three routes produce the same files.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import mlflow
from prefect import flow, task

from flows import reporting
from flows.integrations import retention, tracking
from flows.integrations.validation import make_validation_fn
from flows.lvd_flow import build_lvd_flow, make_task_runner
from svd_core import storage as svd_io
from svd_core.curation.config import DatasetBuildConfig
from svd_core.curation.lvd import LvdSummary, build_lvd
from svd_core.curation.publish import build_filtered


def step_lvd(cfg: DatasetBuildConfig, progress: Any = None) -> LvdSummary:
    """Long videos -> clips + LVD table (reruns skip finished videos)."""
    return build_lvd(cfg.source, cfg.lvd_uri, cfg.lvd, progress=progress)


def step_filter(cfg: DatasetBuildConfig, lvd_table_uri: str, on_step: Any = None) -> dict[str, Any]:
    """LVD -> LVD-F (+ LVD-10M, LVD-10M-F), validated by GX, published atomically. The GX gate runs on the
    LVD table itself first (Data Docs: OUT/curated/validation/lvd), so a broken scorer stops the build
    before any filter runs."""
    docs = svd_io.join_uri(cfg.curated_uri, "validation")
    return build_filtered(
        lvd_table_uri,
        cfg.curated_uri,
        cfg.filter,
        cfg.subset,
        make_validation_fn(cfg.validation, docs, cfg.engine),
        keep_versions=cfg.keep_versions,
        on_step=on_step,
        engine=cfg.engine,
        in_use=retention.dataset_refs_in_use(),  # versions registered models were trained on survive
    )


def data_dvc_md5(root: Path = Path(".")) -> str:
    """md5 of the raw data recorded in data.dvc (the DVC version of the inputs), or 'untracked'."""
    import yaml

    path = root / "data.dvc"
    if not path.is_file():
        return "untracked"
    outs = (yaml.safe_load(path.read_text()) or {}).get("outs") or [{}]
    return str(outs[0].get("md5", "untracked"))


def step_track(cfg: DatasetBuildConfig, lvd: LvdSummary, built: dict[str, Any]) -> str:
    """Log the build to MLflow: config, LVD summary, funnels, GX results, Data Docs, dataset inputs."""
    with tracking.run(cfg.experiment, "build_dataset", {"svd.kind": "dataset"}) as active:
        tracking.log_config(cfg, "dataset_config")
        mlflow.log_metrics(
            {f"lvd.{k}": float(v) for k, v in asdict(lvd).items() if isinstance(v, int | float)}
        )
        mlflow.set_tag("svd.data_dvc_md5", data_dvc_md5())
        tracking.log_dataset(lvd.lvd_uri, "lvd", data_dvc_md5(), "curation", {"rows": built["lvd_rows"]})
        source_gate = built.get("lvd_validation")  # the LVD table's own gate, before any filter
        if source_gate is not None:
            mlflow.log_metric("lvd.gx_evaluated", float(source_gate["evaluated"]))
        for name, info in built["datasets"].items():
            mlflow.set_tag(f"svd.dataset.{name}.version", info["version"])
            mlflow.set_tag(f"svd.dataset.{name}.uri", info["files"]["table"])
            mlflow.set_tag(f"svd.dataset.{name}.gx_success", str(info["validation"]["success"]))
            numeric = {k: v for k, v in _flat(info.get("funnel") or {}).items() if isinstance(v, int | float)}
            mlflow.log_metrics({f"{name}.{k}": float(v) for k, v in numeric.items()})
            mlflow.log_metric(f"{name}.rows", info["rows"])
            tracking.log_dataset(
                info["files"]["table"], name, info["version"], "curation", {"rows": info["rows"]}
            )
        mlflow.log_dict(built, "build_summary.json")
        _log_data_docs(cfg)
        return active.info.run_id


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        elif not isinstance(value, bool):
            out[f"{prefix}{key}"] = value
    return out


def _log_data_docs(cfg: DatasetBuildConfig) -> None:
    docs = svd_io.join_uri(cfg.curated_uri, "validation")
    files = svd_io.list_uris(docs)
    if not files:
        return
    with tempfile.TemporaryDirectory() as tmp:
        for uri in files:
            rel = uri[len(docs) :].lstrip("/")
            svd_io.store_for(uri).get_file(uri, Path(tmp) / rel)
        mlflow.log_artifacts(tmp, "data_docs")


def run_build(cfg: DatasetBuildConfig, progress: Any = None, on_step: Any = None) -> dict[str, Any]:
    """The whole build without Prefect (what `svd data build` runs)."""
    lvd = step_lvd(cfg, progress)
    built = step_filter(cfg, lvd.lvd_uri, on_step)
    run_id = step_track(cfg, lvd, built)
    return _result(lvd, built, run_id)


def _result(lvd: LvdSummary, built: dict[str, Any], run_id: str) -> dict[str, Any]:
    return {
        "lvd": asdict(lvd),
        "datasets": {n: {"uri": i["files"]["table"], "version": i["version"], "rows": i["rows"]}
                     for n, i in built["datasets"].items()},
        "mlflow_run_id": run_id,
    }  # fmt: skip


filter_task = task(name="filter-validate-publish")(step_filter)
track_task = task(name="log-to-mlflow", retries=2, retry_delay_seconds=2)(step_track)


@flow(name="build_dataset", log_prints=True)
def build_dataset(cfg: DatasetBuildConfig = DatasetBuildConfig()) -> dict[str, Any]:
    """Prefect flow: the same steps as `svd data build`, each a task. Ends with the run's artifacts (funnel,
    versions, dashboard link) and one `svd.dataset.published` event per new version (it triggers training)."""

    before = reporting.current_dataset_versions(cfg)
    # The LVD step is the build-lvd flow itself (a subflow), so it fans out in batches over the task runner
    # that `lvd.run` names (threads, local Dask processes or a Dask cluster), as `svd data build-lvd --flow`.
    lvd = build_lvd_flow.with_options(task_runner=make_task_runner(cfg.lvd.run))(
        cfg.source, cfg.lvd_uri, cfg.lvd
    )
    built = filter_task(cfg, lvd.lvd_uri)
    run_id = track_task(cfg, lvd, built)
    result = _result(lvd, built, run_id)
    print(json.dumps(result["datasets"], indent=2))
    events = reporting.emit_dataset_published(cfg, built, before, run_id)
    new = [e["payload"]["name"] for e in events]
    reporting.publish_run_artifacts(reporting.dataset_artifacts(result["lvd"], built, run_id, new))
    return result
