"""Camera-motion labels from the motion scorer's flow field (no second decode, no second flow).

For each pair of scoring frames a similarity motion (translation, scale, rotation) is fitted to the
16-px flow map by iteratively reweighted least squares with Tukey weights, so a moving object (or text
crawling over a static shot) is an outlier, not camera motion. Per-pair rates are turned into per-second
camera rates and the clip gets their medians:

- `cam_tx`: camera pan in frame widths per second, positive = camera moves right (content moves left);
- `cam_ty`: camera tilt in frame heights per second, positive = camera moves down (content moves up);
- `cam_zoom`: d ln(scale) / dt per second, positive = zoom in (content grows);
- `camera_motion`: static | horizontal | vertical | zoom_in | zoom_out | complex (rotation, no dominant
  motion, too many outliers, or a label that does not hold over most of the clip).

These feed the paper's camera-motion LoRAs (horizontal, zoom, static classes).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np

from svd_core.curation.config import CameraConfig
from svd_core.curation.motion import FarnebackFlow, FlowFields
from svd_core.video.frames import SampledFrames

CAMERA_VERSION = "similarity-irls-v1"
TUKEY_C = 4.685
MIN_SIGMA_PX = 0.05  # flow noise floor on the 16 px map; keeps a perfect fit from rejecting everything


@functools.cache
def _design(h: int, w: int) -> tuple[np.ndarray, tuple[slice, slice]]:
    """Rows [1, 0, x, -y] (u) and [0, 1, y, x] (v) for the inner pixels of an h x w map, x/y from the centre."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    xs -= (w - 1) / 2
    ys -= (h - 1) / 2
    inner = (slice(1, -1), slice(1, -1)) if h > 4 and w > 4 else (slice(None), slice(None))
    x, y = xs[inner].ravel(), ys[inner].ravel()
    ones, zeros = np.ones_like(x), np.zeros_like(x)
    return np.concatenate([np.stack([ones, zeros, x, -y], 1), np.stack([zeros, ones, y, x], 1)]), inner


def fit_similarity(flow: np.ndarray, iterations: int = 6) -> tuple[np.ndarray, float]:
    """Robust fit of u = tx + a x - b y, v = ty + b x + a y to a flow map (h, w, 2), x/y from the centre.

    Returns ([tx, ty, a, b] in map pixels, inlier fraction). See `fit_similarities`.
    """
    params, inliers = fit_similarities(flow[None], iterations)
    return params[0], float(inliers[0])


def fit_similarities(flows: np.ndarray, iterations: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """`fit_similarity` for a stack of flow maps (P, h, w, 2) at once: params (P, 4), inlier fractions (P,).

    The outer ring of each map is left out (content entering or leaving the frame has no reliable flow).
    Each round reweights with Tukey's biweight at 4.685 robust sigmas and solves the P 4x4 weighted normal
    equations together, so the whole clip costs a few numpy calls (camera labels must stay a small
    fraction of the flow they read).
    """
    design, inner = _design(*flows.shape[1:3])
    count = len(flows)
    target = np.concatenate(
        [
            flows[:, inner[0], inner[1], 0].reshape(count, -1),
            flows[:, inner[0], inner[1], 1].reshape(count, -1),
        ],
        axis=1,
    ).astype(np.float64)
    half = target.shape[1] // 2
    params = np.zeros((count, 4))
    params[:, 0], params[:, 1] = np.median(target[:, :half], axis=1), np.median(target[:, half:], axis=1)
    sigma = np.full(count, MIN_SIGMA_PX)
    for _ in range(iterations):
        residual = _residuals(design, params, target)
        sigma = np.maximum(1.4826 * np.median(residual, axis=1), MIN_SIGMA_PX)
        scaled = residual / (TUKEY_C * sigma[:, None])
        weights = np.where(scaled < 1, (1 - scaled**2) ** 2, 0.0)
        w2 = np.concatenate([weights, weights], axis=1)
        weighted = w2[:, :, None] * design[None]  # (P, n, 4)
        normal = weighted.transpose(0, 2, 1) @ design
        rhs = (weighted * target[:, :, None]).sum(axis=1)
        solvable = (weights.sum(axis=1) >= 4) & (np.abs(np.linalg.det(normal)) > 1e-9)
        if not solvable.any():
            break
        params[solvable] = np.linalg.solve(normal[solvable], rhs[solvable][..., None])[..., 0]
    residual = _residuals(design, params, target)
    inliers = np.mean(residual < np.maximum(3 * sigma, 0.25)[:, None], axis=1)
    return params, inliers


def _residuals(design: np.ndarray, params: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Length of the 2-D residual vector at each pixel, (P, n)."""
    error = params @ design.T - target
    half = error.shape[1] // 2
    return np.hypot(error[:, :half], error[:, half:])


def camera_rates(fields: FlowFields, iterations: int = 6) -> np.ndarray:
    """Per frame pair: [cam_tx, cam_ty, cam_zoom, rotation deg/s, inlier fraction] (rows, shape (P, 5))."""
    if len(fields.flows) == 0:
        return np.zeros((0, 5))
    w, h = fields.map_size
    params, inliers = fit_similarities(fields.flows, iterations)
    tx, ty, a, b = params.T
    step = fields.step_s  # flows are normalised to one sampling step
    scale = np.maximum(np.hypot(1 + a, b), 1e-6)
    rotation = np.degrees(np.arctan2(b, 1 + a))
    return np.stack([-tx / w / step, -ty / h / step, np.log(scale) / step, rotation / step, inliers], axis=1)


def label_motion(
    tx: float, ty: float, zoom: float, rotation: float, inliers: float, cfg: CameraConfig
) -> str:
    """The label of one set of rates (see the module docstring)."""
    if max(abs(tx), abs(ty)) < cfg.static_max_translation and abs(zoom) < cfg.static_max_zoom:
        return "static"
    if abs(rotation) > cfg.max_rotation_deg_s or inliers < cfg.min_inlier_fraction:
        return "complex"
    rates = {"horizontal": abs(tx), "vertical": abs(ty), "zoom": abs(zoom)}
    floor = {
        "horizontal": cfg.static_max_translation,
        "vertical": cfg.static_max_translation,
        "zoom": cfg.static_max_zoom,
    }
    best = max(rates, key=rates.__getitem__)
    if any(rates[best] < cfg.dominance_ratio * max(rates[k], floor[k] / 2) for k in rates if k != best):
        return "complex"
    if best == "zoom":
        return "zoom_in" if zoom > 0 else "zoom_out"
    return best


class CameraMotionScorer:
    """ClipScorer filling camera_motion, cam_tx, cam_ty, cam_zoom from the shared Farneback flow."""

    name = "camera"
    columns = ("camera_motion", "cam_tx", "cam_ty", "cam_zoom")

    def __init__(self, flow: FarnebackFlow, cfg: CameraConfig):
        self.flow, self.cfg = flow, cfg
        self.version = f"{CAMERA_VERSION}:{cfg.config_hash()[:8]}"

    def score(self, frames: SampledFrames, row: Mapping[str, Any]) -> dict[str, Any]:
        rates = camera_rates(self.flow.fields(frames), self.cfg.irls_iterations)
        if len(rates) == 0:
            return dict.fromkeys(self.columns)
        tx, ty, zoom, rotation, inliers = np.median(rates, axis=0)
        label = label_motion(tx, ty, zoom, rotation, inliers, self.cfg)
        if label != "complex":
            agree = np.mean(
                [
                    label_motion(rtx, rty, rzoom, rrot, rinl, self.cfg) == label
                    for rtx, rty, rzoom, rrot, rinl in rates
                ]
            )
            label = label if agree >= self.cfg.min_consistency else "complex"
        return {"camera_motion": label, "cam_tx": float(tx), "cam_ty": float(ty), "cam_zoom": float(zoom)}
