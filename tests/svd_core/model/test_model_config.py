"""Model presets: the svd preset has the released UNet size; tiny builds and runs in both modes."""

from __future__ import annotations

import pytest
import torch

from svd_core.errors import ConfigError
from svd_core.model.build import (
    build_components,
    build_image_unet,
    build_tokenizer,
    build_unet,
    count_parameters,
    count_temporal_parameters,
)
from svd_core.model.config import PRESETS, SVD, TINY, get_preset
from svd_core.model.text_conditioning import encode_prompts, tokenize

# diffusers' UNetSpatioTemporalConditionModel with the released stable-video-diffusion-img2vid config.
SVD_UNET_PARAMS = 1_524_623_082
PAPER_TOTAL, PAPER_SPATIAL, PAPER_TEMPORAL = 1521e6, 865e6, 656e6  # paper: 1521M = 865M + 656M


def test_svd_preset_has_the_released_unet_size_on_the_meta_device() -> None:
    unet = build_unet(SVD, "image", 14, meta=True)
    assert next(unet.parameters()).device.type == "meta"
    total, temporal = count_parameters(unet), count_temporal_parameters(unet)
    assert total == SVD_UNET_PARAMS
    assert abs(total - PAPER_TOTAL) / PAPER_TOTAL < 0.003  # the paper rounds and leaves out add_embedding
    assert abs(temporal - PAPER_TEMPORAL) / PAPER_TEMPORAL < 0.001
    assert abs(count_parameters(build_image_unet(SVD, meta=True)) - PAPER_SPATIAL) / PAPER_SPATIAL < 0.002
    assert unet.config.in_channels == 8 and unet.config.cross_attention_dim == 1024
    assert unet.config.projection_class_embeddings_input_dim == 768  # 3 ids x 256


@pytest.mark.parametrize("mode,in_channels,context", [("image", 8, (2, 1, 32)), ("text", 4, (2, 77, 32))])
def test_tiny_components_run_in_both_conditioning_modes(mode: str, in_channels: int, context: tuple) -> None:
    comp = build_components(TINY, mode, 3, seed=0)
    assert comp.unet.config.in_channels == in_channels and comp.conditioning == mode
    latents = torch.randn(2, 3, in_channels, 8, 12)
    with torch.no_grad():
        out = comp.unet(latents, torch.tensor([0.1, 0.5]), torch.randn(context), torch.randn(2, 3)).sample
        embeds = comp.image_encoder(pixel_values=torch.randn(2, 3, 224, 224)).image_embeds
    assert out.shape == (2, 3, 4, 8, 12)
    assert embeds.shape == (2, 32)  # image_size 224: what the SVD pipeline feeds CLIP
    if mode == "text":
        hidden = encode_prompts(comp.tokenizer, comp.text_encoder, ["a dog runs", "ünïcode — ok"])
        assert hidden.shape == (2, 77, 32)


def test_builds_are_deterministic_in_the_seed() -> None:
    a, b, c = (build_unet(TINY, "image", 2, seed=s).state_dict() for s in (7, 7, 8))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_byte_level_tokenizer_covers_any_text() -> None:
    tok = build_tokenizer(TINY)
    ids = tokenize(tok, ["hello world", "日本語 ✓", ""])
    assert ids.shape == (3, 77) and ids.max() < 514
    assert ids[0, 0] == 512 and 513 in ids[0].tolist()  # bos ... eos
    assert tok.decode(ids[0], skip_special_tokens=True) == "hello world"


def test_released_tokenizer_presets_and_unknown_presets_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="tokenizer"):
        build_tokenizer(SVD)
    with pytest.raises(ConfigError, match="choose one of"):
        get_preset("huge")
    assert set(PRESETS) == {"tiny", "small", "svd"}
