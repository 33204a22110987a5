"""MLflow pyfunc flavour of a registered SVD pipeline: an image or a prompt in, an MP4 file out.

Input: a DataFrame with a `prompt` column (text-to-video) or an `image` column (a path/URI of a
conditioning image, image-to-video), optional `seed` and per-row `num_frames`, `fps`, `num_inference_steps`
(all declared in the signature: MLflow drops undeclared columns); output: a DataFrame with `video_path` (an
MP4 written under `params["out_dir"]` or a temp folder). The sampling params of `predict(..., params=...)`
are declared as an MLflow `ParamSchema` (`video_signature`); `video_input_example` is a valid request.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.pyfunc import PythonModel


def video_signature() -> Any:
    """Input columns, output column and the sampling params `predict(..., params=...)` accepts."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    inputs = Schema([
        ColSpec("string", "prompt", required=False),
        ColSpec("string", "image", required=False),
        ColSpec("long", "seed", required=False),
        *(ColSpec("long", name, required=False) for name in ROW_OVERRIDES),
    ])  # fmt: skip
    params = ParamSchema([
        ParamSpec("num_frames", "long", 0),  # 0: the frame count the model was trained with
        ParamSpec("num_inference_steps", "long", 25),
        ParamSpec("fps", "long", 7),
        ParamSpec("motion_bucket_id", "long", 127),
        ParamSpec("noise_aug_strength", "double", 0.02),
        ParamSpec("guidance_scale", "double", 3.0),
        ParamSpec("out_dir", "string", ""),
    ])  # fmt: skip
    return ModelSignature(inputs=inputs, outputs=Schema([ColSpec("string", "video_path")]), params=params)


ROW_OVERRIDES = ("num_frames", "fps", "num_inference_steps")
"""Per-row columns that override the params of the same name for that row."""


def video_input_example(conditioning: str = "image") -> tuple[pd.DataFrame, dict[str, Any]]:
    """A request the signature accepts: one row and the params (for `log_model(input_example=...)`)."""
    row: dict[str, Any] = {"seed": 0, "fps": 7}
    row.update({"image": "conditioning.png"} if conditioning == "image" else {"prompt": "a red ball rolling"})
    return pd.DataFrame([row]), {"num_inference_steps": 25, "num_frames": 0}


class SvdVideoModel(PythonModel):
    def load_context(self, context: Any) -> None:
        self.pipeline_dir = Path(context.artifacts["pipeline"])
        self._generators: dict[str, Any] = {}

    def _generator(self, cfg: Any) -> Any:
        from svd_core.evaluation.sampling import load_generator

        key = cfg.key()
        if key not in self._generators:
            self._generators[key] = load_generator(self.pipeline_dir, cfg)[0]
        return self._generators[key]

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        from svd_core.errors import InputError
        from svd_core.evaluation.config import SamplingConfig
        from svd_core.evaluation.evalsets import EvalItem
        from svd_core.video.writer import write_mp4

        params = dict(params or {})
        out_dir = Path(params.pop("out_dir", None) or tempfile.mkdtemp(prefix="svd-predict-"))
        if not params.get("num_frames"):
            params.pop("num_frames", None)  # 0 / absent: the model's own frame count
        if "prompt" not in model_input.columns and "image" not in model_input.columns:
            raise InputError("pyfunc input needs a `prompt` or an `image` column")
        paths = []
        for index, row in model_input.reset_index(drop=True).iterrows():
            overrides = {k: row[k] for k in ROW_OVERRIDES if k in row and pd.notna(row[k])}
            cfg = SamplingConfig(**{**params, **{k: int(v) for k, v in overrides.items()}})
            image = row.get("image") if "image" in row else None
            item = EvalItem(
                prompt_id=f"row{index}",
                prompt=str(row.get("prompt") or ""),
                image_uri=str(image) if isinstance(image, str) and image else None,
                seed=int(row["seed"]) if "seed" in row and pd.notna(row["seed"]) else 0,
            )
            frames = self._generator(cfg)(item)
            paths.append(str(write_mp4(frames, out_dir / f"video_{index}.mp4", fps=cfg.fps)))
        return pd.DataFrame({"video_path": paths})
