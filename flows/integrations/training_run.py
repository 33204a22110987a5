"""The one train -> track -> register template every training flow uses (`tracked_training`).

A training flow resolves its inputs (config, pinned parent, data version, lineage key) into a
`TrainingSpec` and hands over two callables: `train(run_dir)` launches the ranks, `register(export_dir,
lineage)` logs the exported folder as a model. The template does the rest, the same way for every task:
reuse a registered version with the same lineage key, otherwise open the MLflow run, log the config and
the dataset, stream metrics.jsonl while the ranks run, check the export, register it with the lineage
tags, and link the run to the version.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, Protocol

import mlflow

from flows.integrations import lineage, registry, tags, tracking
from flows.settings import load_settings
from svd_core.config import StageConfig
from svd_core.errors import InputError


class TrainOutcome(Protocol):
    """What a task's rank launcher returns (svd_core.training.trainer.TrainResult has these fields)."""

    finished: bool
    step: int
    export_dir: str | None


@dataclass(frozen=True)
class TrainingSpec:
    """Everything the template needs to know about one training run, resolved before anything starts."""

    stage: str
    """`svd.stage` tag and run-folder name: image, video, finetune, lora, interpolation, multiview."""
    model_name: str
    """Registered model the export goes to."""
    config: StageConfig
    """The resolved config, logged as params and as an artifact."""
    lineage_key: str
    """`lineage.lineage_key(...)`: equal keys reuse the registered version."""
    data_uri: str
    data_version: str
    parent: str = ""
    """Exact parent version `models:/NAME/N` (or a folder path, or empty for a model trained from scratch)."""
    conditioning: str = "image"
    run_name: str = ""
    """MLflow run name; default `stage-<stage>`."""
    data_name: str = "train_data"
    """Name of the MLflow dataset input."""
    run_tags: Mapping[str, str] = field(default_factory=dict)
    """Extra run tags (on top of kind, stage and lineage key)."""
    version_tags: Mapping[str, str] = field(default_factory=dict)
    """Task-specific lineage tags for the registered version (on top of `tags.LINEAGE`)."""
    experiment: str = "training"
    run_subdir: str = ""
    """Run folder under SVD_HOME/runs/<stage>/ (before the lineage key), e.g. a LoRA's motion class."""

    def run_dir(self) -> Path:
        base = load_settings().home / "runs" / self.stage
        return (base / self.run_subdir if self.run_subdir else base) / self.lineage_key

    def lineage(self) -> dict[str, str]:
        return {
            tags.STAGE: self.stage,
            tags.PARENT_MODEL_VERSION: self.parent,
            tags.DATASET_VERSION: self.data_version,
            tags.DATASET_URI: self.data_uri,
            tags.CONFIG_HASH: self.config.config_hash(),
            tags.LINEAGE_KEY: self.lineage_key,
            tags.GIT_COMMIT: tracking.git_commit(),
            tags.CONDITIONING: self.conditioning,
            **self.version_tags,
        }


@dataclass(frozen=True)
class TrainedModel:
    model: registry.ResolvedModel
    run_id: str
    """The MLflow run that trained it (for a reused version: the run recorded on the version)."""
    export_dir: str | None
    """Local export folder; None for a reused version (download it with registry.download_pipeline)."""
    reused: bool


def tracked_training(
    spec: TrainingSpec,
    train: Callable[[Path], TrainOutcome],
    register: Callable[[Path, dict[str, str]], registry.ResolvedModel],
    prepare: Callable[[], Mapping[str, Any]] | None = None,
) -> TrainedModel:
    """Reuse the registered version with `spec.lineage_key`, or train, track and register a new one.

    `prepare()` runs only when nothing can be reused, before the MLflow run opens: expensive checks and
    downloads go there, so bad input fails without leaving a run behind; it returns params to log.
    """
    existing = lineage.find_registered(spec.model_name, spec.lineage_key)
    if existing is not None:
        return TrainedModel(existing, existing.run_id, None, reused=True)
    params = prepare() if prepare else {}
    run_dir = spec.run_dir()
    run_tags = {
        tags.KIND: "train",
        tags.STAGE: spec.stage,
        tags.LINEAGE_KEY: spec.lineage_key,
        **spec.run_tags,
    }
    run_name = spec.run_name or f"stage-{spec.stage}"
    with tracking.run(spec.experiment, run_name, run_tags, system_metrics=True) as active:
        tracking.log_config(spec.config, "train_config")
        tracking.log_dataset(spec.data_uri, spec.data_name, spec.data_version, "training")
        if params:
            mlflow.log_params(dict(params))
        with tracking.MetricsTail(run_dir / "metrics.jsonl", active.info.run_id):
            result = train(run_dir)
        mlflow.log_dict(_as_dict(result), "train_result.json")
        if not result.finished or not result.export_dir:
            raise InputError(
                f"{spec.stage} training stopped at step {result.step} without an export; see {run_dir}"
            )
        model = register(Path(result.export_dir), spec.lineage())
        mlflow.set_tag(tags.REGISTERED_MODEL, model.uri)
        return TrainedModel(model, active.info.run_id, result.export_dir, reused=False)


def pipeline_registrar(
    model_name: str, python_model: Any, signature: Any = None, input_example: Any = None
) -> Callable[[Path, dict[str, str]], registry.ResolvedModel]:
    """The `register` callable for a task whose export is a pipeline folder (registry.register_pipeline)."""

    def register(export_dir: Path, lineage_tags: dict[str, str]) -> registry.ResolvedModel:
        return registry.register_pipeline(
            export_dir,
            model_name,
            lineage_tags,
            python_model,
            signature=signature,
            input_example=input_example,
        )

    return register


def _as_dict(result: Any) -> dict[str, Any]:
    if is_dataclass(result) and not isinstance(result, type):
        return asdict(result)
    return dict(vars(result))
