"""`TrainStageConfig`: one of SVD's three training stages (what is trained; `trainer` says how).

Stages (paper section 4): `image` (stage I: a 2D image UNet, or import a pretrained one such as SD 2.1),
`video` (stage II: video pretraining at 14 frames, 256x384, initialised by inflating the stage-I model),
`finetune` (stage III: high-quality finetune of a parent video pipeline, e.g. image-to-video at 320x576).
Every cross-field rule is checked here, so a bad config fails before any rank process is launched.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from svd_core.config import StageConfig
from svd_core.data.config import StreamConfig
from svd_core.model.config import PRESETS, get_preset
from svd_core.training.config import TrainerConfig

MAX_FRAMES = 64
"""Upper bound on num_frames: the released models use 14 and 25; the UNet takes any count, memory does not."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class ObjectiveConfig(_Section):
    p_mean: float = 0.7
    """Mean of ln(sigma) of the training noise (paper, video pretraining and 320x576 finetune: 0.7; 576x1024
    finetunes 1.0; text-to-video high-res 0.5; EDM's image default -1.2)."""
    p_std: float = Field(1.6, gt=0)
    """Std of ln(sigma) (paper video: 1.6; text-to-video high-res 1.4; EDM image default 1.2)."""
    noise_conditioning: Literal["continuous", "discrete"] = "continuous"
    """What the UNet is told about the noise level. `continuous`: c_noise = 0.25 ln(sigma), SVD's EDM
    preconditioning (VScalingWithEDMcNoise). `discrete`: the fractional timestep t whose sigma_t in the
    model's 1000-step DDPM schedule (its scheduler config) is sigma: what a discrete-time image model such as
    SD 2.1 was trained on, so it denoises correctly from the first step. The paper adapts SD 2.1 to EDM's
    continuous conditioning before video training: import it in stage I (`init.kind: import`) and train with
    `continuous` (configs/train/paper/image.yaml); the exported scheduler samples with the same choice."""
    cond_aug_mean: float = -3.0
    """Mean of ln(cond_aug), the conditioning frame's pixel-noise level (paper: -3.0)."""
    cond_aug_std: float = Field(0.5, ge=0)
    """Std of ln(cond_aug) (paper: 0.5)."""
    drop_context_only: float = Field(0.05, ge=0, le=1)
    """Probability a sample's cross-attention context alone is zeroed (classifier-free guidance)."""
    drop_both: float = Field(0.05, ge=0, le=1)
    """Probability context AND conditioning-frame latent are zeroed together (the pipeline's unconditional
    branch). Context is dropped with drop_context_only + drop_both in total."""
    drop_frame_only: float = Field(0.05, ge=0, le=1)
    """Probability the conditioning-frame latent alone is zeroed (image mode only)."""

    @model_validator(mode="after")
    def _check_total(self) -> ObjectiveConfig:
        total = self.drop_context_only + self.drop_both + self.drop_frame_only
        if total > 1:
            raise ValueError(f"drop_context_only + drop_both + drop_frame_only = {total:g} exceeds 1")
        return self


class DataConfig(_Section):
    table_uri: str = "data/lvd-f/lvd.parquet"
    """LVD(-F) Parquet table (path, file:// or s3://) whose `clip_uri` points at `<shard.tar>#<member>`."""
    fps_min: int = Field(3, ge=1, le=60)
    """Lowest target frame rate sampled (released models: 3-30 fps)."""
    fps_max: int = Field(30, ge=1, le=60)
    """Highest target frame rate sampled; never above a clip's own rate."""
    caption_weights: dict[str, float] = Field(default_factory=lambda: {"caption": 1.0})
    """Text mode: caption column -> sampling weight, drawn anew for every sample in every epoch (paper:
    merged LLM caption 0.5, CoCa image caption 0.25, VideoBLIP video caption 0.25). The default is the one
    column every LVD table has; the paper's mix uses the LVD table's caption_merged / caption_image /
    caption_video columns (configs/train/paper/*.yaml), sampled per row among the non-null ones."""
    max_items: int | None = Field(None, ge=1)
    """Use only the first N usable clips (smoke runs); None uses all."""
    shard_cache_dir: str | None = None
    """Local folder for copies of remote (s3://) shards; None uses the system temp folder."""
    latent_cache_uri: str | None = None
    """Cache VAE latents and CLIP contexts here (local or s3://) and train from the cache; None encodes on
    the fly. The cache is filled before training starts (split across ranks)."""
    stream: StreamConfig = Field(default_factory=StreamConfig)
    """How clips are read: byte ranges through LVD-F's clip index, seeking near the window, a bounded
    in-memory LRU per process and an optional node-local disk LRU for remote clips (set
    `stream.disk_cache_dir` to node-local scratch on a cluster)."""


class InitConfig(_Section):
    kind: Literal["scratch", "pipeline", "inflate", "import"] = "scratch"
    """`scratch`: random weights from the preset (all components; only sensible for tiny runs). `pipeline`:
    every component from `pipeline_uri` (stage III, or stage I importing an image-stage folder). `inflate`:
    stage II from a stage-I folder or image UNet at `image_unet_uri`. `import`: stage I from the 2D image
    UNet at `image_unet_uri` (SD 2.1's unet/), the other components from `pipeline_uri` or the preset: the
    stage in which the paper adapts the image model to EDM (`objective.noise_conditioning`)."""
    pipeline_uri: str | None = None
    """Parent pipeline folder (local path, file:// or s3:// prefix), for kind=pipeline."""
    image_unet_uri: str | None = None
    """kind=inflate or import: a stage-I export folder (its unet/, vae and encoders are used), or a diffusers
    UNet2DConditionModel folder such as SD 2.1's unet/ (then `pipeline_uri`, if set, supplies the rest). A
    folder without our svd_model.json is taken as discrete-time (SD 2.1 is)."""
    mix_factor_init: float = 0.5
    """Initial AlphaBlender logit of inflated temporal layers (a = sigmoid(0.5) = 0.62: spatial dominant, as
    generative-models and diffusers default); the temporal paths start as identities either way."""
    seed: int = 0
    """Seed of the random initial weights (scratch and new layers)."""
    cache_dir: str | None = None
    """Local folder for copies of remote parent pipelines; None uses ~/.cache/svd-mlops/pipelines."""


class TrainStageConfig(StageConfig):
    """One training stage of SVD: model, data, objective, initialisation, and the trainer settings."""

    stage: Literal["image", "video", "finetune"] = "video"
    """Training stage: image (stage I), video (stage II pretraining), finetune (stage III)."""
    preset: str = "tiny"
    """Model preset (svd_core.model.config): tiny (CPU tests), small, svd (released shapes)."""
    conditioning: Literal["image", "text"] = "image"
    """image: image-to-video (CLIP image embedding + concatenated first-frame latent); text: CLIP text."""
    num_frames: int = Field(14, ge=1, le=MAX_FRAMES)
    """Frames per training clip (paper: 14 for pretraining; 14 or 25 for the finetunes; 1 for stage I)."""
    height: int = Field(256, ge=8)
    """Training height in pixels (paper: 256 pretraining, 320 and 576 finetunes)."""
    width: int = Field(384, ge=8)
    """Training width in pixels (paper: 384 pretraining, 576 and 1024 finetunes)."""
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig)
    """EDM noise distribution, conditioning-frame noise and classifier-free-guidance dropout."""
    data: DataConfig = Field(default_factory=DataConfig)
    """Training table and sampling of clips, frame rates and captions."""
    init: InitConfig = Field(default_factory=InitConfig)
    """Where the initial weights come from."""
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    """Optimizer, precision, ZeRO, EMA, checkpoints, ranks (svd_core.training.config)."""

    @model_validator(mode="after")
    def _check(self) -> TrainStageConfig:
        if self.preset not in PRESETS:
            raise ValueError(f"preset: {self.preset!r} is unknown; choose one of {sorted(PRESETS)}")
        self._check_frames()
        self._check_resolution()
        self._check_init()
        if self.data.fps_min > self.data.fps_max:
            raise ValueError(f"data.fps_min ({self.data.fps_min}) exceeds data.fps_max ({self.data.fps_max})")
        if self.conditioning == "text" and self.preset != "tiny" and self.init.kind == "scratch":
            raise ValueError(
                f"conditioning=text with preset {self.preset} needs the released CLIP tokenizer: set "
                "init.kind=pipeline (or inflate) with a parent folder that has tokenizer/"
            )
        return self

    def _check_frames(self) -> None:
        if self.stage == "image" and self.num_frames != 1:
            raise ValueError(
                f"num_frames: stage image trains on single frames; set num_frames=1 (got {self.num_frames})"
            )
        if self.stage != "image" and self.num_frames < 2:
            raise ValueError(f"num_frames: stage {self.stage} needs at least 2 frames (paper: 14 or 25)")

    def _check_resolution(self) -> None:
        preset = get_preset(self.preset)
        factor = preset.pixel_factor
        for name in ("height", "width"):
            value = getattr(self, name)
            if value % factor:
                raise ValueError(
                    f"{name}: {value} is not divisible by {factor} (VAE factor {preset.vae.downsample_factor} x "
                    f"UNet downsampling {preset.unet.downsample_factor} of preset {self.preset}); use "
                    f"{max(factor, value // factor * factor)} or {(value // factor + 1) * factor}"
                )

    def _check_init(self) -> None:
        init = self.init
        if init.kind == "pipeline" and not init.pipeline_uri:
            raise ValueError("init.pipeline_uri: required when init.kind=pipeline")
        if init.kind == "import":
            if self.stage != "image":
                raise ValueError(
                    "init.kind: import brings a 2D image UNet into stage image; stage video uses inflate"
                )
            if not init.image_unet_uri:
                raise ValueError(
                    "init.image_unet_uri: required when init.kind=import (a 2D UNet folder such as SD 2.1's unet/)"
                )
        if init.kind == "inflate":
            if self.stage == "image":
                raise ValueError(
                    "init.kind: inflate makes a video UNet; stage image uses scratch, pipeline or import"
                )
            if not init.image_unet_uri:
                raise ValueError(
                    "init.image_unet_uri: required when init.kind=inflate (a stage-I export folder)"
                )
        if self.stage == "finetune" and init.kind != "pipeline":
            raise ValueError(
                "init.kind: stage finetune starts from a parent video pipeline; set init.kind=pipeline"
            )

    @property
    def latent_size(self) -> tuple[int, int]:
        factor = get_preset(self.preset).vae.downsample_factor
        return self.height // factor, self.width // factor
