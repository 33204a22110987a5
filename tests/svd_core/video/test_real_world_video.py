"""Real-world video in the one-decode pass: phone rotation, anamorphic pixels, 10-bit sources, a decode error
mid-stream, and transitions trimmed from both neighbouring clips. Test clips are made here with PyAV from
real photos (scikit-image's data), a few frames each."""

from __future__ import annotations

import io
import time
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import cv2
import numpy as np
import pytest

from svd_core.curation.config import CutConfig, LvdConfig
from svd_core.video.clips import ClipOutput, split_video
from svd_core.video.decode import BadVideo, VideoProbe, iter_frames, probe_video, working_size
from svd_core.video.real_set import RealShot, load_photo, render

CASCADE = LvdConfig(cuts=CutConfig(detector="cascade"))


def _photo(name: str, w: int, h: int) -> np.ndarray:
    return cv2.resize(load_photo(name), (w, h), interpolation=cv2.INTER_AREA)


def _write(
    path: Path,
    frames: list[np.ndarray],
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    rotation: int = 0,
    sar: Fraction | None = None,
) -> Path:
    with av.open(str(path), "w") as container:
        stream = cast(av.VideoStream, container.add_stream(codec, rate=25))
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], pix_fmt
        if sar is not None:
            stream.codec_context.sample_aspect_ratio = sar
        if rotation:
            stream.set_display_rotation(rotation)
        for img in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        container.mux(stream.encode())
    return path


def _decoded_rgb(path: Path, max_short_side: int | None = None) -> tuple[list[np.ndarray], VideoProbe]:
    probe = probe_video(path, str(path), CASCADE.decode)
    size = working_size(probe.width, probe.height, max_short_side)
    frames = [
        f.frame.to_ndarray(format="rgb24")
        for f in iter_frames(path, str(path), probe, size, time.monotonic() + 60)
    ]
    return frames, probe


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_display_matrix_rotation_is_applied(tmp_path: Path, rotation: int) -> None:
    img = _photo("astronaut", 96, 64)  # landscape as coded; the matrix makes it portrait (or upside down)
    path = _write(tmp_path / "phone.mp4", [img] * 5, rotation=rotation)
    frames, probe = _decoded_rgb(path)
    expected = np.rot90(img, (rotation // 90) % 4)  # FFmpeg's angle is counterclockwise
    assert (probe.width, probe.height) == (expected.shape[1], expected.shape[0])
    assert frames[0].shape == expected.shape
    assert np.abs(frames[2].astype(float) - expected).mean() < 8


def test_sample_aspect_ratio_gives_square_pixels(tmp_path: Path) -> None:
    display = _photo("coffee", 128, 64)  # what the viewer should see
    coded = cv2.resize(display, (96, 64), interpolation=cv2.INTER_AREA)  # squeezed 4:3 horizontally
    path = _write(tmp_path / "anamorphic.mp4", [coded] * 5, sar=Fraction(4, 3))
    frames, probe = _decoded_rgb(path)
    assert (probe.width, probe.height) == (128, 64)
    assert frames[0].shape == (64, 128, 3)
    assert np.abs(frames[2].astype(float) - display).mean() < 8


def test_ten_bit_source_decodes_to_correct_8_bit(tmp_path: Path) -> None:
    img = _photo("chelsea", 96, 64)
    path = _write(tmp_path / "10bit.mp4", [img] * 5, pix_fmt="yuv420p10le")
    frames, probe = _decoded_rgb(path)
    assert probe.pix_fmt == "yuv420p10le"
    assert frames[0].dtype == np.uint8
    assert np.abs(frames[2].astype(float) - img).mean() < 6


def _corrupt_mjpeg(path: Path) -> Path:
    """150 frames (two real-photo shots, a cut at 60) as MJPEG; bytes at 70-80% of the file overwritten
    (FFmpeg then fails after about 100 frames)."""
    a, b = _photo("astronaut", 64, 48), _photo("coffee", 64, 48)
    _write(path, [a] * 60 + [b] * 90, codec="mjpeg", pix_fmt="yuvj420p")
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    lo, hi = int(len(data) * 0.70), int(len(data) * 0.80)
    data[lo:hi] = rng.integers(0, 256, hi - lo, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


def test_decode_error_mid_stream_keeps_the_clips_before_it(tmp_path: Path) -> None:
    path = _corrupt_mjpeg(tmp_path / "broken.mkv")
    with av.open(str(path), "r") as container, pytest.raises(av.error.InvalidDataError):
        for _ in container.decode(video=0):
            pass  # the file really fails mid-stream
    clips: list[ClipOutput] = []
    probe = probe_video(path, str(path), CASCADE.decode)
    stats = split_video(path, str(path), probe, CASCADE, time.monotonic() + 60, clips.append)
    assert stats.partial is not None and stats.partial["stage"] == "decode"
    assert "kept the clips before frame" in stats.partial["reason"]
    assert 60 < stats.frames_decoded < 150
    assert (clips[0].first_frame, clips[0].num_frames) == (0, 60)  # the shot before the error is kept


def test_decode_error_before_any_frame_is_still_bad_video(tmp_path: Path) -> None:
    path = tmp_path / "garbage.mkv"
    good = _write(tmp_path / "ok.mkv", [_photo("rocket", 64, 48)] * 10, codec="mjpeg", pix_fmt="yuvj420p")
    data = bytearray(good.read_bytes())
    header = 600
    data[header:] = bytes(len(data) - header)
    path.write_bytes(bytes(data))
    with pytest.raises(BadVideo):
        probe = probe_video(path, str(path), CASCADE.decode)
        split_video(path, str(path), probe, CASCADE, time.monotonic() + 60, lambda clip: None)


def test_dissolve_extent_and_margin_are_trimmed_from_both_clips(tmp_path: Path) -> None:
    shots = [
        RealShot("astronaut", 3.0, pan=(0.05, 0.0)),
        RealShot("coffee", 3.0, transition="dissolve", transition_s=1.0),
    ]
    frames, n, truth = render(shots)
    from svd_core.video.sample import encode_frames

    path = tmp_path / "dissolve.mp4"
    encode_frames(frames, [i / 25 for i in range(n)], path=path)
    lo, hi = truth[0]["extent"]  # frames 63..87 are the blend
    spans = {}
    for margin in (0.0, 0.2):
        cfg = LvdConfig(cuts=CutConfig(detector="cascade", transition_margin_s=margin, min_clip_s=1.0))
        clips: list[ClipOutput] = []
        probe = probe_video(path, str(path), cfg.decode)
        split_video(path, str(path), probe, cfg, time.monotonic() + 60, clips.append)
        assert len(clips) == 2, [(c.first_frame, c.num_frames) for c in clips]
        first_end = clips[0].first_frame + clips[0].num_frames - 1
        spans[margin] = (first_end, clips[1].first_frame)
        # No blended frame in either clip (the detected extent may differ by a couple of frames).
        assert first_end <= lo + 2 and clips[1].first_frame >= hi - 2, (spans, lo, hi)
        with av.open(io.BytesIO(clips[0].data), "r") as c:
            assert len(list(c.decode(video=0))) == clips[0].num_frames
    assert spans[0.2][0] == spans[0.0][0] - 5 and spans[0.2][1] == spans[0.0][1] + 5
