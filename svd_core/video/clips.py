"""Split a source video into clips in ONE decode pass: cut detection, clip encoding and scoring frames.

Every decoded frame goes (1) to the streaming cut detector as a thumbnail, (2) into a short look-ahead
buffer until its cut decision is final, then (3) into the current clip's H.264 encoder and, at
`scoring.sample_fps`, into the clip's scoring frames. When a cut arrives the clip is finished and handed to
`on_clip` (which scores it and stores it) before the next one starts, so memory stays bounded by the
look-ahead buffer and one clip's scoring frames, whatever the video length.

Two clip modes (`clips.mode`):
- `reencode` (libx264): the first and last frame are exactly the detected boundary frames.
- `copy` (the paper's method): the source's packets are remuxed without decoding or encoding them
  (`PacketCopier`, a second demux-only reader that walks the file once alongside the decoder). A copied
  clip can only start at a keyframe, so each boundary is snapped to the nearest keyframe that stays inside
  the shot: the start forward to the first keyframe at or after it, the end back to the last keyframe at
  or before the cut. Clips never carry frames of a neighbouring shot; they lose up to a GOP at each end,
  and shots left too short (or without a keyframe) are dropped and counted in `PassStats.dropped`. The row
  records the true start and end of the packets written.

Variable frame rate is handled by timestamps, not quarantined (phone footage is often VFR): every frame
keeps its presentation time into the clip (90 kHz time base), scoring frames are picked by time, and the
table's `fps` is the clip's average rate (frames / duration). Cut positions stay source frame indices.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import time
from bisect import bisect_left, bisect_right, insort
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
EPS_S = 1e-4
"""Two timestamps closer than this (seconds) are the same frame (decoded vs demuxed times of one frame)."""
DROP_SHORT = "shorter than cuts.min_clip_s"
DROP_SHORT_AFTER_SNAP = "shorter than cuts.min_clip_s after snapping to keyframes (clips.mode=copy)"
DROP_NO_KEYFRAME = "no keyframe inside the shot (clips.mode=copy)"


def clip_recipe(cfg: LvdConfig) -> str:
    """What determines a clip's bytes besides its frame range: part of the clip id and of `scorer_versions`."""
    clips = cfg.clips
    if clips.mode == "copy":
        return "copy:keyframes"
    return f"{clips.codec}:crf{clips.crf}:{clips.preset}:max{clips.max_short_side}" + (
        f":{clips.x264_params}" if clips.x264_params else ""
    )


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
    dropped: dict[str, int] = field(default_factory=dict)
    """Shots that gave no clip, counted by reason (too short, too short after keyframe snapping, ...)."""

    def add(self, key: str, dt: float) -> None:
        self.seconds[key] = self.seconds.get(key, 0.0) + dt

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1


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


class PacketCopier:
    """Stream copy (`clips.mode=copy`): a demux-only reader of the source that remuxes packet ranges to MP4.

    It walks the file once, in step with the decoder. Packets are buffered from the start keyframe of the
    clip being collected (`pin`) up to the newest keyframe read; with no clip pinned, only packets from a
    keyframe that can still start a clip (at or after the latest shot start searched) are kept. So memory
    stays the clip's compressed bytes (which its output holds anyway) plus a GOP, also while a long stretch
    without keyframes is searched. Times are
    computed as the decoder's are (`(pts - stream start) x time base`), so they match `DecodedFrame.time_s`.
    A clip is the packets from its start keyframe (in decode order) up to the next boundary keyframe, keeping
    those displayed inside [start, end): frames of an open GOP that belong before the start or after the
    end (they need a reference outside the clip) are left out.
    """

    def __init__(self, path: str | Path, source: str):
        self.source = source
        try:
            self.container = av.open(str(path))
        except av.error.FFmpegError as exc:
            raise BadVideo(source, "clip", f"cannot reopen the source for stream copy: {exc}") from None
        self.stream = self.container.streams.video[0]
        self.origin = self.stream.start_time or 0
        self.base = float(self.stream.time_base) if self.stream.time_base else 0.0
        self.packets = self.container.demux(self.stream)
        self.buffer: deque[tuple[float, av.Packet]] = deque()
        self.keyframes: list[float] = []
        """Times of the keyframes read so far (ascending)."""
        self.pinned: float | None = None
        """Start keyframe of the clip being collected: its packets are kept."""
        self.floor = float("-inf")
        """No clip still to come starts before this time (the latest shot start searched from)."""
        self.eof = False

    def pin(self, start: float | None) -> None:
        """Keep the packets from the keyframe at `start` on (None: keep only from the newest keyframe)."""
        self.pinned = start

    def close(self) -> None:
        with contextlib.suppress(av.error.FFmpegError):
            self.container.close()

    def _read(self) -> bool:
        """Buffer the next packet; False at the end of the stream."""
        while not self.eof:
            try:
                packet = next(self.packets, None)
            except av.error.FFmpegError:
                # A corrupt tail: the decoder reports it (the pass keeps the clips before it).
                self.eof = True
                return False
            if packet is None:
                self.eof = True
                return False
            if packet.size == 0:  # the demuxer's flush packet
                continue
            if packet.pts is None or not self.base:
                raise BadVideo(
                    self.source,
                    "clip",
                    "clips.mode=copy needs packet timestamps and this stream has none; "
                    "use clips.mode=reencode for it",
                )
            t = (packet.pts - self.origin) * self.base
            if packet.is_keyframe:
                insort(self.keyframes, t)
                if self.pinned is None:  # nothing before a keyframe can start a clip still to come
                    self.buffer.clear()
            if self.pinned is None and (not self.keyframes or self.keyframes[-1] < self.floor - EPS_S):
                return True  # after a keyframe too early to start any clip still to come: not kept
            self.buffer.append((t, packet))
            return True
        return False

    def _read_past(self, t: float) -> None:
        """Read until a keyframe later than `t` is known (or the stream ends)."""
        while (not self.keyframes or self.keyframes[-1] <= t + EPS_S) and self._read():
            pass

    def keyframe_at_or_after(self, t: float) -> float | None:
        """Time of the first keyframe at or after `t` (None: no keyframe follows). Clips still to come start
        at or after `t`."""
        self.floor = max(self.floor, t)
        while (not self.keyframes or self.keyframes[-1] < t - EPS_S) and self._read():
            pass
        k = bisect_left(self.keyframes, t - EPS_S)
        return self.keyframes[k] if k < len(self.keyframes) else None

    def keyframe_at_or_before(self, t: float) -> float | None:
        """Time of the last keyframe at or before `t` (None: none)."""
        self._read_past(t)
        k = bisect_right(self.keyframes, t + EPS_S)
        return self.keyframes[k - 1] if k else None

    def is_keyframe(self, t: float) -> bool:
        """Whether the frame displayed at `t` is a keyframe (reads ahead as far as needed)."""
        self._read_past(t)
        k = bisect_left(self.keyframes, t - EPS_S)
        return k < len(self.keyframes) and abs(self.keyframes[k] - t) <= EPS_S

    def copy(self, start: float, end: float | None) -> tuple[bytes, list[float]]:
        """MP4 bytes of the packets displayed in [start, end) (end None: to the end of the stream), from the
        keyframe at `start`; returns the bytes and the written frames' times (ascending)."""
        while True:  # drop what lies before the start keyframe (earlier clips, trimmed or dropped shots)
            if not self.buffer and not self._read():
                raise BadVideo(self.source, "clip", f"stream copy: no keyframe at {start:.3f} s")
            t, packet = self.buffer[0]
            if packet.is_keyframe and abs(t - start) <= EPS_S:
                break
            self.buffer.popleft()
        limit = float("inf") if end is None else end - EPS_S
        chosen: list[tuple[float, av.Packet]] = []
        while self.buffer or self._read():
            t, packet = self.buffer[0]
            if chosen and packet.is_keyframe and t >= limit:
                break  # the end keyframe stays buffered: it may start the next clip
            self.buffer.popleft()
            if start - EPS_S <= t < limit:
                chosen.append((t, packet))
        return self._mux([p for _, p in chosen]), sorted(t for t, _ in chosen)

    def _mux(self, packets: list[av.Packet]) -> bytes:
        buffer = io.BytesIO()
        with av.open(buffer, "w", format="mp4") as out:
            stream = out.add_stream_from_template(self.stream)
            first = packets[0]
            offset = first.dts if first.dts is not None else first.pts
            assert offset is not None  # _read refuses packets without pts
            for packet in packets:
                assert packet.pts is not None
                packet.pts -= offset
                if packet.dts is not None:
                    packet.dts -= offset
                packet.stream = stream
                out.mux(packet)
        return buffer.getvalue()


class ClipSegmenter:
    """Turns the stream of final (frame, cut-before-it?) decisions into clips, applying the length rules.

    A shot runs from its first frame to the next cut (or `max_clip_s`, or an excluded transition frame). In
    `copy` mode the clip inside it starts at the shot's first keyframe (frames before it are skipped) and
    ends at the last keyframe before the shot's end (scoring frames after it are dropped at close).
    """

    def __init__(
        self,
        cfg: LvdConfig,
        probe: VideoProbe,
        size: tuple[int, int],
        on_clip: Callable[[ClipOutput], None],
        stats: PassStats,
        copier: PacketCopier | None = None,
    ):
        self.cfg, self.probe, self.size, self.on_clip, self.stats = cfg, probe, size, on_clip, stats
        self.copier = copier
        self.encoder: ClipEncoder | None = None
        self.sampler: FrameSampler | None = None
        self.active = False
        """A shot is open (its frames go to the current clip)."""
        self.shot_start_s = 0.0
        """First frame of the shot: the length rules (merge, max_clip_s) measure from here."""
        self.start_key: float | None = None
        """copy: time of the keyframe the clip starts at (None: the shot has no keyframe)."""
        self.times: list[float] = []
        """copy: times of the clip's frames so far (to count those before the snapped end)."""
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
        if self.active:
            length = item.time_s - self.shot_start_s
            merge = cuts.short_clip_policy == "merge" and length < cuts.min_clip_s
            if (cut_before and not merge) or (cuts.max_clip_s is not None and length >= cuts.max_clip_s):
                self.close(item.time_s)
        if not self.active:
            self.active, self.shot_start_s = True, item.time_s
            if self.copier is not None:
                self.start_key = self.copier.keyframe_at_or_after(item.time_s)
                self.copier.pin(self.start_key)
        if self.sampler is None:
            if self.copier is not None and (self.start_key is None or item.time_s < self.start_key - EPS_S):
                return  # copy: before the shot's first keyframe, not part of the clip
            self._open(item)
        assert self.sampler is not None
        rel = item.time_s - self.start_s
        t0 = time.perf_counter()
        if self.copier is not None and self.count and self.copier.is_keyframe(item.time_s):
            self.sampler.commit()  # a copied clip ending later ends at this keyframe or after it
        self.sampler.offer(item.frame, rel)
        t1 = time.perf_counter()
        if self.encoder is not None:
            self.encoder.add(item.frame, rel)
        else:
            self.times.append(item.time_s)
        self.stats.add("sample_frames", t1 - t0)
        self.stats.add("encode", time.perf_counter() - t1)
        self.count += 1
        self.last_time = item.time_s

    def close(self, end_s: float, final: bool = False) -> None:
        """Finish the open shot at `end_s` (the next frame's time); too short clips are discarded.

        `final`: the stream ended normally, so a copied clip may run to its end (no end keyframe needed).
        """
        if not self.active:
            return
        self.active = False
        encoder, sampler, self.encoder, self.sampler = self.encoder, self.sampler, None, None
        if self.copier is not None:
            self._close_copy(sampler, end_s, final)
            return
        assert encoder is not None and sampler is not None
        if end_s - self.start_s < self.cfg.cuts.min_clip_s:
            encoder.abort()
            self.stats.drop(DROP_SHORT)
            return
        t0 = time.perf_counter()
        data = encoder.finish()
        self.stats.add("encode", time.perf_counter() - t0)
        self._emit(data, end_s, self.count, sampler)

    def _close_copy(self, sampler: FrameSampler | None, end_s: float, final: bool) -> None:
        assert self.copier is not None
        times, self.times = self.times, []
        try:
            self._copy_clip(sampler, end_s, final, times)
        finally:
            self.copier.pin(None)

    def _copy_clip(self, sampler: FrameSampler | None, end_s: float, final: bool, times: list[float]) -> None:
        assert self.copier is not None
        if end_s - self.shot_start_s < self.cfg.cuts.min_clip_s:
            self.stats.drop(DROP_SHORT)
            return
        if sampler is None:  # the shot ended before its first keyframe
            self.stats.drop(DROP_NO_KEYFRAME)
            return
        t0 = time.perf_counter()
        end_key = None if final else self.copier.keyframe_at_or_before(end_s)
        stop = end_s if end_key is None else end_key
        if stop - self.start_s < self.cfg.cuts.min_clip_s:
            self.stats.drop(DROP_SHORT_AFTER_SNAP)
            return
        data, written = self.copier.copy(self.start_s, end_key)
        # The clip ends where the first frame not written starts (a closed GOP: the end keyframe).
        n = bisect_right(times, written[-1] + EPS_S) if written else 0
        true_end = times[n] if n < len(times) else end_s
        if n != len(written) or abs(written[0] - self.start_s) > EPS_S:
            raise BadVideo(
                self.copier.source,
                "clip",
                f"stream copy of {self.start_s:.3f}-{true_end:.3f} s wrote {len(written)} packets for {n} "
                "decoded frames (broken timestamps); use clips.mode=reencode for this source",
            )
        self.stats.add("copy", time.perf_counter() - t0)
        if true_end - self.start_s < self.cfg.cuts.min_clip_s:
            self.stats.drop(DROP_SHORT_AFTER_SNAP)
            return
        sampler.truncate(true_end - self.start_s)
        self._emit(data, true_end, n, sampler)

    def _emit(self, data: bytes, end_s: float, count: int, sampler: FrameSampler) -> None:
        width, height = (self.probe.width, self.probe.height) if self.copier is not None else self.size
        self.on_clip(
            ClipOutput(data, self.start_s, end_s, self.first_frame, count, width, height, sampler.build())
        )

    def _open(self, item: DecodedFrame) -> None:
        if self.copier is None:
            self.encoder = ClipEncoder(self.size, self.probe.fps, self.cfg)
        self.sampler = FrameSampler(
            self.cfg.scoring.sample_fps,
            self.cfg.scoring.frames_max_short_side,
            (self.probe.width, self.probe.height),
            self.cfg.scoring.key_frames_short_side,
            provisional=self.copier is not None,
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
    copier = PacketCopier(path, source) if cfg.clips.mode == "copy" else None
    segmenter = ClipSegmenter(cfg, probe, size, on_clip, stats, copier)
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
        t0 = time.perf_counter()
        detector.finish()
        stats.add("cut_detect", time.perf_counter() - t0)
        _release(detector, pending, segmenter, cut_frames, stats, detector.final_until)
        if last is None:
            raise BadVideo(source, "decode", "no frame could be decoded")
        if stats.partial is None:
            _check_complete(source, probe, last, cfg)
        segmenter.close(last.time_s + _frame_duration(last, probe), final=stats.partial is None)
    finally:
        frames.close()  # closes the container now, also when a clip consumer raised
        if copier is not None:
            copier.close()
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
