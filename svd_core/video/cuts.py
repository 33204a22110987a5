"""Cut detection: a cascade over several frame rates on small YUV thumbnails, streamable in one decode pass.

The paper cascades PySceneDetect detectors at several frame rates and thresholds so that slow transitions
are caught too. Measured on footage made here, single detectors fail in known ways: frame differences at
the full rate miss slow dissolves, content-type detectors split a shot at a camera flash, and at a low
frame rate a fast pan looks like a cut. So each level here has a guard for its failure mode:

1. hard cuts, full frame rate: a jump that stands out from its neighbours (adaptive ratio, so a steady
   fast pan does not split) and whose old content does not come back within `flash_window_s` (a flash,
   or content seen just before the jump, is not a cut);
2. fades through black: a short run of dark frames between brighter content; the cut is its middle;
3. dissolves at each level of `gradual_levels`, coarsest first: samples two steps apart that differ a lot
   while the sample between them is a blend of the two (a dissolve is a linear blend; a pan, a zoom or a
   moving object is not); the cut is placed where the blend weight crosses one half, to the frame.

`detect_cuts` works on an array of thumbnails; `StreamingCutDetector` runs it on a sliding window with
enough look-ahead that its decisions equal the whole-video result, so frames can be encoded into clips
while the video is still being decoded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from svd_core.curation.config import CutConfig

CUTS_VERSION = "cascade-v1"
MIN_ALPHA, MAX_ALPHA = 0.2, 0.8  # blend weight of the middle sample: a transition, not an endpoint


@dataclass(frozen=True)
class Cut:
    frame: int
    """Index (source stream order) of the first frame of the new shot."""
    kind: str
    """hard | fade | dissolve"""
    score: float
    """Detector confidence: mean absolute difference (0-255) for the cascade, probability for TransNetV2."""
    extent: tuple[int, int] | None = None
    """First and last frame of a gradual transition (dissolve, fade): they belong to neither clip and are
    trimmed from both; None for a hard cut."""


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a - b)))


def frame_diffs(x: np.ndarray) -> np.ndarray:
    """d[i] = mean |x[i] - x[i-1]| (d[0] = 0) for float thumbnails x of shape (N, h, w, 3)."""
    d = np.zeros(len(x), np.float32)
    if len(x) > 1:
        d[1:] = np.abs(x[1:] - x[:-1]).reshape(len(x) - 1, -1).mean(axis=1)
    return d


def nominal_fps(times: np.ndarray) -> float:
    if len(times) < 2:
        return 25.0
    gap = float(np.median(np.diff(times)))
    return 1.0 / gap if gap > 0 else 25.0


def frame_luma(x: Sequence[np.ndarray]) -> np.ndarray:
    """Mean luma (Y channel) of each thumbnail."""
    return np.array([float(t[..., 0].mean()) for t in x], np.float32)


def detect_cuts(
    thumbs: np.ndarray | Sequence[np.ndarray],
    times: np.ndarray | Sequence[float],
    cfg: CutConfig,
    first_index: int = 0,
    diffs: np.ndarray | None = None,
    luma: np.ndarray | None = None,
) -> list[Cut]:
    """All cuts in a run of consecutive frames (thumbnails from `decode.thumbnail`, times in seconds).

    `diffs` (frame_diffs) and `luma` (frame_luma) may be passed precomputed (the streaming detector keeps
    them per frame); thumbnails may be a list, as only a few frames are read past those two features.
    """
    x = [np.asarray(t, np.float32) for t in thumbs]
    times = np.asarray(times, np.float64)
    if len(x) < 3:
        return []
    d = np.array(diffs, np.float32) if diffs is not None else frame_diffs(np.stack(x))
    d[0] = 0.0  # the first frame of a window has no predecessor in it
    fps = nominal_fps(times)
    hard, flashes = _hard_cuts(x, d, fps, cfg)
    fades = _fades(luma if luma is not None else frame_luma(x), times, hard, cfg)
    blocked = [(i, i) for i in hard] + [extent for _, extent in fades]
    dissolves = _dissolves(x, times, flashes, blocked, cfg)
    cuts = [Cut(i, "hard", float(d[i])) for i in hard] + [cut for cut, _ in fades] + dissolves
    return sorted((_shifted(c, first_index) for c in cuts), key=lambda c: c.frame)


def _shifted(cut: Cut, offset: int) -> Cut:
    extent = None if cut.extent is None else (cut.extent[0] + offset, cut.extent[1] + offset)
    return Cut(cut.frame + offset, cut.kind, cut.score, extent)


# --- evaluation against planted cuts -------------------------------------------------------------------
@dataclass(frozen=True)
class CutScore:
    """Detected cuts against the ground truth: a detection within a cut's tolerance (frames) is a hit."""

    true_positives: int
    false_positives: int
    false_negatives: int

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else 1.0

    @property
    def recall(self) -> float:
        planted = self.true_positives + self.false_negatives
        return self.true_positives / planted if planted else 1.0

    def __add__(self, other: CutScore) -> CutScore:
        return CutScore(
            self.true_positives + other.true_positives,
            self.false_positives + other.false_positives,
            self.false_negatives + other.false_negatives,
        )


def score_cuts(detected: list[int], truth_cuts: list[dict]) -> CutScore:
    """Match detected cut frames to planted ones (each used once, nearest first)."""
    unmatched = sorted(detected)
    hits = 0
    for cut in truth_cuts:
        near = [d for d in unmatched if abs(d - cut["frame"]) <= cut["tolerance"]]
        if near:
            unmatched.remove(min(near, key=lambda d: abs(d - cut["frame"])))
            hits += 1
    return CutScore(hits, len(unmatched), len(truth_cuts) - hits)


# --- level 1: hard cuts with flash rejection ------------------------------------------------------------
def _hard_cuts(
    x: Sequence[np.ndarray], d: np.ndarray, fps: float, cfg: CutConfig
) -> tuple[list[int], set[int]]:
    n = len(x)
    w = max(1, round(cfg.adaptive_window_s * fps))
    window = max(2, round(cfg.flash_window_s * fps))
    cuts: list[int] = []
    flashes: set[int] = set()
    for hit in np.nonzero(d >= cfg.hard_threshold)[0]:
        i = int(hit)
        neighbours = np.concatenate([d[max(1, i - w) : i], d[i + 1 : min(n, i + w + 1)]])
        if neighbours.size and d[i] < neighbours.max():
            continue  # the largest jump of a burst decides (a flash has two: on and off)
        local = float(np.median(neighbours)) if neighbours.size else 0.0
        if d[i] < cfg.hard_ratio * max(local, 1.0):
            continue
        flash = _flash_frames(x, d, i, window, cfg)
        if flash:
            flashes.update(flash)
            continue
        cuts.append(i)
    return cuts, flashes


def _flash_frames(x: Sequence[np.ndarray], d: np.ndarray, i: int, window: int, cfg: CutConfig) -> list[int]:
    """Frames of a flash if the jump into frame i is one (content from before it returns), else []."""
    n = len(x)
    for j in range(1, window + 1):
        # Forward: the pre-jump frame x[i-1] is seen again at x[i+j] -> frames i..i+j-1 were the flash.
        if i + j < n and _returns(x[i - 1], x[i + j], d[i], x[i - 2 - j] if i - 2 - j >= 0 else None, cfg):
            return list(range(i, i + j))
        # Backward: the post-jump frame x[i] was seen before at x[i-1-j] -> frames i-j..i-1 were the flash.
        if i - 1 - j >= 0 and _returns(
            x[i], x[i - 1 - j], d[i], x[i + 1 + j] if i + 1 + j < n else None, cfg
        ):
            return list(range(i - j, i))
    return []


def _returns(
    anchor: np.ndarray, other: np.ndarray, jump: float, same_lag: np.ndarray | None, cfg: CutConfig
) -> bool:
    gap = _mad(anchor, other)
    if gap < cfg.flash_return_ratio * jump:
        return True
    # During camera motion content never returns exactly: accept a gap no larger than ordinary motion
    # over the same number of frames on the other side of the event.
    return same_lag is not None and gap <= _mad(anchor, same_lag)


# --- level 2: fades through black ---------------------------------------------------------------------
def _fades(
    luma: np.ndarray, times: np.ndarray, hard: list[int], cfg: CutConfig
) -> list[tuple[Cut, tuple[int, int]]]:
    """Fades through black, each with its extent (fade-out ramp start .. fade-in ramp end)."""
    dark = luma < cfg.dark_luma_max
    fades = []
    for start, stop in _runs(dark):
        if start == 0 or stop == len(luma):
            continue  # a video (or window) that starts or ends dark: no content on one side
        if times[stop - 1] - times[start] > cfg.fade_max_dark_s:
            continue  # a long dark stretch is content, not a transition
        if any(start - 1 <= h <= stop for h in hard):
            continue  # a fade out ended by a hard cut: the hard cut is the boundary
        lo, hi = start - 1, stop
        while lo > 0 and luma[lo - 1] > luma[lo] + 0.5:  # walk up the fade-out ramp
            lo -= 1
        while hi + 1 < len(luma) and luma[hi + 1] > luma[hi] + 0.5:  # and up the fade-in ramp
            hi += 1
        depth = float(min(luma[start - 1], luma[stop]) - luma[start:stop].min())
        fades.append((Cut((start + stop) // 2, "fade", depth, (lo, hi)), (lo, hi)))
    return fades


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.nonzero(edges == 1)[0].tolist(), np.nonzero(edges == -1)[0].tolist(), strict=True))


# --- level 3: dissolves over a cascade of frame rates -----------------------------------------------------
def _dissolves(
    x: Sequence[np.ndarray],
    times: np.ndarray,
    flashes: set[int],
    blocked: list[tuple[int, int]],
    cfg: CutConfig,
) -> list[Cut]:
    """Dissolves, coarsest level first; `blocked` holds the extents of transitions already found."""
    found: list[Cut] = []
    blocked = list(blocked)
    for level in sorted(cfg.gradual_levels, key=lambda lv: lv.fps):
        samples = _sample_indices(times, 0.5 / level.fps, flashes)
        candidates = []
        for k in range(2, len(samples) - 2):
            a, m, b = samples[k - 2], samples[k], samples[k + 2]
            chord = _mad(x[a], x[b])
            if chord < level.threshold or _overlaps(a, b, blocked):
                continue
            alpha, residual = _blend_fit(x[a], x[m], x[b])
            if residual <= level.max_residual and MIN_ALPHA <= alpha <= MAX_ALPHA:
                candidates.append((chord, -residual, a, b))
        for chord, _, a, b in sorted(candidates, reverse=True):
            if _overlaps(a, b, blocked):
                continue
            frame = _crossing(x, a, b)
            found.append(Cut(frame, "dissolve", chord, _blend_extent(x, a, b)))
            blocked.append((a, b))
    return found


def _overlaps(a: int, b: int, blocked: list[tuple[int, int]]) -> bool:
    """Does the window (a, b] touch a found transition (frames lo..hi; a hard cut is lo == hi)?"""
    return any(a < hi + 1 and lo <= b for lo, hi in blocked)


def _sample_indices(times: np.ndarray, stride_s: float, flashes: set[int]) -> list[int]:
    """First frame at or after each multiple of `stride_s` (absolute stream time), skipping flash frames.

    Anchoring the grid at absolute times makes a window of frames give the same samples as the whole video.
    """
    grid = np.arange(np.ceil(times[0] / stride_s) * stride_s, times[-1] + 1e-9, stride_s)
    out: list[int] = []
    for t in grid:
        i = int(np.searchsorted(times, t - 1e-9))
        while i in flashes and i + 1 < len(times):
            i += 1
        if i < len(times) and (not out or i > out[-1]):
            out.append(i)
    return out


def _blend_fit(a: np.ndarray, m: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Best alpha with m ~ a + alpha (b - a), and the residual relative to |b - a| (L2)."""
    chord = (b - a).ravel()
    offset = (m - a).ravel()
    norm2 = float(chord @ chord)
    if norm2 <= 0:
        return 0.0, 1.0
    alpha = float(offset @ chord) / norm2
    residual = offset - alpha * chord
    return alpha, float(np.sqrt(residual @ residual / norm2))


def _blend_extent(x: Sequence[np.ndarray], a: int, b: int) -> tuple[int, int]:
    """Frames in (a, b) that are a blend of both ends (weight 0.05-0.95): the dissolve's extent."""
    chord = (x[b] - x[a]).reshape(-1)
    norm2 = max(float(chord @ chord), 1e-6)
    alphas = (np.stack(x[a + 1 : b]) - x[a]).reshape(b - a - 1, -1) @ chord / norm2 if b - a > 1 else []
    inside = [a + 1 + k for k, w in enumerate(alphas) if 0.05 < w < 0.95]
    return (inside[0], inside[-1]) if inside else (a + 1, max(a + 1, b - 1))


def _crossing(x: Sequence[np.ndarray], a: int, b: int) -> int:
    """First frame in (a, b] whose blend weight along a -> b reaches one half: the dissolve's middle."""
    chord = (x[b] - x[a]).reshape(-1)
    norm2 = float(chord @ chord)
    alphas = (np.stack(x[a + 1 : b + 1]) - x[a]).reshape(b - a, -1) @ chord / norm2
    return a + 1 + int(np.argmax(alphas >= 0.5)) if np.any(alphas >= 0.5) else (a + b + 1) // 2


# --- streaming -------------------------------------------------------------------------------------------
class StreamingCutDetector:
    """`detect_cuts` over a sliding window: push frames as they decode, take cuts once they are final.

    The window keeps `cfg.lookahead_s()` of context on both sides of the frames being decided, so every
    decision sees the same frames it would see on the whole video.
    """

    def __init__(self, cfg: CutConfig, fps: float, chunk_s: float = 2.0):
        self.cfg = cfg
        self.margin = max(4, int(np.ceil(cfg.lookahead_s() * fps)))
        self.chunk = max(8, int(np.ceil(chunk_s * fps)))
        # Per-frame features are computed once on push; each window run only reads them.
        self.thumbs: list[np.ndarray] = []
        self.times: list[float] = []
        self.diffs: list[float] = []
        self.luma: list[float] = []
        self.first = 0  # stream index of thumbs[0]
        self.decided = 0  # every cut before this stream index is final
        self.ready: list[Cut] = []
        self._last: np.ndarray | None = None

    def push(self, thumb: np.ndarray, time_s: float) -> None:
        x = thumb.astype(np.float32)
        self.diffs.append(_mad(x, self._last) if self._last is not None else 0.0)
        self.luma.append(float(x[..., 0].mean()))
        self.thumbs.append(x)
        self.times.append(time_s)
        self._last = x
        if self.first + len(self.thumbs) >= self.decided + self.chunk + self.margin:
            self._decide(self.decided + self.chunk)

    def finish(self) -> None:
        self._decide(self.first + len(self.thumbs))

    @property
    def final_until(self) -> int:
        """Frames with an index below this have all their cut decisions made."""
        return self.decided

    def take(self) -> list[Cut]:
        out, self.ready = self.ready, []
        return out

    def _decide(self, until: int) -> None:
        if self.thumbs:
            cuts = detect_cuts(
                self.thumbs,
                self.times,
                self.cfg,
                self.first,
                np.asarray(self.diffs),
                np.asarray(self.luma, np.float32),
            )
            self.ready += [c for c in cuts if self.decided <= c.frame < until]
        self.decided = until
        drop = max(0, until - self.margin - self.first)
        del self.thumbs[:drop], self.times[:drop], self.diffs[:drop], self.luma[:drop]
        self.first += drop
