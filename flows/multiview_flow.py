"""Multi-view fine-tune (SVD-MV) through the platform: orbit data, training, registration, evaluation.

- `step_make_orbits`: render a synthetic orbit dataset (svd_core.tasks.multiview.orbits).
- `step_train_multiview`: resolve the registered base (must be image-to-video, or a stage-I model for the
  SD2.1-MV baseline), validate every orbit folder, launch the DeepSpeed ranks with the EDM objective, stream
  metrics into MLflow (experiment "training", tags svd.kind=train, svd.stage=multiview) and register the
  export as `svd-mv` with lineage (parent = the base's models:/ URI). A rerun with the same config, base and
  data reuses the registered version.
- `step_evaluate_multiview`: generate held-out orbits and log `mv_psnr`, `mv_ssim` (and `mv_lpips`,
  `mv_clip_s` where weights are configured) on the stage's run, with a table in the paper's format.
The steps are plain functions (the CLI runs them without Prefect); `train_multiview` and `make_orbits` are
the Prefect flows.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from mlflow.pyfunc import PythonModel
from mlflow.tracking import MlflowClient
from prefect import flow, task

from flows.integrations import lineage, registry, tags, tracking
from flows.integrations.training_run import TrainingSpec, pipeline_registrar, tracked_training
from svd_core.config import apply_overrides, validate_config
from svd_core.errors import InputError
from svd_core.tasks.multiview.base import check_base_folder
from svd_core.tasks.multiview.config import MultiViewConfig, OrbitRenderConfig
from svd_core.tasks.multiview.dataset import orbits_version
from svd_core.tasks.multiview.evaluate import MultiViewScores, evaluate_orbits, results_table
from svd_core.tasks.multiview.orbits import make_orbits as render_orbits
from svd_core.tasks.multiview.task import stage_orbits
from svd_core.tasks.multiview.task import train_multiview as run_multiview_ranks

if TYPE_CHECKING:
    from svd_core.tasks.multiview.pipeline import MultiViewPipeline

MODEL_NAME = "svd-mv"
STAGE = "multiview"
TABLE_ARTIFACT = "mv_eval.md"


@dataclass(frozen=True)
class MultiViewRun:
    """A registered multi-view model and where its weights and evaluation live."""

    model: registry.ResolvedModel
    run_id: str
    pipeline_dir: str
    config: MultiViewConfig
    reused: bool


def step_make_orbits(
    out_uri: str, cfg: OrbitRenderConfig, progress: Callable[[str, bool], None] | None = None
) -> list[str]:
    """Render `cfg.objects` orbit folders under `out_uri` (finished objects are kept)."""
    return render_orbits(out_uri, cfg, progress)


@flow(name="make_orbits", log_prints=True)
def make_orbits(out_uri: str, cfg: OrbitRenderConfig) -> list[str]:
    """Prefect flow: render a synthetic orbit dataset."""
    folders = task(name="render-orbits", retries=1)(step_make_orbits)(out_uri, cfg)
    print(f"{len(folders)} orbit folders under {out_uri}")
    return folders


def resolve_multiview_config(
    cfg: MultiViewConfig, base: str, data: str | None = None, max_steps: int | None = None
) -> tuple[MultiViewConfig, str, str, str]:
    """Check the base and the orbit data (before anything is launched) and wire them into the config.

    Returns the resolved config (init.base_uri = the downloaded base folder), the base's version URI
    (`models:/NAME/N`, also when `base` names an alias, so lineage pins the exact parent), the lineage key
    (config without local paths + parent + data version) and the version of the training orbits.
    """
    parent = registry.resolve(base).uri  # unknown model or version: clear error first
    overrides = [f"data.root_uri={data}"] if data else []
    overrides += [f"trainer.max_steps={max_steps}"] if max_steps else []
    if max_steps and cfg.trainer.warmup_steps > max_steps:
        overrides.append(f"trainer.warmup_steps={max_steps}")
    cfg = validate_config(MultiViewConfig, apply_overrides(cfg.to_dict(), overrides), "<multiview config>")
    train, _ = stage_orbits(cfg)  # every folder validated: missing views/cameras fail here
    version = orbits_version(train)
    folder = registry.download_pipeline(parent)
    check_base_folder(folder, cfg.init.base_kind, base)
    keyed = cfg.to_dict()
    for section, key in (
        ("data", "root_uri"),
        ("data", "eval_uri"),
        ("init", "base_uri"),
        ("init", "cache_dir"),
    ):
        keyed[section].pop(key)
    keyed.pop("eval")  # evaluation settings do not change the weights
    key = lineage.lineage_key(keyed, parent, version)
    resolved = validate_config(
        MultiViewConfig, apply_overrides(cfg.to_dict(), [f"init.base_uri={folder}"]), "<multiview config>"
    )
    return resolved, parent, key, version


def step_train_multiview(
    cfg: MultiViewConfig,
    base: str,
    data: str | None = None,
    max_steps: int | None = None,
    model_name: str = MODEL_NAME,
    experiment: str = "training",
) -> MultiViewRun:
    """Fine-tune the registered base into a multi-view model and register it (or reuse an identical one)."""
    resolved, parent, key, version = resolve_multiview_config(cfg, base, data, max_steps)
    spec = TrainingSpec(
        stage=STAGE,
        model_name=model_name,
        config=resolved,
        lineage_key=key,
        data_uri=resolved.data.root_uri,
        data_version=version,
        data_name="orbits",
        parent=parent,
        conditioning="image+elevation",
        version_tags={tags.BASE_KIND: resolved.init.base_kind},
        experiment=experiment,
    )
    trained = tracked_training(
        spec,
        train=lambda run_dir: run_multiview_ranks(resolved, run_dir),
        register=pipeline_registrar(model_name, SvdMultiViewModel()),
    )
    if trained.export_dir is None:  # reused: evaluation reads the registered weights
        folder = str(registry.download_pipeline(trained.model.uri))
    else:
        folder = trained.export_dir
    return MultiViewRun(trained.model, trained.run_id, folder, resolved, reused=trained.reused)


def step_evaluate_multiview(
    run: MultiViewRun, progress: Callable[[str], None] | None = None
) -> MultiViewScores | None:
    """Score the model on the held-out orbits; metrics, the table and per-object scores go to its run.
    None (nothing logged) when the config holds no objects out and names no eval folder."""
    _, held = stage_orbits(run.config)
    if not held:
        return None
    scores = evaluate_orbits(run.pipeline_dir, held, run.config, progress)
    tracking.configure()
    client = MlflowClient()
    for name, value in scores.metrics().items():
        client.log_metric(run.run_id, name, value)
        client.set_model_version_tag(run.model.name, run.model.version, f"svd.{name}", f"{value:.6g}")
    client.log_text(run.run_id, results_table([(method_label(run), scores)]), TABLE_ARTIFACT)
    client.log_dict(run.run_id, scores.to_dict(), "mv_eval.json")
    return scores


def method_label(run: MultiViewRun) -> str:
    origin = "image model (SD2.1-MV recipe)" if run.config.init.base_kind == "image_stage" else "video model"
    return f"{run.model.name}/{run.model.version} from {origin}"


train_multiview_task = task(name="train-multiview")(step_train_multiview)
evaluate_multiview_task = task(name="evaluate-multiview", retries=1)(step_evaluate_multiview)


@flow(name="train_multiview", log_prints=True)
def train_multiview(
    cfg: MultiViewConfig, base: str, data: str | None = None, max_steps: int | None = None
) -> dict[str, Any]:
    """Prefect flow: fine-tune a registered image-to-video model into a multi-view model, register it,
    evaluate it on held-out orbits. Returns the models:/ URI and the metrics."""
    run = train_multiview_task(cfg, base, data, max_steps)
    scores = evaluate_multiview_task(run)
    table = results_table([(method_label(run), scores)]) if scores else "no held-out objects: not evaluated"
    print(f"registered {run.model.uri}\n{table}")
    return {"model_uri": run.model.uri, "metrics": scores.metrics() if scores else {}}


class SvdMultiViewModel(PythonModel):
    """pyfunc of a registered multi-view model: a view + its elevation in, a folder of orbit views out.

    Input columns: `image` (path/URI of the input view), `elevation` (degrees), optional `seed`; params:
    `num_inference_steps`, `out_dir`. Output: `views_dir` with `000.png ...` in azimuth order.
    """

    def load_context(self, context: Any) -> None:
        from svd_core.model.pipeline_io import read_model_info

        self.pipeline_dir = Path(context.artifacts["pipeline"])
        self.info = read_model_info(self.pipeline_dir)
        self._pipe: MultiViewPipeline | None = None

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        from PIL import Image

        from svd_core import storage as svd_io
        from svd_core.tasks.multiview.orbits import png_bytes
        from svd_core.tasks.multiview.pipeline import generate_orbit, load_multiview_pipeline

        params = dict(params or {})
        missing = [c for c in ("image", "elevation") if c not in model_input.columns]
        if missing:
            raise InputError(
                f"multi-view pyfunc input lacks columns {missing}; give image and elevation (degrees)"
            )
        out_dir = Path(params.get("out_dir") or tempfile.mkdtemp(prefix="svd-mv-"))
        if self._pipe is None:
            self._pipe = load_multiview_pipeline(self.pipeline_dir)
        mv = self.info.get("multiview", {})
        dirs = []
        for index, row in model_input.reset_index(drop=True).iterrows():
            with svd_io.local_copy(str(row["image"])) as path:
                image = Image.open(path).convert("RGB")
            views = generate_orbit(
                self._pipe,
                image,
                float(row["elevation"]),
                num_views=int(mv.get("num_views", self.info.get("num_frames", 21))),
                size=int(self.info.get("height", 576)),
                num_inference_steps=int(params.get("num_inference_steps", 25)),
                fps_id=int(mv.get("fps_id", 6)),
                motion_bucket_id=int(mv.get("motion_bucket_id", 127)),
                seed=int(row["seed"]) if "seed" in row and pd.notna(row["seed"]) else 0,
            )
            folder = out_dir / f"orbit_{index}"
            for k, view in enumerate(views):
                svd_io.write_bytes(str(folder / f"{k:03d}.png"), png_bytes(view))
            dirs.append(str(folder))
        return pd.DataFrame({"views_dir": dirs})
