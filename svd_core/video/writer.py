"""Write generated frames as an H.264 MP4 (what samples, pyfunc predictions and interpolation produce)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from svd_core.errors import InputError
from svd_core.storage import atomic_local_write


def write_mp4(frames: np.ndarray, path: str | Path, fps: float, crf: int = 18) -> Path:
    """uint8 RGB (T, H, W, 3) -> MP4 at `path` (atomic). Odd sizes are padded by one pixel (yuv420p)."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise InputError(f"frames must be non-empty uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    if fps <= 0:
        raise InputError(f"fps must be positive, got {fps}")
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    path = Path(path)
    with atomic_local_write(path) as tmp, av.open(str(tmp), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def read_frames(path: str | Path) -> tuple[np.ndarray, float]:
    """All frames of a (short) video as uint8 RGB (T, H, W, 3) plus its frame rate."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0) or 0.0
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    except (av.error.FFmpegError, IndexError) as exc:
        raise InputError(
            f"{path}: not a readable video ({exc.__class__.__name__}); pass an MP4/WebM file"
        ) from exc
    if not frames:
        raise InputError(f"{path}: the video has no frames")
    return np.stack(frames), fps
