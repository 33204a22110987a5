"""Write components as a diffusers pipeline folder (safetensors), published atomically.

- image-to-video with a video UNet: a `StableVideoDiffusionPipeline` folder (`save_pretrained`), which
  `StableVideoDiffusionPipeline.from_pretrained(dir)` loads and runs;
- text-to-video: the same component folders plus `text_encoder/` and `tokenizer/`, with a model_index.json
  whose `_class_name` is `SvdTextToVideoPipeline` (read by `svd_core.model.pipeline_io.load_components`);
- stage I: the same layout with the 2D `UNet2DConditionModel` as `unet/` (`_class_name` `SvdImageStage`),
  the input of stage II's inflation.

The folder is written under a temporary name beside `out_dir` and renamed into place when complete; an
existing folder is replaced only after the new one is fully written.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import diffusers
import torch
from diffusers import StableVideoDiffusionPipeline, UNetSpatioTemporalConditionModel

from svd_core.model.build import Components
from svd_core.model.pipeline_io import MODEL_INDEX, MODEL_INFO
from svd_core.storage import TEMP_MARK

TEXT_PIPELINE_CLASS = "SvdTextToVideoPipeline"
IMAGE_STAGE_CLASS = "SvdImageStage"


@contextlib.contextmanager
def atomic_directory(out_dir: Path) -> Iterator[Path]:
    """Yield a temp folder next to `out_dir`; on success it replaces `out_dir`, on error it is removed."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f"{TEMP_MARK}{uuid.uuid4().hex}-{out_dir.name}"
    old = out_dir.parent / f"{TEMP_MARK}old-{uuid.uuid4().hex}-{out_dir.name}"
    try:
        tmp.mkdir()
        yield tmp
        if out_dir.exists():
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def _library_of(component: Any) -> str:
    module = type(component).__module__.split(".")[0]
    return "diffusers" if module == "diffusers" else "transformers"


def _class_name(component: Any) -> str:
    name = type(component).__name__
    # Without torchvision transformers hands out CLIPImageProcessorPil; name the public class so that a
    # folder written here loads wherever transformers resolves CLIPImageProcessor.
    return "CLIPImageProcessor" if name == "CLIPImageProcessorPil" else name


def _save_components(components: Components, folder: Path, class_name: str) -> None:
    parts = {
        "unet": components.unet,
        "vae": components.vae,
        "image_encoder": components.image_encoder,
        "feature_extractor": components.feature_extractor,
        "scheduler": components.scheduler,
        "text_encoder": components.text_encoder,
        "tokenizer": components.tokenizer,
    }
    index: dict[str, Any] = {"_class_name": class_name, "_diffusers_version": diffusers.__version__}
    for name, component in parts.items():
        if component is None:
            continue
        # Models are saved as safetensors; processors, tokenizers and schedulers take no such option.
        options = {"safe_serialization": True} if isinstance(component, torch.nn.Module) else {}
        component.save_pretrained(folder / name, **options)
        index[name] = [_library_of(component), _class_name(component)]
    (folder / MODEL_INDEX).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def export_pipeline(components: Components, out_dir: str | Path, info: dict[str, Any] | None = None) -> Path:
    """Write `components` to `out_dir` (see the module docstring for the layout); returns the folder."""
    out_dir = Path(out_dir)
    is_video = isinstance(components.unet, UNetSpatioTemporalConditionModel)
    with atomic_directory(out_dir) as tmp:
        if is_video and components.conditioning == "image":
            pipe = StableVideoDiffusionPipeline(
                vae=components.vae,
                image_encoder=components.image_encoder,
                unet=components.unet,
                scheduler=components.scheduler,
                feature_extractor=components.feature_extractor,
            )
            pipe.save_pretrained(tmp, safe_serialization=True)
        else:
            _save_components(components, tmp, TEXT_PIPELINE_CLASS if is_video else IMAGE_STAGE_CLASS)
        meta = {"conditioning": components.conditioning, "video": is_video, **(info or {})}
        (tmp / MODEL_INFO).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return out_dir
