"""Model presets: the shapes of every pipeline component, as diffusers/transformers config dicts.

Three presets share one code path:

- `tiny`: a few channels, two UNet levels, a 4-level 32-channel VAE and a one-layer CLIP. Trains in seconds
  on CPU; only for tests and smoke runs. Its CLIP vision tower keeps `image_size=224` because diffusers'
  `StableVideoDiffusionPipeline` always resizes the conditioning image to 224x224.
- `small`: a narrow UNet (128..512 channels, one resnet per level) with the released VAE and CLIP shapes, so
  the real SVD VAE/CLIP weights load into it from a parent pipeline folder; for single-GPU experiments.
- `svd`: the released `stable-video-diffusion-img2vid` shapes (UNet 1,524,623,082 parameters in diffusers,
  the paper's "1521M" = 865M spatial + 656M temporal; VAE `AutoencoderKLTemporalDecoder` 128..512;
  OpenCLIP ViT-H/14 image tower with a 1024-d projection; for text mode the SD 2.1 OpenCLIP-H text tower).

Conditioning modes:

- `image` (SVD image-to-video): CLIP image embedding (one token) to cross-attention, and the VAE latent of
  the noise-augmented first frame concatenated to the noisy latents: UNet `in_channels` = 2 x latent.
- `text`: CLIP text hidden states (77 tokens) to cross-attention and `in_channels` = latent channels (4).
  No first-frame slot: the paper's base model is text-conditioned and the image-to-video finetune widens
  `conv_in` (extra channels zero-initialised, see `svd_core.model.inflate.widen_conv_in`). The three
  micro-conditioning ids (fps, motion bucket, cond_aug) are kept so both modes share the architecture;
  text mode feeds cond_aug = 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from svd_core.errors import ConfigError

ConditioningMode = Literal["image", "text"]
PresetName = Literal["tiny", "small", "svd"]

NUM_ADDED_TIME_IDS = 3
"""fps_id, motion_bucket_id, cond_aug: each sinusoidally embedded, concatenated, projected (paper 4.x)."""
CLIP_IMAGE_SIZE = 224
"""diffusers' SVD pipeline resizes the conditioning image to this size before the CLIP image encoder."""
TEXT_MAX_LENGTH = 77
"""CLIP text context length."""
TEMPORAL_KEY_MARKERS = (
    "temporal_res_block.",
    "temporal_transformer_blocks.",
    "time_pos_embed.",
    "time_mixer.",
)
"""Parameter-name fragments of the video UNet's temporal layers (the paper's 656M "temporal" parameters)."""


def is_temporal_key(name: str) -> bool:
    return any(marker in name for marker in TEMPORAL_KEY_MARKERS)


@dataclass(frozen=True)
class UNetShape:
    block_out_channels: tuple[int, ...]
    layers_per_block: int
    num_attention_heads: tuple[int, ...]
    cross_attention_dim: int
    addition_time_embed_dim: int
    transformer_layers_per_block: int = 1

    @property
    def num_levels(self) -> int:
        return len(self.block_out_channels)

    @property
    def downsample_factor(self) -> int:
        """Spatial reduction inside the UNet: every level but the last halves the resolution."""
        return 2 ** (self.num_levels - 1)


@dataclass(frozen=True)
class VaeShape:
    block_out_channels: tuple[int, ...]
    layers_per_block: int
    latent_channels: int = 4
    scaling_factor: float = 0.18215

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)


@dataclass(frozen=True)
class ClipVisionShape:
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    patch_size: int
    projection_dim: int
    hidden_act: str = "gelu"


@dataclass(frozen=True)
class ClipTextShape:
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    vocab_size: int
    projection_dim: int
    hidden_act: str = "gelu"


@dataclass(frozen=True)
class ModelPreset:
    name: str
    unet: UNetShape
    vae: VaeShape
    vision: ClipVisionShape
    text: ClipTextShape

    @property
    def pixel_factor(self) -> int:
        """Pixels per smallest UNet feature: a resolution must be divisible by this."""
        return self.vae.downsample_factor * self.unet.downsample_factor

    def latent_channels(self) -> int:
        return self.vae.latent_channels

    def unet_in_channels(self, mode: ConditioningMode) -> int:
        return 2 * self.vae.latent_channels if mode == "image" else self.vae.latent_channels


TINY = ModelPreset(
    name="tiny",
    # GroupNorm(32) is hard-coded in diffusers' spatio-temporal blocks: channels must be multiples of 32.
    unet=UNetShape(
        block_out_channels=(32, 64),
        layers_per_block=1,
        num_attention_heads=(2, 4),
        cross_attention_dim=32,
        addition_time_embed_dim=8,
    ),
    vae=VaeShape(block_out_channels=(32, 32, 32, 32), layers_per_block=1),
    vision=ClipVisionShape(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        patch_size=32,
        projection_dim=32,
    ),
    text=ClipTextShape(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        vocab_size=514,  # the byte-level tokenizer of svd_core.model.text_conditioning
        projection_dim=32,
    ),
)

# Released SVD shapes (stabilityai/stable-video-diffusion-img2vid unet/vae/image_encoder config.json;
# generative-models configs/inference/svd.yaml: model_channels 320, channel_mult [1,2,4,4],
# num_head_channels 64, context_dim 1024, adm_in_channels 768).
_SVD_VAE = VaeShape(block_out_channels=(128, 256, 512, 512), layers_per_block=2)
_SVD_VISION = ClipVisionShape(
    hidden_size=1280,
    intermediate_size=5120,
    num_hidden_layers=32,
    num_attention_heads=16,
    patch_size=14,
    projection_dim=1024,
)
# SD 2.1 text encoder (OpenCLIP ViT-H text tower, penultimate layer: 23 of 24 layers kept).
_SVD_TEXT = ClipTextShape(
    hidden_size=1024,
    intermediate_size=4096,
    num_hidden_layers=23,
    num_attention_heads=16,
    vocab_size=49408,
    projection_dim=512,
)

SVD = ModelPreset(
    name="svd",
    unet=UNetShape(
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        num_attention_heads=(5, 10, 20, 20),
        cross_attention_dim=1024,
        addition_time_embed_dim=256,
    ),
    vae=_SVD_VAE,
    vision=_SVD_VISION,
    text=_SVD_TEXT,
)

SMALL = ModelPreset(
    name="small",
    unet=UNetShape(
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=1,
        num_attention_heads=(2, 4, 8, 8),
        cross_attention_dim=1024,
        addition_time_embed_dim=256,
    ),
    vae=_SVD_VAE,
    vision=_SVD_VISION,
    text=_SVD_TEXT,
)

PRESETS: dict[str, ModelPreset] = {p.name: p for p in (TINY, SMALL, SVD)}


def get_preset(name: str) -> ModelPreset:
    if name not in PRESETS:
        raise ConfigError(f"model preset {name!r} is unknown; choose one of {sorted(PRESETS)}")
    return PRESETS[name]


def _down_up_block_types(levels: int, spatio_temporal: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """SVD layout: cross-attention on every level except the lowest-resolution one."""
    suffix = "SpatioTemporal" if spatio_temporal else "2D"
    down = tuple([f"CrossAttnDownBlock{suffix}"] * (levels - 1) + [f"DownBlock{suffix}"])
    up = tuple([f"UpBlock{suffix}"] + [f"CrossAttnUpBlock{suffix}"] * (levels - 1))
    return down, up


def unet_config(
    preset: ModelPreset, mode: ConditioningMode, num_frames: int, sample_size: int | None = None
) -> dict[str, Any]:
    """Keyword arguments of diffusers' `UNetSpatioTemporalConditionModel` (the video UNet)."""
    shape = preset.unet
    down, up = _down_up_block_types(shape.num_levels, spatio_temporal=True)
    return {
        "sample_size": sample_size,
        "in_channels": preset.unet_in_channels(mode),
        "out_channels": preset.vae.latent_channels,
        "down_block_types": down,
        "up_block_types": up,
        "block_out_channels": shape.block_out_channels,
        "addition_time_embed_dim": shape.addition_time_embed_dim,
        "projection_class_embeddings_input_dim": NUM_ADDED_TIME_IDS * shape.addition_time_embed_dim,
        "layers_per_block": shape.layers_per_block,
        "cross_attention_dim": shape.cross_attention_dim,
        "transformer_layers_per_block": shape.transformer_layers_per_block,
        "num_attention_heads": shape.num_attention_heads,
        "num_frames": num_frames,
    }


def image_unet_config(preset: ModelPreset, sample_size: int | None = None) -> dict[str, Any]:
    """Keyword arguments of diffusers' `UNet2DConditionModel` whose weights map 1:1 onto the video UNet's
    spatial layers (stage I). Always 4 input channels: an image model has no conditioning-frame slot.

    The settings mirror what the spatio-temporal blocks hard-code: resnet eps 1e-5, GroupNorm(32),
    linear transformer projections, sinusoidal time embedding with flip_sin_to_cos and shift 0, no
    attention bias. `attention_head_dim` carries the number of heads (diffusers' historical naming).
    """
    shape = preset.unet
    down, up = _down_up_block_types(shape.num_levels, spatio_temporal=False)
    return {
        "sample_size": sample_size,
        "in_channels": preset.vae.latent_channels,
        "out_channels": preset.vae.latent_channels,
        "down_block_types": down,
        "up_block_types": up,
        "block_out_channels": shape.block_out_channels,
        "layers_per_block": shape.layers_per_block,
        "cross_attention_dim": shape.cross_attention_dim,
        "transformer_layers_per_block": shape.transformer_layers_per_block,
        "attention_head_dim": shape.num_attention_heads,
        "norm_eps": 1e-5,
        "norm_num_groups": 32,
        "use_linear_projection": True,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "act_fn": "silu",
    }


def vae_config(preset: ModelPreset) -> dict[str, Any]:
    """Keyword arguments of diffusers' `AutoencoderKLTemporalDecoder`."""
    shape = preset.vae
    return {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ("DownEncoderBlock2D",) * len(shape.block_out_channels),
        "block_out_channels": shape.block_out_channels,
        "layers_per_block": shape.layers_per_block,
        "latent_channels": shape.latent_channels,
        "scaling_factor": shape.scaling_factor,
        "force_upcast": True,
    }


def clip_vision_config(preset: ModelPreset) -> dict[str, Any]:
    """Keyword arguments of transformers' `CLIPVisionConfig` (for `CLIPVisionModelWithProjection`)."""
    v = preset.vision
    return {
        "hidden_size": v.hidden_size,
        "intermediate_size": v.intermediate_size,
        "num_hidden_layers": v.num_hidden_layers,
        "num_attention_heads": v.num_attention_heads,
        "patch_size": v.patch_size,
        "image_size": CLIP_IMAGE_SIZE,
        "projection_dim": v.projection_dim,
        "hidden_act": v.hidden_act,
    }


def clip_text_config(preset: ModelPreset) -> dict[str, Any]:
    """Keyword arguments of transformers' `CLIPTextConfig`; ids 0/1 are the tokenizer's bos/eos."""
    t = preset.text
    return {
        "hidden_size": t.hidden_size,
        "intermediate_size": t.intermediate_size,
        "num_hidden_layers": t.num_hidden_layers,
        "num_attention_heads": t.num_attention_heads,
        "vocab_size": t.vocab_size,
        "max_position_embeddings": TEXT_MAX_LENGTH,
        "projection_dim": t.projection_dim,
        "hidden_act": t.hidden_act,
    }


def scheduler_config() -> dict[str, Any]:
    """`EulerDiscreteScheduler` as shipped with the released SVD pipeline (scheduler_config.json).

    v-prediction with continuous timesteps 0.25*ln(sigma) and Karras sigmas in [0.002, 700] is exactly the
    EDM preconditioning `svd_core.training.edm` trains (VScalingWithEDMcNoise).
    """
    return {
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "interpolation_type": "linear",
        "prediction_type": "v_prediction",
        "sigma_min": 0.002,
        "sigma_max": 700.0,
        "steps_offset": 1,
        "timestep_spacing": "leading",
        "timestep_type": "continuous",
        "use_karras_sigmas": True,
    }


def feature_extractor_config() -> dict[str, Any]:
    """`CLIPImageProcessor` settings of the released pipeline (OpenAI CLIP mean/std, 224 crop)."""
    return {
        "crop_size": {"height": CLIP_IMAGE_SIZE, "width": CLIP_IMAGE_SIZE},
        "size": {"shortest_edge": CLIP_IMAGE_SIZE},
        "do_center_crop": True,
        "do_normalize": True,
        "do_resize": True,
        "do_rescale": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
    }
