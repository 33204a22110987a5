"""CLIP embeddings (shared by the aesthetic predictor) and the caption-frame `clip_score`.

The paper (section 3.1) computes CLIP image-text similarity on the first, middle and last frame; with
`clip_frames: key` the score is the mean cosine similarity between the caption and those three frames,
with `clip_frames: middle` the middle frame alone. The score is null when the clip has no caption: a
similarity to an empty string would be a made-up number.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
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
    folders. Remembers the image embeddings of the last call (per clip's frame group), so the aesthetic and
    CLIP scorers sharing one encoder run the vision tower once per clip, batched or not.
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
        self._last: dict[bytes, torch.Tensor] = {}

    def image_embeddings(self, images: np.ndarray) -> torch.Tensor:
        """L2-normalised float32 image embeddings, shape (K, embed_dim), of a (K, H, W, 3) uint8 batch."""
        return self.image_embeddings_batch([images])[0]

    def image_embeddings_batch(self, groups: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """`image_embeddings` of each (K_i, H, W, 3) group, all groups not seen in the last call stacked into
        one forward pass. The last call's embeddings are remembered per group, so scorers sharing this
        encoder (aesthetic, CLIP score) run the vision tower once per clip, batched or not."""
        keys = [_frames_key(group) for group in groups]
        cached = self._last  # read once: a thread sharing this encoder may replace it meanwhile
        todo: dict[bytes, np.ndarray] = {}
        for key, group in zip(keys, groups, strict=True):
            if key not in cached and key not in todo:
                todo[key] = group
        fresh: dict[bytes, torch.Tensor] = {}
        if todo:
            images = [image for group in todo.values() for image in group]
            pixels = self.processor(images=images, return_tensors="pt")["pixel_values"]
            with torch.inference_mode():
                vision = self.model.vision_model(pixel_values=pixels.to(self.device, self.dtype))
                embeds = self.model.visual_projection(vision.pooler_output).float()
            embeds = torch.nn.functional.normalize(embeds, dim=-1).cpu()
            sizes = [len(group) for group in todo.values()]
            fresh = dict(zip(todo, torch.split(embeds, sizes), strict=True))
        last = {key: cached[key] if key in cached else fresh[key] for key in keys}
        self._last = last
        return [last[key] for key in keys]

    def text_embedding(self, text: str) -> torch.Tensor:
        """L2-normalised float32 text embedding, shape (embed_dim,); text is truncated to CLIP's context."""
        return self.text_embeddings([text])[0]

    def text_embeddings(self, texts: Sequence[str]) -> torch.Tensor:
        """`text_embedding` of each text, shape (N, embed_dim), in one forward pass: the texts are padded on
        the right, which CLIP's causal text tower never attends to from the pooled (end) token."""
        if self.tokenizer is None:
            raise InputError(
                "this CLIP folder has no text tower; clip_score_model_path needs a full CLIPModel"
            )
        if not texts:
            return torch.zeros((0, self.embed_dim))
        if len(texts) > 1 and self.tokenizer.pad_token_id is None:  # cannot pad: one forward per text
            return torch.stack([self.text_embedding(text) for text in texts])
        max_len = int(self.model.config.text_config.max_position_embeddings)
        tokens = self.tokenizer(
            list(texts),
            truncation=True,
            max_length=max_len,
            padding=len(texts) > 1,
            padding_side="right",
            return_tensors="pt",
        )
        with torch.inference_mode():
            pooled = self.model.text_model(
                input_ids=tokens["input_ids"].to(self.device),
                attention_mask=tokens["attention_mask"].to(self.device),
            ).pooler_output
            embeds = self.model.text_projection(pooled).float()
        return torch.nn.functional.normalize(embeds, dim=-1).cpu()


def _frames_key(images: np.ndarray) -> bytes:
    return hashlib.blake2b(images.tobytes(), digest_size=16).digest() + repr(images.shape).encode()


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
        return self.score_batch([frames], [row])[0]

    def score_batch(
        self, frames: Sequence[SampledFrames], rows: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        """`score` of each clip; the captioned clips' frames go through one vision forward and their
        captions through one text forward."""
        captions = [_caption(row) for row in rows]
        todo = [i for i, caption in enumerate(captions) if caption is not None]
        out: list[dict[str, Any]] = [{"clip_score": None} for _ in rows]
        if not todo:
            return out
        images = self.encoder.image_embeddings_batch([frames_for(frames[i], self.clip_frames) for i in todo])
        texts = self.encoder.text_embeddings([captions[i] or "" for i in todo])
        for i, image, text in zip(todo, images, texts, strict=True):
            similarity = float((image @ text).mean())
            out[i] = {"clip_score": min(1.0, max(-1.0, similarity))}  # rounding can overshoot |cos| = 1
        return out


def _caption(row: Mapping[str, Any]) -> str | None:
    """The stripped caption, or None when there is none (no score then, never one for an empty text)."""
    caption = row.get("caption")
    return caption.strip() if isinstance(caption, str) and caption.strip() else None
