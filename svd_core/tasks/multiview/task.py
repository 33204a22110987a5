"""`MultiViewTask`: the multi-view fine-tune (SVD-MV) as a `TrainTask` for the generic DeepSpeed trainer.

It is `SvdTrainTask` (svd_core.tasks.stages.task) with three differences: the initial components come from the
base model with the elevation input added (svd_core.tasks.multiview.base), samples are orbits
(svd_core.tasks.multiview.dataset), and the added time ids carry the elevation as a 4th id. The loss is the same
EDM objective (svd_core.training.edm) with the same image-to-video conditioning and guidance dropout; the
export is the same `StableVideoDiffusionPipeline` folder, plus multi-view metadata in svd_model.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from svd_core.config import validate_config
from svd_core.model import encoders
from svd_core.model.build import Components
from svd_core.tasks.multiview.base import base_components
from svd_core.tasks.multiview.config import MultiViewConfig
from svd_core.tasks.multiview.dataset import Orbit, OrbitDataset, scan_orbits, split_orbits
from svd_core.tasks.multiview.elevation import ELEVATION_ID, multiview_time_ids
from svd_core.tasks.stages.task import SvdTrainTask
from svd_core.training.edm import apply_dropout, sample_dropout
from svd_core.training.launch import launch
from svd_core.training.trainer import TrainResult

TASK_FACTORY = "svd_core.tasks.multiview.task:multiview_task"


def multiview_task(config: dict[str, Any]) -> MultiViewTask:
    """Trainer entry point: a resolved `MultiViewConfig` as a dict -> the task."""
    return MultiViewTask(validate_config(MultiViewConfig, config, "<multiview task config>"))


def train_multiview(cfg: MultiViewConfig, run_dir: str | Path) -> TrainResult:
    """Train in `cfg.trainer.ranks` supervised rank processes, resuming from `run_dir`'s latest checkpoint;
    the exported pipeline folder is `run_dir/export`."""
    return launch(TASK_FACTORY, cfg.to_dict(), cfg.trainer, Path(run_dir))


def stage_orbits(cfg: MultiViewConfig) -> tuple[list[Orbit], list[Orbit]]:
    """(training, evaluation) orbits, every folder validated: a separate eval folder, or a held-out split."""
    orbits = scan_orbits(cfg.data.root_uri, cfg.num_views)
    if cfg.data.eval_uri:
        train, held = orbits, scan_orbits(cfg.data.eval_uri, cfg.num_views)
    else:
        train, held = split_orbits(orbits, cfg.data.held_out_objects)
    if cfg.data.max_objects is not None:
        train = train[: cfg.data.max_objects]
    return train, held[: cfg.eval.max_objects]


class MultiViewTask(SvdTrainTask):
    def __init__(self, cfg: MultiViewConfig):
        # SvdTrainTask reads cfg.objective (dropout, EDM noise) and cfg.trainer, which this config shares.
        super().__init__(cfg)  # type: ignore[arg-type]
        self.cfg: MultiViewConfig = cfg  # type: ignore[assignment]

    @property
    def components(self) -> Components:
        if self._components is None:
            self._components = base_components(self.cfg)
        return self._components

    def build_dataset(self) -> torch.utils.data.Dataset:
        cfg = self.cfg
        train, _ = stage_orbits(cfg)
        return OrbitDataset(
            train,
            size=cfg.size,
            seed=cfg.trainer.seed,
            every_start_view=cfg.data.every_start_view,
            fps_id=cfg.fps_id,
            motion_bucket_id=cfg.motion_bucket_id,
            cond_aug_mean=cfg.objective.cond_aug_mean,
            cond_aug_std=cfg.objective.cond_aug_std,
        )

    def compute_loss(self, model: torch.nn.Module, batch: dict, generator: torch.Generator) -> torch.Tensor:
        """EDM loss of one micro-batch of orbits; the draws follow SvdTrainTask's order (VAE posterior
        sample, dropout, then sigma and noise inside `edm_loss`)."""
        comp = self._frozen(batch["cond_aug"].device)
        frames = batch["frames"]
        mean, std = encoders.video_latent_dist(comp, frames)
        x0 = encoders.sample_scaled_latents(comp, mean, std, generator)
        drop_context, drop_frame = sample_dropout(x0.shape[0], self.dropout, generator, x0.device)
        context = apply_dropout(encoders.image_context(comp, frames[:, 0]), drop_context)
        cond = encoders.cond_frame_latent(comp, frames[:, 0], batch["cond_aug"], batch["cond_noise_seed"])
        concat = apply_dropout(cond, drop_frame).unsqueeze(1).expand(-1, x0.shape[1], -1, -1, -1)
        added = multiview_time_ids(
            batch["fps_id"], batch["motion_bucket_id"], batch["cond_aug"], batch["elevation"]
        )
        return self._video_loss(model, x0, context, added, concat, generator)

    def export_info(self) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "stage": "multiview",
            "preset": cfg.preset,
            "num_frames": cfg.num_views,
            "height": cfg.size,
            "width": cfg.size,
            "config_hash": cfg.config_hash(),
            "multiview": {
                "num_views": cfg.num_views,
                "elevation_time_id": ELEVATION_ID,
                "elevation_unit": "degrees",
                "fps_id": cfg.fps_id,
                "motion_bucket_id": cfg.motion_bucket_id,
                "base_kind": cfg.init.base_kind,
            },
        }
