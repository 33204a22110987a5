"""Build pipeline components from a preset: deterministic random weights, or empty (meta) for counting.

Models are built as plain modules (never under `deepspeed.zero.Init`, which breaks diffusers'
`AlphaBlender` construction `torch.Tensor([alpha])`); the trainer partitions them afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import torch
from diffusers import (
    AutoencoderKLTemporalDecoder,
    EulerDiscreteScheduler,
    UNet2DConditionModel,
    UNetSpatioTemporalConditionModel,
)
from transformers import (
    CLIPImageProcessor,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

from svd_core.errors import ConfigError
from svd_core.model import config as configs
from svd_core.model.config import ConditioningMode, ModelPreset, is_temporal_key
from svd_core.model.inflate import align_norm_eps
from svd_core.model.text_conditioning import (
    BOS_TOKEN,
    EOS_TOKEN,
    build_byte_level_tokenizer,
    byte_level_vocab,
)

M = TypeVar("M", bound=torch.nn.Module)


@dataclass
class Components:
    """Everything a pipeline folder holds. `unet` is the video UNet, or the 2D image UNet for stage I."""

    unet: torch.nn.Module
    vae: AutoencoderKLTemporalDecoder
    image_encoder: CLIPVisionModelWithProjection
    feature_extractor: CLIPImageProcessor
    scheduler: EulerDiscreteScheduler
    text_encoder: CLIPTextModel | None = None
    tokenizer: CLIPTokenizer | None = None

    @property
    def conditioning(self) -> ConditioningMode:
        return "text" if self.text_encoder is not None else "image"


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's CPU generator for the block without disturbing the caller's random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _build(factory: Callable[[], M], seed: int, meta: bool) -> M:
    if meta:
        with torch.device("meta"):
            return factory()
    with seeded(seed):
        return factory()


def build_unet(
    preset: ModelPreset,
    mode: ConditioningMode,
    num_frames: int,
    sample_size: int | None = None,
    seed: int = 0,
    meta: bool = False,
) -> UNetSpatioTemporalConditionModel:
    cfg = configs.unet_config(preset, mode, num_frames, sample_size)
    return _build(lambda: UNetSpatioTemporalConditionModel(**cfg), seed, meta)


def build_image_unet(
    preset: ModelPreset, sample_size: int | None = None, seed: int = 0, meta: bool = False
) -> UNet2DConditionModel:
    """The stage-I image UNet, its norm eps aligned to the video UNet it inflates into."""
    cfg = configs.image_unet_config(preset, sample_size)
    unet = _build(lambda: UNet2DConditionModel(**cfg), seed, meta)
    align_norm_eps(unet)
    return unet


def build_vae(preset: ModelPreset, seed: int = 0, meta: bool = False) -> AutoencoderKLTemporalDecoder:
    cfg = configs.vae_config(preset)
    return _build(lambda: AutoencoderKLTemporalDecoder(**cfg), seed, meta)


def build_image_encoder(
    preset: ModelPreset, seed: int = 0, meta: bool = False
) -> CLIPVisionModelWithProjection:
    cfg = CLIPVisionConfig(**configs.clip_vision_config(preset))
    return _build(lambda: CLIPVisionModelWithProjection(cfg), seed, meta).eval()


def build_text_encoder(preset: ModelPreset, seed: int = 0, meta: bool = False) -> CLIPTextModel:
    vocab = byte_level_vocab()
    ids = {
        "bos_token_id": vocab[BOS_TOKEN],
        "eos_token_id": vocab[EOS_TOKEN],
        "pad_token_id": vocab[EOS_TOKEN],
    }
    if preset.text.vocab_size != len(vocab):
        # Released-size text towers pair with the released tokenizer (49406/49407 are its specials).
        ids = {"bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 49407}
    cfg = CLIPTextConfig(**configs.clip_text_config(preset), **ids)
    return _build(lambda: CLIPTextModel(cfg), seed, meta).eval()


def build_tokenizer(preset: ModelPreset) -> CLIPTokenizer:
    """The byte-level tokenizer for presets whose text vocabulary is 514; the released 49,408-token CLIP
    vocabulary cannot be made offline and must come from a parent pipeline's `tokenizer/` folder."""
    vocab_size = len(byte_level_vocab())
    if preset.text.vocab_size != vocab_size:
        raise ConfigError(
            f"model preset {preset.name!r} uses the released CLIP tokenizer ({preset.text.vocab_size} tokens), "
            "which is not built from scratch here; set init.kind=pipeline with a parent pipeline folder that "
            "has a tokenizer/ (e.g. one exported by a text-mode stage), or use preset tiny"
        )
    return build_byte_level_tokenizer()


def build_feature_extractor() -> CLIPImageProcessor:
    return CLIPImageProcessor(**configs.feature_extractor_config())


def build_scheduler() -> EulerDiscreteScheduler:
    return EulerDiscreteScheduler(**configs.scheduler_config())


def build_components(
    preset: ModelPreset,
    mode: ConditioningMode,
    num_frames: int,
    sample_size: int | None = None,
    seed: int = 0,
    image_unet: bool = False,
) -> Components:
    """Every component with random weights from `seed` (each component gets its own derived seed)."""
    unet: torch.nn.Module = (
        build_image_unet(preset, sample_size, seed=seed)
        if image_unet
        else build_unet(preset, mode, num_frames, sample_size, seed=seed)
    )
    text = mode == "text"
    return Components(
        unet=unet,
        vae=build_vae(preset, seed=seed + 1).eval(),
        image_encoder=build_image_encoder(preset, seed=seed + 2),
        feature_extractor=build_feature_extractor(),
        scheduler=build_scheduler(),
        text_encoder=build_text_encoder(preset, seed=seed + 3) if text else None,
        tokenizer=build_tokenizer(preset) if text else None,
    )


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_temporal_parameters(unet: torch.nn.Module) -> int:
    return sum(p.numel() for name, p in unet.named_parameters() if is_temporal_key(name))
