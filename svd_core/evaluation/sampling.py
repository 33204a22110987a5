"""Generate evaluation samples from a pipeline folder: image-to-video through diffusers'
`StableVideoDiffusionPipeline`, text-to-video through our EDM sampler (svd_core.model.pipeline_io).

Samples are content-addressed by (model, eval item, sampling settings): a rerun finds the finished MP4 and
its metadata JSON and skips the work.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from svd_core import storage as svd_io
from svd_core.device import resolve_device
from svd_core.errors import InputError
from svd_core.evaluation.config import SamplingConfig
from svd_core.evaluation.evalsets import EvalItem, EvalSet
from svd_core.model.pipeline_io import MODEL_INFO, load_components, read_json, sample_text_to_video
from svd_core.video.writer import write_mp4

Generator = Callable[[EvalItem], np.ndarray]


def model_info(pipeline_dir: Path) -> dict[str, Any]:
    path = pipeline_dir / MODEL_INFO
    return read_json(path) if path.is_file() else {}


def _frames_to_uint8(frames: torch.Tensor) -> np.ndarray:
    """(T, 3, H, W) in [0, 1] -> uint8 (T, H, W, 3)."""
    return (frames.clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)


def load_generator(pipeline_dir: str | Path, cfg: SamplingConfig) -> tuple[Generator, dict[str, Any]]:
    """A function EvalItem -> uint8 frames for the pipeline folder, plus the resolved sampling sizes."""
    folder = Path(pipeline_dir)
    info = model_info(folder)
    if info.get("stage") == "image":
        raise InputError(f"{folder} is a stage-I image model; sample from a video stage (II or III)")
    if "multiview" in info:
        raise InputError(
            f"{folder} is a multi-view model; generate orbits with svd_core.tasks.multiview.pipeline"
        )
    if info.get("stage") == "interpolation":
        raise InputError(f"{folder} is a frame-interpolation model; use `svd interpolate VIDEO --model ...`")
    sizes = {
        "num_frames": cfg.num_frames or int(info.get("num_frames", 14)),
        "height": cfg.height or int(info.get("height", 64)),
        "width": cfg.width or int(info.get("width", 64)),
    }
    device = resolve_device(cfg.device)
    index = read_json(folder / "model_index.json")
    if index.get("text_encoder") not in (None, [None, None]):
        return _text_generator(folder, cfg, sizes, device), sizes
    return _image_generator(folder, cfg, sizes, device), sizes


def _image_generator(
    folder: Path, cfg: SamplingConfig, sizes: dict[str, int], device: torch.device
) -> Generator:
    from diffusers import StableVideoDiffusionPipeline

    pipe = StableVideoDiffusionPipeline.from_pretrained(str(folder), local_files_only=True).to(device)
    pipe.set_progress_bar_config(disable=True)

    def generate(item: EvalItem) -> np.ndarray:
        return image_to_video(pipe, item, cfg, sizes)

    return generate


def image_to_video(pipe: Any, item: EvalItem, cfg: SamplingConfig, sizes: dict[str, int]) -> np.ndarray:
    """One eval item through a loaded `StableVideoDiffusionPipeline` (also used with LoRA adapters loaded)."""
    from PIL import Image

    if not item.image_uri:
        raise InputError(f"eval item {item.prompt_id} has no conditioning image; image-to-video needs one")
    with svd_io.local_copy(item.image_uri) as path:
        image = Image.open(path).convert("RGB").resize((sizes["width"], sizes["height"]))
    out = pipe(
        image,
        height=sizes["height"],
        width=sizes["width"],
        num_frames=sizes["num_frames"],
        num_inference_steps=cfg.num_inference_steps,
        min_guidance_scale=1.0,
        max_guidance_scale=cfg.guidance_scale,
        fps=cfg.fps,
        motion_bucket_id=cfg.motion_bucket_id,
        noise_aug_strength=cfg.noise_aug_strength,
        generator=torch.Generator("cpu").manual_seed(item.seed),
        output_type="pt",
    )
    return _frames_to_uint8(out.frames[0])


def _text_generator(
    folder: Path, cfg: SamplingConfig, sizes: dict[str, int], device: torch.device
) -> Generator:
    components = load_components(folder)
    modules: list[Any] = [components.unet, components.vae]
    if components.text_encoder is not None:
        modules.append(components.text_encoder)
    for module in modules:
        module.to(device).eval()

    def generate(item: EvalItem) -> np.ndarray:
        frames = sample_text_to_video(
            components,
            [item.prompt],
            num_frames=sizes["num_frames"],
            height=sizes["height"],
            width=sizes["width"],
            num_inference_steps=cfg.num_inference_steps,
            guidance_scale=cfg.guidance_scale,
            fps=cfg.fps,
            motion_bucket_id=cfg.motion_bucket_id,
            generator=torch.Generator("cpu").manual_seed(item.seed),
        )
        return _frames_to_uint8(frames[0])

    return generate


def sample_eval_set(
    pipeline_dir: str | Path,
    eval_set: EvalSet,
    out_uri: str,
    cfg: SamplingConfig,
    model_ref: str,
    progress: Callable[[str], None] | None = None,
) -> dict[str, str]:
    """Generate one MP4 per eval item under `out_uri/<settings key>/<prompt_id>.mp4` (+ `.json` metadata);
    finished samples are reused. Returns {prompt_id: sample URI}."""
    base = svd_io.join_uri(out_uri, cfg.key())
    pending = {
        item.prompt_id: item
        for item in eval_set.items
        if not svd_io.exists(svd_io.join_uri(base, f"{item.prompt_id}.json"))
    }
    generate: Generator | None = None
    for prompt_id, item in pending.items():
        if generate is None:
            generate, _ = load_generator(pipeline_dir, cfg)
        frames = generate(item)
        _store_sample(base, item, frames, cfg, model_ref, eval_set)
        if progress is not None:
            progress(prompt_id)
    return {item.prompt_id: svd_io.join_uri(base, f"{item.prompt_id}.mp4") for item in eval_set.items}


def _store_sample(
    base: str, item: EvalItem, frames: np.ndarray, cfg: SamplingConfig, model_ref: str, eval_set: EvalSet
) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = write_mp4(frames, Path(tmp) / "sample.mp4", fps=cfg.fps)
        svd_io.put_file(path, svd_io.join_uri(base, f"{item.prompt_id}.mp4"))
    meta = {
        "model": model_ref,
        "prompt_id": item.prompt_id,
        "prompt": item.prompt,
        "image_uri": item.image_uri,
        "seed": item.seed,
        "eval_set": f"{eval_set.name}@{eval_set.version}",
        "frames": list(frames.shape),
        "sampling": cfg.to_dict(),
    }
    # The JSON is written last: its presence marks the sample as finished for reruns.
    svd_io.write_bytes(svd_io.join_uri(base, f"{item.prompt_id}.json"), json.dumps(meta, indent=2).encode())
