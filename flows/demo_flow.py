"""`svd demo`: the whole loop on the embedded default, in minutes on a 2-core CPU with the `tiny` model.

sample raw videos -> LVD -> LVD-F behind the GX gate -> stages I, II, III -> registry -> a second stage-III
variant (the challenger) -> samples -> a study rated by the synthetic rater -> promotion -> dashboard.

Every step is idempotent: a second run finds the sample set, the LVD parts, the registered versions (same
config, parent and data) and the finished samples, and reuses them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import Field

from svd_core.config import StageConfig
from svd_core.curation.config import DatasetBuildConfig
from svd_core.evaluation.config import EvaluateConfig
from svd_core.tasks.stages.config import TrainStageConfig


class DemoConfig(StageConfig):
    """The demo's choices; every section is the same config the stage commands take."""

    workdir: str = "demo"
    """Folder under the SVD home for the demo's raw videos and datasets."""
    seed: int = 0
    """Seed of the generated sample videos."""
    dataset: DatasetBuildConfig = DatasetBuildConfig()
    """Dataset build (source/out are set to the demo folder)."""
    image: TrainStageConfig = TrainStageConfig(stage="image", num_frames=1)
    """Stage I."""
    video: TrainStageConfig = TrainStageConfig(
        stage="video", init={"kind": "inflate", "image_unet_uri": "parent"}
    )
    """Stage II (initialised from the registered stage-I version)."""
    finetune: TrainStageConfig = TrainStageConfig(
        stage="finetune", init={"kind": "pipeline", "pipeline_uri": "parent"}
    )
    """Stage III (from the registered stage-II version)."""
    challenger_extra_steps: int = Field(20, ge=1)
    """The challenger is stage III trained this many more steps; the study decides which is better."""
    evaluation: EvaluateConfig = EvaluateConfig()
    """Promotion study (the demo enables the synthetic rater)."""


@contextmanager
def _timed(name: str, timings: dict[str, float], say: Callable[[str], None]) -> Iterator[None]:
    say(f"{name}...")
    start = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - start, 1)
    say(f"{name}: done in {timings[name]:.1f}s")


def _runners(use_prefect: bool) -> dict[str, Callable[..., Any]]:
    """The same steps, either as Prefect flows (visible in the Prefect UI) or as plain functions."""
    from flows import dataset_flow, eval_flow, train_flow

    if use_prefect:
        return {
            "build": dataset_flow.build_dataset,
            "train": train_flow.train_stage,
            "promote": eval_flow.promote_challenger,
        }
    return {
        "build": dataset_flow.run_build,
        "train": lambda *a, **k: train_flow.step_train_stage(*a, **k).uri,
        "promote": eval_flow.run_promotion,
    }


def run_demo(
    cfg: DemoConfig, home: Path, say: Callable[[str], None], use_prefect: bool = True
) -> dict[str, Any]:
    from svd_core.video.sample import write_sample_set

    run = _runners(use_prefect)
    timings: dict[str, float] = {}
    work = home / cfg.workdir
    raw = work / "raw"
    out: dict[str, Any] = {"timings_s": timings}
    with _timed("1/7 sample raw videos", timings, say):
        if not (raw / "ground_truth.json").is_file():
            write_sample_set(raw, seed=cfg.seed)
    with _timed("2/7 dataset: LVD -> LVD-F behind the GX gate", timings, say):
        data_cfg = cfg.dataset.model_copy(update={"source": str(raw), "out": str(work / "data")})
        built = run["build"](data_cfg)
        table = built["datasets"][data_cfg.filter.name]["uri"]
        out["dataset"] = built["datasets"]
    uris: dict[str, str] = {}
    parent = None
    for label, stage_cfg in (("3/7 stage I (image)", cfg.image), ("4/7 stage II (video)", cfg.video),
                             ("5/7 stage III (finetune)", cfg.finetune)):  # fmt: skip
        with _timed(label, timings, say):
            uris[stage_cfg.stage] = parent = run["train"](stage_cfg, table, parent)
    out["models"] = uris
    with _timed("6/7 challenger, samples, synthetic study, promotion", timings, say):
        run["promote"](uris["finetune"], cfg.evaluation)  # the first stage III becomes champion
        steps = cfg.finetune.trainer.max_steps + cfg.challenger_extra_steps
        challenger = run["train"](cfg.finetune, table, uris["video"], None, steps)
        outcome = run["promote"](challenger, cfg.evaluation)
        outcome.pop("design", None)
        out["challenger"], out["promotion"] = challenger, outcome
    with _timed("7/7 dashboard", timings, say):
        from flows.apps.dashboard import build_site

        build_site(home / "dashboard")
        out["dashboard"] = str(home / "dashboard" / "index.html")
    return out
