"""`MultiViewPipeline`: diffusers' `StableVideoDiffusionPipeline` that also feeds the elevation id.

Everything else (CLIP image embedding, noise-augmented conditioning latent, Euler/EDM loop, guidance rising
linearly across the frames, temporal VAE decode) is the stock pipeline, so a multi-view model is sampled
exactly like SVD. A multi-view export is a plain `StableVideoDiffusionPipeline` folder (its UNet config
carries the 4-id vector conditioning); load it with `MultiViewPipeline.from_pretrained(folder)`. The stock
class loads it too but refuses to sample it (its 3 ids do not fit the 4-id embedding).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import StableVideoDiffusionPipeline
from PIL import Image

from svd_core.errors import InputError
from svd_core.tasks.multiview.elevation import has_elevation_input


class MultiViewPipeline(StableVideoDiffusionPipeline):
    """Call with `elevation_deg=` besides the usual SVD arguments; `num_frames` = views per orbit."""

    _elevation_deg: float | None = None

    def __call__(self, image: Any, *args: Any, elevation_deg: float | None = None, **kwargs: Any) -> Any:
        if elevation_deg is None:
            raise InputError("MultiViewPipeline needs elevation_deg (the input view's elevation in degrees)")
        if not has_elevation_input(self.unet):
            raise InputError("this pipeline's UNet has no elevation input; it is not a multi-view model")
        self._elevation_deg = float(elevation_deg)
        try:
            return super().__call__(image, *args, **kwargs)
        finally:
            self._elevation_deg = None

    def _get_add_time_ids(
        self,
        fps: int,
        motion_bucket_id: int,
        noise_aug_strength: float,
        dtype: torch.dtype,
        batch_size: int,
        num_videos_per_prompt: int,
        do_classifier_free_guidance: bool,
    ) -> torch.Tensor:
        ids = [fps, motion_bucket_id, noise_aug_strength, self._elevation_deg]
        add_time_ids = torch.tensor([ids], dtype=dtype).repeat(batch_size * num_videos_per_prompt, 1)
        if do_classifier_free_guidance:
            add_time_ids = torch.cat([add_time_ids, add_time_ids])
        return add_time_ids


def load_multiview_pipeline(folder: str | Path, device: torch.device | str = "cpu") -> MultiViewPipeline:
    pipe = MultiViewPipeline.from_pretrained(str(folder), local_files_only=True).to(device)
    if not has_elevation_input(pipe.unet):
        raise InputError(f"{folder} is not a multi-view model (its UNet has no elevation input)")
    pipe.set_progress_bar_config(disable=True)
    return pipe


@torch.no_grad()
def generate_orbit(
    pipe: MultiViewPipeline,
    image: Image.Image,
    elevation_deg: float,
    num_views: int,
    size: int,
    num_inference_steps: int = 25,
    min_guidance_scale: float = 1.0,
    max_guidance_scale: float = 2.5,
    fps_id: int = 6,
    motion_bucket_id: int = 127,
    noise_aug_strength: float = 0.02,
    seed: int = 0,
    decode_chunk_size: int | None = None,
) -> np.ndarray:
    """uint8 (num_views, size, size, 3): the orbit from `image` (the first view) in azimuth order."""
    out = pipe(
        image.convert("RGB").resize((size, size)),
        elevation_deg=elevation_deg,
        height=size,
        width=size,
        num_frames=num_views,
        num_inference_steps=num_inference_steps,
        min_guidance_scale=min_guidance_scale,
        max_guidance_scale=max_guidance_scale,
        fps=fps_id + 1,  # the pipeline feeds fps - 1
        motion_bucket_id=motion_bucket_id,
        noise_aug_strength=noise_aug_strength,
        decode_chunk_size=decode_chunk_size or None,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="pt",
    )
    frames = out.frames[0].float().clamp(0, 1)
    return (frames.permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
