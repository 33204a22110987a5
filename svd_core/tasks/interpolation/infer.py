"""Interpolation inference: every pair of consecutive frames gets the frames in between (paper: 3 -> 4x fps).

Output frame k * (num_frames - 1) is input frame k, copied (never regenerated), so an N-frame video becomes
(num_frames - 1)(N - 1) + 1 frames at (num_frames - 1) times its frame rate. Each window is sampled with the
same Euler/EDM loop as diffusers' SVD pipeline (v-prediction, continuous timesteps 0.25 ln sigma) and no
classifier-free guidance: the interpolation finetune is trained without conditioning dropout.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from diffusers import EulerDiscreteScheduler, UNetSpatioTemporalConditionModel

from svd_core import storage as svd_io
from svd_core.data.transforms import to_model_range
from svd_core.device import resolve_device
from svd_core.errors import InputError
from svd_core.model.build import Components
from svd_core.model.pipeline_io import MODEL_INDEX, decode_latents, load_components, read_model_info
from svd_core.tasks.interpolation.config import InterpolateConfig
from svd_core.tasks.interpolation.model import (
    STAGE,
    InterpolationUNet,
    end_frame_context,
    end_frame_latents,
    load_mask_embedding,
)
from svd_core.video.writer import read_frames, write_mp4

Progress = Callable[[int, int], None]
"""progress(windows_done, windows_total)."""


@dataclass
class Interpolator:
    """A loaded interpolation pipeline, ready to sample."""

    components: Components
    model: InterpolationUNet
    num_frames: int
    fps_range: tuple[int, int]
    pixel_factor: int
    device: torch.device

    @property
    def factor(self) -> int:
        """Frame-rate multiplier: one given frame plus the frames between it and the next (paper: 4)."""
        return self.num_frames - 1


def read_video(uri: str | Path) -> tuple[np.ndarray, float]:
    """Frames (N, H, W, 3) uint8 and fps of a video that can be interpolated; InputError otherwise."""
    try:
        with svd_io.local_copy(uri) as path:
            frames, fps = read_frames(path)
    except InputError:
        raise
    except Exception as exc:  # missing file, unreadable storage
        raise InputError(f"video {uri} cannot be read ({exc}); pass an existing MP4/WebM file") from exc
    if len(frames) < 2:
        raise InputError(
            f"video {uri} has {len(frames)} frame; interpolation needs at least 2 (it fills the gaps between "
            "consecutive frames)"
        )
    if fps <= 0:
        raise InputError(f"video {uri} has no frame rate in its stream; re-encode it with one (e.g. -r 7)")
    return frames, fps


def load_interpolator(folder: str | Path, device: str = "auto") -> Interpolator:
    """Load an exported interpolation pipeline folder (local) onto `device`."""
    folder = Path(folder)
    info = read_model_info(folder) if (folder / MODEL_INDEX).is_file() else {}
    if info.get("stage") != STAGE:
        what = f"a stage-{info['stage']} model" if info.get("stage") else "not an interpolation model"
        raise InputError(
            f"{folder} is {what}; train one with `svd train interpolation --base <image-to-video model>`"
        )
    mask = load_mask_embedding(folder)
    components = load_components(folder)
    dev = resolve_device(device)
    unet: UNetSpatioTemporalConditionModel = components.unet  # an interpolation folder holds the video UNet
    model = InterpolationUNet(unet, mask).to(dev).eval()
    for module in (components.vae, components.image_encoder):
        module.to(dev).eval()
    vae_cfg, unet_cfg = components.vae.config, unet.config
    factor = 2 ** (len(vae_cfg.block_out_channels) - 1) * 2 ** (len(unet_cfg.block_out_channels) - 1)
    fps_min, fps_max = info.get("fps_range", [1, 120])
    return Interpolator(components, model, int(info["num_frames"]), (int(fps_min), int(fps_max)), factor, dev)


def _resize(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """(T, H, W, 3) uint8 resized (area when shrinking, cubic when enlarging) without cropping."""
    if frames.shape[1:3] == (height, width):
        return frames
    interp = cv2.INTER_AREA if height * width < frames.shape[1] * frames.shape[2] else cv2.INTER_CUBIC
    return np.stack([cv2.resize(f, (width, height), interpolation=interp) for f in frames])


def working_size(interp: Interpolator, height: int, width: int, cfg: InterpolateConfig) -> tuple[int, int]:
    """The sampling resolution: as configured, else the video's rounded to the model's pixel factor."""
    f = interp.pixel_factor
    h = cfg.height or max(f, round(height / f) * f)
    w = cfg.width or max(f, round(width / f) * f)
    if h % f or w % f:
        raise InputError(f"height {h} and width {w} must be multiples of the model's pixel factor {f}")
    return h, w


def fps_id(interp: Interpolator, fps: float) -> int:
    """Micro-conditioning fps - 1 of the output rate, clamped to the rates the model was trained on."""
    low, high = interp.fps_range
    return int(min(max(round(fps * interp.factor), low), high)) - 1


def _window_seed(seed: int, window: int) -> int:
    return (seed * 1_000_003 + 3 * window) % (2**62)


@torch.no_grad()
def sample_between(
    interp: Interpolator,
    first: torch.Tensor,
    last: torch.Tensor,
    windows: list[int],
    out_fps_id: int,
    cfg: InterpolateConfig,
) -> torch.Tensor:
    """(B, 3, h, w) end frames in [-1, 1] -> (B, num_frames - 2, 3, h, w) new frames in [0, 1]."""
    comp, model, device = interp.components, interp.model, interp.device
    dtype = next(model.parameters()).dtype
    first, last = first.to(device), last.to(device)
    seeds = torch.tensor([_window_seed(cfg.seed, w) for w in windows], dtype=torch.int64)
    cond_aug = torch.full((len(windows),), cfg.noise_aug_strength)
    ends = end_frame_latents(comp, first, last, cond_aug, seeds + 1).to(dtype)
    context = end_frame_context(comp, first, last).to(dtype)
    ids = torch.tensor(
        [[out_fps_id, cfg.motion_bucket_id, cfg.noise_aug_strength]], dtype=dtype, device=device
    )
    ids = ids.repeat(len(windows), 1)
    scheduler = EulerDiscreteScheduler.from_config(comp.scheduler.config)
    scheduler.set_timesteps(cfg.num_inference_steps, device=device)
    shape = (interp.num_frames, model.unet.config.out_channels, *ends.shape[-2:])
    noise = [torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds]
    latents = torch.stack(noise).to(device, dtype) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        model_in = scheduler.scale_model_input(latents, t)
        out = model(model_in, t, context, ids, ends).sample
        latents = scheduler.step(out, t, latents).prev_sample
    return decode_latents(comp.vae, latents)[:, 1:-1]


def _to_uint8(frames: torch.Tensor) -> np.ndarray:
    """(..., 3, H, W) in [0, 1] -> (..., H, W, 3) uint8."""
    return (frames.clamp(0, 1).movedim(-3, -1).cpu().numpy() * 255).round().astype(np.uint8)


def interpolate_frames(
    interp: Interpolator,
    frames: np.ndarray,
    fps: float,
    cfg: InterpolateConfig,
    progress: Progress | None = None,
) -> tuple[np.ndarray, float]:
    """uint8 (N, H, W, 3) at `fps` -> ((factor)(N - 1) + 1 frames, factor * fps) with the inputs copied at
    positions 0, factor, 2 factor, ..."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) < 2:
        raise InputError(
            f"need uint8 frames (N >= 2, H, W, 3) to interpolate, got {frames.dtype} {frames.shape}"
        )
    height, width = frames.shape[1:3]
    h, w = working_size(interp, height, width, cfg)
    pixels = to_model_range(_resize(frames, h, w))
    k, gaps = interp.factor, len(frames) - 1
    out = np.empty((k * gaps + 1, height, width, 3), dtype=np.uint8)
    out[::k] = frames  # the given frames, exactly
    conditioning_fps = fps_id(interp, fps)
    for start in range(0, gaps, cfg.batch_size):
        windows = list(range(start, min(start + cfg.batch_size, gaps)))
        new = sample_between(
            interp, pixels[windows], pixels[[w + 1 for w in windows]], windows, conditioning_fps, cfg
        )
        for window, generated in zip(windows, _to_uint8(new), strict=True):
            out[window * k + 1 : (window + 1) * k] = _resize(generated, height, width)
        if progress is not None:
            progress(windows[-1] + 1, gaps)
    return out, fps * k


def write_video(frames: np.ndarray, out_uri: str | Path, fps: float) -> str:
    """MP4 at a local path (atomic) or a remote URI (written locally, then uploaded)."""
    if svd_io.is_local(out_uri):
        return str(write_mp4(frames, svd_io.local_path(out_uri), fps))
    with tempfile.TemporaryDirectory() as tmp:
        local = write_mp4(frames, Path(tmp) / "interpolated.mp4", fps)
        svd_io.put_file(local, out_uri)
    return str(out_uri)
