"""Probe and decode source videos once, and turn decoded frames into what each consumer needs.

One decode pass feeds three consumers from the same frames: YUV thumbnails for cut detection (every
frame), the clip encoder (every frame, at the clip size), and RGB scoring frames at `scoring.sample_fps`
downscaled once into `SampledFrames`. Bad inputs raise `BadVideo`, which names the file, the stage and the
reason; the LVD build quarantines them and goes on.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from svd_core.curation.config import DecodeConfig
from svd_core.errors import InputError
from svd_core.video.frames import SampledFrames

STILL_IMAGE_FORMATS = ("image2", "png_pipe", "jpeg_pipe", "bmp_pipe", "webp_pipe", "tiff_pipe", "gif")


class BadVideo(InputError):
    """A source video that cannot give clips: goes to the quarantine table with `stage` and `reason`."""

    def __init__(self, source: str, stage: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source, self.stage, self.reason = source, stage, reason


class DecodeTimeout(BadVideo):
    """The per-video time limit ran out (a decoder stuck on a corrupt stream, or a far too long video)."""


@dataclass(frozen=True)
class VideoProbe:
    """What the container header says about the first video stream."""

    codec: str
    width: int
    height: int
    fps: float
    """Average frame rate (the nominal rate for variable-frame-rate files)."""
    duration_s: float | None
    """Declared duration of the video stream, if the header has one."""
    declared_frames: int
    """Frame count from the header (0 = unknown)."""
    rotation: int = 0
    """Display-matrix rotation (degrees counterclockwise, a multiple of 90) applied to every decoded frame:
    phones store portrait video as landscape frames plus this matrix. `width`/`height` are after it."""
    sample_aspect_ratio: float = 1.0
    """Pixel aspect ratio of the coded frames (anamorphic sources != 1); `width` is the display width
    (coded width x this), and frames are scaled to square pixels."""
    pix_fmt: str = "yuv420p"
    """Coded pixel format (10-bit sources, e.g. yuv420p10le, are converted to 8-bit yuv420p on decode)."""


@dataclass(frozen=True)
class DecodedFrame:
    index: int
    """Position in the source stream's presentation order (the unit of cut positions)."""
    time_s: float
    """Presentation time from the stream start (from timestamps, so variable frame rates are exact)."""
    frame: av.VideoFrame
    """yuv420p frame at the working size (the clip size)."""


def probe_video(path: str | Path, source: str, cfg: DecodeConfig) -> VideoProbe:
    """Open the container and check the video stream is decodable and within limits (only the first frame is
    decoded, for its display matrix)."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise BadVideo(source, "probe", "zero-byte file")
    container = _open(path, source)
    try:
        return _probe_stream(container, source, cfg)
    finally:
        container.close()


def _open(path: Path, source: str) -> av.container.InputContainer:
    try:
        return av.open(str(path), timeout=60.0)
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise BadVideo(
            source,
            "probe",
            f"not a readable video container ({exc.__class__.__name__}: "
            f"{_short(exc)}); the file is truncated, corrupt or not a video",
        ) from None


def _probe_stream(container: av.container.InputContainer, source: str, cfg: DecodeConfig) -> VideoProbe:
    if container.format.name in STILL_IMAGE_FORMATS:
        raise BadVideo(source, "probe", f"still image ({container.format.name}), not a video")
    if not container.streams.video:
        kinds = (
            ", ".join(
                f"{s.type} {s.codec_context.name if s.codec_context else '?'}" for s in container.streams
            )
            or "none"
        )
        raise BadVideo(source, "probe", f"no video stream (streams: {kinds})")
    stream = container.streams.video[0]
    if stream.codec_context is None or stream.codec_context.codec is None:
        raise BadVideo(
            source,
            "probe",
            "unsupported codec: FFmpeg has no decoder for the video stream's "
            "codec; transcode it (e.g. to H.264) to include it",
        )
    width, height = stream.codec_context.width, stream.codec_context.height
    if width <= 0 or height <= 0:
        raise BadVideo(source, "probe", f"video stream has no frame size ({width}x{height})")
    if width * height > cfg.max_pixels:
        raise BadVideo(
            source,
            "probe",
            f"resolution {width}x{height} exceeds decode.max_pixels="
            f"{cfg.max_pixels} ({width * height} pixels); raise the limit to accept it",
        )
    duration = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
    if duration is None and container.duration:
        duration = container.duration / 1e6
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    if fps <= 0 and duration and stream.frames:
        fps = stream.frames / duration
    if fps <= 0:
        raise BadVideo(source, "probe", "video stream has no frame rate and no timing to derive one")
    sar_frac = stream.codec_context.sample_aspect_ratio or stream.sample_aspect_ratio
    sar = float(sar_frac) if sar_frac and sar_frac > 0 else 1.0
    rotation = _first_frame_rotation(container, stream)
    disp_w, disp_h = max(2, round(width * sar)), height
    if rotation % 180:
        disp_w, disp_h = disp_h, disp_w
    return VideoProbe(
        stream.codec_context.name,
        disp_w,
        disp_h,
        fps,
        duration,
        int(stream.frames or 0),
        rotation,
        sar,
        stream.codec_context.pix_fmt or "yuv420p",
    )


def _first_frame_rotation(container: av.container.InputContainer, stream: av.VideoStream) -> int:
    """The display matrix's rotation, read from the first decodable frame (0 if none or undecodable)."""
    try:
        for frame in container.decode(stream):
            return _quarter_turns(frame.rotation) * 90
    except (av.error.FFmpegError, ValueError):
        return 0
    return 0


def _quarter_turns(rotation: float | int | None) -> int:
    """Counterclockwise quarter turns (0-3) nearest to a display-matrix angle."""
    return round((rotation or 0) / 90) % 4


def rotate_frame(frame: av.VideoFrame, quarter_turns: int) -> av.VideoFrame:
    """A yuv420p frame rotated counterclockwise by `quarter_turns` x 90 degrees (timestamps kept)."""
    if quarter_turns % 4 == 0:
        return frame
    y, u, v = (np.rot90(p, quarter_turns) for p in yuv_planes(frame))
    h, w = y.shape
    data = np.concatenate([y.ravel(), u.ravel(), v.ravel()]).reshape(h * 3 // 2, w)
    out = av.VideoFrame.from_ndarray(data, format="yuv420p")
    out.pts, out.time_base = frame.pts, frame.time_base
    return out


def working_size(width: int, height: int, max_short_side: int | None) -> tuple[int, int]:
    """The clip size: the source size, downscaled to `max_short_side` if larger; even (4:2:0 chroma)."""
    scale = 1.0
    if max_short_side and min(width, height) > max_short_side:
        scale = max_short_side / min(width, height)
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def iter_frames(
    path: str | Path, source: str, probe: VideoProbe, size: tuple[int, int], deadline: float, threads: int = 0
) -> Generator[DecodedFrame, None, None]:
    """Decode every frame once, in presentation order, as yuv420p at `size`; checks the deadline per frame.

    Timestamps come from the stream (variable frame rate is handled by time, not by index); frames without
    a timestamp get the nominal rate. A decode error mid-stream raises BadVideo (corrupt or truncated).
    """
    container = _open(Path(path), source)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if threads:
            stream.codec_context.thread_count = threads
        start = stream.start_time or 0
        base = float(stream.time_base) if stream.time_base else 0.0
        reformatter = VideoReformatter()  # one per video: keeps its scaler, ~20x cheaper than per frame
        turns = _quarter_turns(probe.rotation)
        coded_size = (size[1], size[0]) if turns % 2 else size  # scale first, then rotate
        index, last_time = 0, -1.0
        try:
            for frame in container.decode(stream):
                if time.monotonic() > deadline:
                    raise DecodeTimeout(
                        source, "decode", f"timed out after {index} frames (decode.timeout_s)"
                    )
                t = (frame.pts - start) * base if frame.pts is not None and base else index / probe.fps
                t = max(t, last_time + 1e-6)  # strictly increasing, even for broken timestamps
                yield DecodedFrame(index, t, rotate_frame(to_working(frame, coded_size, reformatter), turns))
                index, last_time = index + 1, t
        except av.error.FFmpegError as exc:
            raise BadVideo(
                source,
                "decode",
                f"decode error after {index} frames (t={max(last_time, 0):.2f} s): "
                f"{_short(exc)}; the file is corrupt or truncated",
            ) from None
    finally:
        container.close()


def to_working(
    frame: av.VideoFrame, size: tuple[int, int], reformatter: VideoReformatter | None = None
) -> av.VideoFrame:
    """yuv420p at the clip size (a no-op for the common case of an 8-bit 4:2:0 source kept at its size)."""
    if frame.format.name == "yuv420p" and (frame.width, frame.height) == size:
        return frame
    out = (reformatter or VideoReformatter()).reformat(
        frame, width=size[0], height=size[1], format="yuv420p", interpolation="AREA"
    )
    out.pts, out.time_base = frame.pts, frame.time_base
    return out


def yuv_planes(frame: av.VideoFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Zero-copy views of the Y, U and V planes of a yuv420p frame."""
    planes = []
    for plane in frame.planes:
        rows = np.frombuffer(memoryview(plane), np.uint8).reshape(plane.height, plane.line_size)
        planes.append(rows[:, : plane.width])
    return planes[0], planes[1], planes[2]


def thumbnail(frame: av.VideoFrame, short_side: int) -> np.ndarray:
    """(h, w, 3) uint8 YUV thumbnail with the given short side: what every cut-detection level compares."""
    y, u, v = yuv_planes(frame)
    scale = short_side / min(frame.width, frame.height)
    size = (max(1, round(frame.width * scale)), max(1, round(frame.height * scale)))
    # Area-averaging a large plane dominates the cost; every `step`-th pixel still leaves >= 4x4 samples per
    # thumbnail pixel (~4x cheaper at 720p, identical below 256 px short side).
    step = max(1, min(frame.width, frame.height) // (4 * short_side))
    y, u, v = (
        y[::step, ::step],
        u[:: max(1, step // 2), :: max(1, step // 2)],
        v[:: max(1, step // 2), :: max(1, step // 2)],
    )
    return np.dstack([cv2.resize(p, size, interpolation=cv2.INTER_AREA) for p in (y, u, v)])


def to_rgb(
    frame: av.VideoFrame, max_short_side: int, reformatter: VideoReformatter | None = None
) -> np.ndarray:
    """RGB uint8 frame downscaled (never upscaled) to `max_short_side`."""
    scale = min(1.0, max_short_side / min(frame.width, frame.height))
    width, height = max(1, round(frame.width * scale)), max(1, round(frame.height * scale))
    out = (reformatter or VideoReformatter()).reformat(
        frame, width=width, height=height, format="rgb24", interpolation="AREA"
    )
    return out.to_ndarray()


class FrameSampler:
    """Collects one clip's scoring frames at `sample_fps` (by timestamp), converted and downscaled once."""

    def __init__(self, sample_fps: float, max_short_side: int, source_size: tuple[int, int]):
        self.step = 1.0 / sample_fps
        self.sample_fps = sample_fps
        self.max_short_side = max_short_side
        self.source_size = source_size
        self.frames: list[np.ndarray] = []
        self.times: list[float] = []
        self.next_time = 0.0
        self.reformatter = VideoReformatter()

    def offer(self, frame: av.VideoFrame, rel_time: float) -> None:
        """Keep the frame if it is the first at or after the next sampling time."""
        if rel_time + 1e-6 < self.next_time:
            return
        self.frames.append(to_rgb(frame, self.max_short_side, self.reformatter))
        self.times.append(rel_time)
        while self.next_time <= rel_time + 1e-6:
            self.next_time += self.step

    def build(self) -> SampledFrames:
        return SampledFrames(
            frames=np.stack(self.frames),
            timestamps_s=np.asarray(self.times, np.float64),
            sample_fps=self.sample_fps,
            source_width=self.source_size[0],
            source_height=self.source_size[1],
        )


def _short(exc: BaseException, limit: int = 160) -> str:
    text = str(exc).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."
