"""Probe and decode source videos once, and turn decoded frames into what each consumer needs.

One decode pass feeds three consumers from the same frames: YUV thumbnails for cut detection (every
frame), the clip encoder (every frame, at the clip size), and RGB scoring frames at `scoring.sample_fps`
downscaled once into `SampledFrames`. Bad inputs raise `BadVideo`, which names the file, the stage and the
reason; the LVD build quarantines them and goes on.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from svd_core.curation.config import DecodeConfig, RunConfig
from svd_core.errors import InputError
from svd_core.video.color import SdrConverter, Transfer, needs_conversion, source_transfer
from svd_core.video.frames import SampledFrames, key_indices

STILL_IMAGE_FORMATS = ("image2", "png_pipe", "jpeg_pipe", "bmp_pipe", "webp_pipe", "tiff_pipe", "gif")
INTERLACED_FIELD_ORDERS = (2, 3, 4, 5)
"""FFmpeg AVFieldOrder values of interlaced streams (TT, BB, TB, BT); 0 is unknown, 1 progressive."""


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
    transfer: Transfer = "sdr"
    """Transfer characteristic: `pq` (SMPTE ST 2084) and `hlg` (ARIB STD-B67) are HDR and tone-mapped to
    BT.709 SDR on decode (svd_core.video.color), as are sources with BT.2020 primaries."""
    color_primaries: int = 2
    """FFmpeg AVColorPrimaries of the source (1 BT.709, 2 unspecified, 9 BT.2020)."""
    interlaced: bool = False
    """The source is interlaced (its first frame is flagged so, or the stream declares a field order)."""
    deinterlace: Literal["none", "flagged", "all"] = "none"
    """What the decode deinterlaces (bwdif, one frame per frame): `flagged` frames only, `all` frames (an
    interlaced field order with unflagged frames), or `none` (progressive, or `decode.deinterlace: off`)."""

    @property
    def color_converted(self) -> bool:
        """Frames are colour-converted to BT.709 SDR on decode (HDR transfer or BT.2020 primaries)."""
        return needs_conversion(self.transfer, self.color_primaries)


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
    decoded, for its display matrix, colour tags and interlacing)."""
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
    duration = _declared_duration(container, stream)
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    if fps <= 0 and duration and stream.frames:
        fps = stream.frames / duration
    if fps <= 0:
        raise BadVideo(source, "probe", "video stream has no frame rate and no timing to derive one")
    codec = stream.codec_context
    first = _first_frame(container, stream)
    display = _Display.of(stream, first, width, height)
    flagged = first is not None and bool(first.interlaced_frame)
    interlaced = flagged or (codec.field_order or 0) in INTERLACED_FIELD_ORDERS
    deinterlace: Literal["none", "flagged", "all"] = "none"
    if interlaced and cfg.deinterlace == "auto":
        deinterlace = "flagged" if flagged else "all"
    return VideoProbe(
        codec.name,
        display.size[0],
        display.size[1],
        fps,
        duration,
        int(stream.frames or 0),
        display.rotation,
        display.sar,
        codec.pix_fmt or "yuv420p",
        display.transfer,
        display.primaries,
        interlaced,
        deinterlace,
    )


@dataclass(frozen=True)
class _Display:
    """How a stream's frames are shown: rotation, pixel aspect, display size and colour tags."""

    rotation: int
    sar: float
    size: tuple[int, int]
    transfer: Transfer
    primaries: int

    @classmethod
    def of(cls, stream: av.VideoStream, frame: av.VideoFrame | None, width: int, height: int) -> _Display:
        """From the stream and a decoded frame (None: no rotation, the container's colour tags)."""
        codec = stream.codec_context
        sar_frac = codec.sample_aspect_ratio or stream.sample_aspect_ratio
        sar = float(sar_frac) if sar_frac and sar_frac > 0 else 1.0
        rotation = _quarter_turns(frame.rotation) * 90 if frame is not None else 0
        size = (max(2, round(width * sar)), height)
        if rotation % 180:
            size = (size[1], size[0])
        # Colour tags: the frame's (what the bitstream says), else the container's.
        trc = _tag(frame.color_trc if frame is not None else None, codec.color_trc)
        primaries = _tag(frame.color_primaries if frame is not None else None, codec.color_primaries)
        return cls(rotation, sar, size, source_transfer(trc), primaries)


def _tag(frame_value: int | None, stream_value: int | None) -> int:
    """A colour tag: the frame's unless unspecified (0 reserved, 2 unspecified), else the stream's."""
    if frame_value not in (None, 0, 2):
        return int(frame_value)
    return int(stream_value or 2)


def _declared_duration(container: av.container.InputContainer, stream: av.VideoStream) -> float | None:
    """The video stream's duration from the header (the container's if the stream has none)."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return container.duration / 1e6 if container.duration else None


def _first_frame(container: av.container.InputContainer, stream: av.VideoStream) -> av.VideoFrame | None:
    """The first decodable frame (None if none, or the stream fails before one)."""
    try:
        for frame in container.decode(stream):
            return frame
    except (av.error.FFmpegError, ValueError):
        return None
    return None


def header_duration(path: str | Path) -> float | None:
    """A video's declared duration from its header alone (nothing decoded); None if unknown or unreadable."""
    try:
        with av.open(str(path), timeout=60.0) as container:
            if not container.streams.video:
                return None
            return _declared_duration(container, container.streams.video[0])
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError, OSError):
        return None


def time_limit_s(duration_s: float | None, decode: DecodeConfig, run: RunConfig) -> float:
    """The wall-clock limit for one video: `decode.timeout_s` as a floor, or `run.time_limit_s_per_minute`
    per minute of declared duration when that is more, capped at `run.time_limit_max_s` (a header that
    claims days must not buy days). Unknown duration: the floor."""
    scaled = run.time_limit_s_per_minute * (duration_s or 0.0) / 60.0
    return max(decode.timeout_s, min(scaled, run.time_limit_max_s))


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
    a timestamp get the nominal rate. Interlaced sources are deinterlaced first where `probe.deinterlace`
    says so; HDR and BT.2020 sources are converted to BT.709 SDR (`probe.color_converted`). A decode error
    mid-stream raises BadVideo (corrupt or truncated).
    """
    container = _open(Path(path), source)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if threads:
            stream.codec_context.thread_count = threads
        start = stream.start_time or 0
        base = float(stream.time_base) if stream.time_base else 0.0
        convert = DisplayConverter.from_probe(probe, size)
        decoded: Iterable[av.VideoFrame] = container.decode(stream)
        if probe.deinterlace != "none":
            decoded = deinterlaced(decoded, stream, probe.deinterlace)
        index, last_time = 0, -1.0
        try:
            for frame in decoded:
                if time.monotonic() > deadline:
                    raise DecodeTimeout(
                        source, "decode", f"timed out after {index} frames (the per-video time limit)"
                    )
                t = (frame.pts - start) * base if frame.pts is not None and base else index / probe.fps
                t = max(t, last_time + 1e-6)  # strictly increasing, even for broken timestamps
                yield DecodedFrame(index, t, convert(frame))
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


def deinterlaced(
    frames: Iterable[av.VideoFrame], stream: av.VideoStream, mode: Literal["flagged", "all"]
) -> Generator[av.VideoFrame, None, None]:
    """FFmpeg's bwdif deinterlacer over decoded frames: one progressive frame per frame (at the time of its
    first field), timestamps kept in the stream's time base, field parity from each frame's flags.
    `flagged` leaves frames not flagged interlaced as they are."""
    graph: av.filter.Graph | None = None
    for frame in frames:
        if graph is None:  # built from the first frame: its real size and pixel format
            graph = av.filter.Graph()
            source = graph.add_buffer(
                width=frame.width, height=frame.height, format=frame.format, time_base=stream.time_base
            )
            deint = "interlaced" if mode == "flagged" else "all"
            bwdif = graph.add("bwdif", f"mode=send_frame:parity=auto:deint={deint}")
            sink = graph.add("buffersink")
            source.link_to(bwdif)
            bwdif.link_to(sink)
            graph.configure()
        graph.push(frame)
        yield from _drain(graph, stream.time_base)
    if graph is not None:
        graph.push(None)
        yield from _drain(graph, stream.time_base)


def _drain(graph: av.filter.Graph, time_base: Fraction | None) -> Generator[av.VideoFrame, None, None]:
    """The frames a filter graph has ready (none until it has seen the next input frame), with their
    timestamps back in `time_base` (bwdif halves the time base, for its field-rate mode)."""
    while True:
        try:
            out = graph.vpull()
        except (BlockingIOError, EOFError):  # needs more input / flushed
            return
        if time_base and out.pts is not None and out.time_base and out.time_base != time_base:
            out.pts, out.time_base = round(out.pts * out.time_base / time_base), time_base
        yield out


class DisplayConverter:
    """Decoded frames -> upright (display matrix), square-pixel (sample aspect ratio), 8-bit BT.709 SDR
    (10-bit, HDR and BT.2020 sources converted) yuv420p frames at `size` (display orientation). What the
    LVD pass does to every source frame; stream-copied clips (`clips.mode: copy`) keep their source's
    rotation, SAR and transfer, so every reader of a clip file (re-scoring, the training loader) converts
    through this too (`ClipDisplay`)."""

    def __init__(self, rotation: int, size: tuple[int, int], transfer: Transfer, primaries: int):
        self.turns = _quarter_turns(rotation)
        self.coded_size = (size[1], size[0]) if self.turns % 2 else size  # scale first, then rotate
        self.sdr = SdrConverter(transfer) if needs_conversion(transfer, primaries) else None
        self.reformatter = VideoReformatter()  # one per video: keeps its scaler, ~20x cheaper than per frame

    @classmethod
    def from_probe(cls, probe: VideoProbe, size: tuple[int, int] | None = None) -> DisplayConverter:
        """For a probed source, at `size` (default: its display size)."""
        size = size or (probe.width, probe.height)
        return cls(probe.rotation, size, probe.transfer, probe.color_primaries)

    @classmethod
    def for_frame(cls, stream: av.VideoStream, frame: av.VideoFrame) -> DisplayConverter:
        """From a stream and one of its decoded frames (the frame's tags, else the stream's), at display size."""
        display = _Display.of(stream, frame, frame.width, frame.height)
        return cls(display.rotation, display.size, display.transfer, display.primaries)

    def __call__(self, frame: av.VideoFrame) -> av.VideoFrame:
        if self.sdr is not None:
            working = self.sdr(frame, self.coded_size)
        else:
            working = to_working(frame, self.coded_size, self.reformatter)
        return rotate_frame(working, self.turns)


class ClipDisplay:
    """`DisplayConverter` for a reader of a stored clip, set up from the clip's stream and the first frame
    it decodes (no separate probe pass). Interlaced copied clips are not deinterlaced here (bwdif needs
    the stream's neighbouring fields from the start)."""

    def __init__(self, stream: av.VideoStream):
        self.stream = stream
        self.convert: DisplayConverter | None = None

    def __call__(self, frame: av.VideoFrame) -> av.VideoFrame:
        if self.convert is None:
            self.convert = DisplayConverter.for_frame(self.stream, frame)
        return self.convert(frame)


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
    """Collects one clip's scoring frames at `sample_fps` (by timestamp), converted and downscaled once.

    With `key_short_side`, the first, middle and last scoring frames are also kept at that (larger) short
    side for text detection. The final count is unknown while frames stream in, so the sampler holds the
    frames that can still become a key frame: the first, the newest, the newest committed one and those
    from half the committed count on, thinned to every 2nd, 4th, ... sample beyond `MAX_KEY_CANDIDATES`
    (memory stays bounded; a very long shot's middle frame is then within a few samples of exact).
    `provisional`: samples count as final only at `commit()` (a stream-copied clip can still end earlier,
    at a keyframe, and `truncate()` drops the samples after it).
    """

    MAX_KEY_CANDIDATES = 16

    def __init__(
        self,
        sample_fps: float,
        max_short_side: int,
        source_size: tuple[int, int],
        key_short_side: int | None = None,
        provisional: bool = False,
    ):
        self.step = 1.0 / sample_fps
        self.sample_fps = sample_fps
        self.max_short_side = max_short_side
        self.source_size = source_size
        self.frames: list[np.ndarray] = []
        self.times: list[float] = []
        self.next_time = 0.0
        self.reformatter = VideoReformatter()
        self.key_short_side = key_short_side
        self.provisional = provisional
        self.committed = 0
        self.candidates: dict[int, av.VideoFrame] = {}
        """Sample index -> working-size frame, for the samples that can still be a key frame."""
        self.stride = 1

    def offer(self, frame: av.VideoFrame, rel_time: float) -> None:
        """Keep the frame if it is the first at or after the next sampling time."""
        if rel_time + 1e-6 < self.next_time:
            return
        self.frames.append(to_rgb(frame, self.max_short_side, self.reformatter))
        self.times.append(rel_time)
        if self.key_short_side is not None:
            self.candidates[len(self.frames) - 1] = frame
            if not self.provisional:
                self.committed = len(self.frames)
            self._prune()
        while self.next_time <= rel_time + 1e-6:
            self.next_time += self.step

    def commit(self) -> None:
        """The samples so far will stay in the clip (a stream-copied clip reached a keyframe)."""
        self.committed = len(self.frames)
        self._prune()

    def truncate(self, rel_end: float) -> None:
        """Drop the samples at or after `rel_end` (a stream-copied clip ended at an earlier keyframe)."""
        while self.times and self.times[-1] >= rel_end - 1e-6:
            self.times.pop()
            self.frames.pop()
            self.candidates.pop(len(self.frames), None)
        self.committed = min(self.committed, len(self.frames))

    def _prune(self) -> None:
        n = len(self.frames)
        keep = {0, n - 1, self.committed - 1}
        middle = sorted(i for i in self.candidates if i >= self.committed // 2 and i not in keep)
        while len([i for i in middle if i % self.stride == 0]) > self.MAX_KEY_CANDIDATES:
            self.stride *= 2
        wanted = keep | {i for i in middle if i % self.stride == 0}
        self.candidates = {i: f for i, f in self.candidates.items() if i in wanted}

    def build(self) -> SampledFrames:
        key_frames = None
        if self.key_short_side is not None and self.candidates:
            n, reformatter = len(self.frames), VideoReformatter()
            nearest = [min(self.candidates, key=lambda i: (abs(i - k), i)) for k in key_indices(n)]
            key_frames = np.stack(
                [to_rgb(self.candidates[i], self.key_short_side, reformatter) for i in nearest]
            )
        return SampledFrames(
            frames=np.stack(self.frames),
            timestamps_s=np.asarray(self.times, np.float64),
            sample_fps=self.sample_fps,
            source_width=self.source_size[0],
            source_height=self.source_size[1],
            key_frames_large=key_frames,
        )


def _short(exc: BaseException, limit: int = 160) -> str:
    text = str(exc).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."
