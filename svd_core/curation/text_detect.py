"""Text-area scorer: CRAFT boxes on the first, middle and last frame -> `text_area_ratio`.

The paper (section 3.1, appendix C) runs CRAFT on the start, middle and end frame and drops clips whose
text boxes cover more than 7% of the frame; the ablation (appendix E.2.2) drops the 25% of clips with the
most text area. So the score is the box *area* (not a box count, a known weakness of other pipelines):
the union of the boxes over the frame area, the maximum over the three frames.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np
import torch

from svd_core.curation.craft import CraftNet, craft_score_maps
from svd_core.curation.model_loading import short_hash, weights_fingerprint
from svd_core.video.frames import SampledFrames

CODE_VERSION = "craft-v1"


def detect_boxes(
    region: np.ndarray,
    link: np.ndarray,
    text_threshold: float = 0.7,
    link_threshold: float = 0.4,
    low_text: float = 0.4,
    min_component_px: int = 10,
) -> list[np.ndarray]:
    """Word boxes (4x2 float32 corner points, score-map coordinates) from CRAFT's two maps.

    Follows CRAFT's getDetBoxes: threshold region and link maps, take 4-connected components of their
    union, keep those whose peak region score reaches `text_threshold`, grow each by a size-dependent
    dilation and fit a minimum-area rectangle. Works on each component's bounding-box crop only.
    """
    text_mask = region > low_text
    link_mask = link > link_threshold
    combined = (text_mask | link_mask).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(combined, connectivity=4)
    link_only = link_mask & ~text_mask
    map_h, map_w = region.shape
    boxes = []
    for k in range(1, count):
        x, y, w, h, size = (int(v) for v in stats[k, :5])
        if size < min_component_px:
            continue
        niter = int(math.sqrt(size * min(w, h) / (w * h)) * 2)
        sx, sy = max(0, x - niter), max(0, y - niter)
        ex, ey = min(map_w, x + w + niter + 1), min(map_h, y + h + niter + 1)
        member = labels[sy:ey, sx:ex] == k
        if region[sy:ey, sx:ex][member].max() < text_threshold:
            continue
        segment = member & ~link_only[sy:ey, sx:ex]  # the link pixels only join characters, they are not text
        kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (1 + niter, 1 + niter))
        segment = cv2.dilate(segment.astype(np.uint8), kernel)
        ys, xs = np.nonzero(segment)
        if len(xs) == 0:
            continue
        points = np.stack([xs + sx, ys + sy], axis=1).astype(np.float32)
        boxes.append(_box_from_points(points))
    return boxes


def _box_from_points(points: np.ndarray) -> np.ndarray:
    box = cv2.boxPoints(cv2.minAreaRect(points))
    side_a, side_b = np.linalg.norm(box[0] - box[1]), np.linalg.norm(box[1] - box[2])
    if abs(1 - max(side_a, side_b) / (min(side_a, side_b) + 1e-5)) <= 0.1:
        # a near-square fit is ambiguous in rotation (CRAFT's "diamond" case): use the axis-aligned box
        left, top = points.min(axis=0)
        right, bottom = points.max(axis=0)
        box = np.array([[left, top], [right, top], [right, bottom], [left, bottom]], dtype=np.float32)
    start = int(box.sum(axis=1).argmin())
    return np.roll(box, 4 - start, axis=0).astype(np.float32)


def box_area_ratio(boxes: list[np.ndarray], valid_hw: tuple[int, int]) -> float:
    """Union area of the boxes over the valid (unpadded) map area, in [0, 1]."""
    valid_h, valid_w = valid_hw
    mask = np.zeros((valid_h, valid_w), dtype=np.uint8)
    for box in boxes:
        cv2.fillPoly(mask, [np.round(box).astype(np.int32)], 1)
    return float(mask.sum()) / float(valid_h * valid_w)


class TextAreaScorer:
    """ClipScorer filling `text_area_ratio` from CRAFT boxes on the key frames (one batched forward)."""

    name = "craft"
    columns = ("text_area_ratio",)

    def __init__(
        self,
        net: CraftNet,
        weights_path: str,
        device: torch.device,
        dtype: torch.dtype = torch.float32,
        long_side: int = 512,
        text_threshold: float = 0.7,
        link_threshold: float = 0.4,
        low_text: float = 0.4,
        min_component_px: int = 10,
    ) -> None:
        self.net = net.to(device=device, dtype=dtype)
        self.device, self.dtype = device, dtype
        self.long_side = long_side
        self.thresholds: dict[str, Any] = dict(
            text_threshold=text_threshold,
            link_threshold=link_threshold,
            low_text=low_text,
            min_component_px=min_component_px,
        )
        settings = short_hash(long_side, sorted(self.thresholds.items()))
        self.version = f"{CODE_VERSION}+w{weights_fingerprint(weights_path)}+s{settings}"

    def frame_ratios(self, frames: np.ndarray) -> list[float]:
        """Text area ratio of each frame of a (K, H, W, 3) uint8 batch."""
        maps, valid_hw = craft_score_maps(self.net, frames, self.long_side, self.device, self.dtype)
        ratios = []
        for region, link in maps:
            boxes = detect_boxes(region, link, **self.thresholds)
            ratios.append(box_area_ratio(boxes, valid_hw))
        return ratios

    def score(self, frames: SampledFrames, row: Mapping[str, Any]) -> dict[str, Any]:
        return {"text_area_ratio": max(self.frame_ratios(frames.key_frames()))}
