"""Split a source video into clips in ONE decode pass: cut detection, clip encoding and scoring frames.

Every decoded frame goes (1) to the streaming cut detector as a thumbnail, (2) into a short look-ahead
buffer until its cut decision is final, then (3) into the current clip's H.264 encoder and, at
`scoring.sample_fps`, into the clip's scoring frames. When a cut arrives the clip is finished and handed to
`on_clip` (which scores it and stores it) before the next one starts, so memory stays bounded by the
look-ahead buffer and one clip's scoring frames, whatever the video length.

Clips are re-encoded (libx264), not stream-copied: a stream copy can only start at a keyframe, so the clip
would begin up to a GOP (often 2-10 s) before the cut and carry frames of the previous shot. Re-encoding
makes the first and last frame exactly the detected boundary frames.

Variable frame rate is handled by timestamps, not quarantined (phone footage is often VFR): every frame
keeps its presentation time into the clip (90 kHz time base), scoring frames are picked by time, and the
table's `fps` is the clip's average rate (frames / duration). Cut positions stay source frame indices.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Protocol, cast

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from svd_core.curation.config import LvdConfig
from svd_core.video.cuts import Cut, StreamingCutDetector
from svd_core.video.decode import (
    BadVideo,
    DecodedFrame,
    DecodeTimeout,
    FrameSampler,
    VideoProbe,
    iter_frames,
    thumbnail,
    working_size,
)
from svd_core.video.frames import SampledFrames

TIME_BASE = Fraction(1, 90000)  # clip timestamps in 1/90000 s: exact enough for any source frame rate


@dataclass
class ClipOutput:
    """A finished clip: MP4 bytes, where it came from, and its shared scoring frames."""

    data: bytes
    start_s: float
    end_s: float
    first_frame: int
    """Source stream index of the clip's first frame."""
    num_frames: int
    width: int
    height: int
    frames: SampledFrames

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def clip_id_for(video_id: str, first_frame: int, num_frames: int, recipe: str) -> str:
    """Content address of a clip: the source's content hash, the exact frame range and the encoding recipe.

    Not a hash of the MP4 bytes: libx264 (B-frames with mb-tree) gave a few different bytes for the same
    frames from run to run here, so a byte hash would change on every rerun and break shard reuse. The
    frames themselves are fully determined by these inputs; `sha256` of the bytes is kept next to each clip
    in its shard (`<clip_id>.json`) for integrity checks.
    """
    key = f"{video_id}:{first_frame}:{num_frames}:{recipe}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


@dataclass
class PassStats:
    """Where the time of one pass went (seconds) and how much was decoded; read by the benchmark."""

    frames_decoded: int = 0
    decode_passes: int = 0
    cuts: list[Cut] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    partial: dict[str, str] | None = None
    """A quarantine record when a decode error stopped the pass mid-stream (the clips before it are kept)."""

    def add(self, key: str, dt: float) -> None:
        self.seconds[key] = self.seconds.get(key, 0.0) + dt


class ClipEncoder:
    """Encodes one clip's frames to an in-memory MP4 (H.264, yuv420p) with timestamps from the source."""

    def __init__(self, size: tuple[int, int], fps: float, cfg: LvdConfig):
        self.buffer = io.BytesIO()
        self.container = av.open(self.buffer, "w", format="mp4")
        # cfg.clips.codec is a video codec (a plain str, so the stub cannot pick the VideoStream overload).
        self.stream = cast(
            av.VideoStream,
            self.container.add_stream(cfg.clips.codec, rate=Fraction(fps).limit_denominator(1001)),
        )
        self.stream.width, self.stream.height = size
        self.stream.pix_fmt = "yuv420p"
        self.stream.time_base = TIME_BASE
        self.stream.codec_context.time_base = TIME_BASE
        if cfg.clips.codec == "libx264":
            self.stream.options = {"crf": str(cfg.clips.crf), "preset": cfg.clips.preset}
            if cfg.clips.x264_params:
                self.stream.options = {**self.stream.options, "x264-params": cfg.clips.x264_params}
        if cfg.clips.encoder_threads:
            self.stream.codec_context.thread_count = cfg.clips.encoder_threads
        self.last_pts = -1

    def add(self, frame: av.VideoFrame, rel_time: float) -> None:
        pts = max(round(rel_time / TIME_BASE), self.last_pts + 1)
        frame.pts, frame.time_base = pts, TIME_BASE
        # The source's frame types (I/P/B) mean nothing for the new clip, and libx264 takes them as hints.
        frame.pict_type = av.video.frame.PictureType.NONE
        self.last_pts = pts
        self.container.mux(self.stream.encode(frame))

    def finish(self) -> bytes:
        self.container.mux(self.stream.encode())
        self.container.close()
        return self.buffer.getvalue()

    def abort(self) -> None:
        with contextlib.suppress(av.error.FFmpegError):
            self.container.close()


class ClipSegmenter:
    """Turns the stream of final (frame, cut-before-it?) decisions into clips, applying the length rules."""

    def __init__(
        self,
        cfg: LvdConfig,
        probe: VideoProbe,
        size: tuple[int, int],
        on_clip: Callable[[ClipOutput], None],
        stats: PassStats,
    ):
        self.cfg, self.probe, self.size, self.on_clip, self.stats = cfg, probe, size, on_clip, stats
        self.encoder: ClipEncoder | None = None
        self.sampler: FrameSampler | None = None
        self.start_s = 0.0
        self.first_frame = 0
        self.count = 0
        self.last_time = 0.0
        self.excluded: set[int] = set()
        """Source frames inside a gradual transition (plus margin), still to come."""

    def add(self, item: DecodedFrame, cut_before: bool, excluded: bool = False) -> None:
        cuts = self.cfg.cuts
        if excluded:  # a gradual transition's frame (plus margin): in neither neighbouring clip
            self.close(item.time_s)
            return
        if self.encoder is not None:
            length = item.time_s - self.start_s
            merge = cuts.short_clip_policy == "merge" and length < cuts.min_clip_s
            if (cut_before and not merge) or (cuts.max_clip_s is not None and length >= cuts.max_clip_s):
                self.close(item.time_s)
        if self.encoder is None:
            self._open(item)
        assert self.encoder is not None and self.sampler is not None
        rel = item.time_s - self.start_s
        t0 = time.perf_counter()
        self.sampler.offer(item.frame, rel)
        t1 = time.perf_counter()
        self.encoder.add(item.frame, rel)
        self.stats.add("sample_frames", t1 - t0)
        self.stats.add("encode", time.perf_counter() - t1)
        self.count += 1
        self.last_time = item.time_s

    def close(self, end_s: float) -> None:
        """Finish the open clip at `end_s` (the next frame's time); too short clips are discarded."""
        if self.encoder is None or self.sampler is None:
            return
        encoder, sampler, self.encoder, self.sampler = self.encoder, self.sampler, None, None
        if end_s - self.start_s < self.cfg.cuts.min_clip_s:
            encoder.abort()
            return
        t0 = time.perf_counter()
        data = encoder.finish()
        self.stats.add("encode", time.perf_counter() - t0)
        self.on_clip(
            ClipOutput(
                data,
                self.start_s,
                end_s,
                self.first_frame,
                self.count,
                self.size[0],
                self.size[1],
                sampler.build(),
            )
        )

    def _open(self, item: DecodedFrame) -> None:
        self.encoder = ClipEncoder(self.size, self.probe.fps, self.cfg)
        self.sampler = FrameSampler(
            self.cfg.scoring.sample_fps,
            self.cfg.scoring.frames_max_short_side,
            (self.probe.width, self.probe.height),
        )
        self.start_s, self.first_frame, self.count = item.time_s, item.index, 0


def split_video(
    path: str | Path,
    source: str,
    probe: VideoProbe,
    cfg: LvdConfig,
    deadline: float,
    on_clip: Callable[[ClipOutput], None],
) -> PassStats:
    """Decode `path` once; call `on_clip` for every clip, in order. Returns timings and the cuts found."""
    try:
        return _run_pass(path, source, probe, cfg, deadline, on_clip)
    except av.error.FFmpegError as exc:  # decode errors are already BadVideo: this is the encoder
        raise BadVideo(source, "clip", f"clip encoding failed: {exc}") from None


def _run_pass(
    path: str | Path,
    source: str,
    probe: VideoProbe,
    cfg: LvdConfig,
    deadline: float,
    on_clip: Callable[[ClipOutput], None],
) -> PassStats:
    stats = PassStats(decode_passes=1)
    size = working_size(probe.width, probe.height, cfg.clips.max_short_side)
    detector = make_detector(cfg, probe.fps)
    feed = detector_input(cfg)
    guard = _release_guard(cfg, probe.fps)
    segmenter = ClipSegmenter(cfg, probe, size, on_clip, stats)
    pending: deque[DecodedFrame] = deque()
    cut_frames: set[int] = set()
    last: DecodedFrame | None = None
    frames = iter_frames(path, source, probe, size, deadline, cfg.decode.decoder_threads)
    try:
        while True:
            t0 = time.perf_counter()
            try:
                item = next(frames, None)
            except BadVideo as exc:
                if isinstance(exc, DecodeTimeout) or last is None:
                    raise
                # A decode error mid-stream: keep the clips decoded before it; the quarantine row says where.
                stats.partial = {
                    "source_uri": source,
                    "stage": "decode",
                    "reason": f"{exc.reason}; kept the "
                    f"clips before frame {last.index + 1} (t={last.time_s:.2f} s)",
                }
                break
            t1 = time.perf_counter()
            stats.add("decode", t1 - t0)
            if item is None:
                break
            detector.push(feed(item.frame), item.time_s)
            stats.add("cut_detect", time.perf_counter() - t1)
            pending.append(item)
            last = item
            stats.frames_decoded += 1
            _release(detector, pending, segmenter, cut_frames, stats, detector.final_until - guard)
    finally:
        frames.close()  # closes the container now, also when a clip consumer raised
    t0 = time.perf_counter()
    detector.finish()
    stats.add("cut_detect", time.perf_counter() - t0)
    _release(detector, pending, segmenter, cut_frames, stats, detector.final_until)
    if last is None:
        raise BadVideo(source, "decode", "no frame could be decoded")
    if stats.partial is None:
        _check_complete(source, probe, last, cfg)
    segmenter.close(last.time_s + _frame_duration(last, probe))
    return stats


def _release(
    detector: ShotDetector,
    pending: deque[DecodedFrame],
    segmenter: ClipSegmenter,
    cut_frames: set[int],
    stats: PassStats,
    until: int,
) -> None:
    """Hand frames whose cut decision is final to the segmenter; transition frames are marked excluded."""
    margin = round(segmenter.cfg.cuts.transition_margin_s * segmenter.probe.fps)
    for cut in detector.take():
        cut_frames.add(cut.frame)
        stats.cuts.append(cut)
        if cut.extent is not None and cut.kind != "hard":
            segmenter.excluded.update(range(cut.extent[0] - margin, cut.extent[1] + margin + 1))
    while pending and pending[0].index < until:
        item = pending.popleft()
        excluded = item.index in segmenter.excluded
        segmenter.excluded.discard(item.index)
        segmenter.add(item, item.index in cut_frames, excluded)


class ShotDetector(Protocol):
    """What the pass needs of a streaming shot-boundary detector (cascade or TransNetV2)."""

    def push(self, x: np.ndarray, time_s: float) -> None: ...
    def finish(self) -> None: ...
    def take(self) -> list[Cut]: ...
    @property
    def final_until(self) -> int: ...


def make_detector(cfg: LvdConfig, fps: float) -> ShotDetector:
    """The configured streaming detector (`cuts.detector`)."""
    if cfg.cuts.detector == "transnet":
        from svd_core.video.transnet import StreamingTransNetDetector

        return StreamingTransNetDetector(cfg.cuts, fps, cfg.device)
    return StreamingCutDetector(cfg.cuts, fps)


def detector_input(cfg: LvdConfig) -> Callable[[av.VideoFrame], np.ndarray]:
    """What the configured detector reads of each frame: 48x27 RGB (TransNetV2) or YUV thumbnails."""
    if cfg.cuts.detector == "transnet":
        from svd_core.video.transnet import transnet_frame

        reformatter = VideoReformatter()
        return lambda frame: transnet_frame(frame, reformatter)
    return lambda frame: thumbnail(frame, cfg.cuts.analysis_short_side)


def _release_guard(cfg: LvdConfig, fps: float) -> int:
    """Frames held back past the detector's final point so a transition's extent (which can start a
    little before its decided cut) and its margin are known before those frames reach a clip."""
    return round((cfg.cuts.transition_margin_s + 1.0) * fps)


def _frame_duration(frame: DecodedFrame, probe: VideoProbe) -> float:
    """Display time of the last frame: the nominal frame period (its own timestamp gap is unknown)."""
    return 1.0 / probe.fps


def _check_complete(source: str, probe: VideoProbe, last: DecodedFrame, cfg: LvdConfig) -> None:
    """A stream that ends silently well before its declared duration lost its tail (truncated transfer)."""
    if not probe.duration_s:
        return
    decoded = last.time_s + _frame_duration(last, probe)
    if decoded < cfg.decode.min_decoded_fraction * probe.duration_s:
        raise BadVideo(
            source,
            "decode",
            f"truncated: frames end at {decoded:.2f} s of a declared "
            f"{probe.duration_s:.2f} s (decode.min_decoded_fraction={cfg.decode.min_decoded_fraction})",
        )
