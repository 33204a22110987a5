"""Load pipeline folders (local or `s3://`) into `Components`, and sample text-to-video from them.

A pipeline folder is the diffusers layout: `model_index.json` naming each component's library and class,
one subfolder per component (safetensors weights + config). Image-to-video folders are plain
`StableVideoDiffusionPipeline` folders; text-to-video and stage-I folders use the same layout with our own
`_class_name` (diffusers has no text-to-video SVD pipeline), and `load_components` reads all of them.
Loading is always `local_files_only=True`: nothing is ever downloaded from a hub.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKLTemporalDecoder,
    EulerDiscreteScheduler,
    UNet2DConditionModel,
    UNetSpatioTemporalConditionModel,
)
from transformers import CLIPImageProcessor, CLIPTextModel, CLIPTokenizer, CLIPVisionModelWithProjection

from svd_core import storage as svd_io
from svd_core.errors import InputError
from svd_core.model.build import Components
from svd_core.model.encoders import text_context
from svd_core.model.inflate import align_norm_eps
from svd_core.model.text_conditioning import tokenize

MODEL_INDEX = "model_index.json"
MODEL_INFO = "svd_model.json"
"""Our metadata beside model_index.json: stage, conditioning, preset, frames, resolution, config hash."""

LOADABLE: dict[str, type[Any]] = {
    "UNetSpatioTemporalConditionModel": UNetSpatioTemporalConditionModel,
    "UNet2DConditionModel": UNet2DConditionModel,
    "AutoencoderKLTemporalDecoder": AutoencoderKLTemporalDecoder,
    "EulerDiscreteScheduler": EulerDiscreteScheduler,
    "CLIPVisionModelWithProjection": CLIPVisionModelWithProjection,
    # transformers resolves CLIPImageProcessor to its PIL variant when torchvision is absent
    "CLIPImageProcessor": CLIPImageProcessor,
    "CLIPImageProcessorPil": CLIPImageProcessor,
    "CLIPTextModel": CLIPTextModel,
    "CLIPTokenizer": CLIPTokenizer,
}
"""The only classes a folder may name: a model_index.json cannot make us import arbitrary code."""

REQUIRED = ("unet", "vae", "image_encoder", "feature_extractor", "scheduler")


def _cache_root(cache_dir: str | Path | None) -> Path:
    return Path(cache_dir) if cache_dir else Path.home() / ".cache" / "svd-mlops" / "pipelines"


def resolve_folder(
    uri: str | Path, cache_dir: str | Path | None = None, markers: tuple[str, ...] = (MODEL_INDEX,)
) -> Path:
    """A local folder holding the folder at `uri` (which must contain one of `markers`): the folder itself
    when local, else a cached copy.

    Remote prefixes (s3://) are copied file by file into a temporary folder under the cache and renamed into
    place when complete, so a crash never leaves a half-copied folder that a later run would trust.
    """
    what = " or ".join(markers)
    if svd_io.is_local(uri):
        path = svd_io.local_path(uri)
        if not any((path / m).is_file() for m in markers):
            raise InputError(f"{uri} is not a model folder (no {what}); pass an exported pipeline folder")
        return path
    prefix = str(uri).rstrip("/")
    dest = _cache_root(cache_dir) / hashlib.sha256(prefix.encode()).hexdigest()[:16]
    if any((dest / m).is_file() for m in markers):
        return dest
    files = [u for u in svd_io.list_uris(prefix + "/") if u.startswith(prefix + "/")]
    if not any(u == f"{prefix}/{m}" for u in files for m in markers):
        raise InputError(f"{uri} holds no {what}; pass the prefix of an exported pipeline folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f"{svd_io.TEMP_MARK}{uuid.uuid4().hex}"
    try:
        for file_uri in files:
            local = tmp / file_uri[len(prefix) + 1 :]
            local.parent.mkdir(parents=True, exist_ok=True)
            svd_io.store_for(file_uri).get_file(file_uri, local)
        os.replace(tmp, dest)
    except OSError:
        if not any((dest / m).is_file() for m in markers):  # another process may have published it first
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def resolve_pipeline_dir(uri: str | Path, cache_dir: str | Path | None = None) -> Path:
    """`resolve_folder` for a pipeline folder (one with model_index.json)."""
    return resolve_folder(uri, cache_dir, (MODEL_INDEX,))


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is missing or not valid JSON ({exc}); re-export the pipeline") from exc


def read_model_info(folder: Path) -> dict[str, Any]:
    """Our metadata of an exported folder ({} for third-party folders that lack it)."""
    path = folder / MODEL_INFO
    return read_json(path) if path.is_file() else {}


def _load_component(folder: Path, name: str, spec: Any) -> Any:
    if not (isinstance(spec, list) and len(spec) == 2 and spec[1] in LOADABLE):
        raise InputError(
            f"{folder / MODEL_INDEX}: component {name!r} is {spec!r}; supported classes: {sorted(LOADABLE)}"
        )
    cls = LOADABLE[spec[1]]
    sub = folder / name
    if not sub.is_dir():
        raise InputError(f"{folder}: component folder {name}/ is missing; re-export the pipeline")
    component = cls.from_pretrained(sub, local_files_only=True)
    if isinstance(component, torch.nn.Module):
        component.eval()
    if isinstance(component, UNet2DConditionModel):
        align_norm_eps(component)
    return component


def load_components(uri: str | Path, cache_dir: str | Path | None = None) -> Components:
    """Every component of the pipeline folder at `uri` (local path, file:// or s3:// prefix), on CPU."""
    folder = resolve_pipeline_dir(uri, cache_dir)
    index = read_json(folder / MODEL_INDEX)
    missing = [name for name in REQUIRED if index.get(name) in (None, [None, None])]
    if missing:
        raise InputError(
            f"{folder}: pipeline lacks components {missing}; an SVD pipeline folder needs {REQUIRED}"
        )
    loaded = {
        name: _load_component(folder, name, spec)
        for name, spec in index.items()
        if not name.startswith("_") and spec not in (None, [None, None])
    }
    return Components(
        unet=loaded["unet"],
        vae=loaded["vae"],
        image_encoder=loaded["image_encoder"],
        feature_extractor=loaded["feature_extractor"],
        scheduler=loaded["scheduler"],
        text_encoder=loaded.get("text_encoder"),
        tokenizer=loaded.get("tokenizer"),
    )


@torch.no_grad()
def sample_text_to_video(
    components: Components,
    prompts: list[str],
    num_frames: int,
    height: int,
    width: int,
    num_inference_steps: int = 25,
    guidance_scale: float = 7.5,
    fps: int = 7,
    motion_bucket_id: int = 127,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Frames (B, T, 3, H, W) in [0, 1] for each prompt, with the same Euler/EDM loop as diffusers' SVD
    pipeline: v-prediction, continuous timesteps 0.25 ln(sigma), micro-conditioning [fps-1, motion, 0],
    classifier-free guidance against zero context (what training's context dropout shows the model)."""
    if components.tokenizer is None or components.text_encoder is None:
        raise InputError("these components have no text encoder/tokenizer; load a text-mode pipeline folder")
    unet: UNetSpatioTemporalConditionModel = components.unet
    vae = components.vae
    device, dtype = unet.device, unet.dtype
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    if height % factor or width % factor:
        raise InputError(f"height {height} and width {width} must be multiples of the VAE factor {factor}")
    scheduler = EulerDiscreteScheduler.from_config(components.scheduler.config)
    scheduler.set_timesteps(num_inference_steps, device=device)
    context = text_context(components, tokenize(components.tokenizer, prompts)).to(device, dtype)
    batch = context.shape[0]
    guided = guidance_scale > 1.0
    if guided:
        context = torch.cat([torch.zeros_like(context), context])
    ids = torch.tensor([[fps - 1, motion_bucket_id, 0.0]], device=device, dtype=dtype)
    ids = ids.repeat(context.shape[0], 1)
    shape = (batch, num_frames, unet.config.out_channels, height // factor, width // factor)
    gen_device = generator.device if generator is not None else torch.device("cpu")
    latents = torch.randn(shape, generator=generator, device=gen_device).to(device, dtype)
    latents = latents * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        model_in = torch.cat([latents] * 2) if guided else latents
        model_in = scheduler.scale_model_input(model_in, t)
        out = unet(model_in, t, encoder_hidden_states=context, added_time_ids=ids).sample
        if guided:
            uncond, cond = out.chunk(2)
            out = uncond + guidance_scale * (cond - uncond)
        latents = scheduler.step(out, t, latents).prev_sample
    return decode_latents(vae, latents)


@torch.no_grad()
def decode_latents(vae: AutoencoderKLTemporalDecoder, latents: torch.Tensor) -> torch.Tensor:
    """(B, T, C, h, w) scaled latents -> (B, T, 3, H, W) frames in [0, 1] (the temporal decoder sees a clip)."""
    batch, num_frames = latents.shape[:2]
    flat = latents.flatten(0, 1).to(vae.dtype) / vae.config.scaling_factor
    frames = vae.decode(flat, num_frames=num_frames).sample.float()
    return ((frames.unflatten(0, (batch, num_frames)) + 1.0) / 2.0).clamp(0.0, 1.0)
