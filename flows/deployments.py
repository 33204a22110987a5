"""Scheduled and event-triggered deployments (see prefect.yaml) and the Prefect artifacts every flow run ends with.

Entry points: the real flows take pydantic configs, which a deployment cannot hold sensibly (a whole config
as a parameter is replaced as a block, never merged). So each deployment runs a thin entry flow that takes a
config *path* plus dotted overrides, exactly like the CLI (`--config FILE key=value ...`), loads it with
`svd_core.config.load_config` and calls the real flow as a subflow:

- `build_dataset_from_config(config, overrides)` -> `dataset_flow.build_dataset` (nightly cron)
- `build_lvd_from_config(source, out, config, overrides)` -> `lvd_flow.build_lvd_flow` on the task runner the
  config names (threads, local Dask processes, a Dask scheduler): the LVD step alone, on demand
- `train_all_from_config(data, configs, overrides, stage_overrides, ranks, max_steps)` -> `train_flow.train_all` (run by the
  `svd.dataset.published` event that `build_dataset` emits for each new dataset version); the stage-III
  version it registers becomes `@candidate`
- `promote_candidate(model_name, config, overrides)` -> `eval_flow.promote_challenger` on `@candidate` (weekly
  cron). The challenger is what the alias names (set by the scheduled training, or by hand with `svd models
  alias models:/svd/N candidate`), never "the highest version", which anyone's debug run can be.

Relative paths (configs, data) are taken from the working directory, which prefect.yaml's pull step sets to
a clone of the repository at the deployment's commit; shipped configs also resolve from the package. Artifacts: `publish_run_artifacts(RunArtifacts)` writes one markdown summary (with
links to the team dashboard) and the tables; the `*_artifacts` builders are plain functions of the results.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

import flows.integrations.s3  # noqa: F401  (configs, data and outputs may live on s3://)
from flows import reporting
from svd_core.config import load_config
from svd_core.errors import ConfigError, InputError

# The flow modules are imported inside the entry flows: each pulls in a different heavy stack (a dataset
# build's flow-run process need not import diffusers, a training run need not import Great Expectations).

DEFAULT_BUILD_CONFIG = "configs/data/build.yaml"
DEFAULT_EVAL_CONFIG = "configs/eval/evaluate.yaml"
DEFAULT_LVD_CONFIG = "configs/data/lvd.yaml"
DEFAULT_TRAIN_CONFIGS = {stage: f"configs/train/{stage}.yaml" for stage in ("image", "video", "finetune")}
"""Stage -> config of `train_all` (the stages of train_flow.STAGE_MODEL_NAMES, in training order)."""
PRODUCT_MODEL = "svd"
"""The stage-III registered model that evaluation promotes (train_flow.STAGE_MODEL_NAMES["finetune"])."""


# --- deployment entry points ---------------------------------------------------------------------------
@flow(name="build_dataset_from_config", log_prints=True)
def build_dataset_from_config(
    config: str = DEFAULT_BUILD_CONFIG, overrides: list[str] | None = None
) -> dict[str, Any]:
    """Deployment entry: load a DatasetBuildConfig YAML (+ dotted overrides such as `source=...`) and run
    the `build_dataset` flow."""
    from flows import dataset_flow
    from svd_core.curation.config import DatasetBuildConfig

    cfg = load_config(DatasetBuildConfig, config, overrides or ())
    return dataset_flow.build_dataset(cfg)


@flow(name="build_lvd_from_config", log_prints=True)
def build_lvd_from_config(
    source: str = "data/raw",
    out: str = "data/lvd",
    config: str = DEFAULT_LVD_CONFIG,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Deployment entry: the LVD build alone (`flows.lvd_flow`) on the task runner its config names:
    threads, a local Dask cluster, or an existing Dask scheduler (run.task_runner=dask run.dask_address=...).
    With `out` = a dataset build's OUT/lvd, the next `build_dataset` run reuses every finished video."""
    from dataclasses import asdict

    from flows.lvd_flow import run_build_lvd

    summary = asdict(run_build_lvd(source, out, config, overrides or ()))
    reporting.publish_run_artifacts(reporting.lvd_artifacts(summary))
    return summary


@flow(name="train_all_from_config", log_prints=True)
def train_all_from_config(
    data: str | None = None,
    configs: dict[str, str] | None = None,
    overrides: list[str] | None = None,
    stage_overrides: dict[str, list[str]] | None = None,
    ranks: int | None = None,
    max_steps: int | None = None,
) -> dict[str, str]:
    """Deployment entry: stage -> TrainStageConfig YAML (default: configs/train/{image,video,finetune}.yaml),
    `overrides` applied to every stage then `stage_overrides[stage]` to that one, then `train_all` on `data`
    (the event's new table; None keeps each config's data.table_uri)."""
    from flows import train_flow
    from svd_core.tasks.stages.config import TrainStageConfig

    paths = configs or DEFAULT_TRAIN_CONFIGS
    per_stage = stage_overrides or {}
    unknown = sorted((set(paths) | set(per_stage)) - set(DEFAULT_TRAIN_CONFIGS))
    if unknown:
        raise ConfigError(
            f"configs/stage_overrides: unknown stage(s) {unknown}; use {list(DEFAULT_TRAIN_CONFIGS)}"
        )
    stage_cfgs = {
        stage: load_config(TrainStageConfig, path, [*(overrides or ()), *per_stage.get(stage, ())])
        for stage, path in paths.items()
    }
    uris = train_flow.train_all(stage_cfgs, data, ranks, max_steps)
    if "finetune" in uris:  # the scheduled training's product is next week's challenger
        from flows.integrations import registry

        registry.set_alias(uris["finetune"], registry.CANDIDATE)
        print(f"@{registry.CANDIDATE}: {uris['finetune']}")
    return uris


def candidate_version(model_name: str) -> str:
    """`models:/NAME/N` that `@candidate` names; a clear error when no version carries the alias."""
    from flows.integrations import registry

    alias_uri = f"models:/{model_name}@{registry.CANDIDATE}"
    model = registry.resolve_or_none(alias_uri)
    if model is None:
        raise InputError(
            f"{alias_uri} is not set; the scheduled training sets it, or choose the challenger by hand: "
            f"svd models alias models:/{model_name}/N {registry.CANDIDATE}"
        )
    return model.uri


@flow(name="promote_candidate", log_prints=True)
def promote_candidate(
    model_name: str = PRODUCT_MODEL, config: str = DEFAULT_EVAL_CONFIG, overrides: list[str] | None = None
) -> dict[str, Any]:
    """Deployment entry: `@candidate` of `model_name` vs `@champion` (`promote_challenger`)."""
    from flows import eval_flow
    from svd_core.evaluation.config import EvaluateConfig

    cfg = load_config(EvaluateConfig, config, overrides or ())
    challenger = candidate_version(model_name)
    print(f"challenger: {challenger}")
    return eval_flow.promote_challenger(challenger, cfg)
