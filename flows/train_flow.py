"""Training flows: `train_stage` (one stage, tracked and registered) and `train_all` (I -> II -> III,
handing over through the registry).

The steps are plain functions (`svd train ...` runs them without Prefect); the flows wrap them in tasks.
Each stage: resolve the parent registered version to a local pipeline folder, launch the DeepSpeed ranks
(svd_core.tasks.stages.task.train_stage), stream metrics.jsonl into MLflow while they run, then register the
exported pipeline as a pyfunc model with lineage tags. A rerun with the same config, parent and dataset
reuses the registered version; an interrupted run resumes from its last checkpoint.
"""

from __future__ import annotations

import json
from typing import Any

from prefect import flow, task

from flows import reporting
from flows.integrations import lineage, registry
from flows.integrations.pyfunc import SvdVideoModel, video_input_example, video_signature
from flows.integrations.training_run import TrainingSpec, pipeline_registrar, tracked_training
from svd_core.config import apply_overrides, validate_config
from svd_core.tasks.stages.config import TrainStageConfig
from svd_core.tasks.stages.task import train_stage as run_stage_ranks

STAGE_MODEL_NAMES = {"image": "svd-image", "video": "svd-video", "finetune": "svd"}
"""Registered model per stage; stage III (`svd`) is the product model that evaluation promotes."""


def resolve_stage_config(
    cfg: TrainStageConfig,
    data: str | None = None,
    parent: str | None = None,
    ranks: int | None = None,
    max_steps: int | None = None,
) -> tuple[TrainStageConfig, str, str]:
    """Apply CLI/flow arguments; a `models:/` parent (already pinned to `models:/NAME/N` by
    `lineage.pin_parent`) is downloaded and wired into `init`.

    Returns the resolved config, the lineage key (config without local paths + parent + data version) and
    the data version.
    """
    overrides = []
    if data:
        overrides.append(f"data.table_uri={data}")
    if ranks:
        overrides.append(f"trainer.ranks={ranks}")
    if max_steps:
        overrides.append(f"trainer.max_steps={max_steps}")
    cfg = validate_config(TrainStageConfig, apply_overrides(cfg.to_dict(), overrides), "<train config>")
    version = lineage.dataset_version(cfg.data.table_uri)
    # The data enters the key by content, not location: a republished identical table reuses the model;
    # the parent by its exact version, so a moved alias trains a new model.
    config = cfg.to_dict()
    config["data"].pop("table_uri")
    key = lineage.lineage_key(config, parent or "", version)
    if parent:
        local = str(registry.download_pipeline(parent))
        field = "init.image_unet_uri" if cfg.stage == "video" else "init.pipeline_uri"
        kind = "inflate" if cfg.stage == "video" else "pipeline"
        cfg = validate_config(
            TrainStageConfig,
            apply_overrides(cfg.to_dict(), [f"init.kind={kind}", f"{field}={local}"]),
            "<train config>",
        )
    return cfg, key, version


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
    pinned = lineage.pin_parent(parent)  # unknown version: clear error before anything is launched
    resolved, key, data_version = resolve_stage_config(cfg, data, pinned or None, ranks, max_steps)
    spec = TrainingSpec(
        stage=resolved.stage,
        model_name=model_name or STAGE_MODEL_NAMES[resolved.stage],
        config=resolved,
        lineage_key=key,
        data_uri=resolved.data.table_uri,
        data_version=data_version,
        parent=pinned,
        conditioning=resolved.conditioning,
        experiment=experiment,
    )
    trained = tracked_training(
        spec,
        train=lambda run_dir: run_stage_ranks(resolved, run_dir),
        register=pipeline_registrar(
            spec.model_name, SvdVideoModel(), video_signature(), video_input_example(resolved.conditioning)
        ),
    )
    return trained.model


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

    model = train_stage_task(cfg, data, parent, ranks, max_steps)
    print(f"registered {model.uri}")
    reporting.publish_run_artifacts(reporting.training_artifacts([model]))
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
    reporting.publish_run_artifacts(reporting.training_artifacts(models))
    return uris


def result_json(uris: dict[str, Any]) -> str:
    return json.dumps(uris, indent=2)
