"""Motion score: OpenCV Farneback optical flow on the shared 2 fps scoring frames (the paper's method).

The flow between consecutive scoring frames is computed once per clip at `flow_compute_short_side` and
area-averaged to a map whose short side is `flow_map_short_side` (the paper: 16 px). `FarnebackFlow`
caches those maps for the clip being scored, so the camera-motion scorer reads the same field without a
second decode or a second flow computation.

Units of `flow_score`: mean flow magnitude in pixels of the 16-px-short-side map per sampling step
(1/sample_fps s; 0.5 s at the default 2 fps), averaged over all pixels and all frame pairs. Multiply by
sample_fps / 16 for short sides per second. Pairs further apart than one step (variable frame rates) are
rescaled to one step.

Large steps: at 2 fps a pan of 0.25 frame widths/s already moves the image by 12% between samples, beyond
what Farneback's pyramid tracks on fine texture (it reported 15% of the true shift on the sample set; a
1 frame-width/s pan read as 1%). So each pair is first aligned globally by phase correlation (an FFT,
~0.3 ms) and Farneback starts from that shift (OPTFLOW_USE_INITIAL_FLOW) and refines it locally: the
planted pans are then measured within 2%, and a moving object over a static background still gets its own
flow (the global peak is the background's zero shift).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from svd_core.curation.config import ScoringConfig
from svd_core.video.frames import SampledFrames

MOTION_VERSION = "farneback-phaseinit-v1"
MIN_PHASE_RESPONSE = 0.05  # below this, phase correlation found no dominant shift: start Farneback at zero


@dataclass(frozen=True)
class FlowFields:
    """Flow maps of one clip: `flows` (P, h, w, 2) in map pixels per sampling step, `dt_s` (P,) seconds."""

    flows: np.ndarray
    dt_s: np.ndarray
    step_s: float

    @property
    def map_size(self) -> tuple[int, int]:
        """(width, height) of the flow maps."""
        return int(self.flows.shape[2]), int(self.flows.shape[1])


def _resize_short(img: np.ndarray, short_side: int) -> np.ndarray:
    h, w = img.shape[:2]
    scale = short_side / min(h, w)
    return cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


class FarnebackFlow:
    """Computes a clip's flow maps once; a per-thread cache hands the same result to every scorer asking."""

    def __init__(self, cfg: ScoringConfig):
        self.cfg = cfg
        self._local = threading.local()

    def fields(self, frames: SampledFrames) -> FlowFields:
        cached = getattr(self._local, "last", None)
        if cached is not None and cached[0] is frames:
            return cached[1]
        result = self._compute(frames)
        self._local.last = (frames, result)
        return result

    def _compute(self, frames: SampledFrames) -> FlowFields:
        cfg = self.cfg
        grays = [
            _resize_short(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), cfg.flow_compute_short_side)
            for f in frames.frames
        ]
        step = 1.0 / frames.sample_fps
        maps, dts = [], []
        window = cv2.createHanningWindow(grays[0].shape[::-1], cv2.CV_32F) if grays else None
        for k in range(1, len(grays)):
            assert window is not None  # set whenever there are frames
            flow = _global_shift(grays[k - 1], grays[k], window)
            flow = cv2.calcOpticalFlowFarneback(
                grays[k - 1],
                grays[k],
                flow,
                0.5,
                cfg.farneback_levels,
                cfg.farneback_winsize,
                cfg.farneback_iterations,
                5,
                1.1,
                cv2.OPTFLOW_USE_INITIAL_FLOW,
            )
            small = _resize_short(flow, cfg.flow_map_short_side)
            small *= small.shape[0] / flow.shape[0]  # vectors in map pixels
            dt = float(frames.timestamps_s[k] - frames.timestamps_s[k - 1]) or step
            maps.append(small * (step / dt))
            dts.append(dt)
        h, w = _resize_short(grays[0], cfg.flow_map_short_side).shape if grays else (0, 0)
        flows = np.stack(maps) if maps else np.zeros((0, h, w, 2), np.float32)
        return FlowFields(flows.astype(np.float32), np.asarray(dts, np.float64), step)


def _global_shift(prev: np.ndarray, nxt: np.ndarray, window: np.ndarray) -> np.ndarray:
    """A flow field filled with the dominant translation prev -> next (phase correlation), or zeros."""
    (dx, dy), response = cv2.phaseCorrelate(prev.astype(np.float32), nxt.astype(np.float32), window)
    flow = np.zeros((*prev.shape, 2), np.float32)
    if response >= MIN_PHASE_RESPONSE:
        flow[..., 0], flow[..., 1] = dx, dy
    return flow


class MotionScorer:
    """ClipScorer filling `flow_score` (see the module docstring for units)."""

    name = "flow"
    columns = ("flow_score",)

    def __init__(self, flow: FarnebackFlow):
        self.flow = flow
        c = flow.cfg
        self.version = (
            f"{MOTION_VERSION}:fps{c.sample_fps}:compute{c.flow_compute_short_side}"
            f":map{c.flow_map_short_side}:L{c.farneback_levels}w{c.farneback_winsize}"
            f"i{c.farneback_iterations}"
        )

    def score(self, frames: SampledFrames, row: Mapping[str, Any]) -> dict[str, Any]:
        fields = self.flow.fields(frames)
        if len(fields.flows) == 0:
            return {"flow_score": None}  # a single scoring frame has no motion to measure
        magnitude = np.linalg.norm(fields.flows, axis=-1)
        return {"flow_score": float(magnitude.mean())}
