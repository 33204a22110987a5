"""Camera-motion LoRA (paper section 4.3, appendix D): a low-rank adapter on the temporal attention of an
image-to-video model, one adapter per camera-motion class, trained with the base weights frozen.

- Targets: the q/k/v/out projections of `temporal_transformer_blocks.*.attn1` (temporal self-attention)
  and `.attn2` (cross-attention to the CLIP image embedding) of diffusers' `UNetSpatioTemporalConditionModel`
  (module names checked against diffusers 0.42), via peft (`inject_adapter_in_model`). Rank 16 as in the
  paper; alpha defaults to the rank (scale 1), the paper gives none.
- Data: the LVD-F clips whose `camera_motion` (svd_core.curation.camera) equals the class. Motion buckets
  are still ranked over the whole table, so `motion_bucket_id` means what it meant for the base model.
- Objective: the base model's EDM finetune loss (`SvdTrainTask`, stage finetune, image conditioning).
- Export: only the adapter (svd_core.model.lora_io), with the base model's identity and the sha256 of its
  UNet weights, checked unchanged after training.

DeepSpeed and the frozen base: the trainer hands DeepSpeed only parameters with `requires_grad`, so the
optimizer, its fp32 master copies, the gradient buffers and the EMA cover the adapter alone (rank 16 on
SVD: 128 layers, 3.3M parameters, 0.22% of the UNet; `TrainResult.master_numel_per_rank` shows it). Under
bf16 the engine casts every parameter, frozen base included, to bf16 (so the after-training hash is taken
in bf16); the adapter is still applied to the original fp32 base at sampling time. ZeRO-1/2 shard only
optimizer state and gradients, i.e. only adapter tensors: harmless but nearly pointless, so stage 0
(plain data parallel, every rank holds the bf16 base: 3 GB for SVD) is the default. ZeRO-3 also
partitions the frozen base and gathers it at every forward (it works; the export gathers the base to
check its hash): only worth it when the base does not fit on one GPU.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.distributed as dist
from peft.functional import inject_adapter_in_model

from svd_core import storage as svd_io
from svd_core.config import validate_config
from svd_core.data.latent_cache import CachedLatentDataset, LatentCache, cache_fingerprint
from svd_core.data.video_dataset import VideoClipDataset, read_table
from svd_core.errors import ConfigError, InputError, SvdError
from svd_core.model.lora_io import adapter_weights, base_weights_sha256, save_adapter
from svd_core.model.pipeline_io import MODEL_INDEX, MODEL_INFO
from svd_core.tasks.lora.config import LoraTrainConfig
from svd_core.tasks.stages.task import SvdTrainTask
from svd_core.training.ds_config import resolve_precision
from svd_core.training.launch import launch
from svd_core.training.trainer import TrainResult

TASK_FACTORY = "svd_core.tasks.lora.task:lora_train_task"
TRAIN_ADAPTER = "svd_lora"
"""peft adapter name while training (not `train`: peft adds it as a submodule attribute)."""
IMAGE_TO_VIDEO_PIPELINE = "StableVideoDiffusionPipeline"
VIDEO_UNET = "UNetSpatioTemporalConditionModel"


class BaseWeightsChangedError(SvdError):
    """The frozen base weights differ after training (a bug: nothing but the adapter may change)."""


def lora_train_task(config: dict[str, Any]) -> LoraTrainTask:
    """Trainer entry point: a resolved `LoraTrainConfig` as a dict -> the task."""
    return LoraTrainTask(validate_config(LoraTrainConfig, config, "<lora task config>"))


def train_lora(
    cfg: LoraTrainConfig, run_dir: str | Path, on_metrics: Callable[[dict[str, Any]], None] | None = None
) -> TrainResult:
    """Train the adapter in `cfg.trainer.ranks` rank processes; the adapter folder is `run_dir/export`."""
    return launch(TASK_FACTORY, cfg.to_dict(), cfg.trainer, Path(run_dir), on_metrics=on_metrics)


# --- input checks (all before any process starts) --------------------------------------------------------


def _read_json(uri: str, what: str) -> dict[str, Any]:
    try:
        return json.loads(svd_io.read_bytes(uri))
    except (SvdError, json.JSONDecodeError) as exc:
        raise InputError(f"{what}: {uri} cannot be read ({exc}); pass an exported pipeline folder") from exc


def check_base_pipeline(uri: str) -> dict[str, Any]:
    """The base folder's svd_model.json ({} if absent) after checking it is an image-to-video pipeline.

    Reads only the two JSON files, so an s3:// base is checked without downloading its weights.
    """
    index = _read_json(svd_io.join_uri(uri, MODEL_INDEX), "LoRA base")
    info_uri = svd_io.join_uri(uri, MODEL_INFO)
    info = _read_json(info_uri, "LoRA base") if svd_io.exists(info_uri) else {}
    unet_class = (index.get("unet") or [None, None])[1]
    fix = "camera-motion LoRAs train on an image-to-video model (stage II/III, e.g. models:/svd@champion)"
    if info.get("stage") == "image" or unet_class == "UNet2DConditionModel":
        raise InputError(f"base {uri} is a stage-I image model ({unet_class}); {fix}")
    if info.get("conditioning") == "text" or index.get("text_encoder") not in (None, [None, None]):
        raise InputError(f"base {uri} is a text-to-video model; {fix}")
    if unet_class != VIDEO_UNET or index.get("_class_name") != IMAGE_TO_VIDEO_PIPELINE:
        raise InputError(
            f"base {uri} is a {index.get('_class_name')} with a {unet_class} UNet, not a "
            f"{IMAGE_TO_VIDEO_PIPELINE} with a {VIDEO_UNET}; {fix}"
        )
    return info


def check_preset(cfg: LoraTrainConfig, base_info: dict[str, Any]) -> None:
    base_preset = base_info.get("preset")
    if base_preset and base_preset != cfg.preset:
        raise ConfigError(f"preset: {cfg.preset} but the base was trained with preset {base_preset}; "
                          f"set preset={base_preset}")  # fmt: skip


class MotionClassClips(VideoClipDataset):
    """The usable clips of an LVD(-F) table whose `column` equals `motion_class` (buckets over all clips)."""

    def __init__(
        self, table_uri: str, motion_class: str, column: str = "camera_motion", **kwargs: Any
    ) -> None:
        max_items = kwargs.pop("max_items", None)
        super().__init__(table_uri, max_items=None, extra_columns=(column,), **kwargs)
        if column not in self.table.columns:
            raise InputError(
                f"training table {self.table_uri} has no {column} column; rebuild it with the LVD pass that "
                "labels camera motion (svd data build-lvd, then svd data filter)"
            )
        usable_labels = self.table[column]
        keep = usable_labels == motion_class
        if not keep.any():
            raise InputError(self._no_clips_message(motion_class, column, usable_labels))
        self.motion_class, self.motion_column = motion_class, column
        self.skipped_other_class = int((~keep).sum())
        chosen = self.table[keep].reset_index(drop=True)
        self.table = chosen.iloc[:max_items].reset_index(drop=True) if max_items else chosen

    def _no_clips_message(self, motion_class: str, column: str, usable: pd.Series) -> str:
        counts = usable.fillna("<none>").value_counts()
        present = ", ".join(f"{label} {n}" for label, n in counts.items()) or "none"
        labelled = int((read_table(self.table_uri)[column] == motion_class).sum())
        why = (
            f"its {labelled} clip(s) with {column}={motion_class} are all too short for {self.num_frames} "
            f"frames at {self.fps_min}-{self.fps_max} fps (lower num_frames or fps_min)"
            if labelled
            else f"no clip has {column}={motion_class}"
        )
        return (
            f"training table {self.table_uri}: {why}; labels of the usable clips: {present}. Choose another "
            "--motion, or add clips with that camera motion"
        )


def motion_clips(cfg: LoraTrainConfig) -> MotionClassClips:
    return MotionClassClips.from_config(cfg, cfg.motion_class, cfg.motion_column)


@dataclass(frozen=True)
class LoraInputs:
    base_info: dict[str, Any]
    num_clips: int


def validate_lora_inputs(cfg: LoraTrainConfig) -> LoraInputs:
    """Base is image-to-video with the config's preset, and the class has clips; else a clear error."""
    if not cfg.init.pipeline_uri:
        raise ConfigError("init.pipeline_uri: the LoRA base pipeline folder is required (or pass --base)")
    base_info = check_base_pipeline(cfg.init.pipeline_uri)
    check_preset(cfg, base_info)
    return LoraInputs(base_info, len(motion_clips(cfg)))


# --- the task -------------------------------------------------------------------------------------------


class LoraTrainTask(SvdTrainTask):
    """`SvdTrainTask` whose trainable module is the frozen base UNet with peft LoRA layers injected."""

    cfg: LoraTrainConfig

    def __init__(self, cfg: LoraTrainConfig):
        self.inputs = validate_lora_inputs(cfg)
        super().__init__(cfg)
        self._base_sha256: str | None = None
        self._base_sha256_trained: str | None = None

    def build_model(self) -> torch.nn.Module:
        unet = self.components.unet
        unet.requires_grad_(False)
        if self._is_rank0():  # only rank 0 exports, so only it needs the before-hash
            state = unet.state_dict()
            self._base_sha256 = base_weights_sha256(state, torch.float32)
            dtype = self._train_dtype()
            self._base_sha256_trained = (
                self._base_sha256 if dtype == torch.float32 else base_weights_sha256(state, dtype)
            )
        inject_adapter_in_model(self.cfg.lora.spec().peft_config(), unet, adapter_name=TRAIN_ADAPTER)
        return unet.train()

    def build_dataset(self) -> torch.utils.data.Dataset:
        dataset = motion_clips(self.cfg)
        cache_uri = self.cfg.data.latent_cache_uri
        if cache_uri is None:
            return dataset
        # Own subfolder per class: the cache fingerprint covers the table and row count, not the filter.
        root = svd_io.join_uri(cache_uri, f"{self.cfg.motion_column}-{self.cfg.motion_class}")
        cache = LatentCache(root, cache_fingerprint(dataset, self.components))
        self._fill_cache_across_ranks(dataset, cache)
        return CachedLatentDataset(dataset, cache)

    def export(self, state_dict: dict[str, torch.Tensor], out_dir: Path) -> None:
        """Only the adapter, after checking that the gathered base weights equal those before training."""
        if self._base_sha256 is None or self._base_sha256_trained is None:  # build_model sets both
            raise InputError("export called before build_model on this task; export the model it built")
        after = base_weights_sha256(state_dict, self._train_dtype())
        if after != self._base_sha256_trained:
            raise BaseWeightsChangedError(
                f"the frozen base weights changed during training (sha256 {self._base_sha256_trained[:12]} -> "
                f"{after[:12]}); the adapter was not exported. Report this as a bug"
            )
        weights = adapter_weights(self.components.unet, TRAIN_ADAPTER, state_dict)
        save_adapter(out_dir, weights, self.cfg.lora.spec(), self.adapter_info(after))

    def adapter_info(self, after: str) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "motion_class": cfg.motion_class,
            "motion_column": cfg.motion_column,
            "base_model": cfg.base_model,
            "base_info": self.inputs.base_info,
            "base_sha256": self._base_sha256,
            "base_sha256_after_training": after,  # hashed in train_dtype (bf16 under mixed precision)
            "train_dtype": str(self._train_dtype()).removeprefix("torch."),
            "num_clips": self.inputs.num_clips,
            "preset": cfg.preset,
            "num_frames": cfg.num_frames,
            "height": cfg.height,
            "width": cfg.width,
            "config_hash": cfg.config_hash(),
        }

    def _train_dtype(self) -> torch.dtype:
        precision = resolve_precision(self.cfg.trainer, self._device())
        return torch.bfloat16 if precision == "bf16" else torch.float32

    @staticmethod
    def _is_rank0() -> bool:
        return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0
