"""Camera-motion LoRA flow: `train_lora` trains one adapter per motion class on a registered image-to-video
base and registers it as its own model (`svd-lora-<class>`) pointing at the base version.

Steps are plain functions (`svd train lora` runs them without Prefect); the flow wraps them in tasks.
The registered version holds only the adapter folder; its pyfunc (`SvdLoraVideoModel`) downloads the base
version named in its model config (a pinned `models:/NAME/N`, never an alias) and generates videos with
the adapter loaded. A rerun with the same config, base version and data reuses the registered version; an
interrupted run resumes from its last checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import pandas as pd
from mlflow.tracking import MlflowClient
from prefect import flow, task

from flows.integrations import lineage, registry, tags
from flows.integrations.pyfunc import SvdVideoModel, log_pyfunc_model
from flows.integrations.training_run import TrainingSpec, TrainOutcome, tracked_training
from svd_core.config import apply_overrides, validate_config
from svd_core.errors import InputError
from svd_core.tasks.lora.config import LoraTrainConfig
from svd_core.tasks.lora.task import train_lora as run_lora_ranks
from svd_core.tasks.lora.task import validate_lora_inputs

ADAPTER_ARTIFACT = "adapter"
BASE_MODEL_KEY = "base_model_uri"
MetricsCallback = Callable[[dict[str, Any]], None]


def lora_model_name(motion_class: str) -> str:
    """Registered model of one motion class's adapters, e.g. `svd-lora-horizontal`."""
    return f"svd-lora-{motion_class}"


def resolve_lora_config(
    cfg: LoraTrainConfig,
    base: registry.ResolvedModel,
    motion: str | None = None,
    data: str | None = None,
    ranks: int | None = None,
    max_steps: int | None = None,
) -> tuple[LoraTrainConfig, str, str]:
    """Apply CLI/flow arguments; returns the config, its lineage key (config without local paths + base
    version + data version) and the data version. `init.pipeline_uri` holds the base's models:/ URI until `with_base_folder`.
    """
    overrides = [f"base_model={base.uri}", "init.kind=pipeline", f"init.pipeline_uri={base.uri}"]
    for key, value in (("motion_class", motion), ("data.table_uri", data), ("trainer.ranks", ranks),
                       ("trainer.max_steps", max_steps)):  # fmt: skip
        if value:
            overrides.append(f"{key}={value}")
    cfg = validate_config(LoraTrainConfig, apply_overrides(cfg.to_dict(), overrides), "<lora config>")
    config = cfg.to_dict()
    for section, key in (("data", "table_uri"), ("init", "pipeline_uri"), ("init", "cache_dir")):
        config[section].pop(key)
    version = lineage.dataset_version(cfg.data.table_uri)
    return cfg, lineage.lineage_key(config, base.uri, version), version


def with_base_folder(cfg: LoraTrainConfig, base: registry.ResolvedModel) -> LoraTrainConfig:
    """Download the base version and point `init.pipeline_uri` at its local pipeline folder."""
    local = registry.download_pipeline(base.uri)
    return validate_config(
        LoraTrainConfig, apply_overrides(cfg.to_dict(), [f"init.pipeline_uri={local}"]), "<lora config>"
    )


def step_train_lora(
    cfg: LoraTrainConfig,
    base: str,
    motion: str | None = None,
    data: str | None = None,
    ranks: int | None = None,
    max_steps: int | None = None,
    experiment: str = "training",
    on_metrics: MetricsCallback | None = None,
) -> registry.ResolvedModel:
    """Train one camera-motion adapter on the registered `base` (or reuse an identical one) and register it.

    Every input is checked before an MLflow run or a rank process starts: the base version exists and is
    image-to-video, the preset matches it, and the table has clips of the class.
    """
    base_model = registry.resolve(base)  # pins an alias (models:/svd@champion) to its version
    resolved, key, data_version = resolve_lora_config(cfg, base_model, motion, data, ranks, max_steps)

    prepared: list[LoraTrainConfig] = []

    def prepare() -> dict[str, int]:
        # Only when nothing can be reused: download the base and check the clips of the class.
        prepared.append(with_base_folder(resolved, base_model))
        return {"num_clips": validate_lora_inputs(prepared[0]).num_clips}

    def train(run_dir: Path) -> TrainOutcome:
        return run_lora_ranks(prepared[0], run_dir, on_metrics=on_metrics)

    spec = TrainingSpec(
        stage="lora",
        model_name=lora_model_name(resolved.motion_class),
        config=resolved,
        lineage_key=key,
        data_uri=resolved.data.table_uri,
        data_version=data_version,
        parent=base_model.uri,
        conditioning="image",
        run_name=f"lora-{resolved.motion_class}",
        run_tags={tags.MOTION_CLASS: resolved.motion_class},
        version_tags={
            tags.MOTION_CLASS: resolved.motion_class,
            tags.LORA_RANK: str(resolved.lora.rank),
            tags.LORA_TARGETS: resolved.lora.target_regex(),
        },
        experiment=experiment,
        run_subdir=resolved.motion_class,
    )
    trained = tracked_training(
        spec,
        train,
        prepare=prepare,
        register=lambda export, lineage_tags: register_adapter(
            export, spec.model_name, lineage_tags, base_model.uri
        ),
    )
    return trained.model


def register_adapter(
    adapter_dir: Path, model_name: str, lineage: dict[str, str], base_uri: str
) -> registry.ResolvedModel:
    """Log the adapter folder as a pyfunc model in the active run and register it with lineage tags."""
    info = log_pyfunc_model(
        SvdLoraVideoModel(),
        {ADAPTER_ARTIFACT: str(adapter_dir)},
        model_name,
        signature=pyfunc_signature(),
        input_example=(pd.DataFrame([{"image": "conditioning.png", "seed": 0}]), {"num_inference_steps": 25}),
        model_config={BASE_MODEL_KEY: base_uri},
    )
    client = MlflowClient()
    version = str(info.registered_model_version)
    for key, value in lineage.items():
        client.set_model_version_tag(model_name, version, key, value)
    return registry.ResolvedModel(model_name, version, info.run_id or "", dict(lineage))


def pyfunc_signature() -> Any:
    """Input columns and predict params; without a params schema MLflow drops every param it is given."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    from svd_core.evaluation.config import SamplingConfig

    inputs = Schema([ColSpec("string", "image"), *(ColSpec("long", name, required=False)
                     for name in ("seed", "num_frames", "fps", "num_inference_steps"))])  # fmt: skip
    kinds = {"fps": "long", "motion_bucket_id": "long", "num_inference_steps": "long",
             "noise_aug_strength": "double", "guidance_scale": "double", "device": "string"}  # fmt: skip
    params = [
        ParamSpec(name, kind, SamplingConfig.model_fields[name].default) for name, kind in kinds.items()
    ]
    params += [ParamSpec("out_dir", "string", ""), ParamSpec("lora_scale", "double", 1.0)]
    return ModelSignature(inputs=inputs, params=ParamSchema(params))


def download_adapter(uri: str) -> Path:
    """Local adapter folder of a registered LoRA version (for svd_core.model.lora_io.load_adapter)."""
    import yaml

    model = registry.resolve(uri)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model.uri))
    spec = yaml.safe_load((local / "MLmodel").read_text()) if (local / "MLmodel").is_file() else {}
    entry = spec.get("flavors", {}).get("python_function", {}).get("artifacts", {}).get(ADAPTER_ARTIFACT)
    if not entry or not (local / entry["path"]).is_dir():
        raise InputError(f"{uri} holds no '{ADAPTER_ARTIFACT}' artifact; is it a LoRA registered by svd?")
    return local / entry["path"]


train_lora_task = task(name="train-lora")(step_train_lora)


@flow(name="train_lora", log_prints=True)
def train_lora(
    cfg: LoraTrainConfig,
    base: str,
    motion: str | None = None,
    data: str | None = None,
    ranks: int | None = None,
    max_steps: int | None = None,
) -> str:
    """Prefect flow: one camera-motion LoRA on a registered base; returns the registered `models:/` URI."""
    model = train_lora_task(cfg, base, motion, data, ranks, max_steps)
    print(f"registered {model.uri}")
    return model.uri


# --- pyfunc ---------------------------------------------------------------------------------------------


class SvdLoraVideoModel(SvdVideoModel):
    """Image in, MP4 out: the base version's pipeline with this adapter loaded.

    Same input as `SvdVideoModel` (an `image` column, optional `seed`, `num_frames`, `fps`,
    `num_inference_steps`); extra param `lora_scale` (default 1.0; 0 samples the base model).
    """

    def load_context(self, context: Any) -> None:
        self.adapter_dir = Path(context.artifacts[ADAPTER_ARTIFACT])
        self.base_uri = (context.model_config or {})[BASE_MODEL_KEY]
        self.pipeline_dir = registry.download_pipeline(self.base_uri)
        self._generators: dict[str, Any] = {}
        self._scale = 1.0

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        params = dict(params or {})
        self._scale = float(params.pop("lora_scale", 1.0))
        return super().predict(context, model_input, params)

    def _generator(self, cfg: Any) -> Any:
        key = cfg.key()
        if key not in self._generators:
            self._generators[key] = LoraImageToVideo(self.pipeline_dir, self.adapter_dir, cfg)
        generator = self._generators[key]
        generator.set_scale(self._scale)
        return generator


class LoraImageToVideo:
    """diffusers' `StableVideoDiffusionPipeline` on the base folder with one adapter loaded into its UNet,
    called with the same settings as svd_core.evaluation.sampling's image-to-video generator."""

    def __init__(self, pipeline_dir: Path, adapter_dir: Path, cfg: Any) -> None:
        from diffusers import StableVideoDiffusionPipeline

        from svd_core.device import resolve_device
        from svd_core.evaluation.sampling import model_info
        from svd_core.model import lora_io

        info = model_info(pipeline_dir)
        self.cfg = cfg
        self.sizes = {
            "num_frames": cfg.num_frames or int(info.get("num_frames", 14)),
            "height": cfg.height or int(info.get("height", 64)),
            "width": cfg.width or int(info.get("width", 64)),
        }
        pipe = StableVideoDiffusionPipeline.from_pretrained(str(pipeline_dir), local_files_only=True)
        self.adapter = lora_io.load_adapter(pipe.unet, adapter_dir, verify_base=True)
        self.pipe = pipe.to(resolve_device(cfg.device))
        self.pipe.set_progress_bar_config(disable=True)

    def set_scale(self, scale: float) -> None:
        from svd_core.model import lora_io

        lora_io.set_adapter_scale(self.pipe.unet, self.adapter, scale)

    def __call__(self, item: Any) -> Any:
        from svd_core.evaluation.sampling import image_to_video

        if not item.image_uri:
            raise InputError(f"input {item.prompt_id} has no conditioning image; a LoRA model needs `image`")
        return image_to_video(self.pipe, item, self.cfg, self.sizes)
