"""Evaluate a multi-view model on held-out orbits: generate each orbit from its first view and elevation,
compare the generated views with the true ones (paper: 50 unseen GSO objects, LPIPS / PSNR / CLIP-S).

Scores are means over views, then over objects. By default the input view (frame 0) is not scored: it is
given, not generated. LPIPS and CLIP-S are None unless their weights are configured.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from svd_core.device import resolve_device
from svd_core.errors import InputError
from svd_core.tasks.multiview import metrics
from svd_core.tasks.multiview.config import MultiViewConfig
from svd_core.tasks.multiview.dataset import Orbit, load_view
from svd_core.tasks.multiview.pipeline import generate_orbit, load_multiview_pipeline

METRIC_NAMES = {"lpips": "mv_lpips", "psnr": "mv_psnr", "ssim": "mv_ssim", "clip_s": "mv_clip_s"}
"""Score field -> MLflow metric name."""


@dataclass
class MultiViewScores:
    psnr: float
    ssim: float
    lpips: float | None
    clip_s: float | None
    objects: int
    views_per_object: int
    per_object: list[dict[str, Any]] = field(default_factory=list)

    def metrics(self) -> dict[str, float]:
        """MLflow metrics (`mv_psnr`, `mv_ssim`, and `mv_lpips` / `mv_clip_s` only when computed)."""
        values = {name: getattr(self, key) for key, name in METRIC_NAMES.items()}
        return {name: float(v) for name, v in values.items() if v is not None}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _true_views(orbit: Orbit, size: int) -> list[np.ndarray]:
    views = []
    for k in range(len(orbit.views)):
        tensor = load_view(orbit.view_uri(k), size)
        views.append(((tensor.permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8))
    return views


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def evaluate_orbits(
    pipeline_dir: str | Path,
    orbits: list[Orbit],
    cfg: MultiViewConfig,
    progress: Callable[[str], None] | None = None,
) -> MultiViewScores:
    """Generate and score every orbit in `orbits` with the multi-view model at `pipeline_dir`."""
    if not orbits:
        raise InputError("no evaluation orbits; set data.held_out_objects > 0 or data.eval_uri")
    ev = cfg.eval
    device = resolve_device(ev.device)
    pipe = load_multiview_pipeline(pipeline_dir, device)
    lpips_model = metrics.load_lpips(ev.lpips_weights, device) if ev.lpips_weights else None
    clip = metrics.ClipScorer(ev.clip_model_uri, device) if ev.clip_model_uri else None
    first = 0 if ev.include_input_view else 1
    per_object = []
    for k, orbit in enumerate(orbits):
        true = _true_views(orbit, cfg.size)
        generated = generate_orbit(
            pipe,
            Image.fromarray(true[0]),
            orbit.views[0].elevation_deg,
            num_views=len(true),
            size=cfg.size,
            num_inference_steps=ev.num_inference_steps,
            min_guidance_scale=ev.min_guidance_scale,
            max_guidance_scale=ev.max_guidance_scale,
            fps_id=cfg.fps_id,
            motion_bucket_id=cfg.motion_bucket_id,
            noise_aug_strength=ev.noise_aug_strength,
            seed=ev.seed + k,
            decode_chunk_size=ev.batch_views or None,
        )
        gen, ref = list(generated[first:]), true[first:]
        row: dict[str, Any] = {
            "object": orbit.name,
            "psnr": _mean([metrics.psnr(g, t) for g, t in zip(gen, ref, strict=True)]),
            "ssim": _mean([metrics.ssim(g, t) for g, t in zip(gen, ref, strict=True)]),
            "lpips": _mean(metrics.lpips_distances(lpips_model, gen, ref)) if lpips_model else None,
            "clip_s": _mean(clip.scores(gen, ref)) if clip else None,
        }
        per_object.append(row)
        if progress is not None:
            progress(orbit.name)

    def overall(key: str) -> float | None:
        values = [r[key] for r in per_object if r[key] is not None]
        return _mean(values) if values else None

    return MultiViewScores(
        psnr=_mean([r["psnr"] for r in per_object]),
        ssim=_mean([r["ssim"] for r in per_object]),
        lpips=overall("lpips"),
        clip_s=overall("clip_s"),
        objects=len(per_object),
        views_per_object=len(orbits[0].views) - first,
        per_object=per_object,
    )


def _cell(value: float | None, digits: int) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def results_table(rows: list[tuple[str, MultiViewScores]]) -> str:
    """Markdown table in the paper's format (Method, LPIPS, PSNR, CLIP-S), plus SSIM and the object count."""
    lines = [
        "| Method | LPIPS ↓ | PSNR ↑ | CLIP-S ↑ | SSIM ↑ | objects |",
        "|---|---|---|---|---|---|",
    ]
    for method, s in rows:
        lines.append(
            f"| {method} | {_cell(s.lpips, 2)} | {_cell(s.psnr, 2)} | {_cell(s.clip_s, 2)} | "
            f"{_cell(s.ssim, 3)} | {s.objects} |"
        )
    return "\n".join(lines) + "\n"
