"""`MultiViewConfig`: fine-tune an image-to-video model into a multi-view model (SVD-MV, paper section 4.5).

Paper (appendix D): from the 25-frame image-to-video model to 21 frames, one 360-degree orbit of 21 views at
576x576 per object, conditioned on one view plus the elevation (a sinusoidal embedding concatenated to the
UNet's vector conditioning); 12k steps, total batch 16, lr 1e-5. Evaluated on 50 unseen Google Scanned
Objects with PSNR, LPIPS and CLIP-S between true and generated views.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from svd_core.config import StageConfig
from svd_core.model.config import PRESETS, get_preset
from svd_core.tasks.stages.config import MAX_FRAMES, ObjectiveConfig
from svd_core.training.config import TrainerConfig


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class OrbitDataConfig(_Section):
    root_uri: str = "data/orbits"
    """Folder (local, file:// or s3://) with one sub-folder per object: view PNGs + cameras.json (the layout
    `svd data orbits` writes)."""
    held_out_objects: int = Field(2, ge=0)
    """Objects of `root_uri` kept out of training and used for evaluation (chosen by a hash of their names,
    so the split does not depend on listing order). Ignored when `eval_uri` is set."""
    eval_uri: str | None = None
    """A separate folder of evaluation orbits (the paper: 50 unseen Google Scanned Objects); then every
    object under `root_uri` trains."""
    every_start_view: bool = True
    """Each orbit appears once per view per epoch, that view as the input (the orbit then runs in azimuth
    order from it), so every view serves as conditioning; false always starts at the first view."""
    max_objects: int | None = Field(None, ge=1)
    """Train on the first N objects only (smoke runs); None uses all."""


class MultiViewInitConfig(_Section):
    base_uri: str | None = None
    """Base pipeline folder (local, file:// or s3://). `svd train multiview --base models:/...` downloads the
    registered version and sets this."""
    base_kind: Literal["video", "image_stage"] = "video"
    """`video`: the base is an image-to-video pipeline (SVD-MV). `image_stage`: the base is a stage-I image
    model, inflated with identity temporal layers first: the paper's SD2.1-MV baseline (same recipe from the
    image model)."""
    mix_factor_init: float = 0.5
    """image_stage only: initial AlphaBlender logit of the inflated temporal layers."""
    seed: int = 0
    """Seed of newly created weights (image_stage inflation)."""
    cache_dir: str | None = None
    """Local folder for copies of remote base pipelines; None uses ~/.cache/svd-mlops/pipelines."""


class MultiViewEvalConfig(_Section):
    max_objects: int = Field(50, ge=1)
    """Evaluate at most this many held-out objects (paper: 50 Google Scanned Objects)."""
    num_inference_steps: int = Field(25, ge=1)
    """Euler steps of the sampler (SVD: 25)."""
    min_guidance_scale: float = Field(1.0, ge=1.0)
    """Guidance at the first view; it rises linearly across the views as in SVD's pipeline."""
    max_guidance_scale: float = Field(2.5, ge=1.0)
    """Guidance at the last view (SVD's released default is 3.0 for video)."""
    noise_aug_strength: float = Field(0.02, ge=0)
    """cond_aug of the input view at sampling (SVD's released default 0.02)."""
    seed: int = 0
    """Sampling seed; object k uses seed + k."""
    include_input_view: bool = False
    """Score the input view too; by default only the N-1 novel views are compared with the truth."""
    lpips_weights: str | None = None
    """LPIPS (AlexNet, v0.1) state dict (`lpips.LPIPS(net='alex').state_dict()` saved with torch.save,
    or the AlexNet `features.*` keys plus `lin0..4.model.1.weight`); None logs no LPIPS."""
    clip_model_uri: str | None = None
    """Local folder of a transformers CLIP vision model with projection (+ preprocessor) for CLIP-S, the
    cosine similarity of true and generated views' image embeddings; None logs no CLIP-S."""
    device: str = "auto"
    """auto, cpu, cuda[:N]."""
    batch_views: int = Field(0, ge=0)
    """VAE decode chunk in frames (0: all views at once)."""

    @model_validator(mode="after")
    def _check(self) -> MultiViewEvalConfig:
        if self.min_guidance_scale > self.max_guidance_scale:
            raise ValueError(
                f"min_guidance_scale {self.min_guidance_scale} exceeds "
                f"max_guidance_scale {self.max_guidance_scale}"
            )
        return self


class MultiViewConfig(StageConfig):
    """Multi-view fine-tune of a registered image-to-video model (SVD-MV)."""

    preset: str = "tiny"
    """Model preset of the base (svd_core.model.config): tiny (CPU tests), small, svd (released shapes)."""
    num_views: int = Field(21, ge=2, le=MAX_FRAMES)
    """Views per orbit = frames the model generates (paper: 21); every orbit must have exactly this many."""
    size: int = Field(576, ge=8)
    """Square training and sampling resolution (paper: 576); views of another size are resized."""
    fps_id: int = Field(6, ge=0)
    """Fixed fps micro-conditioning id for orbits (no frame rate; the paper does not publish its value:
    the released default fps 7, fed as 6)."""
    motion_bucket_id: int = Field(127, ge=0, le=255)
    """Fixed motion bucket for orbits (released default 127; the orbit speed is constant)."""
    objective: ObjectiveConfig = Field(default_factory=lambda: ObjectiveConfig(p_mean=1.0, p_std=1.6))
    """EDM noise (default P_mean 1.0 / P_std 1.6 of the paper's 576-pixel finetunes; SVD-MV's own values are
    not published), conditioning-view noise and classifier-free-guidance dropout."""
    data: OrbitDataConfig = Field(default_factory=OrbitDataConfig)
    """Orbit folders and the held-out split."""
    init: MultiViewInitConfig = Field(default_factory=MultiViewInitConfig)
    """The base model."""
    eval: MultiViewEvalConfig = Field(default_factory=MultiViewEvalConfig)
    """Evaluation on held-out objects after training."""
    trainer: TrainerConfig = Field(
        default_factory=lambda: TrainerConfig(max_steps=12_000, lr=1e-5, micro_batch_size=2, ema=True)
    )
    """Optimizer, precision, ZeRO, EMA, checkpoints, ranks (paper: 12k steps, total batch 16, lr 1e-5)."""

    @model_validator(mode="after")
    def _check(self) -> MultiViewConfig:
        if self.preset not in PRESETS:
            raise ValueError(f"preset: {self.preset!r} is unknown; choose one of {sorted(PRESETS)}")
        factor = get_preset(self.preset).pixel_factor
        if self.size % factor:
            raise ValueError(
                f"size: {self.size} is not divisible by {factor} (preset {self.preset}); use "
                f"{max(factor, self.size // factor * factor)} or {(self.size // factor + 1) * factor}"
            )
        return self


class OrbitRenderConfig(StageConfig):
    """How `svd data orbits` renders its synthetic orbit dataset."""

    objects: int = Field(16, ge=1)
    """Number of objects (paper: 150K curated Objaverse objects)."""
    views: int = Field(21, ge=2)
    """Views per 360-degree orbit (paper: 21)."""
    size: int = Field(576, ge=8)
    """Square image size in pixels (paper: 576)."""
    elevation_min: float = Field(-5.0, ge=-89, le=89)
    """Lowest orbit elevation in degrees (paper: -5)."""
    elevation_max: float = Field(30.0, ge=-89, le=89)
    """Highest orbit elevation in degrees (paper: 30); each object draws one uniformly."""
    radius: float = Field(3.2, gt=1)
    """Camera distance from the object centre; objects fit in the unit sphere, which a 40-degree field of
    view frames whole from 3.2 (asin(1/3.2) = 18.2 degrees < 20)."""
    fov_deg: float = Field(40.0, gt=1, lt=170)
    """Vertical field of view in degrees."""
    supersample: int = Field(2, ge=1, le=4)
    """Rays per pixel side (2 = 4 rays per pixel, box-filtered): anti-aliased edges and textures."""
    seed: int = 0
    """Object i is drawn from (seed, i): the same dataset every time, resumable object by object."""

    @model_validator(mode="after")
    def _check(self) -> OrbitRenderConfig:
        if self.elevation_min > self.elevation_max:
            raise ValueError(f"elevation_min {self.elevation_min} exceeds elevation_max {self.elevation_max}")
        return self
