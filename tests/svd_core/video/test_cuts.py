"""Cut-detection cascade: planted cuts found (precision/recall), flashes and fast pans do not split, each
guard is needed (ablations fail), streaming gives the whole-video answer."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from svd_core.curation.config import CutConfig, DecodeConfig
from svd_core.video.cuts import CutScore, StreamingCutDetector, detect_cuts, score_cuts
from svd_core.video.decode import iter_frames, probe_video, thumbnail, working_size
from svd_core.video.sample import GROUND_TRUTH, write_sample_set

CFG = CutConfig()


def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed-0 sample set, generated once per test session (ground_truth.json is written last)."""
    out = tmp_path_factory.getbasetemp() / "lvd-sample-0"
    if not (out / GROUND_TRUTH).exists():
        write_sample_set(out, seed=0)
    return out


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[np.ndarray, np.ndarray, dict]]:
    """name -> (thumbnails, times, ground truth) for every planted video."""
    root = sample_dir(tmp_path_factory)
    truth = json.loads((root / GROUND_TRUTH).read_text())
    out = {}
    for name, video_truth in truth["videos"].items():
        path = root / name
        probe = probe_video(path, str(path), DecodeConfig())
        size = working_size(probe.width, probe.height, None)
        frames = list(iter_frames(path, str(path), probe, size, time.monotonic() + 60))
        thumbs = np.stack([thumbnail(f.frame, CFG.analysis_short_side) for f in frames])
        out[name] = (thumbs, np.array([f.time_s for f in frames]), video_truth)
    return out


def _score(videos: dict, cfg: CutConfig) -> tuple[CutScore, dict[str, list[int]]]:
    total, found = CutScore(0, 0, 0), {}
    for name, (thumbs, times, truth) in videos.items():
        found[name] = [c.frame for c in detect_cuts(thumbs, times, cfg)]
        total = total + score_cuts(found[name], truth["cuts"])
    return total, found


def test_cascade_finds_the_planted_cuts(videos: dict) -> None:
    score, found = _score(videos, CFG)
    # Measured on the seed-0 set: precision 1.0, recall 1.0 (hard cuts, dissolves, fades through black).
    assert score.recall >= 0.95, (score, found)
    assert score.precision >= 0.95, (score, found)
    for name, (_, _, truth) in videos.items():
        hard = [c["frame"] for c in truth["cuts"] if c["kind"] == "hard"]
        assert set(hard) <= set(found[name]), f"{name}: hard cuts must be exact to the frame"


def test_flashes_and_fast_pans_do_not_split(videos: dict) -> None:
    _, found = _score(videos, CFG)
    for name, (_, _, truth) in videos.items():
        for shot in truth["shots"]:
            for flash in shot["flash_frames"]:
                assert not [c for c in found[name] if abs(c - flash) <= 12], f"{name}: flash at {flash} split"
    pan = videos["v03_fast_pan.mp4"][2]["shots"][0]
    assert not [c for c in found["v03_fast_pan.mp4"] if pan["start"] < c < pan["end"] - 1]


def test_each_guard_of_the_cascade_is_needed(videos: dict) -> None:
    no_gradual, _ = _score(videos, CFG.model_copy(update={"gradual_levels": ()}))
    assert no_gradual.recall < 0.85  # dissolves are missed by frame differences alone
    short_flash_window, _ = _score(videos, CFG.model_copy(update={"flash_window_s": 0.05}))
    assert short_flash_window.false_positives >= 3  # each planted flash becomes a cut
    levels = tuple(level.model_copy(update={"max_residual": 0.95}) for level in CFG.gradual_levels)
    no_blend_test, found = _score(videos, CFG.model_copy(update={"gradual_levels": levels}))
    pan = videos["v03_fast_pan.mp4"][2]["shots"][0]
    assert [c for c in found["v03_fast_pan.mp4"] if pan["start"] < c < pan["end"] - 1]  # the fast pan splits
    assert no_blend_test.false_positives >= 5  # and so do slow pans, zooms and moving objects


def test_streaming_detector_matches_the_whole_video_answer(videos: dict) -> None:
    for name in ("v02_zoom_fades.mp4", "v05_mixed.mp4", "v04_vfr.mp4"):
        thumbs, times, _ = videos[name]
        detector = StreamingCutDetector(CFG, fps=25.0)
        streamed = []
        for thumb, t in zip(thumbs, times, strict=True):
            detector.push(thumb, float(t))
            streamed += detector.take()
        detector.finish()
        streamed += detector.take()
        assert [c.frame for c in streamed] == [c.frame for c in detect_cuts(thumbs, times, CFG)], name


def _texture(seed: int, level: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(level + rng.normal(0, 30, (32, 48, 3)), 0, 255)


def test_synthetic_sequences() -> None:
    a, b = _texture(1, 90), _texture(2, 160)
    times = np.arange(100) / 25
    hard = np.stack([a] * 50 + [b] * 50)
    assert [(c.frame, c.kind) for c in detect_cuts(hard, times, CFG)] == [(50, "hard")]
    flash = hard[:50].copy().repeat(2, axis=0)
    flash[40:43] = 0.25 * flash[40:43] + 0.75 * 255
    assert detect_cuts(flash, times, CFG) == []
    alphas = np.clip((np.arange(100) - 40) / 20, 0, 1)[:, None, None, None]
    dissolve = (1 - alphas) * a + alphas * b
    cuts = detect_cuts(dissolve, times, CFG)
    assert [c.kind for c in cuts] == ["dissolve"] and abs(cuts[0].frame - 50) <= 2
    gains = np.abs(np.arange(100) - 50)[:, None, None, None] / 10
    fade = np.where(np.arange(100)[:, None, None, None] < 50, a, b) * np.clip(gains, 0, 1)
    fade = fade + 16 * (1 - np.clip(gains, 0, 1))  # video black is Y=16
    assert [(c.frame, c.kind) for c in detect_cuts(fade, times, CFG)] == [(50, "fade")]
