"""The base model of a multi-view fine-tune: checked before training, then loaded with the elevation input.

- `video` (SVD-MV): an image-to-video pipeline folder (video UNet, CLIP image conditioning, no text tower).
- `image_stage` (the paper's SD2.1-MV baseline): a stage-I folder whose 2D UNet is inflated into a video UNet
  (spatial weights copied, temporal layers identity-initialised) and then trained with the same recipe.

`check_base_folder` reads only the folder's JSON files, so a wrong base fails in a second, before any rank
process starts; `base_components` loads the weights inside each rank.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from diffusers import UNetSpatioTemporalConditionModel

from svd_core.errors import InputError
from svd_core.model.build import Components, build_unet
from svd_core.model.config import get_preset
from svd_core.model.inflate import inflate_image_unet
from svd_core.model.pipeline_io import (
    MODEL_INDEX,
    load_components,
    read_json,
    read_model_info,
    resolve_folder,
)
from svd_core.tasks.multiview.config import MultiViewConfig
from svd_core.tasks.multiview.elevation import add_elevation_input

VIDEO_UNET = "UNetSpatioTemporalConditionModel"
IMAGE_UNET = "UNet2DConditionModel"


def _component_class(index: dict, name: str) -> str | None:
    spec = index.get(name)
    return spec[1] if isinstance(spec, list) and len(spec) == 2 else None


def check_base_folder(folder: str | Path, base_kind: str, label: str = "") -> None:
    """Raise InputError unless the folder holds the kind of model `base_kind` needs."""
    folder = Path(folder)
    what = label or str(folder)
    if not (folder / MODEL_INDEX).is_file():
        raise InputError(f"base {what} is not a pipeline folder (no {MODEL_INDEX}); pass a registered model")
    index = read_json(folder / MODEL_INDEX)
    unet_class = _component_class(index, "unet")
    if _component_class(index, "text_encoder") is not None:
        raise InputError(
            f"base {what} is a text-to-video model; the multi-view fine-tune starts from an image-to-video "
            "model (CLIP image conditioning): pass one, e.g. the stage-III `svd` model"
        )
    if base_kind == "video" and unet_class != VIDEO_UNET:
        hint = (
            "; to train the paper's SD2.1-MV baseline from it set init.base_kind=image_stage"
            if unet_class == IMAGE_UNET
            else ""
        )
        raise InputError(
            f"base {what} is not an image-to-video model (its unet is {unet_class}); pass a registered "
            f"image-to-video model (stage II/III){hint}"
        )
    if base_kind == "image_stage" and unet_class != IMAGE_UNET:
        raise InputError(
            f"init.base_kind=image_stage needs a stage-I image model, but base {what} has a {unet_class}; "
            "set init.base_kind=video for an image-to-video base"
        )


def _check_preset(unet: UNetSpatioTemporalConditionModel, cfg: MultiViewConfig, what: str) -> None:
    want = get_preset(cfg.preset).unet
    got = tuple(unet.config.block_out_channels), unet.config.cross_attention_dim
    if got != (want.block_out_channels, want.cross_attention_dim):
        raise InputError(
            f"base {what} has UNet channels/context {got}, preset {cfg.preset} expects "
            f"{(want.block_out_channels, want.cross_attention_dim)}; set preset to the base's size"
        )


def base_components(cfg: MultiViewConfig) -> Components:
    """The base's components with a multi-view UNet (elevation input, `num_views` frames), on CPU."""
    if not cfg.init.base_uri:
        raise InputError("init.base_uri is not set; pass --base models:/NAME/N (or set init.base_uri)")
    folder = resolve_folder(cfg.init.base_uri, cfg.init.cache_dir)
    check_base_folder(folder, cfg.init.base_kind, cfg.init.base_uri)
    comp = load_components(folder)
    preset = get_preset(cfg.preset)
    latent = cfg.size // preset.vae.downsample_factor
    if cfg.init.base_kind == "image_stage":
        video = build_unet(preset, "image", cfg.num_views, latent, seed=cfg.init.seed)
        inflate_image_unet(comp.unet, video, cfg.init.mix_factor_init)
        comp = dataclasses.replace(comp, unet=video)
    unet: UNetSpatioTemporalConditionModel = comp.unet  # the video UNet (widened above for an image stage)
    _check_preset(unet, cfg, cfg.init.base_uri)
    if unet.config.in_channels != 2 * comp.vae.config.latent_channels:
        raise InputError(
            f"base {cfg.init.base_uri} UNet takes {unet.config.in_channels} input channels, not the "
            "image-to-video 2 x latent channels (noisy latents + conditioning-frame latent)"
        )
    unet.register_to_config(num_frames=cfg.num_views, sample_size=latent)
    add_elevation_input(unet)
    return comp


def base_info(folder: str | Path) -> dict:
    """The base's svd_model.json ({} for third-party folders)."""
    return read_model_info(Path(folder))
