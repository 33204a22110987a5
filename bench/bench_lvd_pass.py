"""Benchmark: the one-decode LVD pass vs decoding alone vs each scorer decoding on its own.

Run: .venv/bin/python bench/bench_lvd_pass.py [--long-seconds 150] [--repeats 3] [--no-text]

On the sample set (`svd data sample`) and on a longer generated video (640x384, 25 fps), measured side by
side in one run (best of --repeats, since this box is shared):

- decode only: every frame decoded, nothing else (the floor for any pass that looks at every frame);
- one-decode analysis pass: cut cascade + 2 fps scoring frames + Farneback flow + camera labels (+ CRAFT text
  detection when the learned helper's scorer and weights are available), clip encoding switched off;
- separate decoding: the cut pass decodes the video, then each scorer seeks to every clip and decodes it
  again for its own frames (what chaining independent tools does);
- the full LVD pass: the same plus H.264 clip encoding, shards and the per-video result file;
- the full LVD pass with `clips.mode=copy` (the paper's stream copy, boundaries snapped to keyframes): the
  same with packets remuxed instead of encoded, with either detector;
- camera labelling's share of the LVD pass (its scorer time, and the pass with vs without it).

Targets: analysis pass <= 3x decode only with TransNetV2 (<= 2x with the cascade); >= 2x faster than separate
decoding; camera <= 5% of the pass; full LVD pass in copy mode <= 2.5x decode only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from svd_core.curation.camera import CameraMotionScorer
from svd_core.curation.config import ClipConfig, CutConfig, LvdConfig
from svd_core.curation.lvd import process_video
from svd_core.curation.motion import FarnebackFlow, MotionScorer
from svd_core.video import clips as clips_module
from svd_core.video.clips import ClipOutput, split_video
from svd_core.video.cuts import CutScore, score_cuts
from svd_core.video.decode import FrameSampler, iter_frames, probe_video, working_size
from svd_core.video.frames import SampledFrames
from svd_core.video.sample import FPS, GROUND_TRUTH, Shot, ShotRenderer, encode_frames, write_sample_set

CFG = LvdConfig(cuts=CutConfig(detector="transnet"))  # the learned detector (the default)
CASCADE = LvdConfig(cuts=CutConfig(detector="cascade"))
COPY = CFG.model_copy(update={"clips": ClipConfig(mode="copy")})
COPY_CASCADE = CASCADE.model_copy(update={"clips": ClipConfig(mode="copy")})
LONG_SIZE = (640, 360)


def write_long_video(path: Path, seconds: float, seed: int = 1) -> None:
    """A long video of 6-12 s shots (pans, zooms, static, moving objects) joined by cuts and dissolves."""
    rng = np.random.default_rng(seed)
    kinds = [
        Shot(8, "horizontal", pan=(0.25, 0)),
        Shot(8, "vertical", pan=(0, 0.2)),
        Shot(8, "zoom_in", zoom=0.12),
        Shot(8, "static"),
        Shot(8, "static", moving_object=True),
        Shot(8, "zoom_out", zoom=-0.1),
    ]
    shots: list[ShotRenderer] = []
    total = 0.0
    while total < seconds:
        base = kinds[len(shots) % len(kinds)]
        length = float(rng.uniform(6, 12))
        shots.append(
            ShotRenderer(
                Shot(length, base.camera, base.pan, base.zoom, moving_object=base.moving_object),
                rng,
                int(rng.integers(0, 180)),
            )
        )
        total += length
    starts = np.cumsum([0.0] + [r.shot.seconds for r in shots[:-1]])
    times = np.arange(int(seconds * FPS)) / FPS

    def frames() -> Any:
        for t in times:
            k = int(np.searchsorted(starts, t, side="right") - 1)
            img = shots[k].frame(t - starts[k]).astype(np.float32)
            if k and t - starts[k] < 0.5 and k % 2:  # every other shot begins with a 0.5 s dissolve
                alpha = (t - starts[k]) / 0.5
                img = alpha * img + (1 - alpha) * shots[k - 1].frame(t - starts[k - 1])
            yield cv2.resize(img.astype(np.uint8), LONG_SIZE, interpolation=cv2.INTER_LINEAR)

    encode_frames(frames(), times, path=path)


class NullEncoder:
    """Stands in for the H.264 encoder to time the analysis pass alone."""

    def __init__(self, *args: Any) -> None: ...
    def add(self, frame: Any, rel_time: float) -> None: ...
    def finish(self) -> bytes:
        return b""

    def abort(self) -> None: ...


class NullSampler:
    """Stands in for the scoring-frame sampler when only cut positions are wanted."""

    def __init__(self, *args: Any, **kwargs: Any) -> None: ...
    def offer(self, frame: Any, rel_time: float) -> None: ...
    def build(self) -> SampledFrames:
        return SampledFrames(np.zeros((1, 2, 2, 3), np.uint8), np.zeros(1), 2.0, 2, 2)


@contextlib.contextmanager
def _patched(**replacements: Any) -> Iterator[None]:
    """Swap classes in svd_core.video.clips for the duration of a measurement."""
    originals = {name: getattr(clips_module, name) for name in replacements}
    for name, value in replacements.items():
        setattr(clips_module, name, value)
    try:
        yield
    finally:
        for name, value in originals.items():
            setattr(clips_module, name, value)


def scorer_set(text: list[Any], camera: bool = True) -> list[Any]:
    flow = FarnebackFlow(CFG.scoring)
    return [MotionScorer(flow), *([CameraMotionScorer(flow, CFG.camera)] if camera else []), *text]


def decode_only(paths: list[Path]) -> float:
    t0 = time.perf_counter()
    for path in paths:
        probe = probe_video(path, str(path), CFG.decode)
        for _ in iter_frames(path, str(path), probe, working_size(probe.width, probe.height, 720), 1e18):
            pass
    return time.perf_counter() - t0


def one_pass(
    paths: list[Path], scorers: list[Any], seconds: dict[str, float] | None = None, cfg: LvdConfig = CFG
) -> tuple[float, int]:
    """Decode once: cuts, scoring frames, every scorer (no clip encoding). Returns (seconds, clips)."""
    clips = 0

    def on_clip(clip: ClipOutput) -> None:
        nonlocal clips
        clips += 1
        row: dict[str, Any] = {}
        for scorer in scorers:
            t = time.perf_counter()
            row.update(scorer.score(clip.frames, row))
            if seconds is not None:
                seconds[scorer.name] = seconds.get(scorer.name, 0.0) + time.perf_counter() - t

    with _patched(ClipEncoder=NullEncoder):
        t0 = time.perf_counter()
        for path in paths:
            split_video(path, str(path), probe_video(path, str(path), cfg.decode), cfg, 1e18, on_clip)
        return time.perf_counter() - t0, clips


def separate_decoding(paths: list[Path], scorers: list[Any]) -> float:
    """The cut pass decodes everything; then each scorer decodes every clip again for its own frames."""
    t0 = time.perf_counter()
    for path in paths:
        spans: list[tuple[float, float]] = []
        probe = probe_video(path, str(path), CFG.decode)
        with _patched(ClipEncoder=NullEncoder, FrameSampler=NullSampler):  # the cut tool alone

            def keep(clip: ClipOutput, out: list[tuple[float, float]] = spans) -> None:
                out.append((clip.start_s, clip.end_s))

            split_video(path, str(path), probe, CFG, 1e18, keep)
        for scorer in scorers:
            own = _independent(scorer)
            for start, end in spans:
                own.score(_decode_span(path, probe, start, end), {})
    return time.perf_counter() - t0


def _independent(scorer: Any) -> Any:
    """The scorer as a stand-alone tool: flow and camera each compute their own optical flow."""
    if scorer.name == "flow":
        return MotionScorer(FarnebackFlow(CFG.scoring))
    if scorer.name == "camera":
        return CameraMotionScorer(FarnebackFlow(CFG.scoring), CFG.camera)
    return scorer


def _decode_span(path: Path, probe: Any, start: float, end: float) -> Any:
    sampler = FrameSampler(
        CFG.scoring.sample_fps, CFG.scoring.frames_max_short_side, (probe.width, probe.height)
    )
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        base = float(stream.time_base or Fraction(1, 90000))
        container.seek(int(start / base), stream=stream, backward=True)
        for frame in container.decode(stream):
            t = float((frame.pts or 0) * base)
            if t >= end - 1e-6:
                break
            if t >= start - 1e-6:
                sampler.offer(frame, t - start)
    return sampler.build()


def full_lvd_pass(
    paths: list[Path], scorers: list[Any], cfg: LvdConfig = CFG
) -> tuple[float, int, dict[str, float]]:
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        results = [process_video(str(p), cfg, out, scorers) for p in paths]
        elapsed = time.perf_counter() - t0
    seconds: dict[str, float] = {}
    for result in results:
        for key, value in result.stats.get("seconds", {}).items():
            seconds[key] = seconds.get(key, 0.0) + value
    return elapsed, sum(len(r.rows) for r in results), seconds


def interleaved(repeats: int, variants: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    """Best (fastest) run of each variant; variants alternate within each repeat so load drifts hit all."""
    runs: dict[str, list[Any]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            runs[name].append(fn())
    return {name: min(r, key=lambda x: x[0] if isinstance(x, tuple) else x) for name, r in runs.items()}


def text_scorers(enabled: bool) -> list[Any]:
    if not enabled:
        return []
    try:
        from svd_core.curation.config import LearnedScorersConfig
        from svd_core.curation.learned import build_learned_scorers

        found = [
            s for s in build_learned_scorers(LearnedScorersConfig(), "cpu") if "text_area_ratio" in s.columns
        ]
    except Exception as exc:  # the learned helper's code or weights are missing
        print(f"text detection unavailable ({exc.__class__.__name__}: {exc}); measuring cuts + flow + camera")
        return []
    return found


def report(name: str, paths: list[Path], repeats: int, text: list[Any]) -> None:
    duration = sum(float(probe_video(p, str(p), CFG.decode).duration_s or 0) for p in paths)
    scorers = scorer_set(text)
    per_scorer: dict[str, float] = {}
    variants: dict[str, Callable[[], Any]] = {
        "decode": lambda: decode_only(paths),
        "analysis": lambda: one_pass(paths, scorers, per_scorer),
        "separate": lambda: separate_decoding(paths, scorers),
        "analysis_cascade": lambda: one_pass(paths, scorers, cfg=CASCADE),
    }
    if not text:  # with CRAFT on CPU these only repeat what the first three show
        variants["no_camera"] = lambda: one_pass(paths, scorer_set(text, camera=False))
        variants["full"] = lambda: full_lvd_pass(paths, scorers)
    best = interleaved(repeats, variants)
    decode, (analysis, clips), separate = best["decode"], best["analysis"], best["separate"]
    what = "cuts + flow + camera" + (" + CRAFT text" if text else "")
    print(f"\n== {name}: {len(paths)} video(s), {duration:.0f} s of video, {clips} clips ({what})")
    print(f"decode only                   {decode:7.2f} s   real-time x{duration / decode:7.1f}")
    print(
        f"one-decode analysis pass      {analysis:7.2f} s   real-time x{duration / analysis:7.1f}   "
        f"{clips / analysis:6.1f} clips/s   = {analysis / decode:.2f}x decode only "
        "(cuts.detector=transnet; target <= 3x)"
    )
    cascade = best["analysis_cascade"][0]
    print(
        f"  same pass, cuts.detector=cascade {cascade:7.2f} s   = {cascade / decode:.2f}x decode only "
        "(target <= 2x)"
    )
    print(
        f"separate decoding per scorer  {separate:7.2f} s   = {separate / analysis:.2f}x the one-decode pass "
        "(target >= 2x)"
    )
    scorer_total = sum(per_scorer.values()) / repeats
    print(
        "  scorer time per pass:       " + ", ".join(f"{k} {v / repeats:.2f}s" for k, v in per_scorer.items())
    )
    if text:
        return
    full, full_clips, seconds = best["full"]
    print(
        f"full LVD pass (+H.264 clips)  {full:7.2f} s   real-time x{duration / full:7.1f}   "
        f"{full_clips / full:6.1f} clips/s   = {full / decode:.2f}x decode only"
    )
    print("  where the full pass went:   " + ", ".join(f"{k} {v:.2f}s" for k, v in sorted(seconds.items())))
    camera = per_scorer.get("camera", 0.0) / repeats
    print(
        f"camera labels: {seconds.get('score:camera', 0) / full:.1%} of the full LVD pass (target <= 5%), "
        f"{camera / analysis:.1%} of the analysis pass ({camera / scorer_total:.0%} of scorer time); "
        f"analysis pass without camera {best['no_camera'][0]:.2f} s"
    )


def with_gop(src: Path, dst: Path, gop_s: float) -> Path:
    """Transcode `src` with a keyframe at least every `gop_s` seconds (x264 scene cuts stay on), once.

    Web and camera video mostly has 1-5 s GOPs; the generated long video has x264's default (10 s), which
    leaves most 6-12 s shots without a keyframe to copy from.
    """
    if dst.exists():
        return dst
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        istream = inp.streams.video[0]
        rate = istream.average_rate or Fraction(FPS)
        ostream = out.add_stream("libx264", rate=rate)
        ostream.width, ostream.height, ostream.pix_fmt = istream.width, istream.height, "yuv420p"
        ostream.options = {"crf": "18", "preset": "veryfast", "x264-params": f"keyint={round(gop_s * rate)}"}
        for frame in inp.decode(istream):
            frame.pict_type = av.video.frame.PictureType.NONE
            out.mux(ostream.encode(frame))
        out.mux(ostream.encode())
    return dst


def copy_report(name: str, path: Path, repeats: int) -> None:
    """Full LVD pass, re-encoded vs stream-copied clips, as ratios to decoding alone (same run)."""
    scorers = scorer_set([])
    variants: dict[str, Callable[[], Any]] = {
        "decode": lambda: decode_only([path]),
        "reencode_cascade": lambda: full_lvd_pass([path], scorers, CASCADE),
        "copy_cascade": lambda: full_lvd_pass([path], scorers, COPY_CASCADE),
        "reencode": lambda: full_lvd_pass([path], scorers, CFG),
        "copy": lambda: full_lvd_pass([path], scorers, COPY),
    }
    best = interleaved(repeats, variants)
    decode = best["decode"]
    print(f"\n== {name}: full LVD pass (cuts + flow + camera + clips + shards), clips.mode=reencode vs copy")
    print(f"decode only                                   {decode:7.2f} s")
    for key, label in (
        ("reencode_cascade", "reencode, cuts.detector=cascade "),
        ("copy_cascade", "copy,     cuts.detector=cascade "),
        ("reencode", "reencode, cuts.detector=transnet"),
        ("copy", "copy,     cuts.detector=transnet"),
    ):
        t, n, parts = best[key]
        target = "  (target <= 2.5x)" if key.startswith("copy") else ""
        print(
            f"full LVD pass, {label} {t:7.2f} s = {t / decode:5.2f}x decode only, {n:3d} clips, "
            f"encode+copy {parts.get('encode', 0.0) + parts.get('copy', 0.0):6.2f} s{target}"
        )
    for key in ("reencode_cascade", "copy_cascade"):
        kept = _clip_seconds(path, CASCADE if key == "reencode_cascade" else COPY_CASCADE)
        print(f"  {key:17s} clip seconds kept {kept[0]:6.1f} s in {kept[1]} clips; dropped: {kept[2]}")


def _clip_seconds(path: Path, cfg: LvdConfig) -> tuple[float, int, dict[str, int]]:
    spans: list[float] = []
    probe = probe_video(path, str(path), cfg.decode)
    stats = split_video(path, str(path), probe, cfg, 1e18, lambda c: spans.append(c.duration_s))
    return sum(spans), len(spans), stats.dropped


def cut_baselines(sample: Path) -> None:
    """Precision/recall of PySceneDetect's single detectors (full rate and ~2 fps) vs the cascade."""
    from scenedetect import (
        AdaptiveDetector,
        ContentDetector,
        HistogramDetector,
        SceneManager,
        ThresholdDetector,
        open_video,
    )

    truth = json.loads((sample / GROUND_TRUTH).read_text())["videos"]
    print(
        "\n== cut detection on the sample set (15 planted cuts: 10 hard, 4 dissolves, 1 fade through black)"
    )
    print(f"{'detector':34s} {'precision':>9s} {'recall':>7s}   misses / false cuts")
    for skip in (0, 11):
        for make in (ContentDetector, AdaptiveDetector, HistogramDetector, ThresholdDetector):
            score, notes = CutScore(0, 0, 0), []
            for name, video in truth.items():
                stream = open_video(str(sample / name))
                manager = SceneManager()
                manager.add_detector(make())
                manager.detect_scenes(stream, frame_skip=skip)
                found = [scene[0].frame_num for scene in manager.get_scene_list()][1:]
                cuts = [
                    {**c, "tolerance": max(c["tolerance"], skip + 1 if skip else 0)} for c in video["cuts"]
                ]
                part = score_cuts(found, cuts)
                score = score + part
                if part.false_negatives or part.false_positives:
                    notes.append(f"{name[:3]} -{part.false_negatives}/+{part.false_positives}")
            label = f"{make.__name__} {'full rate' if not skip else f'every {skip + 1}th frame'}"
            print(f"{label:34s} {score.precision:9.2f} {score.recall:7.2f}   {', '.join(notes)}")
    for label, cfg in (("transnet (this pipeline)", CFG), ("cascade (cuts.detector=cascade)", CASCADE)):
        score, notes = CutScore(0, 0, 0), []
        for name, video in truth.items():
            with _patched(ClipEncoder=NullEncoder, FrameSampler=NullSampler):
                path = sample / name
                stats = split_video(
                    path, str(path), probe_video(path, str(path), cfg.decode), cfg, 1e18, lambda c: None
                )
            found = [c.frame for c in stats.cuts]
            part = score_cuts(found, video["cuts"])
            score = score + part
            if part.false_negatives or part.false_positives:
                notes.append(f"{name[:3]} -{part.false_negatives}/+{part.false_positives}")
        print(f"{label:34s} {score.precision:9.2f} {score.recall:7.2f}   {', '.join(notes)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "svd-bench-lvd")
    parser.add_argument("--long-seconds", type=float, default=150.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-text", action="store_true", help="leave CRAFT text detection out")
    parser.add_argument("--long-only", action="store_true", help="only the long video (no sample set)")
    parser.add_argument("--copy-only", action="store_true", help="only the reencode vs copy comparison")
    args = parser.parse_args()
    sample = args.work / "sample"
    write_sample_set(sample)  # ~5 s; always current with the generator
    long_video = args.work / f"long-{int(args.long_seconds)}s.mp4"
    if not long_video.exists():
        print(f"rendering a {args.long_seconds:.0f} s {LONG_SIZE[0]}x{LONG_SIZE[1]} video (once)...")
        write_long_video(long_video, args.long_seconds)
    good = [sample / name for name in json.loads((sample / GROUND_TRUTH).read_text())["videos"]]
    print(
        f"decoder threads: FFmpeg auto; {Path('/proc/cpuinfo').read_text().count('processor')} CPUs (shared)"
    )
    if not (args.long_only or args.copy_only):
        cut_baselines(sample)
        report("sample set (320x192)", good, args.repeats, [])
    if not args.copy_only:
        report(f"long video ({LONG_SIZE[0]}x{LONG_SIZE[1]})", [long_video], args.repeats, [])
    gop2 = with_gop(long_video, long_video.with_name(long_video.stem + "-gop2s.mp4"), 2.0)
    for label, path in (("x264 default GOP, <= 10 s", long_video), ("keyframe every <= 2 s", gop2)):
        copy_report(f"long video ({LONG_SIZE[0]}x{LONG_SIZE[1]}), {label}", path, args.repeats)
    text = text_scorers(not (args.no_text or args.copy_only))
    if text:  # CRAFT on CPU dominates; one repeat is enough to see the ratios
        report("sample set (320x192) with text detection", good, 1, text)
        report(f"long video ({LONG_SIZE[0]}x{LONG_SIZE[1]}) with text detection", [long_video], 1, text)


if __name__ == "__main__":
    main()
