"""Tiny random-weight models for the learned-scorer tests, built offline and saved with save_pretrained.

Nothing here downloads: tokenizers are WordLevel models over a fixed vocabulary, models come from small
configs, and every test loads them back through the real loading code.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from svd_core.curation.aesthetic import AestheticHead
from svd_core.video.frames import SampledFrames

WORDS = ["[PAD]", "[UNK]", "[BOS]", "[EOS]", "a", "dog", "cat", "runs", "on", "the", "beach", "video"]
WORDS += ["of", "red", "car", "city", "street", "at", "night", "sky", "over", "sea", "man", "walks"]
PAD, UNK, BOS, EOS = 0, 1, 2, 3
IMAGE_SIZE = 32


def write_tokenizer(folder: Path, max_length: int = 32) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        bos_token="[BOS]",
        eos_token="[EOS]",
        model_max_length=max_length,
    )
    tokenizer.save_pretrained(folder)


def _tower(**extra: int) -> dict[str, int]:
    return dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, **extra)


def make_clip(folder: Path, seed: int = 0, image_only: bool = False) -> Path:
    """A tiny CLIPModel (or CLIPVisionModelWithProjection) folder with tokenizer and PIL preprocessor."""
    from transformers import (
        CLIPConfig,
        CLIPImageProcessorPil,
        CLIPModel,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    torch.manual_seed(seed)
    vision = _tower(image_size=IMAGE_SIZE, patch_size=8)
    if image_only:
        CLIPVisionModelWithProjection(CLIPVisionConfig(**vision, projection_dim=16)).save_pretrained(folder)
    else:
        text = _tower(vocab_size=len(WORDS), max_position_embeddings=32, bos_token_id=BOS, eos_token_id=EOS)
        CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(
            folder
        )
        write_tokenizer(folder)
    size = {"shortest_edge": IMAGE_SIZE}
    crop = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    CLIPImageProcessorPil(size=size, crop_size=crop).save_pretrained(folder)
    return folder


def make_aesthetic_head(path: Path, input_size: int = 16, rating: float = 5.0, seed: int = 0) -> Path:
    """LAION-layout head whose outputs sit near `rating` (so a valid score is not merely clamped)."""
    torch.manual_seed(seed)
    head = AestheticHead(input_size)
    with torch.no_grad():
        head.layers[7].bias.fill_(rating)
    state = {k: v.contiguous() for k, v in head.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


def _no_special_tokens(model: torch.nn.Module) -> None:
    # Random weights may emit EOS at once; suppressing specials keeps captions non-empty and deterministic.
    model.generation_config.suppress_tokens = [PAD, UNK, BOS, EOS]
    model.generation_config.pad_token_id = PAD
    model.generation_config.eos_token_id = EOS


def make_blip(folder: Path, seed: int = 0) -> Path:
    from transformers import BlipConfig, BlipForConditionalGeneration, BlipImageProcessorPil

    torch.manual_seed(seed)
    text = _tower(vocab_size=len(WORDS), max_position_embeddings=32, encoder_hidden_size=32)
    text.update(bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD, sep_token_id=EOS)
    config = BlipConfig(text_config=text, vision_config=_tower(image_size=IMAGE_SIZE, patch_size=8))
    model = BlipForConditionalGeneration(config)
    _no_special_tokens(model)
    model.save_pretrained(folder)
    write_tokenizer(folder)
    BlipImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(folder)
    return folder


def make_llm(folder: Path, seed: int = 0) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(WORDS),
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=256,
        bos_token_id=BOS,
        eos_token_id=EOS,
    )
    model = GPT2LMHeadModel(config)
    _no_special_tokens(model)
    model.save_pretrained(folder)
    write_tokenizer(folder, max_length=256)
    return folder


def gradient_frame(height: int = 96, width: int = 160, seed: int = 0) -> np.ndarray:
    """A smooth colour gradient with a few soft blobs: image-like, no text."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    frame = np.stack(
        [xs / width * 200 + 30, ys / height * 180 + 40, (xs + ys) / (width + height) * 150 + 60], -1
    )
    for _ in range(3):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(8, 30)
        frame += 40 * np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * r * r))[..., None]
    return np.clip(frame, 0, 255).astype(np.uint8)


def with_text(frame: np.ndarray, lines: list[str], scale: float, thickness: int) -> tuple[np.ndarray, float]:
    """`frame` with white text lines drawn on it, and the fraction of the frame the lines' extents cover."""
    out = frame.copy()
    extent = np.zeros(frame.shape[:2], dtype=np.uint8)
    step = out.shape[0] // (len(lines) + 1)
    for i, line in enumerate(lines, start=1):
        font = cv2.FONT_HERSHEY_SIMPLEX
        cv2.putText(out, line, (8, i * step), font, scale, (255, 255, 255), thickness, cv2.LINE_AA)
        (w, h), base = cv2.getTextSize(line, font, scale, thickness)
        extent[max(0, i * step - h) : i * step + base, 8 : 8 + w] = 1
    return out, float(extent.mean())


def sampled(frames: list[np.ndarray], fps: float = 2.0) -> SampledFrames:
    array = np.stack(frames)
    h, w = array.shape[1:3]
    return SampledFrames(array, np.arange(len(array)) / fps, fps, source_width=w * 4, source_height=h * 4)


def clip_frames(count: int = 5, seed: int = 0) -> SampledFrames:
    return sampled([gradient_frame(seed=seed + i) for i in range(count)])
