"""`InterpolationTask`: the interpolation finetune as a `TrainTask` for the generic DeepSpeed trainer.

Per item: a window of `num_frames` (paper: 5) consecutive frames of an LVD(-F) clip at a sampled frame rate
(`VideoClipDataset`). The network sees the noisy latents of the whole window, the end frames' latents in
the first and last slot, the learned mask embedding and mask bit in the others, and the CLIP embeddings of
both end frames (svd_core.tasks.interpolation.model). The loss is SVD's EDM objective (svd_core.training.edm)
with the paper's interpolation noise (P_mean 1.0, P_std 1.2) over the whole window, as SVD trains its
conditioning frame's slot too. The frozen VAE and CLIP tower stay in the task, outside the trained module.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from svd_core.config import validate_config
from svd_core.data.video_dataset import VideoClipDataset
from svd_core.errors import ConfigError
from svd_core.model import encoders
from svd_core.model.build import Components
from svd_core.model.pipeline_io import load_components, resolve_pipeline_dir
from svd_core.tasks.interpolation.config import InterpolationConfig
from svd_core.tasks.interpolation.model import (
    BaseSpec,
    InterpolationUNet,
    check_resolution,
    end_frame_context,
    end_frame_latents,
    export_interpolation_pipeline,
    inspect_base,
    widen_for_interpolation,
)
from svd_core.training.edm import edm_loss
from svd_core.training.launch import launch
from svd_core.training.trainer import TrainResult, model_dtype

TASK_FACTORY = "svd_core.tasks.interpolation.task:interpolation_task"


def interpolation_task(config: dict[str, Any]) -> InterpolationTask:
    """Trainer entry point: a resolved `InterpolationConfig` as a dict -> the task."""
    return InterpolationTask(validate_config(InterpolationConfig, config, "<interpolation config>"))


def check_config(cfg: InterpolationConfig) -> BaseSpec:
    """Everything checkable without loading weights: the base is image-to-video, the resolution fits it."""
    if not cfg.base_uri:
        raise ConfigError("base_uri: not set; pass --base models:/NAME/N (an image-to-video model)")
    spec = inspect_base(resolve_pipeline_dir(cfg.base_uri, cfg.cache_dir))
    check_resolution(spec, cfg.height, cfg.width)
    return spec


def train_interpolation(cfg: InterpolationConfig, run_dir: str | Path) -> TrainResult:
    """Train in `cfg.trainer.ranks` supervised rank processes, resuming from `run_dir`'s latest checkpoint;
    the exported pipeline folder is `run_dir/export`."""
    check_config(cfg)
    return launch(TASK_FACTORY, cfg.to_dict(), cfg.trainer, Path(run_dir))


class InterpolationTask:
    def __init__(self, cfg: InterpolationConfig):
        self.cfg = cfg
        self.base = check_config(cfg)  # cheap (JSON only): the launcher builds the task once to validate
        self._components: Components | None = None
        self._frozen_device: torch.device | None = None
        self._unet_config: dict[str, Any] | None = None

    @property
    def components(self) -> Components:
        """The base's components (image mode: no text tower)."""
        if self._components is None:
            comp = load_components(self.base.folder)
            self._components = dataclasses.replace(comp, text_encoder=None, tokenizer=None)
        return self._components

    def _frozen(self, device: torch.device) -> Components:
        comp = self.components
        if self._frozen_device != device:
            for module in (comp.vae, comp.image_encoder):
                module.to(device).eval().requires_grad_(False)
            self._frozen_device = device
        return comp

    # --- TrainTask protocol --------------------------------------------------------------------------
    def build_model(self) -> torch.nn.Module:
        latent_height = self.cfg.height // self.base.vae_factor
        unet = widen_for_interpolation(self.components.unet, self.cfg.num_frames, latent_height)
        self._unet_config = dict(unet.config)
        return InterpolationUNet(unet).requires_grad_(True).train()

    def build_dataset(self) -> torch.utils.data.Dataset:
        return VideoClipDataset.from_config(self.cfg)

    def compute_loss(self, model: torch.nn.Module, batch: dict, generator: torch.Generator) -> torch.Tensor:
        """EDM loss of one micro-batch; randomness from `generator` (VAE sample, then sigma and noise)."""
        frames = batch["frames"]
        comp = self._frozen(frames.device)
        mean, std = encoders.video_latent_dist(comp, frames)
        x0 = encoders.sample_scaled_latents(comp, mean, std, generator)
        first, last = frames[:, 0], frames[:, -1]
        ends = end_frame_latents(comp, first, last, batch["cond_aug"], batch["cond_noise_seed"])
        context = end_frame_context(comp, first, last)
        added = torch.stack([batch["fps_id"], batch["motion_bucket_id"], batch["cond_aug"]], dim=1)
        dtype = model_dtype(model)

        def network(x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
            # c_noise stays fp32: the UNet's sinusoidal timestep projection runs in fp32 anyway
            out = model(x.to(dtype), c_noise, context.to(dtype), added.to(dtype), ends.to(dtype))
            return out.sample

        objective = self.cfg.objective
        return edm_loss(network, x0, objective.p_mean, objective.p_std, generator)

    def export(self, state_dict: dict[str, torch.Tensor], out_dir: Path) -> None:
        """Full trainable weights -> interpolation pipeline folder (svd_core.tasks.interpolation.model)."""
        from diffusers import UNetSpatioTemporalConditionModel

        if self._unet_config is None:
            self.build_model()
        unet = UNetSpatioTemporalConditionModel.from_config(self._unet_config)
        model = InterpolationUNet(unet)
        model.load_state_dict(state_dict, strict=True)
        comp = self.components
        for module in (comp.vae, comp.image_encoder):
            module.to("cpu")
        self._frozen_device = None
        export_interpolation_pipeline(comp, model.eval(), out_dir, self.export_info())

    def export_info(self) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "num_frames": cfg.num_frames,
            "height": cfg.height,
            "width": cfg.width,
            "fps_range": [cfg.data.fps_min, cfg.data.fps_max],
            "config_hash": cfg.config_hash(),
        }
