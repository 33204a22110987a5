"""Initial components of a training stage: from scratch, from a parent pipeline, or by inflation.

- `scratch`: every component built from the preset with random weights (`init.seed`).
- `pipeline`: every component loaded from `init.pipeline_uri` (local or s3://, `local_files_only`). A
  text-mode parent continues as image-to-video by widening `conv_in` (new channels zero); the parent's
  UNet shapes must match the preset.
- `inflate`: stage II's video UNet built from the preset, spatial weights from the 2D UNet at
  `init.image_unet_uri` (a stage-I export folder, or a bare diffusers UNet folder such as SD 2.1's `unet/`),
  temporal layers identity-initialised; VAE/encoders from `init.pipeline_uri` if set, else the stage-I folder,
  else built from the preset.
- `import`: stage I's UNet is the 2D UNet at `init.image_unet_uri` as it is; the rest as for `inflate`.

Noise conditioning. A UNet is trained either on EDM's continuous c_noise = 0.25 ln(sigma) or on a
discrete-time schedule's timesteps (SD 2.1; `objective.noise_conditioning`). Our exports record theirs
(svd_model.json, and the scheduler's `timestep_type`); a third-party UNet folder is taken as discrete-time.
Inflating an image UNet into stage II under the other conditioning would train the video model on noise
levels its time embedding reads wrongly, so it is refused with the fix: adapt the image model in stage I
first (`import` + continuous, as the paper does before video training) or keep `discrete`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel, UNetSpatioTemporalConditionModel

from svd_core.errors import ConfigError, InputError
from svd_core.model.build import Components, build_components, build_unet
from svd_core.model.config import ModelPreset, get_preset
from svd_core.model.inflate import adapt_unet_state_dict, align_norm_eps, inflate_image_unet
from svd_core.model.pipeline_io import MODEL_INDEX, load_components, read_model_info, resolve_folder
from svd_core.tasks.stages.config import TrainStageConfig


def initial_components(cfg: TrainStageConfig) -> Components:
    preset = get_preset(cfg.preset)
    if cfg.init.kind == "scratch":
        comp = build_components(
            preset,
            cfg.conditioning,
            cfg.num_frames,
            sample_size=cfg.latent_size[0],
            seed=cfg.init.seed,
            image_unet=cfg.stage == "image",
        )
    elif cfg.init.kind == "pipeline":
        assert cfg.init.pipeline_uri is not None  # required for kind=pipeline (TrainStageConfig validates it)
        comp = load_components(cfg.init.pipeline_uri, cfg.init.cache_dir)
        comp = dataclasses.replace(comp, unet=_fit_parent_unet(comp.unet, cfg, preset))
    elif cfg.init.kind == "import":
        comp = _imported(cfg, preset)
    else:
        comp = _inflated(cfg, preset)
    check_unet_kind(comp.unet, cfg)
    check_preset(comp.unet, preset, cfg)
    return _for_mode(comp, cfg)


def check_unet_kind(unet: torch.nn.Module, cfg: TrainStageConfig) -> None:
    """The stage's UNet class: 2D for stage image, spatio-temporal otherwise."""
    wanted = UNet2DConditionModel if cfg.stage == "image" else UNetSpatioTemporalConditionModel
    if not isinstance(unet, wanted):
        hint = (
            "; use init.kind=inflate to turn an image UNet into a video UNet" if cfg.stage != "image" else ""
        )
        raise ConfigError(
            f"stage {cfg.stage} trains a {wanted.__name__}, the parent has {type(unet).__name__}{hint}"
        )


def check_preset(
    unet: UNet2DConditionModel | UNetSpatioTemporalConditionModel, preset: ModelPreset, cfg: TrainStageConfig
) -> None:
    got = tuple(unet.config.block_out_channels), unet.config.cross_attention_dim
    want = preset.unet.block_out_channels, preset.unet.cross_attention_dim
    if got != want:
        raise ConfigError(
            f"preset: {cfg.preset} has UNet channels/context {want} but the initial UNet has {got}; set preset "
            "to the parent's size"
        )


def _for_mode(comp: Components, cfg: TrainStageConfig) -> Components:
    """Image mode carries no text tower; text mode must have one."""
    if cfg.conditioning == "image":
        return dataclasses.replace(comp, text_encoder=None, tokenizer=None)
    if comp.text_encoder is None or comp.tokenizer is None:
        raise InputError(
            "conditioning=text but the initial components have no text_encoder/tokenizer; start from a "
            "text-mode pipeline folder or init.kind=scratch with preset tiny"
        )
    return comp


def _fit_parent_unet(unet: torch.nn.Module, cfg: TrainStageConfig, preset: ModelPreset) -> torch.nn.Module:
    """The parent's UNet, with conv_in widened when the stage needs more input channels."""
    if not isinstance(unet, UNetSpatioTemporalConditionModel):
        return unet
    unet.register_to_config(num_frames=cfg.num_frames, sample_size=cfg.latent_size[0])
    wanted = preset.unet_in_channels(cfg.conditioning)
    if unet.config.in_channels == wanted:
        return unet
    widened = UNetSpatioTemporalConditionModel.from_config({**unet.config, "in_channels": wanted})
    state, _ = adapt_unet_state_dict(unet.state_dict(), widened)
    widened.load_state_dict(state, strict=True)
    return widened


def _load_image_unet(uri: str, cache_dir: str | None) -> tuple[UNet2DConditionModel, Components | None]:
    """The 2D UNet at `uri` and, when `uri` is a whole stage-I folder, its other components."""
    folder = resolve_folder(uri, cache_dir, (MODEL_INDEX, "config.json"))
    if (folder / MODEL_INDEX).is_file():
        comp = load_components(folder)
        unet = comp.unet
    else:
        comp, unet = None, UNet2DConditionModel.from_pretrained(Path(folder), local_files_only=True)
        align_norm_eps(unet)
    if not isinstance(unet, UNet2DConditionModel):
        raise InputError(f"init.image_unet_uri {uri} holds a {type(unet).__name__}, not a 2D image UNet")
    return unet, comp


def _noise_conditioning_of(folder: Path) -> str:
    """What the image UNet in `folder` was trained on: our exports record it (older ones were all
    continuous); a folder without our svd_model.json is third-party and discrete-time (SD 2.1)."""
    info = read_model_info(folder)
    return str(info.get("noise_conditioning", "continuous")) if info else "discrete"


def _image_parent(cfg: TrainStageConfig, preset: ModelPreset) -> tuple[UNet2DConditionModel, Components]:
    """The image UNet at init.image_unet_uri and the components that go with it (init.pipeline_uri, else
    the stage-I folder's, else built from the preset)."""
    assert cfg.init.image_unet_uri is not None  # required for kind=inflate/import (the config validates it)
    image_unet, stage_one = _load_image_unet(cfg.init.image_unet_uri, cfg.init.cache_dir)
    if cfg.init.pipeline_uri:
        return image_unet, load_components(cfg.init.pipeline_uri, cfg.init.cache_dir)
    if stage_one is not None:
        return image_unet, stage_one
    frames = cfg.num_frames if cfg.stage != "image" else 1
    return image_unet, build_components(preset, cfg.conditioning, frames, seed=cfg.init.seed, image_unet=True)


def _imported(cfg: TrainStageConfig, preset: ModelPreset) -> Components:
    image_unet, others = _image_parent(cfg, preset)
    return dataclasses.replace(others, unet=image_unet)


def check_noise_conditioning(cfg: TrainStageConfig) -> None:
    """Stage II must read noise levels the way its image parent was trained to (see the module doc)."""
    if cfg.init.kind != "inflate" or cfg.init.image_unet_uri is None:
        return
    folder = resolve_folder(cfg.init.image_unet_uri, cfg.init.cache_dir, (MODEL_INDEX, "config.json"))
    parent = _noise_conditioning_of(folder)
    wanted = cfg.objective.noise_conditioning
    if parent != wanted:
        raise ConfigError(
            f"init.image_unet_uri {cfg.init.image_unet_uri} was trained on {parent} noise conditioning but "
            f"objective.noise_conditioning is {wanted}: the paper adapts the image model to EDM's continuous "
            "conditioning before video training; run stage I first (init.kind=import "
            f"init.image_unet_uri={cfg.init.image_unet_uri} objective.noise_conditioning=continuous, "
            f"configs/train/paper/image.yaml) and inflate its export, or set objective.noise_conditioning={parent}"
        )


def _inflated(cfg: TrainStageConfig, preset: ModelPreset) -> Components:
    check_noise_conditioning(cfg)
    image_unet, others = _image_parent(cfg, preset)
    video = build_unet(preset, cfg.conditioning, cfg.num_frames, cfg.latent_size[0], seed=cfg.init.seed)
    inflate_image_unet(image_unet, video, cfg.init.mix_factor_init)
    return dataclasses.replace(others, unet=video)
