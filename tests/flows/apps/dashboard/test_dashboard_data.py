"""A populated embedded MLflow store for the dashboard tests, written with the platform's real producers.

The dataset build is logged by `flows.dataset_flow.step_track` after `build_filtered` ran on a seeded LVD
table (clip_score left null, as when the CLIP scorer is off); models are registered with
`flows.integrations.registry.register_pipeline` and promoted with `flows.integrations.registry.promote`; a
hand-written study run and an ablation run log the artifacts the evaluation flows write, and a second study
is the real evaluation flow (`flows.eval_flow.run_study`: samples of both svd-video versions on the shipped
eval set, the study design, synthetic votes, the analysis logged to MLflow) with only the diffusion model
replaced by a frame generator (a moving bar; sampling a real pipeline takes minutes on CPU).
`populate_store` returns the numbers the page must show.
(No tests in this module: the dashboard test files import `populate_store`.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from flows.dataset_flow import step_track
from flows.integrations import registry, tracking
from svd_core.curation.config import DatasetBuildConfig
from svd_core.curation.lvd import LvdSummary
from svd_core.curation.publish import ValidationReport, build_filtered, write_table
from svd_core.curation.subsets import synthetic_lvd_table
from svd_core.evaluation import sampling
from svd_core.evaluation.config import EvaluateConfig

LEADERBOARD = pd.DataFrame(
    {
        "model": ["svd-video v2", "svd-video v1", "svd-image v1"],
        "rating": [1043.5, 1001.2, 955.3],
        "lower": [1012.2, 970.4, 921.0],
        "upper": [1077.9, 1030.8, 990.6],
        "n_votes": [120, 118, 122],
        "synthetic": [True, True, True],
    }
)
ABLATION_REPORT = {
    "axis": "text filter",
    "variants": [
        {"variant": "ocr_7pct", "rating": 1021.0, "lower": 1002.5, "upper": 1040.0},
        {"variant": "no_text_filter", "rating": 979.0, "lower": 960.0, "upper": 998.5},
    ],
}


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        return model_input


def _passed(table: pd.DataFrame, funnel: Any, name: str) -> ValidationReport:
    return ValidationReport(success=True, evaluated=7, suites=(f"{name}.table",))


def log_dataset_build(root: Path) -> dict[str, Any]:
    """Publish LVD-F and the LVD-10M subsets from a seeded LVD table and log the build like `svd data build`."""
    cfg = DatasetBuildConfig.model_validate(
        {
            "out": str(root / "data"),
            "filter": {"scores": {"clip_score": {"enabled": False}}},
            "subset": {"size": 120},
        }
    )
    lvd = synthetic_lvd_table(400, seed=3, null_columns=("clip_score",))
    lvd_uri = f"{cfg.lvd_uri}/lvd.parquet"
    write_table(lvd, lvd_uri)
    built = build_filtered(lvd_uri, cfg.curated_uri, cfg.filter, cfg.subset, _passed)
    docs = Path(cfg.curated_uri) / "validation" / "lvd_f"
    docs.mkdir(parents=True)
    (docs / "index.html").write_text("<html><body>GX data docs of lvd_f</body></html>")
    hours = float(lvd["duration_s"].sum()) / 3600
    summary = LvdSummary(100, len(lvd), hours, 2, 12.5, 0, lvd_uri, f"{cfg.lvd_uri}/quarantine.parquet")
    run_id = step_track(cfg, summary, built)
    return {"run_id": run_id, "built": built, "lvd": lvd}


def _curve(steps: int, start: float) -> list[float]:
    return [start / (1 + 0.2 * i) for i in range(steps)]


def log_training(folder: Path, stage: str, model: str, parent: str, dataset_version: str) -> str:
    """A training run with step metrics that registers its (trivial) pipeline; returns the models:/ URI."""
    pipe = folder / f"pipe-{stage}-{len(list(folder.glob('pipe-*')))}"
    pipe.mkdir(parents=True)
    (pipe / "model_index.json").write_text(json.dumps({"_class_name": "StableVideoDiffusionPipeline"}))
    tags = {"svd.kind": "train", "svd.stage": stage}
    with tracking.run("training", f"stage-{stage}", tags):
        for step, loss in enumerate(_curve(25, 2.0 if stage == "image" else 1.5)):
            metrics = {"loss": loss, "lr": 1e-4 * min(1.0, (step + 1) / 5), "grad_norm": 3.0 - 0.05 * step}
            mlflow.log_metrics({**metrics, "samples_per_s": 8.0 + step % 3}, step=step)
        lineage = {
            "svd.stage": stage,
            "svd.parent_model_version": parent,
            "svd.dataset_version": dataset_version,
            "svd.dataset_uri": "",
            "svd.config_hash": f"{stage}hash0123456789",
        }
        model_version = registry.register_pipeline(pipe, model, lineage, Echo())
        mlflow.set_tag("svd.registered_model", model_version.uri)
    return model_version.uri


def _png(path: Path) -> Path:
    fig = Figure(figsize=(2, 2))
    fig.add_subplot(1, 1, 1).imshow([[0.2, 0.8], [0.6, 0.4]])
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png")
    return path


def log_study(folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    LEADERBOARD.to_csv(folder / "leaderboard.csv", index=False)
    summary = {"synthetic": True, "counts": {"votes_analysed": 360, "raters": 6}, "warnings": ["few votes"]}
    (folder / "summary.json").write_text(json.dumps(summary))
    _png(folder / "winrate_all.png")
    with tracking.run("evaluation", "study-s1", {"svd.kind": "study", "svd.synthetic": "true"}) as active:
        mlflow.log_artifacts(str(folder))
        return active.info.run_id


def log_ablation(folder: Path) -> str:
    (folder / "axis_text").mkdir(parents=True, exist_ok=True)
    LEADERBOARD.drop(columns="synthetic").to_csv(folder / "axis_text" / "leaderboard.csv", index=False)
    with tracking.run("evaluation", "ablation-text", {"svd.kind": "ablation"}) as active:
        mlflow.log_artifacts(str(folder))
        mlflow.log_dict(ABLATION_REPORT, "ablation_report.json")
        return active.info.run_id


SAMPLE_FRAMES, SAMPLE_SIZE, SAMPLE_FPS = 14, 64, 7


def moving_bar(shade: int) -> sampling.Generator:
    """Frames for one eval item: a bar sweeping right over a background of `shade` (per model)."""

    def generate(item: Any) -> np.ndarray:
        frames = np.full((SAMPLE_FRAMES, SAMPLE_SIZE, SAMPLE_SIZE, 3), shade, np.uint8)
        frames[..., 2] = (item.seed * 37) % 256  # each prompt its own tint
        for t in range(SAMPLE_FRAMES):
            frames[t, :, 4 * t : 4 * t + 6] = 255
        return frames

    return generate


def log_real_study(models: list[str]) -> dict[str, Any]:
    """`svd eval run --model A --model B synthetic.enabled=true` through `eval_flow.run_study`, with the
    diffusion model swapped for `moving_bar` frames; returns the study id and the logged run."""
    from flows import eval_flow

    cfg = EvaluateConfig.model_validate(
        {
            "sampling": {
                "num_frames": SAMPLE_FRAMES,
                "height": SAMPLE_SIZE,
                "width": SAMPLE_SIZE,
                "fps": SAMPLE_FPS,
            },
            "synthetic": {"enabled": True, "raters": 3},
            "analysis": {"bootstrap_rounds": 20, "paper_elo_orderings": 0},
        }
    )
    shades = iter([200, 90, 140, 60])
    sizes = {"num_frames": SAMPLE_FRAMES, "height": SAMPLE_SIZE, "width": SAMPLE_SIZE}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sampling, "load_generator", lambda folder, sampling_cfg: (moving_bar(next(shades)), sizes))
        result, design = eval_flow.run_study(models, cfg, "dash-study")
    assert result is not None and result.synthetic
    run = mlflow.search_runs(
        search_all_experiments=True, filter_string="tags.`svd.study_id` = 'dash-study'", output_format="list"
    )[0]
    return {"study_id": design.study_id, "run_id": run.info.run_id, "tasks": design.tasks}


def populate_store(root: Path) -> dict[str, Any]:
    """Fill the store SVD_HOME points at; `root` holds the data and the files logged as artifacts."""
    tracking.configure()
    data = log_dataset_build(root)
    lvd_f = data["built"]["datasets"]["lvd_f"]["version"]
    image = log_training(root / "pipes", "image", "svd-image", "", lvd_f)
    video1 = log_training(root / "pipes", "video", "svd-video", image, lvd_f)
    video2 = log_training(root / "pipes", "video", "svd-video", image, lvd_f)
    registry.promote("svd-video", "1", {"reason": "first video model"})
    registry.promote("svd-video", "2", {"win_rate_lower": "0.61"})
    return {
        **data,
        "models": {"image": image, "video1": video1, "video2": video2},
        "study_run": log_study(root / "study"),
        "ablation_run": log_ablation(root / "ablation"),
        "real_study": log_real_study([video2, video1]),
    }
