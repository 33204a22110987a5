"""Training flows: `train_stage` (one stage, tracked and registered) and `train_all` (I -> II -> III,
handing over through the registry).

The steps are plain functions (`svd train ...` runs them without Prefect); the flows wrap them in tasks.
Each stage: resolve the parent registered version to a local pipeline folder, launch the DeepSpeed ranks
(svd_core.tasks.stages.task.train_stage), stream metrics.jsonl into MLflow while they run, then register the
exported pipeline as a pyfunc model with lineage tags. A rerun with the same config, parent and dataset
reuses the registered version; an interrupted run resumes from its last checkpoint.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient
from prefect import flow, task

from flows.integrations import registry, tracking
from flows.integrations.pyfunc import SvdVideoModel, video_signature
from flows.settings import load_settings
from svd_core import storage as svd_io
from svd_core.config import apply_overrides, validate_config
from svd_core.errors import InputError
from svd_core.tasks.stages.config import TrainStageConfig
from svd_core.tasks.stages.task import train_stage as run_stage_ranks

STAGE_MODEL_NAMES = {"image": "svd-image", "video": "svd-video", "finetune": "svd"}
"""Registered model per stage; stage III (`svd`) is the product model that evaluation promotes."""


def dataset_version(table_uri: str) -> str:
    """Content version of a training table: sha256 of its bytes (a published LVD-F version is immutable)."""
    from svd_core.data.video_dataset import resolve_table_uri

    try:
        return "sha256:" + hashlib.sha256(svd_io.read_bytes(resolve_table_uri(table_uri))).hexdigest()[:16]
    except Exception as exc:
        raise InputError(
            f"training data {table_uri}: cannot read it ({exc}); pass --data with an LVD(-F) table"
        ) from exc


def resolve_stage_config(
    cfg: TrainStageConfig,
    data: str | None = None,
    parent: str | None = None,
    ranks: int | None = None,
    max_steps: int | None = None,
) -> tuple[TrainStageConfig, str]:
    """Apply CLI/flow arguments; a `models:/` parent is downloaded and wired into `init`.

    Returns the resolved config and the lineage key (config without local paths + parent + data version).
    """
    overrides = []
    if data:
        overrides.append(f"data.table_uri={data}")
    if ranks:
        overrides.append(f"trainer.ranks={ranks}")
    if max_steps:
        overrides.append(f"trainer.max_steps={max_steps}")
    cfg = validate_config(TrainStageConfig, apply_overrides(cfg.to_dict(), overrides), "<train config>")
    version = dataset_version(cfg.data.table_uri)
    # The data enters the key by content, not location: a republished identical table reuses the model.
    config = cfg.to_dict()
    config["data"].pop("table_uri")
    key_src = json.dumps({"config": config, "parent": parent or "", "data": version}, sort_keys=True)
    lineage_key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    if parent:
        local = str(registry.download_pipeline(parent))
        field = "init.image_unet_uri" if cfg.stage == "video" else "init.pipeline_uri"
        kind = "inflate" if cfg.stage == "video" else "pipeline"
        cfg = validate_config(
            TrainStageConfig,
            apply_overrides(cfg.to_dict(), [f"init.kind={kind}", f"{field}={local}"]),
            "<train config>",
        )
    return cfg, lineage_key


def find_registered(model_name: str, lineage_key: str) -> registry.ResolvedModel | None:
    """A registered version trained from the same config, parent and data (for reruns to reuse)."""
    tracking.configure()
    try:
        versions = MlflowClient().search_model_versions(f"name='{model_name}'")
    except Exception:
        return None
    for mv in sorted(versions, key=lambda v: int(v.version), reverse=True):
        if (mv.tags or {}).get("svd.lineage_key") == lineage_key:
            return registry.ResolvedModel(mv.name, str(mv.version), mv.run_id or "", dict(mv.tags))
    return None


def step_train_stage(
    cfg: TrainStageConfig,
    data: str | None = None,
    parent: str | None = None,
    ranks: int | None = None,
    max_steps: int | None = None,
    model_name: str | None = None,
    experiment: str = "training",
) -> registry.ResolvedModel:
    """Train one stage (or reuse an identical registered one) and register it with lineage."""
    if parent:
        registry.resolve(parent)  # unknown version: clear error before anything is launched
    resolved, lineage_key = resolve_stage_config(cfg, data, parent, ranks, max_steps)
    name = model_name or STAGE_MODEL_NAMES[resolved.stage]
    existing = find_registered(name, lineage_key)
    if existing is not None:
        return existing
    run_dir = load_settings().home / "runs" / resolved.stage / lineage_key
    data_version = dataset_version(resolved.data.table_uri)
    tags = {"svd.kind": "train", "svd.stage": resolved.stage, "svd.lineage_key": lineage_key}
    with tracking.run(experiment, f"stage-{resolved.stage}", tags) as active:
        tracking.log_config(resolved, "train_config")
        tracking.log_dataset(resolved.data.table_uri, "train_data", data_version, "training")
        with tracking.MetricsTail(run_dir / "metrics.jsonl", active.info.run_id):
            result = run_stage_ranks(resolved, run_dir)
        mlflow.log_dict(asdict(result), "train_result.json")
        if not result.finished or not result.export_dir:
            raise InputError(
                f"stage {resolved.stage} stopped at step {result.step} without an export; see {run_dir}"
            )
        lineage = {
            "svd.stage": resolved.stage,
            "svd.parent_model_version": parent or "",
            "svd.dataset_version": data_version,
            "svd.dataset_uri": resolved.data.table_uri,
            "svd.config_hash": resolved.config_hash(),
            "svd.lineage_key": lineage_key,
            "svd.git_commit": tracking.git_commit(),
            "svd.conditioning": resolved.conditioning,
        }
        model = registry.register_pipeline(
            Path(result.export_dir), name, lineage, SvdVideoModel(), signature=video_signature()
        )
        mlflow.set_tag("svd.registered_model", model.uri)
        return model


train_stage_task = task(name="train-stage")(step_train_stage)


@flow(name="train_stage", log_prints=True)
def train_stage(
    cfg: TrainStageConfig,
    data: str | None = None,
    parent: str | None = None,
    ranks: int | None = None,
    max_steps: int | None = None,
) -> str:
    """Prefect flow: one training stage; returns the registered `models:/` URI (lineage in the run's artifacts)."""
    from flows import deployments  # here, not at the top: flows.deployments imports this module

    model = train_stage_task(cfg, data, parent, ranks, max_steps)
    print(f"registered {model.uri}")
    deployments.publish_run_artifacts(deployments.training_artifacts([model]))
    return model.uri


def step_train_all(
    configs: dict[str, TrainStageConfig],
    data: str | None = None,
    ranks: int | None = None,
    max_steps: int | None = None,
    image_data: str | None = None,
) -> dict[str, str]:
    """I -> II -> III: each stage starts from the previous stage's registered version."""
    uris: dict[str, str] = {}
    parent = None
    for stage in ("image", "video", "finetune"):
        if stage not in configs:
            continue
        stage_data = image_data if stage == "image" and image_data else data
        model = step_train_stage(configs[stage], stage_data, parent, ranks, max_steps)
        uris[stage] = parent = model.uri
    return uris


@flow(name="train_all", log_prints=True)
def train_all(
    configs: dict[str, TrainStageConfig],
    data: str | None = None,
    ranks: int | None = None,
    max_steps: int | None = None,
) -> dict[str, str]:
    """Prefect flow: stages I, II, III in order, handing over through the registry (lineage in the run's
    artifacts)."""
    from flows import deployments  # here, not at the top: flows.deployments imports this module

    uris: dict[str, str] = {}
    models = []
    parent = None
    for stage in ("image", "video", "finetune"):
        if stage in configs:
            model = train_stage_task.with_options(name=f"train-{stage}")(
                configs[stage], data, parent, ranks, max_steps
            )
            uris[stage] = parent = model.uri
            models.append(model)
            print(f"stage {stage}: {model.uri}")
    deployments.publish_run_artifacts(deployments.training_artifacts(models))
    return uris


def result_json(uris: dict[str, Any]) -> str:
    return json.dumps(uris, indent=2)
