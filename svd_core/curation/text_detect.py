"""Text-area scorer: CRAFT boxes on the first, middle and last frame -> `text_area_ratio`.

The paper (section 3.1, appendix C) runs CRAFT on the start, middle and end frame and drops clips whose
text boxes cover more than 7% of the frame; the ablation (appendix E.2.2) drops the 25% of clips with the
most text area. So the score is the box *area* (not a box count, a known weakness of other pipelines):
the union of the boxes over the frame area, the maximum over the three frames.

Small text. Captions 12-14 px tall in a 720p frame are what CRAFT finds only near full resolution, and
full-resolution CRAFT costs ~7 s per 720p frame on one CPU core. The `crops` mode stays within 0.01 of it
on real photos with 12-14 px captions and 60-100 px titles at 2.7-3.5 frames/s per core (bench/
bench_craft.py; the old 256 px path: 0.95 frames/s, blind to the captions):
1. a coarse pass over the whole frame at `coarse_long_side` finds large text (titles);
2. a cheap text-line proposal (`text_line_candidates`: thin high-contrast strokes, joined along rows into
   bands of text height, at full and half resolution) ranks candidate lines by stroke contrast;
3. CRAFT runs at full (or half) resolution on the best candidates, each with a margin of context, until
   `crop_budget_px` network input pixels are spent;
4. the crops' score maps replace the coarse maps (upsampled to the full-resolution map grid) where they
   were computed, and CRAFT's box extraction runs once on the combined maps, as it would at full size.
`full` runs the whole frame at its own size (the reference, the GPU default) and `resize` the whole frame at
`long_side` (the old behaviour: blind to small text).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np
import torch

from svd_core.curation.craft import (
    CraftNet,
    cpu_has_native_bf16,
    craft_maps,
    craft_score_maps,
    inference_net,
)
from svd_core.curation.model_loading import short_hash, weights_fingerprint
from svd_core.video.frames import SampledFrames

CODE_VERSION = "craft-v2"
CROP_UNIT = 16
"""Crop sides are multiples of this (at their level's scale), run unpadded: CRAFT's decoder takes 16-aligned
inputs (its deepest level rounded), less waste than 32 on short text-line crops. The coarse pass keeps the
32-padding: unaligned, its large-text boxes shrank by up to 40% here."""
TextMode = Literal["auto", "crops", "full", "resize"]


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


@dataclass(frozen=True)
class LineCandidate:
    """A proposed text line: its box in full-resolution pixels, the pyramid level it was found at (0 = full
    resolution, 1 = half) and its mean stroke contrast (the ranking score)."""

    contrast: float
    level: int
    box: tuple[int, int, int, int]
    """x0, y0, x1, y1 (exclusive) in full-resolution pixels."""


def _rect(width: int, height: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_RECT, (width, height))


def text_line_candidates(
    gray: np.ndarray,
    level: int,
    stroke_threshold: int = 60,
    stroke_kernel: int = 7,
    join_px: int = 9,
    max_height: int = 30,
    min_width: int = 20,
) -> list[LineCandidate]:
    """Bands of thin high-contrast strokes, at `level` (the frame halved `level` times): candidate lines of
    text about 6-30 px tall at that level. Cheap (~10 ms for a 720p frame); recall over precision.

    Strokes are the white and black top-hats (thin bright or dark structures) above `stroke_threshold`;
    joined along rows by `join_px`, words become bars. Anything that runs taller than `max_height` (foliage,
    edges of objects) is cut away, bars shorter than `min_width` are dropped, and what remains with a text
    line's height is a candidate, scored by its strokes' mean contrast.
    """
    g = gray
    for _ in range(level):
        g = cv2.resize(g, (g.shape[1] // 2, g.shape[0] // 2), interpolation=cv2.INTER_AREA)
    kernel = _rect(stroke_kernel, stroke_kernel)
    strength = np.maximum(
        cv2.morphologyEx(g, cv2.MORPH_TOPHAT, kernel), cv2.morphologyEx(g, cv2.MORPH_BLACKHAT, kernel)
    )
    strokes = (strength > stroke_threshold).astype(np.uint8)
    bars = cv2.morphologyEx(strokes, cv2.MORPH_CLOSE, _rect(join_px, 1))
    tall = cv2.dilate(cv2.morphologyEx(bars, cv2.MORPH_OPEN, _rect(1, max_height)), _rect(3, 3))
    bars = cv2.morphologyEx(np.where(tall > 0, 0, bars).astype(np.uint8), cv2.MORPH_OPEN, _rect(min_width, 1))
    _, _, stats, _ = cv2.connectedComponentsWithStats(bars, connectivity=8)
    scale = 2**level
    out = []
    for x, y, w, h, _area in stats[1:]:
        if not (6 <= h <= max_height and w >= min_width):
            continue
        inside = strokes[y : y + h, x : x + w].astype(bool)
        contrast = float(strength[y : y + h, x : x + w][inside].mean()) if inside.any() else 0.0
        box = (int(x) * scale, int(y) * scale, int(x + w) * scale, int(y + h) * scale)
        out.append(LineCandidate(contrast, level, box))
    return out


Box = tuple[int, int, int, int]


def _grow_to_stride(box: Box, unit: int, width: int, height: int) -> Box:
    """`box` grown (with image context, inside the frame) to sides that are multiples of `unit`, so the
    network's zero padding is not wasted compute."""
    out = list(box)
    for lo, hi, size in ((0, 2, width), (1, 3, height)):
        want = min(size, -(-(out[hi] - out[lo]) // unit) * unit)
        start = max(0, out[lo] - (want - (out[hi] - out[lo])) // 2)
        end = min(size, start + want)
        out[lo], out[hi] = max(0, end - want), end
    return (out[0], out[1], out[2], out[3])


def _merge_overlapping(boxes: list[Box]) -> list[Box]:
    boxes = list(boxes)
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    boxes[i] = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return boxes


def plan_crops(
    candidates: list[LineCandidate], width: int, height: int, budget_px: int, margin_px: int
) -> dict[int, list[Box]]:
    """Crops per level for the best candidates (highest contrast first) within `budget_px` network input
    pixels: each candidate's box plus `margin_px` of context (at its level), overlapping crops of a level
    merged, sides grown to multiples of 32 at the level's scale."""
    chosen: dict[int, list[Box]] = {}

    def cost(plan: dict[int, list[Box]]) -> float:
        return sum(
            (b[2] - b[0]) * (b[3] - b[1]) / 4**level
            for level, boxes in plan.items()
            for b in (_grow_to_stride(box, CROP_UNIT * 2**level, width, height) for box in boxes)
        )

    for cand in sorted(candidates, key=lambda c: -c.contrast):
        margin = margin_px * 2**cand.level
        x0, y0, x1, y1 = cand.box
        box = (max(0, x0 - margin), max(0, y0 - margin), min(width, x1 + margin), min(height, y1 + margin))
        trial = {**chosen, cand.level: _merge_overlapping([*chosen.get(cand.level, []), box])}
        if cost(trial) <= budget_px:
            chosen = trial
    return {
        level: [_grow_to_stride(b, CROP_UNIT * 2**level, width, height) for b in boxes]
        for level, boxes in chosen.items()
    }


class TextAreaScorer:
    """ClipScorer filling `text_area_ratio` from CRAFT boxes on the key frames.

    Reads the clip's large key frames (`SampledFrames.key_frames_large`, kept at
    `scoring.key_frames_short_side`) when present, else the scoring frames.
    """

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
        mode: TextMode = "auto",
        coarse_long_side: int = 256,
        crop_budget_px: int = 30_000,
        crop_margin_px: int = 8,
    ) -> None:
        self.mode: TextMode = ("full" if device.type == "cuda" else "crops") if mode == "auto" else mode
        if device.type == "cpu" and dtype == torch.float32 and cpu_has_native_bf16():
            dtype = torch.bfloat16  # same boxes within ~0.002 of area, about 2x faster
        self.device, self.dtype = device, dtype
        self.net = inference_net(net, device, dtype)  # a prepared copy; `net` itself is left as it is
        self.long_side = long_side
        self.coarse_long_side = coarse_long_side
        self.crop_budget_px = crop_budget_px
        self.crop_margin_px = crop_margin_px
        self.thresholds: dict[str, Any] = dict(
            text_threshold=text_threshold,
            link_threshold=link_threshold,
            low_text=low_text,
            min_component_px=min_component_px,
        )
        settings = short_hash(
            self.mode,
            long_side if self.mode == "resize" else None,
            (coarse_long_side, crop_budget_px, crop_margin_px) if self.mode == "crops" else None,
            sorted(self.thresholds.items()),
        )
        self.version = f"{CODE_VERSION}+w{weights_fingerprint(weights_path)}+s{settings}"

    def frame_ratios(self, frames: np.ndarray) -> list[float]:
        """Text area ratio of each frame of a (K, H, W, 3) uint8 batch."""
        if self.mode == "resize":
            maps, valid_hw = craft_score_maps(self.net, frames, self.long_side, self.device, self.dtype)
            return [
                box_area_ratio(detect_boxes(region, link, **self.thresholds), valid_hw)
                for region, link in maps
            ]
        return [self.frame_ratio(frame) for frame in frames]

    def frame_ratio(self, frame: np.ndarray) -> float:
        """Text area ratio of one uint8 RGB (H, W, 3) frame."""
        if self.mode == "resize":
            return self.frame_ratios(frame[None])[0]
        maps = self.frame_maps(frame)
        return box_area_ratio(detect_boxes(maps[0], maps[1], **self.thresholds), maps.shape[1:])

    def frame_maps(self, frame: np.ndarray) -> np.ndarray:
        """Region and link maps on the full-resolution map grid, (2, ceil(H/2), ceil(W/2)) float32: the
        frame at its own size (`full`, or a frame no larger than the coarse pass) or coarse + crops."""
        height, width = frame.shape[:2]
        scale = self.coarse_long_side / max(height, width)
        if self.mode == "full" or scale >= 1.0:
            return craft_maps(self.net, frame, self.device, self.dtype)
        grid = (-(-width // 2), -(-height // 2))
        small = cv2.resize(frame, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
        coarse = craft_maps(self.net, small, self.device, self.dtype)
        maps = np.stack([cv2.resize(m, grid, interpolation=cv2.INTER_LINEAR) for m in coarse])
        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        levels = [level for level in (0, 1) if 0.5**level > scale]
        candidates = [c for level in levels for c in text_line_candidates(gray, level)]
        plan = plan_crops(candidates, width, height, self.crop_budget_px, self.crop_margin_px)
        for level in sorted(plan, reverse=True):  # finer levels last: they overwrite coarser ones
            for box in plan[level]:
                self._paste(maps, frame, box, level)
        return maps

    def _paste(self, maps: np.ndarray, frame: np.ndarray, box: Box, level: int) -> None:
        """Run CRAFT on one crop at 1/2**level scale; its maps replace `maps` inside the crop (less the
        margin, which is context only, except at the frame's border)."""
        x0, y0, x1, y1 = box
        crop = frame[y0:y1, x0:x1]
        if level:
            size = (max(1, (x1 - x0) >> level), max(1, (y1 - y0) >> level))
            crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
        part = craft_maps(self.net, crop, self.device, self.dtype, pad_to=CROP_UNIT)
        mx0, my0, mx1, my1 = x0 // 2, y0 // 2, -(-x1 // 2), -(-y1 // 2)
        if level:
            part = np.stack(
                [cv2.resize(m, (mx1 - mx0, my1 - my0), interpolation=cv2.INTER_LINEAR) for m in part]
            )
        part = part[:, : my1 - my0, : mx1 - mx0]
        inner = self.crop_margin_px * 2**level // 2
        map_h, map_w = maps.shape[1:]
        left = 0 if mx0 == 0 else inner
        top = 0 if my0 == 0 else inner
        right = part.shape[2] if mx1 >= map_w else part.shape[2] - inner
        bottom = part.shape[1] if my1 >= map_h else part.shape[1] - inner
        maps[:, my0 + top : my0 + bottom, mx0 + left : mx0 + right] = part[:, top:bottom, left:right]

    def score(self, frames: SampledFrames, row: Mapping[str, Any]) -> dict[str, Any]:
        keys = frames.key_frames_large if frames.key_frames_large is not None else frames.key_frames()
        return {"text_area_ratio": max(self.frame_ratios(keys))}
