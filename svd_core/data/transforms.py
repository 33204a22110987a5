"""Frame sampling and pixel transforms for training clips (pure functions, numpy/torch only)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch


def feasible_fps(
    native_fps: float, native_frames: int, num_frames: int, fps_min: int, fps_max: int
) -> list[int]:
    """Integer target rates at which a clip yields `num_frames` frames without repeating a source frame.

    A target rate f takes every (native_fps / f)-th frame, so it must not exceed the native rate, and the
    span (num_frames - 1) * native_fps / f must fit in the clip's last frame index.
    """
    if native_frames < num_frames or native_fps <= 0:
        return []
    if num_frames == 1:
        return list(range(fps_min, max(fps_min, min(fps_max, math.floor(native_fps))) + 1))
    lowest = math.ceil((num_frames - 1) * native_fps / max(native_frames - 1, 1) - 1e-9)
    low = max(fps_min, lowest)
    high = min(fps_max, math.floor(native_fps + 1e-9))
    return list(range(low, high + 1)) if low <= high else []


def frame_indices(native_fps: float, target_fps: int, num_frames: int, start: int) -> list[int]:
    """Source frame indices of `num_frames` frames at `target_fps`, starting at source frame `start`."""
    step = native_fps / target_fps
    return [start + round(k * step) for k in range(num_frames)]


def span_frames(native_fps: float, target_fps: int, num_frames: int) -> int:
    """Source frames between the first and last sampled frame."""
    return round((num_frames - 1) * native_fps / target_fps)


def resize_and_center_crop(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, height, width, 3): scale so the target is covered, then crop the centre.

    Area interpolation when shrinking (no aliasing of fine texture), cubic when enlarging.
    """
    src_h, src_w = frames.shape[1:3]
    scale = max(height / src_h, width / src_w)
    new_h, new_w = max(height, round(src_h * scale)), max(width, round(src_w * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    top, left = (new_h - height) // 2, (new_w - width) // 2
    out = np.empty((frames.shape[0], height, width, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        resized = cv2.resize(frame, (new_w, new_h), interpolation=interp)
        out[i] = resized[top : top + height, left : left + width]
    return out


def to_model_range(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, H, W) float32 in [-1, 1] (the VAE's input range)."""
    tensor = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    return tensor / 127.5 - 1.0
