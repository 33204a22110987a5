"""LoRA adapters of a video UNet on disk and in memory: save, read by URI, load with a scale, unload.

An adapter folder holds three files:

- `adapter_model.safetensors`: the LoRA weights in peft's naming (`<module>.lora_A.weight`, no adapter name);
- `adapter_config.json`: peft's `LoraConfig`, for tools that speak peft;
- `svd_lora.json`: our metadata and the authoritative adapter spec (rank, alpha, dropout, target-module
  regex), plus the motion class, the base model it was trained on and the sha256 of the base UNet weights.
  It is written last, so a folder with it is complete.

Loading injects peft LoRA layers into an already-loaded UNet (`peft.functional.inject_adapter_in_model`),
copies the weights in and sets the scale; unloading deletes the adapter and, when it was the last one, puts
the original `nn.Linear` modules (the very same parameter tensors) back, so the UNet computes exactly what
it computed before loading.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from peft import LoraConfig
from peft.functional import (
    delete_adapter,
    get_peft_model_state_dict,
    inject_adapter_in_model,
    set_adapter,
    set_peft_model_state_dict,
)
from peft.tuners.lora import LoraLayer
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from svd_core import storage as svd_io
from svd_core.errors import InputError, StorageError
from svd_core.model.export import atomic_directory

ADAPTER_WEIGHTS = "adapter_model.safetensors"
PEFT_CONFIG = "adapter_config.json"
ADAPTER_INFO = "svd_lora.json"
LORA_FORMAT = "svd-lora-v1"
LORA_PREFIX = "lora_"
BASE_LAYER = ".base_layer"


@dataclass(frozen=True)
class AdapterSpec:
    """The shape of an adapter: what peft needs to rebuild its layers."""

    rank: int
    alpha: float
    dropout: float
    target_modules: str
    """Regex matched (re.fullmatch) against the UNet's module names."""

    def peft_config(self, inference_mode: bool = False) -> LoraConfig:
        return LoraConfig(
            r=self.rank,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=self.target_modules,
            inference_mode=inference_mode,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "alpha": self.alpha,
            "dropout": self.dropout,
            "target_modules": self.target_modules,
        }


@dataclass(frozen=True)
class Adapter:
    """An adapter read from storage: weights (peft naming), spec and metadata."""

    uri: str
    weights: dict[str, torch.Tensor]
    spec: AdapterSpec
    info: dict[str, Any]

    @property
    def motion_class(self) -> str | None:
        return self.info.get("motion_class")


def base_weights_sha256(state_dict: dict[str, torch.Tensor], dtype: torch.dtype | None = None) -> str:
    """sha256 over a UNet's own weights (adapter tensors left out, peft's `.base_layer` renaming undone).

    Names, shapes and bytes are hashed in name order; `dtype` casts first (training in bf16 compares the
    weights as the engine holds them). Equal before and after training means the base was not touched.
    """
    digest = hashlib.sha256()
    names = {name.replace(BASE_LAYER, ""): name for name in state_dict if f".{LORA_PREFIX}" not in name}
    for plain in sorted(names):
        tensor = state_dict[names[plain]].detach()
        if dtype is not None:
            tensor = tensor.to(dtype)
        digest.update(plain.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def adapter_weights(
    unet: torch.nn.Module, adapter_name: str, state_dict: dict[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """The adapter's tensors in peft's naming, from `unet` or from a full state dict of it (fp32, CPU)."""
    weights = get_peft_model_state_dict(unet, state_dict=state_dict, adapter_name=adapter_name)
    return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in weights.items()}


def save_adapter(
    out_dir: str | Path, weights: dict[str, torch.Tensor], spec: AdapterSpec, info: dict[str, Any]
) -> Path:
    """Write an adapter folder (local; published atomically, `svd_lora.json` last)."""
    if not weights:
        raise InputError(f"adapter for {out_dir} has no LoRA weights; inject an adapter before saving")
    out_dir = Path(out_dir)
    with atomic_directory(out_dir) as tmp:
        (tmp / ADAPTER_WEIGHTS).write_bytes(save_safetensors(weights, metadata={"format": LORA_FORMAT}))
        spec.peft_config().save_pretrained(str(tmp))
        meta = {**info, "format": LORA_FORMAT, "lora": spec.to_dict()}
        meta["num_parameters"] = sum(t.numel() for t in weights.values())
        (tmp / ADAPTER_INFO).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return out_dir


def read_adapter(uri: str | Path) -> Adapter:
    """The adapter folder at `uri` (local path, file:// or s3:// prefix)."""
    uri = str(uri)
    info_uri, weights_uri = svd_io.join_uri(uri, ADAPTER_INFO), svd_io.join_uri(uri, ADAPTER_WEIGHTS)
    try:
        info = json.loads(svd_io.read_bytes(info_uri))
        weights = load_safetensors(svd_io.read_bytes(weights_uri))
    except (StorageError, json.JSONDecodeError) as exc:
        raise InputError(
            f"{uri} is not a LoRA adapter folder ({exc}); pass a folder written by `svd train lora` "
            f"(it holds {ADAPTER_INFO} and {ADAPTER_WEIGHTS})"
        ) from exc
    if info.get("format") != LORA_FORMAT or "lora" not in info:
        raise InputError(f"{info_uri}: format {info.get('format')!r} is not {LORA_FORMAT}; re-export it")
    lora = info["lora"]
    spec = AdapterSpec(
        int(lora["rank"]), float(lora["alpha"]), float(lora["dropout"]), lora["target_modules"]
    )
    return Adapter(uri, weights, spec, info)


def loaded_adapters(unet: torch.nn.Module) -> list[str]:
    """Names of the adapters currently injected into `unet`."""
    return sorted(getattr(unet, "peft_config", {}) or {})


def set_adapter_scale(unet: torch.nn.Module, name: str, scale: float) -> None:
    """Output = base + scale * (alpha / rank) * B A x for adapter `name` (0 turns it off)."""
    if name not in loaded_adapters(unet):
        raise InputError(f"adapter {name!r} is not loaded; loaded: {loaded_adapters(unet)}")
    for module in unet.modules():
        if isinstance(module, LoraLayer):
            module.set_scale(name, scale)


def load_adapter(
    unet: torch.nn.Module,
    uri: str | Path | Adapter,
    scale: float = 1.0,
    name: str | None = None,
    verify_base: bool = False,
) -> str:
    """Inject the adapter at `uri` into `unet` (in place) with `scale`; returns its name.

    The name defaults to `motion_<class>`. Other loaded adapters stay active (their effects add up).
    `verify_base` first checks that `unet` holds the very weights the adapter was trained on (a full
    hash of the UNet: seconds for SVD's 1.5B parameters).
    """
    adapter = uri if isinstance(uri, Adapter) else read_adapter(uri)
    name = name or f"motion_{adapter.motion_class or 'adapter'}"
    if name in loaded_adapters(unet):
        raise InputError(f"an adapter named {name!r} is already loaded; unload it or pass another name")
    if verify_base:
        _verify_base(unet, adapter)
    try:
        _inject(unet, adapter, name)
        result = set_peft_model_state_dict(unet, adapter.weights, adapter_name=name)
        injected = adapter_weights(unet, name)
        if result.unexpected_keys or set(injected) != set(adapter.weights):
            raise InputError(
                f"adapter {adapter.uri} does not fit this UNet: unexpected {list(result.unexpected_keys)[:3]}, "
                f"missing {sorted(set(injected) - set(adapter.weights))[:3]}; load it into the base it was "
                f"trained on ({adapter.info.get('base_model') or 'see svd_lora.json'})"
            )
    except (RuntimeError, ValueError, InputError) as exc:  # shape mismatch / no target module matched
        if name in loaded_adapters(unet):
            unload_adapter(unet, name)
        if isinstance(exc, InputError):
            raise
        raise InputError(f"adapter {adapter.uri} does not fit this UNet ({exc}); use its base model") from exc
    set_adapter(unet, loaded_adapters(unet), inference_mode=True)
    set_adapter_scale(unet, name, scale)
    return name


def _inject(unet: torch.nn.Module, adapter: Adapter, name: str) -> None:
    """Add peft LoRA layers named `name`, leaving the base parameters' requires_grad flags as they were.

    peft freezes every base parameter on injection; the flag also selects CPU kernels (same values,
    different rounding), so it is put back to keep the UNet's own outputs bit for bit.
    """
    flags = {id(p): p.requires_grad for p in unet.parameters()}
    try:
        with warnings.catch_warnings():  # peft warns that a second adapter joins the first: that is the point
            warnings.filterwarnings("ignore", message="Already found a `peft_config`")
            inject_adapter_in_model(adapter.spec.peft_config(inference_mode=True), unet, adapter_name=name)
    finally:
        for param in unet.parameters():
            if id(param) in flags:
                param.requires_grad_(flags[id(param)])


def _verify_base(unet: torch.nn.Module, adapter: Adapter) -> None:
    expected = adapter.info.get("base_sha256")
    if not expected:
        raise InputError(f"adapter {adapter.uri} records no base_sha256; load it without verify_base")
    if base_weights_sha256(unet.state_dict(), torch.float32) != expected:
        raise InputError(
            f"adapter {adapter.uri} was trained on other base weights (base "
            f"{adapter.info.get('base_model') or 'unknown'}, sha256 {expected[:12]}...); load that base"
        )


def unload_adapter(unet: torch.nn.Module, name: str) -> None:
    """Remove adapter `name`; after the last one the UNet's original modules are restored (bit for bit)."""
    if name not in loaded_adapters(unet):
        raise InputError(f"adapter {name!r} is not loaded; loaded: {loaded_adapters(unet)}")
    delete_adapter(unet, name, prefix=LORA_PREFIX)
    # peft keeps a plain dict attribute on the module; the torch stub types unknown attributes as Tensor | Module.
    del cast(dict[str, Any], unet.peft_config)[name]
    remaining = loaded_adapters(unet)
    if remaining:
        set_adapter(unet, remaining, inference_mode=True)
        return
    _restore_base_layers(unet)
    del unet.peft_config


def _restore_base_layers(unet: torch.nn.Module) -> None:
    """Replace every (now empty) peft wrapper by the module it wraps."""
    wrappers = [(name, m) for name, m in unet.named_modules() if isinstance(m, BaseTunerLayer)]
    for name, wrapper in wrappers:
        parent_name, _, child = name.rpartition(".")
        parent = unet.get_submodule(parent_name) if parent_name else unet
        setattr(parent, child, wrapper.get_base_layer())
