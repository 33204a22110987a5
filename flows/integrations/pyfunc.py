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

MODEL_CODE_FILE = "svd_pyfunc_model.py"
"""The models-from-code entry file MLflow stores beside each registered version's artifacts."""


def model_code_file(python_model: PythonModel, folder: Path) -> str | PythonModel:
    """Write MLflow's models-from-code file for `python_model`'s class and return its path.

    Logged as code, a version names the class it runs (`from flows.integrations.pyfunc import SvdVideoModel`)
    instead of holding a cloudpickle of it: loading it runs the platform's installed code, and an upgrade of
    Python or cloudpickle cannot make an old version unreadable. Our pyfunc classes keep no state before
    `load_context` (everything comes from the artifacts and `model_config`), so the class alone rebuilds the
    model. A class defined in `__main__` or an instance carrying state cannot be named by import; those are
    logged as the object itself (MLflow's cloudpickle path), as MLflow does.
    """
    cls = type(python_model)
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__ or vars(python_model):
        return python_model
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / MODEL_CODE_FILE
    path.write_text(
        "# MLflow models-from-code entry written by svd-mlops: the class is imported, not unpickled.\n"
        "import mlflow.models\n"
        f"from {cls.__module__} import {cls.__qualname__}\n\n"
        f"mlflow.models.set_model({cls.__qualname__}())\n"
    )
    return str(path)


def log_pyfunc_model(
    python_model: PythonModel,
    artifacts: dict[str, str],
    registered_model_name: str,
    signature: Any = None,
    input_example: Any = None,
    model_config: dict[str, Any] | None = None,
) -> Any:
    """Log a pyfunc model as code into the active run and register it; returns MLflow's ModelInfo.

    `mlflow.pyfunc.log_model` would also *serve* the input example once to validate it, i.e. sample a
    whole video at registration time (minutes for the 1.5B UNet); `Model.log` with
    `validate_serving_input=False` keeps MLflow's cheap check of the example against the signature
    ("Validating input example against model signature") and skips that sampling.
    """
    from mlflow.models import Model

    with tempfile.TemporaryDirectory(prefix="svd-pyfunc-") as tmp:
        model = model_code_file(python_model, Path(tmp))
        return Model.log(
            artifact_path=None,  # MLflow 3 names logged models by `name`
            name="model",
            flavor=_PyfuncFlavor,
            # the names mlflow.pyfunc.log_model records for the two cases
            flavor_name="pyfunc.ModelFromCode" if isinstance(model, str) else "pyfunc.CustomPythonModel",
            python_model=model,
            artifacts=artifacts,
            model_config=model_config,
            signature=signature,
            input_example=input_example,
            registered_model_name=registered_model_name,
            pip_requirements=[],  # the platform's lock file defines the environment
            validate_serving_input=False,
        )


class _PyfuncFlavor:
    """`mlflow.pyfunc` as `Model.log`'s flavor, taking the `validate_serving_input` switch that
    `Model.log` reads but `mlflow.pyfunc.save_model` rejects (MLflow's transformers flavor passes the same
    switch; pyfunc's `log_model` offers no way to)."""

    __name__ = "mlflow.pyfunc"

    @staticmethod
    def save_model(**kwargs: Any) -> Any:
        import mlflow.pyfunc

        kwargs.pop("validate_serving_input", None)
        return mlflow.pyfunc.save_model(**kwargs)


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
