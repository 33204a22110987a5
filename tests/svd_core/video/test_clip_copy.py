"""`clips.mode=copy`: stream-copied clips snapped to keyframes inside the shot, on real photos filmed by a
virtual camera and encoded with a known GOP (a keyframe every 10 frames, cuts between keyframes)."""

from __future__ import annotations

import io
import time
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import numpy as np
import pytest

from svd_core.curation.config import ClipConfig, CutConfig, LvdConfig
from svd_core.video.clips import (
    DROP_NO_KEYFRAME,
    DROP_SHORT_AFTER_SNAP,
    ClipOutput,
    PacketCopier,
    PassStats,
    clip_recipe,
    split_video,
)
from svd_core.video.decode import probe_video
from svd_core.video.frames import key_indices
from svd_core.video.real_set import FPS, RealShot, render

GOP = 10
COPY = LvdConfig(cuts=CutConfig(detector="cascade", min_clip_s=1.0), clips=ClipConfig(mode="copy"))
SHOTS = [  # cuts at frames 57 and 123, between the keyframes every 10 frames
    RealShot("motorcycle", 57 / FPS, shake=0.01),
    RealShot("china", 66 / FPS, pan=(0.1, 0.0)),
    RealShot("astronaut", 57 / FPS, zoom=0.05),
]
CUTS = [57, 123]


def _encode(path: Path, frames: list[np.ndarray], x264_params: str) -> Path:
    with av.open(str(path), "w") as container:
        stream = cast(av.VideoStream, container.add_stream("libx264", rate=FPS))
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        stream.time_base = Fraction(1, 12800)
        stream.options = {"preset": "veryfast", "crf": "20", "x264-params": x264_params}
        for img in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    gen, _, truth = render(SHOTS, seed=3)
    assert [c["frame"] for c in truth] == CUTS
    return list(gen)


def _source(path: Path) -> tuple[list[np.ndarray], list[float], list[bool]]:
    """Every source frame (RGB), its time from the stream start and whether it is a keyframe."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        origin, base = stream.start_time or 0, float(stream.time_base or 0)
        decoded = list(container.decode(stream))
    return (
        [f.to_ndarray(format="rgb24") for f in decoded],
        [(f.pts - origin) * base for f in decoded],
        [bool(f.key_frame) for f in decoded],
    )


def _split(path: Path, cfg: LvdConfig = COPY) -> tuple[list[ClipOutput], PassStats]:
    clips: list[ClipOutput] = []
    probe = probe_video(path, str(path), cfg.decode)
    stats = split_video(path, str(path), probe, cfg, time.monotonic() + 60, clips.append)
    return clips, stats


def _decode(data: bytes) -> list[np.ndarray]:
    with av.open(io.BytesIO(data)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


@pytest.mark.parametrize(
    ("x264_params", "leading"),
    [
        (f"keyint={GOP}:min-keyint={GOP}:scenecut=0", 0),  # closed GOPs with B-frames (x264's default)
        # Open GOPs: the frames shown just before a keyframe but coded after it (up to `bframes`) need
        # that keyframe, so a clip ending there stops before them.
        (f"keyint={GOP}:min-keyint={GOP}:scenecut=0:open-gop=1:bframes=3", 3),
    ],
)
def test_copied_clips_are_the_source_frames_between_keyframes_inside_each_shot(
    tmp_path: Path, frames: list[np.ndarray], x264_params: str, leading: int
) -> None:
    path = _encode(tmp_path / "gop10.mp4", frames, x264_params)
    source, times, keys = _source(path)
    clips, stats = _split(path)
    assert [c.frame for c in stats.cuts] == CUTS
    assert len(clips) == 3
    bounds = [0, *CUTS, len(source)]
    for k, clip in enumerate(clips):
        first, last = clip.first_frame, clip.first_frame + clip.num_frames  # [first, last)
        shot_start, shot_end = bounds[k], bounds[k + 1]
        # inside the shot, starting at its first keyframe, ending at the last keyframe before the cut
        assert keys[first] and first == next(i for i in range(shot_start, shot_end) if keys[i])
        assert shot_start <= first < last <= shot_end
        if last < len(source):  # ends at the last keyframe at or before the cut (less leading frames)
            end_key = max(i for i in range(first + 1, shot_end + 1) if keys[i])
            assert end_key - leading <= last <= end_key
            assert leading or keys[last]
        # the row's start/end are the true times of what was written
        assert clip.start_s == pytest.approx(times[first], abs=1e-6)
        end = times[last] if last < len(source) else times[-1] + 1 / FPS
        assert clip.end_s == pytest.approx(end, abs=1e-6)
        # a stream copy: the same coded frames, so the same pixels, frame for frame
        decoded = _decode(clip.data)
        assert len(decoded) == clip.num_frames
        for got, want in zip(decoded, source[first:last], strict=True):
            assert np.array_equal(got, want)
        assert (clip.width, clip.height) == (source[0].shape[1], source[0].shape[0])
        # scoring frames cover the copied range only, at the usual rate
        assert clip.frames.timestamps_s[-1] < clip.duration_s
        assert clip.frames.num_frames == int(np.ceil(clip.duration_s * COPY.scoring.sample_fps - 1e-6))
        # ...and the large key frames (for text detection) are the clip's first, middle and last sample
        large, stamps = clip.frames.key_frames_large, clip.frames.timestamps_s
        assert large is not None and large.shape[1:] == source[0].shape
        for image, k in zip(large, key_indices(clip.frames.num_frames), strict=True):
            want = source[first + round(stamps[k] * FPS)].astype(float)
            assert np.abs(image - want).mean() < 2
    assert stats.dropped == {}


def test_shots_too_short_after_snapping_are_dropped_and_counted(
    tmp_path: Path, frames: list[np.ndarray]
) -> None:
    path = _encode(tmp_path / "gop10.mp4", frames, f"keyint={GOP}:min-keyint={GOP}:scenecut=0")
    # min_clip_s 2.2 s: every shot is long enough (2.28, 2.64, 2.28 s), but snapped to keyframes shot 1
    # keeps 0..50 (2.0 s) and shot 3 keeps 130..180 (2.0 s); shot 2 keeps 60..120 (2.4 s).
    cfg = COPY.model_copy(update={"cuts": COPY.cuts.model_copy(update={"min_clip_s": 2.2})})
    clips, stats = _split(path, cfg)
    assert [(c.first_frame, c.num_frames) for c in clips] == [(60, 60)]
    assert stats.dropped == {DROP_SHORT_AFTER_SNAP: 2}


def test_a_shot_without_keyframe_gives_no_clip(tmp_path: Path, frames: list[np.ndarray]) -> None:
    # One keyframe at frame 0 only: shots 2 and 3 have none.
    path = _encode(tmp_path / "gop-inf.mp4", frames, "keyint=infinite:scenecut=0")
    clips, stats = _split(path)
    assert [(c.first_frame, c.num_frames) for c in clips] == []  # shot 1 has no later keyframe to end at
    assert stats.dropped == {DROP_SHORT_AFTER_SNAP: 1, DROP_NO_KEYFRAME: 2}


def test_searching_for_a_keyframe_keeps_no_packets_that_cannot_start_a_clip(
    tmp_path: Path, frames: list[np.ndarray]
) -> None:
    path = _encode(tmp_path / "gop-inf.mp4", frames, "keyint=infinite:scenecut=0")
    copier = PacketCopier(path, str(path))
    try:
        assert copier.keyframe_at_or_after(0.0) == 0.0 and copier.keyframe_at_or_after(1.0) is None
        assert copier.eof and len(copier.buffer) == 1  # read to the end: only the keyframe at 0 s is held
    finally:
        copier.close()
    path = _encode(tmp_path / "gop10.mp4", frames, f"keyint={GOP}:min-keyint={GOP}:scenecut=0")
    copier = PacketCopier(path, str(path))
    try:
        assert copier.keyframe_at_or_after(4.5) == pytest.approx(120 / FPS)
        assert len(copier.buffer) == 1  # the keyframe found; the 120 packets before it were let go
    finally:
        copier.close()


def test_recipe_names_the_mode() -> None:
    assert clip_recipe(COPY) == "copy:keyframes"
    assert clip_recipe(LvdConfig()).startswith("libx264:crf18:veryfast:max720")


def test_copied_clips_keep_the_display_matrix(tmp_path: Path, frames: list[np.ndarray]) -> None:
    """A phone video stays a phone video: the stream copy carries its rotation; the row has display size."""
    path = tmp_path / "phone.mp4"
    with av.open(str(path), "w") as container:
        stream = cast(av.VideoStream, container.add_stream("libx264", rate=FPS))
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        stream.set_display_rotation(90)
        for img in frames[:50]:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        container.mux(stream.encode())
    clips, _ = _split(path)
    assert len(clips) == 1 and (clips[0].width, clips[0].height) == (frames[0].shape[0], frames[0].shape[1])
    with av.open(io.BytesIO(clips[0].data)) as container:
        assert next(container.decode(video=0)).rotation == 90


def test_the_lvd_build_stores_copied_clips_with_their_true_times(
    tmp_path: Path, frames: list[np.ndarray]
) -> None:
    from svd_core.curation.lvd import process_video, scorer_versions
    from svd_core.video.shards import open_clip

    path = _encode(tmp_path / "gop10.mp4", frames, f"keyint={GOP}:min-keyint={GOP}:scenecut=0")
    source, times, _ = _source(path)
    result = process_video(str(path), COPY, str(tmp_path / "out"), [])
    assert result.quarantine is None and len(result.rows) == 3
    assert result.stats["clips_dropped"] == {}
    assert scorer_versions(COPY, [])["clips"] == "copy:keyframes"
    for row, (first, last) in zip(result.rows, [(0, 50), (60, 120), (130, 180)], strict=True):
        assert row["start_s"] == pytest.approx(times[first], abs=1e-6)
        end = times[last] if last < len(times) else times[-1] + 1 / FPS
        assert row["end_s"] == pytest.approx(end, abs=1e-6) and row["num_frames"] == last - first
        stored = _decode(open_clip(row["clip_uri"]))
        assert all(np.array_equal(a, b) for a, b in zip(stored, source[first:last], strict=True))
