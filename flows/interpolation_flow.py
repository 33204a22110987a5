"""Frame interpolation through the platform: `train_interpolation` (finetune a registered image-to-video
model, track it, register it with lineage) and `step_interpolate` (`svd interpolate`).

The steps are plain functions (the CLI runs them without Prefect); the flow wraps the training step in a
task. A rerun with the same config, base and data reuses the registered version; an interrupted run
resumes from its last checkpoint (the run directory is keyed by the same lineage key).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.pyfunc import PythonModel
from prefect import flow, task

from flows.integrations import lineage, registry, tags
from flows.integrations.training_run import TrainingSpec, pipeline_registrar, tracked_training
from svd_core.config import apply_overrides, validate_config
from svd_core.data.video_dataset import resolve_table_uri
from svd_core.errors import InputError
from svd_core.model.pipeline_io import resolve_pipeline_dir
from svd_core.tasks.interpolation import infer
from svd_core.tasks.interpolation.config import InterpolateConfig, InterpolationConfig
from svd_core.tasks.interpolation.model import STAGE
from svd_core.tasks.interpolation.task import check_config
from svd_core.tasks.interpolation.task import train_interpolation as run_interpolation_ranks

MODEL_NAME = "svd-interpolation"
ROW_SETTINGS = ("seed", "num_inference_steps", "batch_size")
"""InterpolateConfig fields the pyfunc also reads from input columns."""


def local_pipeline(uri: str) -> Path:
    """models:/NAME/N or @alias (resolved and downloaded) or a pipeline folder (local or s3://)."""
    if uri.startswith("models:/"):
        registry.resolve(uri)  # unknown name/version: clear error before any download
        return registry.download_pipeline(uri)
    return resolve_pipeline_dir(uri)


def resolve_interpolation_config(
    cfg: InterpolationConfig, base: str | None = None, data: str | None = None, max_steps: int | None = None
) -> tuple[InterpolationConfig, str, str, str]:
    """Apply CLI arguments, fetch the base and check it; returns (config, lineage key, base reference,
    data version).

    Fails (InputError/ConfigError) before anything is trained: unreadable data, a base that is not
    image-to-video, a resolution the base cannot take.
    """
    overrides = [f"data.table_uri={data}"] if data else []
    if max_steps:
        overrides.append(f"trainer.max_steps={max_steps}")
    cfg = validate_config(InterpolationConfig, apply_overrides(cfg.to_dict(), overrides), "<interpolation>")
    parent = lineage.pin_parent(base or cfg.base_uri)  # an alias is pinned to the version it names now
    if not parent:
        raise InputError("no base model: pass --base models:/NAME/N (an image-to-video model)")
    table = resolve_table_uri(cfg.data.table_uri)
    version = lineage.dataset_version(table)
    folder = local_pipeline(parent)
    cfg = validate_config(
        InterpolationConfig,
        apply_overrides(cfg.to_dict(), [f"base_uri={folder}", f"data.table_uri={table}"]),
        "<interpolation>",
    )
    check_config(cfg)
    # The key names the base by its reference and the data by content, not by local paths.
    config = cfg.to_dict()
    config["data"].pop("table_uri")
    config.pop("base_uri")
    return cfg, lineage.lineage_key(config, parent, version), parent, version


def step_train_interpolation(
    cfg: InterpolationConfig,
    base: str | None = None,
    data: str | None = None,
    max_steps: int | None = None,
    model_name: str = MODEL_NAME,
    experiment: str = "training",
) -> registry.ResolvedModel:
    """Finetune `base` into an interpolation model (or reuse an identical registered one); register it."""
    resolved, key, parent, data_version = resolve_interpolation_config(cfg, base, data, max_steps)
    spec = TrainingSpec(
        stage=STAGE,
        model_name=model_name,
        config=resolved,
        lineage_key=key,
        data_uri=resolved.data.table_uri,
        data_version=data_version,
        parent=parent,
        conditioning="image",
        version_tags={tags.INTERPOLATION_FACTOR: str(resolved.num_frames - 1)},
        experiment=experiment,
    )
    trained = tracked_training(
        spec,
        train=lambda run_dir: run_interpolation_ranks(resolved, run_dir),
        register=pipeline_registrar(model_name, SvdInterpolationModel()),
    )
    return trained.model


train_interpolation_task = task(name="train-interpolation")(step_train_interpolation)


@flow(name="train_interpolation", log_prints=True)
def train_interpolation(
    cfg: InterpolationConfig,
    base: str | None = None,
    data: str | None = None,
    max_steps: int | None = None,
) -> str:
    """Prefect flow: the interpolation finetune; returns the registered `models:/` URI."""
    model = train_interpolation_task(cfg, base, data, max_steps)
    print(f"registered {model.uri}")
    return model.uri


def step_interpolate(
    video: str,
    model: str,
    out: str,
    cfg: InterpolateConfig | None = None,
    progress: infer.Progress | None = None,
) -> dict[str, Any]:
    """`svd interpolate`: the video is read and checked before the model is resolved or loaded."""
    cfg = cfg or InterpolateConfig()
    frames, fps = infer.read_video(video)
    interp = infer.load_interpolator(local_pipeline(model), cfg.device)
    result, out_fps = infer.interpolate_frames(interp, frames, fps, cfg, progress)
    path = infer.write_video(result, out, out_fps)
    return {
        "out": path,
        "frames_in": len(frames),
        "frames_out": len(result),
        "fps_in": fps,
        "fps_out": out_fps,
    }


class SvdInterpolationModel(PythonModel):
    """pyfunc of a registered interpolation model: a `video` column (path/URI) in, `video_path` out.

    Optional columns `seed`, `num_inference_steps`, `batch_size`; params (when the signature carries
    them): the same plus `device` and `out_dir`.
    """

    def load_context(self, context: Any) -> None:
        self.pipeline_dir = Path(context.artifacts["pipeline"])
        self._loaded: dict[str, infer.Interpolator] = {}

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        params = dict(params or {})
        out_dir = Path(params.pop("out_dir", None) or tempfile.mkdtemp(prefix="svd-interpolate-"))
        if "video" not in model_input.columns:
            raise InputError("pyfunc input needs a `video` column (path or URI of the video to interpolate)")
        paths = []
        for index, row in model_input.reset_index(drop=True).iterrows():
            # Columns too: MLflow drops `params` for a model logged without a params schema.
            columns = {k: int(row[k]) for k in ROW_SETTINGS if k in row and pd.notna(row[k])}
            cfg = InterpolateConfig(**{**params, **columns})
            frames, fps = infer.read_video(str(row["video"]))
            if cfg.device not in self._loaded:
                self._loaded[cfg.device] = infer.load_interpolator(self.pipeline_dir, cfg.device)
            result, out_fps = infer.interpolate_frames(self._loaded[cfg.device], frames, fps, cfg)
            paths.append(infer.write_video(result, out_dir / f"video_{index}.mp4", out_fps))
        return pd.DataFrame({"video_path": paths})
