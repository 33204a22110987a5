"""`SvdTrainTask`: the SVD training stages as a `TrainTask` for the generic DeepSpeed trainer.

The trainer builds the task in every rank from `svd_train_task(config_dict)` (see `TASK_FACTORY`), then
calls `build_model` (the trainable UNet), `build_dataset`, `compute_loss` per micro-batch and, on rank 0
at the end, `export` with the gathered fp32 weights. The frozen parts (VAE, CLIP encoders, tokenizer,
scheduler) live in the task, not in the trained module, so ZeRO never shards or checkpoints them.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from diffusers import EulerDiscreteScheduler

from svd_core.config import validate_config
from svd_core.data.latent_cache import CachedLatentDataset, LatentCache, cache_fingerprint, fill_cache
from svd_core.data.video_dataset import VideoClipDataset
from svd_core.device import resolve_device
from svd_core.errors import InputError
from svd_core.model import encoders
from svd_core.model.build import Components
from svd_core.model.export import export_pipeline
from svd_core.model.text_conditioning import tokenize
from svd_core.tasks.stages.config import TrainStageConfig
from svd_core.tasks.stages.initialize import initial_components
from svd_core.training.edm import DropoutProbs, apply_dropout, discrete_log_sigmas, edm_loss, sample_dropout
from svd_core.training.launch import launch
from svd_core.training.trainer import TrainResult

TASK_FACTORY = "svd_core.tasks.stages.task:svd_train_task"


def svd_train_task(config: dict[str, Any]) -> SvdTrainTask:
    """Trainer entry point: a resolved `TrainStageConfig` as a dict -> the task."""
    return SvdTrainTask(validate_config(TrainStageConfig, config, "<task config>"))


def train_stage(cfg: TrainStageConfig, run_dir: str | Path) -> TrainResult:
    """Train the stage in `cfg.trainer.ranks` supervised rank processes (svd_core.training.launch), resuming
    from `run_dir`'s latest checkpoint; the exported pipeline folder is `run_dir/export`."""
    return launch(TASK_FACTORY, cfg.to_dict(), cfg.trainer, Path(run_dir))


def _tokenize_one(tokenizer: Any, text: str) -> torch.Tensor:
    return tokenize(tokenizer, [text])[0]


class SvdTrainTask:
    def __init__(self, cfg: TrainStageConfig):
        self.cfg = cfg
        self._components: Components | None = None
        self._frozen_device: torch.device | None = None
        self.dropout = DropoutProbs(
            cfg.objective.drop_context_only, cfg.objective.drop_both, cfg.objective.drop_frame_only
        )

    # --- components --------------------------------------------------------------------------------
    @property
    def components(self) -> Components:
        """All pipeline components; `unet` holds the initial weights until `build_model` hands it out."""
        if self._components is None:
            self._components = initial_components(self.cfg)
        return self._components

    def _frozen(self, device: torch.device) -> Components:
        comp = self.components
        if self._frozen_device != device:
            for module in (comp.vae, comp.image_encoder, comp.text_encoder):
                if module is not None:
                    module.to(device).eval().requires_grad_(False)
            self._frozen_device = device
        return comp

    # --- TrainTask protocol --------------------------------------------------------------------------
    def build_model(self) -> torch.nn.Module:
        unet = self.components.unet
        unet.requires_grad_(True)
        return unet.train()

    def build_dataset(self) -> torch.utils.data.Dataset:
        cfg, data = self.cfg, self.cfg.data
        tokenizer = self.components.tokenizer if cfg.conditioning == "text" else None
        dataset = VideoClipDataset.from_config(
            cfg,
            caption_weights=data.caption_weights,
            tokenize=functools.partial(_tokenize_one, tokenizer) if tokenizer is not None else None,
        )
        if data.latent_cache_uri is None:
            return dataset
        cache = LatentCache(data.latent_cache_uri, cache_fingerprint(dataset, self.components))
        self._fill_cache_across_ranks(dataset, cache)
        return CachedLatentDataset(dataset, cache)

    def compute_loss(self, model: torch.nn.Module, batch: dict, generator: torch.Generator) -> torch.Tensor:
        """EDM loss of one micro-batch (svd_core.training.edm); all randomness from `generator`.

        Order of draws: VAE posterior sample, dropout, then sigma and noise inside `edm_loss`.
        """
        comp = self._frozen(batch["cond_aug"].device)
        if "latent_mean" in batch:
            mean, std = batch["latent_mean"], batch["latent_std"]
        else:
            mean, std = encoders.video_latent_dist(comp, batch["frames"])
        x0 = encoders.sample_scaled_latents(comp, mean, std, generator)
        context = batch["context"] if "context" in batch else self._context(comp, batch)
        drop_context, drop_frame = sample_dropout(x0.shape[0], self.dropout, generator, x0.device)
        context = apply_dropout(context, drop_context)
        if self.cfg.stage == "image":
            return self._image_loss(model, x0[:, 0], context, generator)
        concat = None
        cond_aug = torch.zeros_like(batch["cond_aug"])  # text mode: no conditioning frame, no noise on it
        if self.cfg.conditioning == "image":
            cond = batch["cond_latent"] if "cond_latent" in batch else self._cond_latent(comp, batch)
            concat = apply_dropout(cond, drop_frame).unsqueeze(1).expand(-1, x0.shape[1], -1, -1, -1)
            cond_aug = batch["cond_aug"]
        added = torch.stack([batch["fps_id"], batch["motion_bucket_id"], cond_aug], dim=1)
        return self._video_loss(model, x0, context, added, concat, generator)

    def _video_loss(self, model, x0, context, added, concat, generator) -> torch.Tensor:
        dtype = next(model.parameters()).dtype  # bf16 under DeepSpeed mixed precision

        def network(x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
            # c_noise stays fp32: the UNet's sinusoidal timestep projection runs in fp32 anyway
            out = model(
                x.to(dtype), c_noise, encoder_hidden_states=context.to(dtype), added_time_ids=added.to(dtype)
            )
            return out.sample

        return self._edm_loss(network, x0, generator, concat=concat)

    def _image_loss(self, model, x0, context, generator) -> torch.Tensor:
        dtype = next(model.parameters()).dtype

        def network(x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
            return model(x.to(dtype), c_noise, encoder_hidden_states=context.to(dtype)).sample

        return self._edm_loss(network, x0, generator, channel_dim=1)

    def _edm_loss(
        self, network: Any, x0: torch.Tensor, generator: torch.Generator, **kwargs: Any
    ) -> torch.Tensor:
        """`edm_loss` with this stage's noise distribution and noise conditioning."""
        objective = self.cfg.objective
        return edm_loss(
            network, x0, objective.p_mean, objective.p_std, generator, log_sigmas=self._log_sigmas(), **kwargs
        )

    def _log_sigmas(self) -> torch.Tensor | None:
        """The discrete-time schedule the UNet's timesteps index (objective.noise_conditioning=discrete)."""
        if self.cfg.objective.noise_conditioning != "discrete":
            return None
        if getattr(self, "_discrete_log_sigmas", None) is None:
            self._discrete_log_sigmas = discrete_log_sigmas(self.components.scheduler.config)
        return self._discrete_log_sigmas

    def export(self, state_dict: dict[str, torch.Tensor], out_dir: Path) -> None:
        """Full trainable weights -> pipeline folder (StableVideoDiffusionPipeline in image mode)."""
        template = self.components.unet
        # A diffusers model class (from_config); Components types the UNet as a plain nn.Module.
        unet_class: type[Any] = type(template)
        unet = unet_class.from_config(template.config)
        try:
            result = unet.load_state_dict(state_dict, strict=False)
        except RuntimeError as exc:  # shape mismatches
            raise InputError(f"exported weights do not fit the {type(template).__name__}: {exc}") from exc
        if result.missing_keys or result.unexpected_keys:
            raise InputError(
                f"exported weights do not fit the {type(template).__name__}: missing {result.missing_keys[:5]}, "
                f"unexpected {result.unexpected_keys[:5]}; export the model this task built"
            )
        comp = self.components
        # The exported sampler feeds the network what training fed it (diffusers maps sigma to the discrete
        # timestep with the same interpolation as `sigma_to_timestep`).
        timestep_type = "discrete" if self.cfg.objective.noise_conditioning == "discrete" else "continuous"
        scheduler = EulerDiscreteScheduler.from_config(
            {**comp.scheduler.config, "timestep_type": timestep_type}
        )
        frozen = dataclasses.replace(comp, unet=unet.eval(), scheduler=scheduler)
        for module in (frozen.vae, frozen.image_encoder, frozen.text_encoder):
            if module is not None:
                module.to("cpu")
        self._frozen_device = None
        export_pipeline(frozen, out_dir, info=self.export_info())

    # --- helpers -------------------------------------------------------------------------------------
    def export_info(self) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "stage": cfg.stage,
            "preset": cfg.preset,
            "num_frames": cfg.num_frames,
            "height": cfg.height,
            "width": cfg.width,
            "fps_range": [cfg.data.fps_min, cfg.data.fps_max],
            "noise_conditioning": cfg.objective.noise_conditioning,
            "config_hash": cfg.config_hash(),
        }

    def _context(self, comp: Components, batch: dict) -> torch.Tensor:
        if self.cfg.conditioning == "text":
            return encoders.text_context(comp, batch["input_ids"])
        return encoders.image_context(comp, batch["frames"][:, 0])

    @staticmethod
    def _cond_latent(comp: Components, batch: dict) -> torch.Tensor:
        return encoders.cond_frame_latent(
            comp, batch["frames"][:, 0], batch["cond_aug"], batch["cond_noise_seed"]
        )

    def _fill_cache_across_ranks(self, dataset: VideoClipDataset, cache: LatentCache) -> None:
        """Each rank encodes a strided share of the missing items; all wait until the cache is complete."""
        distributed = dist.is_available() and dist.is_initialized()
        rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
        missing = cache.missing(len(dataset))
        if missing:
            comp = self._frozen(self._device())
            fill_cache(dataset, comp, cache, missing[rank::world])
        if distributed:
            dist.barrier()

    def _device(self) -> torch.device:
        device = resolve_device(self.cfg.trainer.device)
        if device.type == "cuda":
            return torch.device("cuda", torch.cuda.current_device())
        return device
