"""Test and benchmark tasks for the trainer (not for real training): a tiny diffusers SVD UNet on random data.

`tiny_unet_task(config)` is a `TrainTask` factory usable as `"svd_core.training.testing:tiny_unet_task"`.
The UNet is diffusers' `UNetSpatioTemporalConditionModel` at the size diffusers' own tests use; the loss is
a plain denoising MSE (predict the noise) on deterministic random latents. Config keys can inject failures
after a number of `compute_loss` calls on one rank, to test NaN handling, crashes and killed processes.
"""

from __future__ import annotations

import dataclasses
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import UNetSpatioTemporalConditionModel

from svd_core.errors import ConfigError

TASK_FACTORY = "svd_core.training.testing:tiny_unet_task"

# diffusers' test config for UNetSpatioTemporalConditionModel (1.8M parameters).
TINY_UNET: dict[str, Any] = {
    "block_out_channels": [32, 64],
    "down_block_types": ["CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"],
    "up_block_types": ["UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"],
    "layers_per_block": 2,
    "sample_size": 32,
    "num_attention_heads": [8, 16],
    "cross_attention_dim": 32,
    "in_channels": 8,
    "out_channels": 4,
    "addition_time_embed_dim": 32,
    "projection_class_embeddings_input_dim": 96,
    "num_frames": 2,
}

# A larger UNet (three levels like SVD's first three, 28M parameters) for memory and speed benchmarks.
SMALL_UNET: dict[str, Any] = {
    **TINY_UNET,
    "block_out_channels": [64, 128, 256],
    "down_block_types": ["CrossAttnDownBlockSpatioTemporal"] * 2 + ["DownBlockSpatioTemporal"],
    "up_block_types": ["UpBlockSpatioTemporal"] + ["CrossAttnUpBlockSpatioTemporal"] * 2,
    "num_attention_heads": [4, 8, 8],
    "cross_attention_dim": 64,
}


@dataclass(frozen=True)
class TinyTaskConfig:
    unet: dict[str, Any] = field(default_factory=lambda: dict(TINY_UNET))
    height: int = 16
    width: int = 16
    dataset_size: int = 64
    data_seed: int = 0
    fail_at_call: int | None = None
    """1-based `compute_loss` call (in this process) at which to fail; None never fails."""
    fail_on_rank: int | None = None
    """Rank that fails (None: every rank)."""
    fail_kind: str = "nan"
    """nan: return a NaN loss; raise: raise RuntimeError; kill: SIGKILL this process (a real crash)."""


def tiny_unet_task(config: dict[str, Any]) -> TinyUnetTask:
    known = {f.name for f in dataclasses.fields(TinyTaskConfig)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ConfigError(f"tiny_unet_task: unknown config keys {unknown}; known: {sorted(known)}")
    cfg = TinyTaskConfig(**config)
    if cfg.fail_kind not in ("nan", "raise", "kill"):
        raise ConfigError(f"tiny_unet_task: fail_kind={cfg.fail_kind!r}; use nan, raise or kill")
    return TinyUnetTask(cfg)


class RandomLatentClips(torch.utils.data.Dataset):
    """Item i: video latents, a conditioning-frame latent, a CLIP-like embedding; a function of i only."""

    def __init__(self, cfg: TinyTaskConfig) -> None:
        self.cfg = cfg

    def __len__(self) -> int:
        return self.cfg.dataset_size

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        cfg, unet = self.cfg, self.cfg.unet
        gen = torch.Generator().manual_seed(cfg.data_seed * 1_000_003 + index)
        frames, channels = unet["num_frames"], unet["out_channels"]
        return {
            "latents": torch.randn(frames, channels, cfg.height, cfg.width, generator=gen),
            "cond_latent": torch.randn(channels, cfg.height, cfg.width, generator=gen),
            "encoder_hidden_states": torch.randn(1, unet["cross_attention_dim"], generator=gen),
            # fps_id, motion_bucket_id, cond_aug: the paper's inference defaults
            "added_time_ids": torch.tensor([6.0, 127.0, 0.02]),
        }


class TinyUnetTask:
    def __init__(self, cfg: TinyTaskConfig) -> None:
        self.cfg = cfg
        self.calls = 0

    def build_model(self) -> torch.nn.Module:
        return UNetSpatioTemporalConditionModel(**self.cfg.unet)

    def build_dataset(self) -> torch.utils.data.Dataset:
        return RandomLatentClips(self.cfg)

    def compute_loss(self, model: torch.nn.Module, batch: dict, generator: torch.Generator) -> torch.Tensor:
        self.calls += 1
        failing = self._should_fail()
        if failing and self.cfg.fail_kind == "raise":
            raise RuntimeError(f"injected failure at compute_loss call {self.calls}")
        if failing and self.cfg.fail_kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        loss = denoising_loss(model, batch, generator, image_to_video=self.cfg.unet["in_channels"] == 8)
        return loss * float("nan") if failing else loss

    def _should_fail(self) -> bool:
        if self.cfg.fail_at_call is None or self.calls < self.cfg.fail_at_call:
            return False
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        return self.cfg.fail_on_rank is None or rank == self.cfg.fail_on_rank

    def export(self, state_dict: dict[str, torch.Tensor], out_dir: Path) -> None:
        model = UNetSpatioTemporalConditionModel(**self.cfg.unet)
        model.load_state_dict(state_dict, strict=True)
        model.save_pretrained(Path(out_dir) / "unet", safe_serialization=True)


def denoising_loss(
    model: torch.nn.Module, batch: dict, generator: torch.Generator, image_to_video: bool = True
) -> torch.Tensor:
    """Noise the latents at a log-normal sigma, concatenate the conditioning latent, predict the noise."""
    latents = batch["latents"]
    batch_size, frames = latents.shape[:2]
    device = latents.device
    sigma = torch.exp(0.7 + 1.6 * torch.randn(batch_size, generator=generator, device=device))
    noise = torch.randn(latents.shape, generator=generator, device=device)
    sigma_b = sigma.view(-1, 1, 1, 1, 1)
    noisy = (latents + sigma_b * noise) / torch.sqrt(sigma_b**2 + 1)
    model_input = noisy
    if image_to_video:  # concatenate the conditioning frame's latent to every frame's channels
        cond = batch["cond_latent"].unsqueeze(1).expand(-1, frames, -1, -1, -1)
        model_input = torch.cat([noisy, cond], dim=2)
    dtype = next(model.parameters()).dtype
    pred = model(
        model_input.to(dtype),
        (0.25 * torch.log(sigma)).to(dtype),
        batch["encoder_hidden_states"].to(dtype),
        batch["added_time_ids"].to(dtype),
    ).sample
    return F.mse_loss(pred.float(), noise)
