"""The interpolation model: an image-to-video UNet with the paper's masked-frame conditioning.

UNet input per frame slot (channels): the c_in-scaled noisy latent (4), then the conditioning latent (4) --
the two given end frames carry their VAE latents (noise-augmented, unscaled, exactly as the base pipeline
builds its conditioning-frame latent), the middle slots a learned mask embedding (one 4-vector broadcast
over the slot) -- then one binary mask channel (1 = slot to predict, 0 = given). So `conv_in` takes 9
channels: the base's 8 (noisy + conditioning latent) are copied, the mask channel starts at zero, and the
finetune starts as the base model looking at a "frame" in every slot. Cross-attention sees two tokens: the
CLIP image embeddings of the first and the last frame.

The mask embedding starts at zero, which is what the base sees for "no conditioning frame" (its
classifier-free-guidance branch), and is trained with the UNet: both live in `InterpolationUNet`, so the
generic trainer shards, checkpoints, averages (EMA) and exports them together.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import UNetSpatioTemporalConditionModel
from safetensors.torch import load_file, save_file

from svd_core.errors import InputError
from svd_core.model import encoders
from svd_core.model.build import Components
from svd_core.model.export import atomic_directory, export_pipeline
from svd_core.model.inflate import adapt_unet_state_dict
from svd_core.model.pipeline_io import MODEL_INDEX, read_json, read_model_info

STAGE = "interpolation"
PIPELINE_CLASS = "SvdInterpolationPipeline"
"""model_index.json `_class_name` of an export: a 9-channel UNet must not pass for a plain SVD pipeline."""
MASK_FILE = "interpolation/mask_embedding.safetensors"
MASK_KEY = "mask_embedding"


@dataclass(frozen=True)
class BaseSpec:
    """What the interpolation stage needs to know about an image-to-video base folder."""

    folder: Path
    latent_channels: int
    vae_factor: int
    unet_factor: int

    @property
    def pixel_factor(self) -> int:
        """Height and width must be multiples of this (VAE downsampling x UNet downsampling)."""
        return self.vae_factor * self.unet_factor


def _downsample(config: dict[str, Any]) -> int:
    return 2 ** (len(config["block_out_channels"]) - 1)


def inspect_base(folder: str | Path) -> BaseSpec:
    """Check that `folder` is an image-to-video pipeline (video UNet, 2 x latent input channels, no text
    tower) from its JSON files alone; raise InputError naming what it is instead."""
    folder = Path(folder)
    if not (folder / MODEL_INDEX).is_file():
        raise InputError(f"base {folder} is not a pipeline folder (no {MODEL_INDEX}); pass an exported model")
    index = read_json(folder / MODEL_INDEX)
    info = read_model_info(folder)  # svd_model.json ({} for third-party folders)
    if info.get("stage") == STAGE or index.get("_class_name") == PIPELINE_CLASS:
        raise InputError(
            f"base {folder} is already an interpolation model; pass the image-to-video model it came from"
        )
    if index.get("text_encoder") not in (None, [None, None]):
        raise InputError(
            f"base {folder} is a text-to-video model; interpolation finetunes an image-to-video model "
            "(stage III, conditioning=image)"
        )
    unet_class = (index.get("unet") or [None, None])[1]
    if unet_class != "UNetSpatioTemporalConditionModel":
        raise InputError(
            f"base {folder} has a {unet_class} UNet (a stage-I image model?); interpolation needs an "
            "image-to-video video model (stage II/III with conditioning=image)"
        )
    unet_cfg = read_json(folder / "unet" / "config.json")
    vae_cfg = read_json(folder / "vae" / "config.json")
    latent = int(vae_cfg.get("latent_channels", 4))
    if unet_cfg.get("in_channels") != 2 * latent:
        raise InputError(
            f"base {folder}: its UNet takes {unet_cfg.get('in_channels')} input channels, an image-to-video "
            f"UNet takes {2 * latent} (noisy + conditioning-frame latent); pass an image-to-video model"
        )
    return BaseSpec(folder, latent, _downsample(vae_cfg), _downsample(unet_cfg))


def check_resolution(spec: BaseSpec, height: int, width: int) -> None:
    factor = spec.pixel_factor
    for name, value in (("height", height), ("width", width)):
        if value % factor:
            raise InputError(
                f"{name}: {value} is not divisible by {factor}, the pixel factor of base {spec.folder}; use "
                f"{max(factor, value // factor * factor)} or {(value // factor + 1) * factor}"
            )


def widen_for_interpolation(
    base_unet: UNetSpatioTemporalConditionModel, num_frames: int, sample_size: int | None
) -> UNetSpatioTemporalConditionModel:
    """The base UNet with conv_in taking one more channel (the mask); base weights copied, new one zero."""
    config = {**base_unet.config, "in_channels": base_unet.config.in_channels + 1}
    config.update(num_frames=num_frames, sample_size=sample_size)
    widened = UNetSpatioTemporalConditionModel.from_config(config)
    state, _ = adapt_unet_state_dict(base_unet.state_dict(), widened)
    widened.load_state_dict(state, strict=True)
    return widened


class InterpolationUNet(torch.nn.Module):
    """UNet + learned mask embedding; `forward` builds the conditioning channels from the end latents."""

    def __init__(self, unet: UNetSpatioTemporalConditionModel, mask_embedding: torch.Tensor | None = None):
        super().__init__()
        latent = unet.config.out_channels
        if unet.config.in_channels != 2 * latent + 1:
            raise InputError(
                f"interpolation UNet needs {2 * latent + 1} input channels, got {unet.config.in_channels}"
            )
        self.unet = unet
        init = torch.zeros(latent) if mask_embedding is None else mask_embedding.detach().clone().float()
        self.mask_embedding = torch.nn.Parameter(init.to(next(unet.parameters()).dtype))

    def conditioning(self, end_latents: torch.Tensor, num_frames: int) -> torch.Tensor:
        """(B, 2, C, h, w) first/last latents -> (B, T, C + 1, h, w): latents or mask embedding, mask bit."""
        batch, _, channels, height, width = end_latents.shape
        dtype = self.mask_embedding.dtype
        ends = end_latents.to(dtype)
        middle = self.mask_embedding.view(1, 1, channels, 1, 1).expand(
            batch, num_frames - 2, -1, height, width
        )
        latents = torch.cat([ends[:, :1], middle, ends[:, 1:]], dim=1)
        mask = torch.zeros(batch, num_frames, 1, height, width, dtype=dtype, device=ends.device)
        mask[:, 1:-1] = 1.0
        return torch.cat([latents, mask], dim=2)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        added_time_ids: torch.Tensor,
        end_latents: torch.Tensor,
    ) -> Any:
        """`sample` (B, T, C, h, w) is the c_in-scaled noisy latent (as the base UNet's first channels)."""
        cond = self.conditioning(end_latents, sample.shape[1])
        unet_in = torch.cat([sample, cond.to(sample.dtype)], dim=2)
        return self.unet(
            unet_in, timestep, encoder_hidden_states=encoder_hidden_states, added_time_ids=added_time_ids
        )


@torch.no_grad()
def end_frame_latents(
    components: Components,
    first: torch.Tensor,
    last: torch.Tensor,
    cond_aug: torch.Tensor,
    noise_seeds: torch.Tensor,
) -> torch.Tensor:
    """(B, 3, H, W) frames in [-1, 1] -> (B, 2, C, h, w) noise-augmented unscaled latents (the base's
    conditioning-frame latent, `encoders.cond_frame_latent`); the last frame's noise uses seed + 1."""
    a = encoders.cond_frame_latent(components, first, cond_aug, noise_seeds)
    b = encoders.cond_frame_latent(components, last, cond_aug, noise_seeds + 1)
    return torch.stack([a, b], dim=1)


@torch.no_grad()
def end_frame_context(components: Components, first: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) clean frames in [-1, 1] -> (B, 2, D): CLIP image embeddings of both as two tokens."""
    return torch.cat([encoders.image_context(components, first), encoders.image_context(components, last)], 1)


def save_mask_embedding(model: InterpolationUNet, folder: Path) -> None:
    path = folder / MASK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({MASK_KEY: model.mask_embedding.detach().float().cpu().contiguous()}, str(path))


def load_mask_embedding(folder: Path) -> torch.Tensor:
    path = folder / MASK_FILE
    if not path.is_file():
        raise InputError(
            f"{folder} has no {MASK_FILE}; it is not an interpolation export (svd train interpolation)"
        )
    return load_file(str(path))[MASK_KEY]


def export_interpolation_pipeline(
    components: Components, model: InterpolationUNet, out_dir: str | Path, info: dict[str, Any]
) -> Path:
    """Write the pipeline folder (the base's layout with the 9-channel UNet, `_class_name`
    SvdInterpolationPipeline, the mask embedding, svd_model.json with stage=interpolation); atomic."""
    out_dir = Path(out_dir)
    with atomic_directory(out_dir) as tmp:
        comp = dataclasses.replace(components, unet=model.unet)
        export_pipeline(comp, tmp, info={**info, "stage": STAGE, "mask_embedding": MASK_FILE})
        index = read_json(tmp / MODEL_INDEX)
        index["_class_name"] = PIPELINE_CLASS
        (tmp / MODEL_INDEX).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
        save_mask_embedding(model, tmp)
    return out_dir
