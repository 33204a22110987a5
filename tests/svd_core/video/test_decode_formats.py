"""Real-world source formats in the one-decode pass: HDR (PQ, HLG) and wide-gamut 10-bit sources tone-mapped
to 8-bit BT.709 SDR, interlaced sources deinterlaced (or flagged), variable frame rate timed by timestamps,
and a time limit that scales with the duration. Clips are made here with PyAV (x265 10-bit, x264
interlaced) from real photos (scikit-image's data)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import cast

import av
import cv2
import numpy as np
import pytest

from svd_core.curation.config import DecodeConfig, LvdConfig, RunConfig
from svd_core.curation.lvd import process_video
from svd_core.video import color
from svd_core.video.clips import ClipOutput, split_video
from svd_core.video.decode import header_duration, iter_frames, probe_video, time_limit_s
from svd_core.video.real_set import load_photo
from svd_core.video.sample import encode_frames

W, H = 160, 96

# BT.2100 / ST 2084 / BT.1886 forward transforms, written out here independently of svd_core.video.color.
BT709_TO_BT2020 = np.array([[0.6274, 0.3293, 0.0433], [0.0691, 0.9195, 0.0114], [0.0164, 0.0880, 0.8956]])
LUMA_2020 = np.array([0.2627, 0.6780, 0.0593])


def _pq_inverse_eotf(nits: np.ndarray) -> np.ndarray:
    m1, m2, c1, c2, c3 = 0.1593017578125, 78.84375, 0.8359375, 18.8515625, 18.6875
    p = np.power(np.clip(nits / 10000.0, 0, 1), m1)
    return np.power((c1 + c2 * p) / (1 + c3 * p), m2)


def _hlg_from_display(nits: np.ndarray) -> np.ndarray:
    """Display light on a 1000-nit HLG display -> HLG signal (inverse OOTF, gamma 1.2, then the OETF)."""
    yd = np.maximum(nits @ LUMA_2020, 1e-9)[..., None]
    scene = nits / 1000.0 * np.power(yd / 1000.0, (1 - 1.2) / 1.2)
    a, b, c = 0.17883277, 0.28466892, 0.55991073
    return np.where(scene <= 1 / 12, np.sqrt(3 * scene), a * np.log(np.maximum(12 * scene - b, 1e-9)) + c)


def _bt2020_10bit(img: np.ndarray, transfer: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An sRGB-ish SDR picture as a BT.2020 10-bit limited-range YUV 4:2:0 HDR (or wide-gamut SDR) signal:
    SDR white = the BT.2408 reference white (203 nits)."""
    display = np.power(img / 255.0, 2.4)  # BT.1886
    wide = display @ BT709_TO_BT2020.T
    if transfer == "pq":
        signal = _pq_inverse_eotf(wide * 203.0)
    elif transfer == "hlg":
        signal = _hlg_from_display(wide * 203.0)
    else:  # SDR, BT.2020 primaries (BT.2020-10 transfer = BT.709's)
        signal = np.power(wide, 1 / 2.4)
    y = signal @ LUMA_2020
    cb, cr = (signal[..., 2] - y) / 1.8814, (signal[..., 0] - y) / 1.4746

    def sub(c: np.ndarray) -> np.ndarray:
        half = c.reshape(c.shape[0] // 2, 2, c.shape[1] // 2, 2).mean(axis=(1, 3))
        return np.round(512 + 896 * half).astype(np.uint16)

    return np.round(64 + 876 * y).astype(np.uint16), sub(cb), sub(cr)


TRC = {"pq": 16, "hlg": 18, "sdr": 14}


def _write_bt2020(path: Path, img: np.ndarray, transfer: str, n: int = 4) -> Path:
    planes = _bt2020_10bit(img, transfer)
    with av.open(str(path), "w") as container:
        stream = cast(av.VideoStream, container.add_stream("libx265", rate=25))
        stream.width, stream.height, stream.pix_fmt = img.shape[1], img.shape[0], "yuv420p10le"
        stream.options = {"x265-params": "log-level=error", "crf": "12"}
        codec = stream.codec_context
        codec.color_primaries, codec.color_trc, codec.colorspace, codec.color_range = 9, TRC[transfer], 9, 1
        for i in range(n):
            frame = av.VideoFrame(img.shape[1], img.shape[0], "yuv420p10le")
            for plane, values in zip(frame.planes, planes, strict=True):
                rows = np.frombuffer(memoryview(plane), np.uint16).reshape(plane.height, -1)
                rows[:, : plane.width] = values
            frame.color_primaries, frame.color_trc = 9, TRC[transfer]
            frame.colorspace, frame.color_range = 9, 1
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def _photo(name: str, w: int = W, h: int = H) -> np.ndarray:
    return cv2.resize(load_photo(name), (w, h), interpolation=cv2.INTER_AREA)


def _decode_rgb(path: Path, cfg: DecodeConfig | None = None) -> tuple[list[np.ndarray], list[float]]:
    cfg = cfg or DecodeConfig()
    probe = probe_video(path, str(path), cfg)
    frames = list(iter_frames(path, str(path), probe, (probe.width, probe.height), time.monotonic() + 60))
    return [f.frame.to_ndarray(format="rgb24") for f in frames], [f.time_s for f in frames]


def _mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def _ffmpeg_sdr(frame: av.VideoFrame) -> np.ndarray | None:
    """FFmpeg 8's colour-managed swscale conversion to BT.709 SDR, an independent reference (too slow to
    decode with: see svd_core.video.color); None where this PyAV build cannot ask for it."""
    try:
        sdr = frame.reformat(
            format="yuv420p", dst_colorspace=1, dst_color_range="MPEG", dst_color_trc=1, dst_color_primaries=1
        )  # yuv420p, as the decode gives, so both lose the same to 8-bit 4:2:0
    except TypeError:
        return None
    return sdr.to_ndarray(format="rgb24")


@pytest.mark.parametrize(("transfer", "naive_min"), [("pq", 25.0), ("hlg", 14.0), ("sdr", 10.0)])
def test_hdr_and_wide_gamut_sources_decode_to_their_sdr_look(
    tmp_path: Path, transfer: str, naive_min: float
) -> None:
    img = _photo("coffee")  # saturated reds: a wrong gamut shows
    path = _write_bt2020(tmp_path / f"{transfer}.mp4", img, transfer)
    # What the same 10-bit encode of the SDR picture gives (x265 + 4:2:0 at this tiny size): the floor.
    sdr_floor = _mae(_decode_rgb(_write_sdr_10bit(tmp_path / "ref.mp4", img))[0][1], img)
    with av.open(str(path)) as container:
        first = next(iter(container.decode(video=0)))
    naive = first.to_ndarray(format="rgb24")  # a plain decode: the signal read as if it were BT.709 SDR
    assert _mae(naive, img) > naive_min  # the clip really needs the conversion
    probe = probe_video(path, str(path), DecodeConfig())
    assert (probe.transfer, probe.color_primaries, probe.color_converted) == (transfer, 9, True)
    frames, _ = _decode_rgb(path)
    assert frames[1].dtype == np.uint8 and frames[1].shape == img.shape
    error = _mae(frames[1], img)
    assert error < sdr_floor + 2.5, (error, sdr_floor)
    assert error < _mae(naive, img) / 2
    reference = _ffmpeg_sdr(first)
    if reference is not None:  # agrees with FFmpeg's own colour management
        assert _mae(frames[0], reference) < 3.0


def _write_sdr_10bit(path: Path, img: np.ndarray) -> Path:
    with av.open(str(path), "w") as container:
        stream = cast(av.VideoStream, container.add_stream("libx265", rate=25))
        stream.width, stream.height, stream.pix_fmt = img.shape[1], img.shape[0], "yuv420p10le"
        stream.options = {"x265-params": "log-level=error", "crf": "12"}
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p10le")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def test_tone_map_is_identity_below_the_knee_and_reaches_white_at_the_peak() -> None:
    rgb = np.array([[0.1, 0.2, 0.3], [0.5, 0.7, 0.79], [4.0, 2.0, 1.0], [8.0, 8.0, 8.0]], np.float32)
    out = color.tone_map(rgb, peak=8.0)
    np.testing.assert_allclose(out[:2], rgb[:2], rtol=1e-6)
    assert 0.8 < out[2].max() < 1.0 and out[2][0] / out[2][2] == pytest.approx(4.0)  # hue kept
    np.testing.assert_allclose(out[3], 1.0, rtol=1e-5)


def _interlaced(path: Path, n: int = 16) -> tuple[Path, list[np.ndarray]]:
    """A fast pan filmed at 50 fields/s: each frame weaves two moments (the bottom field first in time,
    as x264 codes it by default), coded as interlaced H.264 (+ilme+ildct). Returns the 50p pictures."""
    big = cv2.resize(load_photo("astronaut"), (W + 8 * 2 * n, H), interpolation=cv2.INTER_AREA).astype(
        np.uint8
    )
    moments = [np.ascontiguousarray(big[:, 8 * i : 8 * i + W]) for i in range(2 * n)]
    with av.open(str(path), "w") as container:
        stream = cast(av.VideoStream, container.add_stream("libx264", rate=25))
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        flags = av.codec.context.Flags
        stream.codec_context.flags |= flags.interlaced_dct | flags.interlaced_me
        for k in range(n):
            woven = moments[2 * k + 1].copy()  # top field: the later moment
            woven[1::2] = moments[2 * k][1::2]  # bottom field: the earlier one
            frame = av.VideoFrame.from_ndarray(woven, format="rgb24")
            frame.pts = k
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path, moments


def _combing(img: np.ndarray) -> float:
    """Mean |2 x row - row above - row below| of the luma: fields from different moments comb."""
    y = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float64)
    return float(np.abs(2 * y[1:-1] - y[:-2] - y[2:]).mean())


def test_interlaced_source_is_deinterlaced_and_flagged(tmp_path: Path) -> None:
    path, moments = _interlaced(tmp_path / "interlaced.mp4")
    progressive = np.mean([_combing(m) for m in moments])
    probe = probe_video(path, str(path), DecodeConfig())
    assert probe.interlaced and probe.deinterlace == "flagged"
    frames, times = _decode_rgb(path)
    assert len(frames) == 16 and times == pytest.approx([k / 25 for k in range(16)], abs=1e-3)
    assert np.mean([_combing(f) for f in frames]) < progressive  # no combing left
    # Each frame shows the moment of its first field.
    assert np.mean([_mae(f, moments[2 * k]) for k, f in enumerate(frames)]) < 12

    off = probe_video(path, str(path), DecodeConfig(deinterlace="off"))
    assert off.interlaced and off.deinterlace == "none"  # still flagged, for the stats
    raw, _ = _decode_rgb(path, DecodeConfig(deinterlace="off"))
    assert np.mean([_combing(f) for f in raw]) > 1.4 * progressive


def test_interlacing_is_recorded_in_the_video_stats(tmp_path: Path) -> None:
    path, _ = _interlaced(tmp_path / "interlaced.mp4", n=30)
    cfg = LvdConfig.model_validate({"cuts": {"detector": "cascade", "min_clip_s": 1.0}})
    result = process_video(str(path), cfg, str(tmp_path / "out"), [])
    assert result.quarantine is None and len(result.rows) == 1
    assert result.stats["probe"]["interlaced"] and result.stats["probe"]["deinterlaced"]


def test_progressive_source_is_not_deinterlaced(tmp_path: Path) -> None:
    path = tmp_path / "progressive.mp4"
    encode_frames([_photo("coffee")] * 5, [i / 25 for i in range(5)], path=path)
    probe = probe_video(path, str(path), DecodeConfig())
    assert not probe.interlaced and probe.deinterlace == "none" and not probe.color_converted


def test_variable_frame_rate_is_timed_by_timestamps(tmp_path: Path) -> None:
    """A phone-style VFR clip (30 fps, then a stretch at ~10 fps, then 24 fps): every frame's time is its
    timestamp, clips start and end at those times and scoring frames are sampled by time, not index."""
    big = cv2.resize(load_photo("coffee"), (W * 3, H), interpolation=cv2.INTER_AREA)
    times = [i / 30 for i in range(60)]  # 0-2 s at 30 fps
    times += [2.0 + i / 10 for i in range(1, 11)]  # 2-3 s at 10 fps
    times += [3.0 + i / 24 for i in range(1, 49)]  # 3-5 s at 24 fps
    frames = [np.ascontiguousarray(big[:, round(40 * t) : round(40 * t) + W]) for t in times]  # slow pan
    path = tmp_path / "vfr.mp4"
    encode_frames(frames, times, path=path)
    decoded, decoded_times = _decode_rgb(path)
    assert decoded_times == pytest.approx(times, abs=1e-3)
    assert _mae(decoded[65], frames[65]) < 8  # frame 65 is the one at 2.5 s, not at 65/fps
    cfg = LvdConfig.model_validate({"cuts": {"detector": "cascade", "min_clip_s": 1.0}})
    clips: list[ClipOutput] = []
    probe = probe_video(path, str(path), cfg.decode)
    split_video(path, str(path), probe, cfg, time.monotonic() + 60, clips.append)
    assert len(clips) == 1 and clips[0].start_s == pytest.approx(0.0, abs=1e-3)
    assert clips[0].end_s == pytest.approx(times[-1] + 1 / probe.fps, abs=1e-3)
    # Scoring frames by time: the first frame at or after every 0.5 s (there is no frame at 2.0 s).
    step = 1 / cfg.scoring.sample_fps
    expected = [min(t for t in times if t >= k * step - 1e-6) for k in range(int(times[-1] / step) + 1)]
    assert clips[0].frames.timestamps_s == pytest.approx(expected, abs=1e-3)


def test_time_limit_scales_with_duration(tmp_path: Path) -> None:
    decode, run = DecodeConfig(timeout_s=60), RunConfig(time_limit_s_per_minute=240, time_limit_max_s=3600)
    assert time_limit_s(None, decode, run) == 60  # unknown duration: the floor
    assert time_limit_s(5.0, decode, run) == 60  # short: the floor
    assert time_limit_s(600.0, decode, run) == 2400  # 10 min at 4x real time
    assert time_limit_s(10 * 86400.0, decode, run) == 3600  # a header claiming days: capped
    assert time_limit_s(600.0, decode, RunConfig(time_limit_s_per_minute=0)) == 60
    path = tmp_path / "clip.mp4"
    encode_frames([_photo("rocket")] * 50, [i / 25 for i in range(50)], path=path)
    assert header_duration(path) == pytest.approx(2.0, abs=0.05)
    assert header_duration(tmp_path / "missing.mp4") is None


def test_hdr_path_scales_to_the_working_size(tmp_path: Path) -> None:
    """The colour conversion replaces the plain rescale: it must still scale to the working size."""
    img = _photo("chelsea", 128, 64)
    path = _write_bt2020(tmp_path / "pq_small.mp4", img, "pq", n=2)
    probe = probe_video(path, str(path), DecodeConfig())
    frames = list(iter_frames(path, str(path), probe, (64, 32), time.monotonic() + 60))
    rgb = frames[0].frame.to_ndarray(format="rgb24")
    assert rgb.shape == (32, 64, 3) and frames[0].frame.format.name == "yuv420p"
    assert _mae(rgb, cv2.resize(img, (64, 32), interpolation=cv2.INTER_AREA)) < 14
