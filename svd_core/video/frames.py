"""The frames shared by every scorer: one decode pass per clip, sampled and downscaled once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def key_indices(n: int) -> list[int]:
    """Indices of the first, middle and last of `n` frames (fewer when n < 3)."""
    return sorted({0, n // 2, n - 1})


@dataclass(frozen=True)
class SampledFrames:
    """Frames of one clip, decoded once at a low sampling rate and downscaled once.

    Every scorer (flow, text, aesthetics, CLIP, captions) reads these; none decodes the video again.
    """

    frames: np.ndarray
    """uint8 RGB array, shape (T, H, W, 3), in presentation order."""
    timestamps_s: np.ndarray
    """float64 array, shape (T,): presentation time of each frame in seconds from the clip start."""
    sample_fps: float
    """Rate the frames were sampled at (the paper: ~2 fps for Farneback flow)."""
    source_width: int
    """Width of the decoded video before downscaling."""
    source_height: int
    """Height of the decoded video before downscaling."""
    key_frames_large: np.ndarray | None = None
    """The key frames (`key_frames()`: first, middle, last) at the larger `scoring.key_frames_short_side`,
    uint8 RGB (K, H', W', 3), for text detection; None when not kept."""

    def __post_init__(self) -> None:
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3 or self.frames.dtype != np.uint8:
            raise ValueError(
                f"frames must be uint8 (T, H, W, 3), got {self.frames.dtype} {self.frames.shape}"
            )
        if len(self.timestamps_s) != len(self.frames):
            raise ValueError("timestamps_s must have one entry per frame")
        large = self.key_frames_large
        if large is not None and (
            large.ndim != 4 or large.dtype != np.uint8 or len(large) != len(key_indices(len(self.frames)))
        ):
            raise ValueError("key_frames_large must be uint8 (K, H, W, 3) with one frame per key frame")

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    def key_frames(self) -> np.ndarray:
        """First, middle and last frame (the paper's OCR and CLIP frames), shape (K<=3, H, W, 3)."""
        return self.frames[key_indices(self.num_frames)]

    def middle_frame(self) -> np.ndarray:
        return self.frames[self.num_frames // 2]
