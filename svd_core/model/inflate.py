"""Stage I -> stage II: inflate a 2D image UNet into diffusers' spatio-temporal video UNet.

Spatial weights are copied by key mapping (the 2D UNet's `...resnets.i.*` is the video UNet's
`...resnets.i.spatial_res_block.*`; attentions, samplers, time embedding and in/out convs keep their names).
The layers the image model lacks are initialised so the fresh video model computes exactly the image
model, frame by frame:

- temporal resnets: `TemporalResnetBlock` is `x + conv2(...)`: conv2 zeroed -> identity;
- temporal transformer blocks: `x + ff_in(...)`, `+ attn1(...)`, `+ attn2(...)`, `+ ff(...)`: the output
  projection of each zeroed -> identity; the frame-position embedding `time_pos_embed` (added before the
  temporal block) has its last linear zeroed -> adds nothing;
- `AlphaBlender` mixes a*spatial + (1-a)*temporal; with the temporal path an identity the mix equals the
  spatial output for any a. mix_factor starts at `mix_factor_init` (0.5 as in generative-models and diffusers,
  a = sigmoid(0.5) = 0.62, spatial dominant) so gradients still reach the temporal path;
- `add_embedding` (fps / motion bucket / cond_aug) has its last linear zeroed -> the time embedding equals
  the image model's;
- `conv_in` channels beyond the image model's (the conditioning-frame latent of image-to-video) are zero.

generative-models zero-inits the temporal ResBlock output too; diffusers' default init does not, hence this.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers import UNet2DConditionModel, UNetSpatioTemporalConditionModel
from diffusers.models.attention import TemporalBasicTransformerBlock
from diffusers.models.resnet import AlphaBlender, TemporalResnetBlock

from svd_core.errors import InputError
from svd_core.model.config import is_temporal_key

NEW_KEY_MARKERS = ("add_embedding.",)
"""Video-UNet keys with no 2D counterpart besides the temporal layers: the micro-conditioning embedding."""


@dataclass
class InflationReport:
    copied: list[str] = field(default_factory=list)
    """Video keys filled from the image UNet."""
    initialised: list[str] = field(default_factory=list)
    """Video keys the image model lacks by design (temporal layers, add_embedding): set by the init rules."""
    widened: list[str] = field(default_factory=list)
    """Video keys copied into a larger tensor (conv_in), the remainder zero."""
    missing: list[str] = field(default_factory=list)
    """Video keys that should have come from the image model but did not: a mismatch."""
    unexpected: list[str] = field(default_factory=list)
    """Image keys nothing consumed: a mismatch."""

    @property
    def ok(self) -> bool:
        return not self.missing and not self.unexpected


def video_twin_config(image_config: Mapping[str, Any], in_channels: int | None = None) -> dict[str, Any]:
    """The video-UNet config whose spatial layers match a 2D UNet config (block by block)."""
    levels = len(image_config["block_out_channels"])
    heads = image_config["attention_head_dim"]  # diffusers' historical name for the number of heads
    return {
        "in_channels": in_channels or image_config["in_channels"],
        "out_channels": image_config["out_channels"],
        "down_block_types": tuple(
            t.replace("2D", "SpatioTemporal") for t in image_config["down_block_types"]
        ),
        "up_block_types": tuple(t.replace("2D", "SpatioTemporal") for t in image_config["up_block_types"]),
        "block_out_channels": tuple(image_config["block_out_channels"]),
        "layers_per_block": image_config["layers_per_block"],
        "cross_attention_dim": image_config["cross_attention_dim"],
        "transformer_layers_per_block": image_config["transformer_layers_per_block"],
        "num_attention_heads": tuple(heads) if not isinstance(heads, int) else (heads,) * levels,
    }


def align_norm_eps(image_unet: UNet2DConditionModel) -> int:
    """Give the 2D UNet's GroupNorms the eps its video twin uses; returns how many changed.

    diffusers' spatio-temporal blocks hard-code resnet eps (1e-6 in CrossAttnDownBlockSpatioTemporal, 1e-5
    elsewhere) while `UNet2DConditionModel` has one `norm_eps`. eps is not a weight, so a stage-I model is
    aligned after building or loading; otherwise the inflated model differs by ~1e-4 (SD 2.1 imports too).
    """
    with torch.device("meta"):
        twin = UNetSpatioTemporalConditionModel(**video_twin_config(image_unet.config))
    twin_norms = {
        image_key_for(name): m for name, m in twin.named_modules() if isinstance(m, torch.nn.GroupNorm)
    }
    changed = 0
    for name, module in image_unet.named_modules():
        ref = twin_norms.get(name)
        if isinstance(module, torch.nn.GroupNorm) and ref is not None and module.eps != ref.eps:
            module.eps = ref.eps
            changed += 1
    return changed


def image_key_for(video_key: str) -> str | None:
    """The 2D UNet key holding `video_key`'s weights, or None for layers the image model lacks."""
    if is_temporal_key(video_key) or any(video_key.startswith(m) for m in NEW_KEY_MARKERS):
        return None
    return video_key.replace(".spatial_res_block.", ".")


def _zero_(tensor: torch.Tensor) -> None:
    with torch.no_grad():
        tensor.zero_()


def _last_linear(module: torch.nn.Module) -> torch.nn.Linear:
    return [m for m in module.modules() if isinstance(m, torch.nn.Linear)][-1]


def _identity_targets(name: str, module: torch.nn.Module) -> list[torch.nn.Module]:
    """The output layers to zero so that `module`'s contribution vanishes."""
    if isinstance(module, TemporalResnetBlock):
        return [module.conv2]
    if isinstance(module, TemporalBasicTransformerBlock):
        targets = [_last_linear(module.ff_in), module.attn1.to_out[0], _last_linear(module.ff)]
        return [*targets, module.attn2.to_out[0]] if module.attn2 is not None else targets
    if name.endswith("time_pos_embed") or name == "add_embedding":
        return [module.get_submodule("linear_2")]
    return []


def zero_init_new_layers(video_unet: torch.nn.Module, mix_factor_init: float = 0.5) -> list[str]:
    """Apply the identity initialisation to every temporal/new layer; returns the keys it set."""
    touched = []
    for name, module in video_unet.named_modules():
        if isinstance(module, AlphaBlender):
            with torch.no_grad():
                module.mix_factor.fill_(mix_factor_init)
            touched.append(f"{name}.mix_factor")
        for layer in _identity_targets(name, module):
            for pname, param in layer.named_parameters():
                _zero_(param)
                touched.append(f"{name}.{pname}")
    return touched


def widen_conv_in(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """A conv weight (out, in_small, k, k) placed into (out, in_channels, k, k), extra input channels zero.
    The first channels are the noisy latents (the pipeline concatenates the conditioning latent after)."""
    out = torch.zeros(weight.shape[0], in_channels, *weight.shape[2:], dtype=weight.dtype)
    out[:, : weight.shape[1]] = weight
    return out


def _copy_into(
    video_state: dict[str, torch.Tensor], key: str, src: torch.Tensor, report: InflationReport
) -> None:
    dest = video_state[key]
    if dest.shape == src.shape:
        video_state[key] = src.to(dest.dtype).clone()
        report.copied.append(key)
    elif key == "conv_in.weight" and dest.shape[1] > src.shape[1] and dest.shape[0] == src.shape[0]:
        video_state[key] = widen_conv_in(src, dest.shape[1]).to(dest.dtype)
        report.widened.append(key)
    else:
        raise InputError(
            f"image UNet weight {key!r} has shape {tuple(src.shape)} but the video UNet needs {tuple(dest.shape)}; "
            "the image stage and the video stage must use the same model preset"
        )


def inflate_image_unet(
    image_unet: torch.nn.Module, video_unet: torch.nn.Module, mix_factor_init: float = 0.5
) -> InflationReport:
    """Load `image_unet`'s weights into `video_unet` (in place) and identity-init the rest.

    `image_unet`'s norm eps are aligned to the video UNet's first (`align_norm_eps`), in place.

    Raises InputError when any spatial key is missing from the image model or any image key is left over
    (the report lists them): a silent partial inflation would train from a broken start.
    """
    align_norm_eps(image_unet)
    report = InflationReport()
    report.initialised = zero_init_new_layers(video_unet, mix_factor_init)
    image_state = image_unet.state_dict()
    video_state = video_unet.state_dict()
    consumed: set[str] = set()
    for key in list(video_state):
        source = image_key_for(key)
        if source is None:
            continue
        if source not in image_state:
            report.missing.append(key)
            continue
        _copy_into(video_state, key, image_state[source], report)
        consumed.add(source)
    report.unexpected = sorted(set(image_state) - consumed)
    if not report.ok:
        raise InputError(
            f"cannot inflate: video keys without image weights {report.missing[:5]} "
            f"({len(report.missing)}), image keys unused {report.unexpected[:5]} ({len(report.unexpected)}); "
            "the image UNet must be a UNet2DConditionModel built with the same preset (configs.image_unet_config)"
        )
    video_unet.load_state_dict(video_state, strict=True)
    return report


def adapt_unet_state_dict(
    state: dict[str, torch.Tensor], target: torch.nn.Module
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Fit a parent video UNet's weights to `target` when only conv_in differs (text-mode parent with 4
    input channels -> image-to-video with 8): returns the adapted state and the widened keys."""
    target_state = target.state_dict()
    widened = []
    out = dict(state)
    src = state.get("conv_in.weight")
    dest = target_state.get("conv_in.weight")
    if src is not None and dest is not None and src.shape != dest.shape:
        if src.shape[0] != dest.shape[0] or src.shape[1] > dest.shape[1]:
            raise InputError(
                f"parent UNet conv_in has shape {tuple(src.shape)}, this stage needs {tuple(dest.shape)}; "
                "only widening (text -> image conditioning) is supported"
            )
        out["conv_in.weight"] = widen_conv_in(src, dest.shape[1]).to(src.dtype)
        widened.append("conv_in.weight")
    return out, widened
