"""Configs of frame interpolation: `InterpolationConfig` (training) and `InterpolateConfig` (inference).

Defaults are the paper's (arXiv 2311.15127, section 4.5 / appendix D): 5-frame windows with the first and
last frame given, 576x1024, AdamW lr 1e-4, EMA 0.9999, P_mean 1.0, P_std 1.2, ~10k steps (batch 256).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from svd_core.config import StageConfig
from svd_core.tasks.stages.config import MAX_FRAMES
from svd_core.training.config import TrainerConfig

PAPER_TRAINER: dict[str, Any] = {"max_steps": 10_000, "lr": 1e-4, "ema": True, "ema_decay": 0.9999}
"""Trainer settings the paper gives for interpolation; keys a config leaves out take these, not the generic
trainer defaults (which follow the image-to-video finetune: lr 3e-5)."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class InterpolationObjective(_Section):
    p_mean: float = 1.0
    """Mean of ln(sigma) of the training noise (paper, interpolation: 1.0)."""
    p_std: float = Field(1.2, gt=0)
    """Std of ln(sigma) (paper, interpolation: 1.2)."""
    cond_aug_mean: float = -3.0
    """Mean of ln(cond_aug), the pixel-noise level of the two given end frames (as the base model: -3.0)."""
    cond_aug_std: float = Field(0.5, ge=0)
    """Std of ln(cond_aug) (as the base model: 0.5)."""


class InterpolationData(_Section):
    table_uri: str = "data/curated/lvd_f"
    """LVD(-F) Parquet table, or a published dataset folder (OUT/<name> with a CURRENT pointer); --data
    replaces it."""
    fps_min: int = Field(3, ge=1, le=120)
    """Lowest frame rate of the 5-frame windows; with 3 frames predicted per gap the model serves input
    videos of fps_min/4 fps and up."""
    fps_max: int = Field(30, ge=1, le=120)
    """Highest window frame rate (never above a clip's own rate)."""
    max_items: int | None = Field(None, ge=1)
    """Use only the first N usable clips (smoke runs); None uses all."""
    shard_cache_dir: str | None = None
    """Local folder for copies of remote (s3://) shards; None uses the system temp folder."""


class InterpolationConfig(StageConfig):
    """Finetune an image-to-video base into a frame interpolator (the paper's section 4.5)."""

    base_uri: str | None = None
    """Image-to-video base pipeline folder (local path, file:// or s3://). `svd train interpolation --base`
    replaces it with the folder of a registered version (models:/NAME/N)."""
    num_frames: int = Field(5, ge=3, le=MAX_FRAMES)
    """Frames per window: first and last given, the rest predicted (paper: 5, i.e. 3 new frames, 4x fps)."""
    height: int = Field(576, ge=8)
    """Training height in pixels (paper: 576); must be divisible by the base's pixel factor."""
    width: int = Field(1024, ge=8)
    """Training width in pixels (paper: 1024)."""
    objective: InterpolationObjective = Field(default_factory=InterpolationObjective)
    """EDM noise distribution and end-frame noise augmentation."""
    data: InterpolationData = Field(default_factory=InterpolationData)
    """Training clips (5-frame windows at sampled frame rates)."""
    cache_dir: str | None = None
    """Local folder for copies of a remote base; None uses ~/.cache/svd-mlops/pipelines."""
    trainer: TrainerConfig = Field(default_factory=lambda: TrainerConfig(**PAPER_TRAINER))
    """Optimizer, precision, ZeRO, EMA, checkpoints, ranks; unset keys take the paper's interpolation
    values (lr 1e-4, EMA 0.9999, 10k steps), not the generic trainer defaults."""

    @field_validator("trainer", mode="before")
    @classmethod
    def _paper_trainer_defaults(cls, value: Any) -> Any:
        return {**PAPER_TRAINER, **value} if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _check(self) -> InterpolationConfig:
        if self.data.fps_min > self.data.fps_max:
            raise ValueError(f"data.fps_min ({self.data.fps_min}) exceeds data.fps_max ({self.data.fps_max})")
        return self

    @property
    def frames_between(self) -> int:
        """New frames per pair of given frames (paper: 3)."""
        return self.num_frames - 2


class InterpolateConfig(StageConfig):
    """How `svd interpolate` samples the in-between frames (defaults: the released SVD sampling settings)."""

    num_inference_steps: int = Field(25, ge=1)
    """Euler steps per window (SVD: 25)."""
    seed: int = Field(0, ge=0)
    """Seed; window i draws its noise from (seed, i), so the output does not depend on batch_size."""
    motion_bucket_id: int = Field(127, ge=0, le=255)
    """Motion conditioning (released default 127)."""
    noise_aug_strength: float = Field(0.02, ge=0)
    """cond_aug of the two given frames (released default 0.02)."""
    batch_size: int = Field(4, ge=1)
    """Windows denoised together."""
    height: int | None = Field(None, ge=8)
    """Working height; None: the video's height rounded to the model's pixel factor. New frames are
    resized back to the video's size."""
    width: int | None = Field(None, ge=8)
    """Working width; None: the video's width rounded to the model's pixel factor."""
    device: str = "auto"
    """auto, cpu, cuda[:N]."""
