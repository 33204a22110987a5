"""Activation checkpointing over every spatial AND temporal layer of a diffusers UNet.

diffusers' own `enable_gradient_checkpointing()` on `UNetSpatioTemporalConditionModel` checkpoints only the
resnets (`SpatioTemporalResBlock`); the attention layers (`TransformerSpatioTemporalModel`, which holds the
spatial and the temporal transformer blocks) keep all their activations, so it saves only ~43% of the
activation memory of SVD's UNet. This module wraps the outermost instance of every layer class in
`CHECKPOINTED_LAYERS` instead (resnets and transformers, spatial, temporal and spatio-temporal, of the video
UNet and of the stage-I image UNet): each keeps only its inputs for backward and recomputes its insides.

Wrapping replaces the instance's `forward` (no wrapper module), so parameter names, state dicts, hooks
(DeepSpeed ZeRO-3 gathers parameters in module hooks, which fire again during the recomputation) and
PEFT adapters injected into the layers are unchanged. torch's non-reentrant checkpoint is used: it accepts
keyword arguments and any output structure, and restores the RNG state for the recomputation.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

CHECKPOINTED_LAYERS = frozenset(
    {
        # video UNet (UNetSpatioTemporalConditionModel)
        "SpatioTemporalResBlock",  # spatial ResnetBlock2D + TemporalResnetBlock + AlphaBlender
        "TransformerSpatioTemporalModel",  # spatial + temporal BasicTransformerBlocks + AlphaBlender
        # image UNet (stage I, UNet2DConditionModel) and any layer used on its own
        "ResnetBlock2D",
        "Transformer2DModel",
        "TemporalResnetBlock",
        "TemporalBasicTransformerBlock",
        "BasicTransformerBlock",
    }
)
"""Class names of the layers that are checkpointed (the outermost match; nested matches run inside it)."""

_MARK = "_svd_checkpointed_forward"


def _checkpointed_forward(original: Any, *args: Any, **kwargs: Any) -> Any:
    if not torch.is_grad_enabled():
        return original(*args, **kwargs)  # inference: nothing to save, nothing to recompute
    return checkpoint(original, *args, use_reentrant=False, **kwargs)


def enable_activation_checkpointing(model: torch.nn.Module) -> int:
    """Checkpoint the outermost `CHECKPOINTED_LAYERS` inside `model`; returns how many layers are wrapped
    (0 means the model has none of them: the caller should say so). Idempotent."""
    wrapped = 0

    def visit(module: torch.nn.Module) -> None:
        nonlocal wrapped
        for child in module.children():
            if type(child).__name__ in CHECKPOINTED_LAYERS:
                if not hasattr(child, _MARK):
                    original = child.forward
                    child.forward = functools.partial(_checkpointed_forward, original)  # type: ignore[method-assign]
                    setattr(child, _MARK, original)
                wrapped += 1
            else:
                visit(child)

    visit(model)
    return wrapped


def disable_activation_checkpointing(model: torch.nn.Module) -> int:
    """Undo `enable_activation_checkpointing`; returns how many layers were unwrapped."""
    undone = 0
    for module in model.modules():
        original = module.__dict__.pop(_MARK, None)
        if original is not None:
            del module.forward  # the class's forward shows through again
            undone += 1
    return undone


def checkpointed_layers(model: torch.nn.Module) -> list[str]:
    """Qualified names of the wrapped layers (for logs and tests)."""
    return [name for name, module in model.named_modules() if _MARK in module.__dict__]
