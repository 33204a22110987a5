"""Activation checkpointing covers spatial and temporal layers, changes no number, and saves memory."""

from __future__ import annotations

import torch
from diffusers import UNetSpatioTemporalConditionModel

from svd_core.model import config as model_config
from svd_core.training.activation_checkpointing import (
    checkpointed_layers,
    disable_activation_checkpointing,
    enable_activation_checkpointing,
)
from svd_core.training.activation_memory import measure_activation_memory

CPU = torch.device("cpu")


def _unet_and_loss(frames: int, height: int, width: int):
    preset = model_config.get_preset("tiny")
    torch.manual_seed(0)
    unet = UNetSpatioTemporalConditionModel(**model_config.unet_config(preset, "image", frames)).train()
    gen = torch.Generator().manual_seed(1)
    factor = preset.vae.downsample_factor
    x = torch.randn(1, frames, 8, height // factor, width // factor, generator=gen)
    ctx = torch.randn(1, 1, preset.unet.cross_attention_dim, generator=gen)
    added = torch.tensor([[6.0, 127.0, 0.02]])

    def loss() -> torch.Tensor:
        out = unet(x, torch.tensor([0.3]), encoder_hidden_states=ctx, added_time_ids=added).sample
        return out.square().mean()

    return unet, loss


def test_every_spatial_and_temporal_layer_is_wrapped_and_the_numbers_do_not_change() -> None:
    unet, loss = _unet_and_loss(4, 32, 32)
    reference = loss()
    reference.backward()
    grads = {n: p.grad.clone() for n, p in unet.named_parameters()}
    unet.zero_grad(set_to_none=True)
    keys = list(unet.state_dict())

    count = enable_activation_checkpointing(unet)
    names = checkpointed_layers(unet)
    assert count == len(names) == enable_activation_checkpointing(unet)  # idempotent
    # both layer kinds of every level: resnets (spatial+temporal) and transformers (spatial+temporal)
    assert sum(".resnets." in n for n in names) > 0 and sum(".attentions." in n for n in names) > 0
    assert any(n.startswith("mid_block.attentions") for n in names)
    assert list(unet.state_dict()) == keys  # no wrapper modules, same checkpoint keys
    again = loss()
    again.backward()
    assert torch.equal(again.detach(), reference.detach())
    for name, param in unet.named_parameters():
        assert torch.allclose(param.grad, grads[name], rtol=1e-5, atol=1e-7), name

    assert disable_activation_checkpointing(unet) == count and checkpointed_layers(unet) == []


def test_checkpointing_keeps_far_less_than_diffusers_own_which_skips_the_attention_layers() -> None:
    unet, loss = _unet_and_loss(4, 64, 64)
    off = measure_activation_memory(unet, loss, CPU)
    unet.enable_gradient_checkpointing()  # diffusers: resnets only
    theirs = measure_activation_memory(unet, loss, CPU)
    unet.disable_gradient_checkpointing()
    enable_activation_checkpointing(unet)
    ours = measure_activation_memory(unet, loss, CPU)
    assert all(p.grad is None for p in unet.parameters())  # parameter gradients were not counted
    assert off.retained_bytes > 1_000_000 and off.peak_bytes >= off.retained_bytes
    assert ours.retained_bytes < 0.15 * off.retained_bytes
    assert ours.peak_bytes < 0.5 * off.peak_bytes
    assert ours.retained_bytes < 0.5 * theirs.retained_bytes
