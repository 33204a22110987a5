"""Frozen encoders: pixels -> VAE latents, first frame -> CLIP image context, tokens -> text context.

Each function reproduces what diffusers' `StableVideoDiffusionPipeline` does at inference, so a model
trained on these inputs sees at training time exactly what the pipeline feeds it:

- video latents: `vae.encode(x).latent_dist` sampled, times `scaling_factor` (0.18215);
- conditioning-frame latent: `vae.encode(frame0 + cond_aug * noise).latent_dist.mode()`, NOT scaled;
- CLIP image context: the clean first frame in [-1, 1], antialiased resize to 224 (`_resize_with_antialiasing`
  from the pipeline module), back to [0, 1], CLIP mean/std, `image_embeds` as one cross-attention token.
"""

from __future__ import annotations

import torch
from diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion import (
    _resize_with_antialiasing,
)

from svd_core.model.build import Components
from svd_core.model.config import CLIP_IMAGE_SIZE
from svd_core.model.text_conditioning import encode_token_ids

VAE_CHUNK = 16
"""Frames per VAE encoder call, bounding activation memory at high resolution."""


def _device_of(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


@torch.no_grad()
def video_latent_dist(components: Components, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """frames (B, T, 3, H, W) in [-1, 1] -> posterior mean and std, each (B, T, C, H/f, W/f), unscaled."""
    vae = components.vae
    batch, num_frames = frames.shape[:2]
    flat = frames.flatten(0, 1).to(_device_of(vae), vae.dtype)
    means, stds = [], []
    for start in range(0, flat.shape[0], VAE_CHUNK):
        dist = vae.encode(flat[start : start + VAE_CHUNK]).latent_dist
        means.append(dist.mean.float())
        stds.append(dist.std.float())
    mean = torch.cat(means).unflatten(0, (batch, num_frames))
    std = torch.cat(stds).unflatten(0, (batch, num_frames))
    return mean, std


def sample_scaled_latents(
    components: Components, mean: torch.Tensor, std: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Reparameterised posterior sample (as `latent_dist.sample()`), scaled by the VAE's scaling factor."""
    noise = torch.randn(mean.shape, generator=generator, device=generator.device).to(mean.device)
    return (mean + std * noise) * components.vae.config.scaling_factor


def cond_aug_noise(shape: tuple[int, ...], seeds: torch.Tensor) -> torch.Tensor:
    """Per-sample pixel noise for the conditioning frame from each sample's own seed (CPU, deterministic),
    so the noisy conditioning latent is a function of the dataset item and can be cached."""
    rows = []
    for seed in seeds.tolist():
        gen = torch.Generator().manual_seed(int(seed))
        rows.append(torch.randn(shape, generator=gen))
    return torch.stack(rows)


@torch.no_grad()
def cond_frame_latent(
    components: Components, frame0: torch.Tensor, cond_aug: torch.Tensor, noise_seeds: torch.Tensor
) -> torch.Tensor:
    """frame0 (B, 3, H, W) in [-1, 1] -> mode of the VAE posterior of the noise-augmented frame (B, C, h, w)."""
    vae = components.vae
    device = _device_of(vae)
    noise = cond_aug_noise(tuple(frame0.shape[1:]), noise_seeds).to(device)
    noisy = frame0.to(device).float() + cond_aug.to(device).float().view(-1, 1, 1, 1) * noise
    return vae.encode(noisy.to(vae.dtype)).latent_dist.mode().float()


@torch.no_grad()
def image_context(components: Components, frame0: torch.Tensor) -> torch.Tensor:
    """frame0 (B, 3, H, W) in [-1, 1] (clean) -> CLIP image embedding as one context token (B, 1, D)."""
    encoder = components.image_encoder
    device = _device_of(encoder)
    image = _resize_with_antialiasing(frame0.to(device).float(), (CLIP_IMAGE_SIZE, CLIP_IMAGE_SIZE))
    image = (image + 1.0) / 2.0
    extractor = components.feature_extractor
    mean = torch.tensor(extractor.image_mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(extractor.image_std, device=device).view(1, 3, 1, 1)
    pixels = ((image - mean) / std).to(encoder.dtype)
    return encoder(pixel_values=pixels).image_embeds.unsqueeze(1).float()


@torch.no_grad()
def text_context(components: Components, input_ids: torch.Tensor) -> torch.Tensor:
    """Token ids (B, 77) -> CLIP text hidden states (B, 77, D)."""
    if components.text_encoder is None:
        raise ValueError("text_context needs a text encoder; the components are image-conditioned")
    return encode_token_ids(components.text_encoder, input_ids).float()
