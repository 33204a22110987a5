"""Elevation conditioning: a 4th added time id, embedded sinusoidally and concatenated to the vector
conditioning, exactly how SVD embeds fps, motion bucket and cond_aug.

The paper (appendix D) conditions SVD-MV on "a sinusoidal embedding [of the elevation] concatenated to the
UNet's vector conditioning". In SVD the vector conditioning IS a concatenation of sinusoidal embeddings:
diffusers' `UNetSpatioTemporalConditionModel` computes

    time_embeds = add_time_proj(added_time_ids.flatten())      # Timesteps: sin/cos, d dims per id
    aug_emb = add_embedding(time_embeds.reshape(batch, -1))    # Linear(3d -> ...) -> SiLU -> Linear

(generative-models: ConcatTimestepEmbedderND for fps_id, motion_bucket_id, cond_aug, then `label_emb`). So
the elevation becomes `added_time_ids[:, 3]`: `add_time_proj` gives its sinusoidal embedding, and
`add_embedding.linear_1` is widened from 3d to 4d inputs with the new columns ZERO, so the widened UNet
computes exactly what the base computed until training teaches it to use the elevation. The result is a
plain diffusers UNet whose config says `projection_class_embeddings_input_dim = 4d`: save_pretrained /
from_pretrained round-trip it with no custom code, and `MultiViewPipeline` (svd_core.tasks.multiview.pipeline)
feeds the 4th id at sampling. Elevation is given in degrees (the sinusoid's frequencies 1 .. 1e-4 resolve
-5..30 degrees well; radians would use only the top few frequencies).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from svd_core.errors import InputError
from svd_core.model.config import NUM_ADDED_TIME_IDS

if TYPE_CHECKING:
    from diffusers import UNetSpatioTemporalConditionModel

ELEVATION_ID = NUM_ADDED_TIME_IDS
"""Index of the elevation in `added_time_ids` (after fps_id, motion_bucket_id, cond_aug)."""
MULTIVIEW_TIME_IDS = NUM_ADDED_TIME_IDS + 1


def added_time_id_count(unet: UNetSpatioTemporalConditionModel) -> int:
    """How many added time ids the UNet's vector conditioning takes (3 for SVD, 4 once multi-view)."""
    width = unet.add_embedding.linear_1.in_features
    per_id = unet.config.addition_time_embed_dim
    if width % per_id:
        raise InputError(f"UNet add_embedding takes {width} inputs, not a multiple of {per_id} per added id")
    return width // per_id


def has_elevation_input(unet: UNetSpatioTemporalConditionModel) -> bool:
    return added_time_id_count(unet) == MULTIVIEW_TIME_IDS


@torch.no_grad()
def add_elevation_input(unet: UNetSpatioTemporalConditionModel) -> UNetSpatioTemporalConditionModel:
    """Widen the UNet's vector conditioning by one sinusoidally embedded id (in place; returns the UNet).

    New input columns of `add_embedding.linear_1` start at zero: the output is unchanged until trained.
    A UNet that already has the slot (a multi-view model fine-tuned further) is returned as it is.
    """
    count = added_time_id_count(unet)
    if count == MULTIVIEW_TIME_IDS:
        return unet
    if count != NUM_ADDED_TIME_IDS:
        raise InputError(
            f"the base UNet takes {count} added time ids; SVD image-to-video models take {NUM_ADDED_TIME_IDS}"
        )
    old = unet.add_embedding.linear_1
    per_id = unet.config.addition_time_embed_dim
    new = torch.nn.Linear(old.in_features + per_id, old.out_features, bias=old.bias is not None)
    new = new.to(device=old.weight.device, dtype=old.weight.dtype)
    new.weight.zero_()
    new.weight[:, : old.in_features].copy_(old.weight)
    if old.bias is not None:
        new.bias.copy_(old.bias)
    unet.add_embedding.linear_1 = new
    unet.register_to_config(projection_class_embeddings_input_dim=new.in_features)
    return unet


def multiview_time_ids(
    fps_id: torch.Tensor, motion_bucket_id: torch.Tensor, cond_aug: torch.Tensor, elevation_deg: torch.Tensor
) -> torch.Tensor:
    """(B,) each -> (B, 4) added_time_ids [fps_id, motion_bucket_id, cond_aug, elevation in degrees]."""
    return torch.stack([fps_id, motion_bucket_id, cond_aug, elevation_deg], dim=1)


def elevation_embedding(unet: UNetSpatioTemporalConditionModel, elevation_deg: torch.Tensor) -> torch.Tensor:
    """The sinusoidal embedding the UNet gives an elevation (its `add_time_proj`), (B,) -> (B, d)."""
    return unet.add_time_proj(elevation_deg.flatten())
