"""Stage-I inflation: the fresh video UNet computes the image UNet frame by frame; key report is clean."""

from __future__ import annotations

import pytest
import torch

from svd_core.errors import InputError
from svd_core.model.build import build_image_unet, build_unet
from svd_core.model.config import TINY, ModelPreset, UNetShape, is_temporal_key
from svd_core.model.inflate import adapt_unet_state_dict, image_key_for, inflate_image_unet

B, T, H, W = 2, 5, 8, 12


def _run_both(image_unet, video_unet, latents, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    context = torch.randn(B, 1, 32, generator=gen)
    c_noise = torch.tensor([0.3, -0.6])
    video_in = latents
    if mode == "image":  # the conditioning-frame latent slot must not change anything at init
        video_in = torch.cat([latents, torch.randn(B, T, 4, H, W, generator=gen)], dim=2)
    added = torch.tensor([[6.0, 127.0, 0.02], [29.0, 3.0, 0.5]])
    with torch.no_grad():
        video = video_unet(video_in, c_noise, encoder_hidden_states=context, added_time_ids=added).sample
        image = image_unet(
            latents.flatten(0, 1),
            c_noise.repeat_interleave(T),
            encoder_hidden_states=context.repeat_interleave(T, dim=0),
        ).sample.unflatten(0, (B, T))
    return video, image


@pytest.mark.parametrize("mode", ["image", "text"])
def test_inflated_video_unet_reproduces_the_image_unet_per_frame(mode: str) -> None:
    image_unet = build_image_unet(TINY, seed=1)
    torch.nn.init.normal_(image_unet.conv_out.weight, std=0.1)  # a non-trivial output everywhere
    video_unet = build_unet(TINY, mode, T, seed=2)
    assert inflate_image_unet(image_unet, video_unet).ok
    frame = torch.randn(B, 1, 4, H, W, generator=torch.Generator().manual_seed(3))
    identical = frame.expand(B, T, 4, H, W).contiguous()
    video, image = _run_both(image_unet, video_unet, identical, mode)
    assert image.abs().mean() > 0.05
    assert torch.allclose(video, image, atol=1e-4), (video - image).abs().max()
    # distinct frames too: the temporal paths start as exact identities, not just on static input
    varied = torch.randn(B, T, 4, H, W, generator=torch.Generator().manual_seed(4))
    video, image = _run_both(image_unet, video_unet, varied, mode)
    assert torch.allclose(video, image, atol=1e-4)


def test_inflation_report_lists_only_the_documented_new_keys() -> None:
    image_unet = build_image_unet(TINY, seed=1)
    video_unet = build_unet(TINY, "image", T, seed=2)
    report = inflate_image_unet(image_unet, video_unet)
    assert report.ok and report.missing == [] and report.unexpected == []
    assert report.widened == ["conv_in.weight"]
    new = [k for k in video_unet.state_dict() if image_key_for(k) is None]
    assert new and all(is_temporal_key(k) or k.startswith("add_embedding.") for k in new)
    assert set(report.copied) | set(report.widened) | set(new) == set(video_unet.state_dict())
    assert len(report.copied) + len(report.widened) == len(image_unet.state_dict())
    state = video_unet.state_dict()
    assert state["conv_in.weight"][:, 4:].abs().sum() == 0
    assert torch.equal(state["conv_in.weight"][:, :4], image_unet.state_dict()["conv_in.weight"])
    assert state["add_embedding.linear_2.weight"].abs().sum() == 0
    mixers = [v for k, v in state.items() if k.endswith("time_mixer.mix_factor")]
    assert mixers and all(torch.sigmoid(m).item() > 0.5 for m in mixers)  # spatial path dominant


def test_temporal_layers_receive_gradients_after_inflation() -> None:
    video_unet = build_unet(TINY, "text", 3, seed=2)
    inflate_image_unet(build_image_unet(TINY, seed=1), video_unet)
    out = video_unet(
        torch.randn(1, 3, 4, H, W),
        torch.tensor([0.1]),
        torch.randn(1, 77, 32),
        torch.tensor([[6.0, 127.0, 0.0]]),
    ).sample
    out.square().mean().backward()
    grads = {
        k: p.grad
        for k, p in video_unet.named_parameters()
        if is_temporal_key(k) and k.endswith("conv2.weight")
    }
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads.values())


def test_mismatched_presets_are_refused() -> None:
    wider = ModelPreset("wider", UNetShape((64, 64), 1, (2, 4), 32, 8), TINY.vae, TINY.vision, TINY.text)
    with pytest.raises(InputError, match="same model preset"):
        inflate_image_unet(build_image_unet(wider), build_unet(TINY, "image", 2))


def test_text_parent_conv_in_widens_for_image_conditioning() -> None:
    parent = build_unet(TINY, "text", 2, seed=5)
    child = build_unet(TINY, "image", 2, seed=6)
    state, widened = adapt_unet_state_dict(parent.state_dict(), child)
    child.load_state_dict(state, strict=True)
    assert widened == ["conv_in.weight"]
    assert torch.equal(child.conv_in.weight[:, :4], parent.conv_in.weight)
    assert child.conv_in.weight[:, 4:].abs().sum() == 0
