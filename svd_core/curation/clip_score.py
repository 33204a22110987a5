"""CLIP embeddings (shared by the aesthetic predictor) and the caption-frame `clip_score`.

The paper (section 3.1) computes CLIP image-text similarity on the first, middle and last frame; with
`clip_frames: key` the score is the mean cosine similarity between the caption and those three frames,
with `clip_frames: middle` the middle frame alone. The score is null when the clip has no caption: a
similarity to an empty string would be a made-up number.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from svd_core.curation.model_loading import (
    from_pretrained,
    load_image_processor,
    load_tokenizer,
    weights_fingerprint,
)
from svd_core.errors import InputError
from svd_core.video.frames import SampledFrames

CODE_VERSION = "clipscore-v1"


def frames_for(frames: SampledFrames, which: str) -> np.ndarray:
    """The frames a CLIP-based score reads: `key` (first/middle/last) or `middle`, as (K, H, W, 3)."""
    return frames.key_frames() if which == "key" else frames.middle_frame()[None]


class ClipEncoder:
    """A CLIP model with its preprocessor (and tokenizer when it has a text tower).

    Loads `CLIPModel` for folders of model_type `clip` and `CLIPVisionModelWithProjection` for image-only
    folders. Remembers the embeddings of the last frame batch, so the aesthetic and CLIP scorers sharing one
    encoder run the vision tower once per clip.
    """

    def __init__(self, folder: Path, config_key: str, device: torch.device, dtype: torch.dtype) -> None:
        from transformers import CLIPModel, CLIPVisionModelWithProjection

        model_type = _model_type(folder, config_key)
        if model_type not in ("clip", "clip_vision_model"):
            raise InputError(
                f"{config_key}: {folder} holds a {model_type!r} model; a CLIP folder (model_type clip or "
                "clip_vision_model) is needed"
            )
        cls = CLIPModel if model_type == "clip" else CLIPVisionModelWithProjection
        self.model = from_pretrained(cls, folder, config_key).eval().requires_grad_(False)
        self.model.to(device=device, dtype=dtype)
        self.processor = load_image_processor(folder, config_key)
        self.tokenizer = load_tokenizer(folder, config_key) if model_type == "clip" else None
        self.device, self.dtype = device, dtype
        self.fingerprint = weights_fingerprint(folder)
        self.embed_dim = int(self.model.visual_projection.out_features)
        self._last: tuple[bytes, torch.Tensor] | None = None

    def image_embeddings(self, images: np.ndarray) -> torch.Tensor:
        """L2-normalised float32 image embeddings, shape (K, embed_dim), of a (K, H, W, 3) uint8 batch."""
        key = hashlib.blake2b(images.tobytes(), digest_size=16).digest() + repr(images.shape).encode()
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        pixels = self.processor(images=list(images), return_tensors="pt")["pixel_values"]
        with torch.inference_mode():
            pooled = self.model.vision_model(pixel_values=pixels.to(self.device, self.dtype)).pooler_output
            embeds = self.model.visual_projection(pooled).float()
        embeds = torch.nn.functional.normalize(embeds, dim=-1).cpu()
        self._last = (key, embeds)
        return embeds

    def text_embedding(self, text: str) -> torch.Tensor:
        """L2-normalised float32 text embedding, shape (embed_dim,); text is truncated to CLIP's context."""
        if self.tokenizer is None:
            raise InputError(
                "this CLIP folder has no text tower; clip_score_model_path needs a full CLIPModel"
            )
        max_len = int(self.model.config.text_config.max_position_embeddings)
        tokens = self.tokenizer([text], truncation=True, max_length=max_len, return_tensors="pt")
        with torch.inference_mode():
            pooled = self.model.text_model(
                input_ids=tokens["input_ids"].to(self.device),
                attention_mask=tokens["attention_mask"].to(self.device),
            ).pooler_output
            embed = self.model.text_projection(pooled).float()
        return torch.nn.functional.normalize(embed, dim=-1)[0].cpu()


def _model_type(folder: Path, config_key: str) -> str:
    try:
        return str(json.loads((folder / "config.json").read_text()).get("model_type", ""))
    except (OSError, ValueError) as exc:
        raise InputError(f"{config_key}: {folder}/config.json is not readable JSON ({exc})") from exc


class ClipScoreScorer:
    """ClipScorer filling `clip_score`: cosine similarity of `row["caption"]` and the clip's frames."""

    name = "clip_score"
    columns = ("clip_score",)

    def __init__(self, encoder: ClipEncoder, clip_frames: str = "key") -> None:
        if encoder.tokenizer is None:
            raise InputError(
                "clip_score_model_path: the folder holds an image-only CLIP model; point it at a full CLIPModel "
                "folder (text and vision towers, tokenizer, preprocessor)"
            )
        self.encoder = encoder
        self.clip_frames = clip_frames
        self.version = f"{CODE_VERSION}+w{encoder.fingerprint}+{clip_frames}"

    def score(self, frames: SampledFrames, row: Mapping[str, Any]) -> dict[str, Any]:
        caption = row.get("caption")
        if not isinstance(caption, str) or not caption.strip():
            return {"clip_score": None}
        images = self.encoder.image_embeddings(frames_for(frames, self.clip_frames))
        text = self.encoder.text_embedding(caption.strip())
        similarity = float((images @ text).mean())
        return {"clip_score": min(1.0, max(-1.0, similarity))}  # rounding can overshoot |cos| = 1
