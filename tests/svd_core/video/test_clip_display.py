"""Readers of stored clips see what the LVD pass saw: a stream-copied clip (`clips.mode: copy`) keeps its
source's display matrix, sample aspect ratio and 10-bit/HDR signal, so re-scoring (`score_stage.clip_frames`)
and the training loader (`streaming.decode_window`) convert it upright, to square pixels and to 8-bit SDR.
Sources are real photos (scikit-image's data) encoded here with PyAV."""

from __future__ import annotations

import io
import tarfile
import time
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import cv2
import numpy as np
import pytest

from svd_core.curation.config import ClipConfig, CutConfig, LvdConfig, ScoringConfig
from svd_core.curation.score_stage import clip_frames
from svd_core.data.streaming import decode_window
from svd_core.errors import InputError
from svd_core.video.clips import ClipOutput, split_video
from svd_core.video.decode import iter_frames, probe_video
from svd_core.video.real_set import load_photo

COPY = LvdConfig(cuts=CutConfig(detector="cascade", min_clip_s=1.0), clips=ClipConfig(mode="copy"))


def _photo(name: str, w: int, h: int) -> np.ndarray:
    return cv2.resize(load_photo(name), (w, h), interpolation=cv2.INTER_AREA)


def _write(
    path: Path,
    img: np.ndarray,
    n: int,
    rotation: int = 0,
    sar: Fraction | None = None,
    pix_fmt: str = "yuv420p",
) -> Path:
    with av.open(str(path), "w") as container:
        stream = cast(av.VideoStream, container.add_stream("libx264", rate=25))
        stream.width, stream.height, stream.pix_fmt = img.shape[1], img.shape[0], pix_fmt
        stream.options = {"x264-params": "keyint=10:min-keyint=10:scenecut=0"}
        if sar is not None:
            stream.codec_context.sample_aspect_ratio = sar
        if rotation:
            stream.set_display_rotation(rotation)
        for k in range(n):  # a slow drift, so frames differ
            frame = np.roll(img, k, axis=1)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def _source_rgb(path: Path) -> list[np.ndarray]:
    """What the LVD pass decodes from the source (upright, square pixels, 8-bit)."""
    probe = probe_video(path, str(path), COPY.decode)
    frames = iter_frames(path, str(path), probe, (probe.width, probe.height), time.monotonic() + 60)
    return [f.frame.to_ndarray(format="rgb24") for f in frames]


def _copied_clip(path: Path) -> ClipOutput:
    clips: list[ClipOutput] = []
    probe = probe_video(path, str(path), COPY.decode)
    split_video(path, str(path), probe, COPY, time.monotonic() + 60, clips.append)
    assert len(clips) == 1
    return clips[0]


def _raw_rgb(data: bytes) -> list[np.ndarray]:
    with av.open(io.BytesIO(data), "r") as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def _mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


SOURCES: dict[str, dict] = {
    "phone (display matrix 90)": {"rotation": 90},
    "anamorphic (SAR 4:3)": {"sar": Fraction(4, 3)},
    "10-bit": {"pix_fmt": "yuv420p10le"},
}


@pytest.mark.parametrize("kind", list(SOURCES))
def test_training_loader_decodes_copied_clips_as_the_lvd_pass_saw_them(tmp_path: Path, kind: str) -> None:
    path = _write(tmp_path / "source.mp4", _photo("astronaut", 96, 64), 40, **SOURCES[kind])  # type: ignore[arg-type]
    clip = _copied_clip(path)
    seen = _source_rgb(path)
    first = clip.first_frame  # the copied clip's first frame in the source
    window = [3, 9, 14]
    got = decode_window(clip.data, window, "clip").frames
    for k, frame in zip(window, got, strict=True):
        assert frame.shape == seen[first + k].shape, kind
        assert _mae(frame, seen[first + k]) < 3, kind
    if "pix_fmt" not in SOURCES[kind]:  # the raw decode is what a reader without the fix saw
        assert _raw_rgb(clip.data)[0].shape != seen[first].shape


def test_rescoring_a_copied_phone_clip_samples_upright_frames(tmp_path: Path) -> None:
    path = _write(tmp_path / "phone.mp4", _photo("coffee", 96, 64), 40, rotation=-90)
    clip = _copied_clip(path)
    shard = tmp_path / "shard-000000.tar"
    with tarfile.open(shard, "w") as tar:
        info = tarfile.TarInfo("clip.mp4")
        info.size = len(clip.data)
        tar.addfile(info, io.BytesIO(clip.data))
    sampled = clip_frames(f"{shard}#clip.mp4", ScoringConfig(), clip.width, clip.height)
    assert (clip.width, clip.height) == (64, 96)  # portrait: the row has the display size
    assert sampled.frames[0].shape[:2] == (96, 64)  # rows x columns of an upright portrait frame
    assert _mae(sampled.frames[0], cv2.resize(_source_rgb(path)[clip.first_frame], (64, 96))) < 4


def test_a_clip_that_is_not_a_video_names_the_clip() -> None:
    with pytest.raises(InputError, match=r"clip broken\.mp4 cannot be decoded"):
        decode_window(b"not a video at all", [0, 1], "broken.mp4")
