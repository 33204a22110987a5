"""Caption chain: metadata (always on, offline) plus optional image, video and LLM captioners.

The paper (section 3.1) captions each clip three ways: CoCa on the middle frame, VideoBLIP on the clip, and
an LLM summary of both. Here each step is a pluggable model loaded from a path:
- image captioner: any transformers image-to-text model that captions from pixels alone (BLIP,
  VisionEncoderDecoder, GIT; CoCa itself is not in transformers) on the middle frame;
- video captioner: such a model reading a time-ordered grid of frames spread over the clip (the "image grid"
  trick for video understanding); one generate call serves both when both use the same model;
- LLM merger: a causal LM that merges the learned captions into one sentence.

The LVD table keeps every caption the chain produced, each in its own column (`caption_image`,
`caption_video`, `caption_merged`, `caption_metadata`, see svd_core.curation.schema.CAPTION_COLUMNS), and
`caption_provenance` (JSON) names what produced each: the model class and a hash of its weights, or the
metadata fields. `caption` is the one the filters and the CLIP score read: the LLM merge when there is
one, else the image caption, else the video caption, else the source's title/description;
`caption_source` says which: "image+video+llm" (or "image+llm" / "video+llm" when only one learned
caption came out), "image", "video" or "metadata". With nothing to go on all of them stay null.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from svd_core.curation.model_loading import (
    from_pretrained,
    load_image_processor,
    load_tokenizer,
    short_hash,
    weights_fingerprint,
)
from svd_core.curation.schema import CAPTION_COLUMNS
from svd_core.errors import InputError
from svd_core.video.frames import SampledFrames

CODE_VERSION = "caption-v2"
"""v2: every caption kept in its own column, with provenance."""
SOURCE_LABELS = {"image": "middle frame", "video": "whole clip"}
"""How the merger prompt names each learned caption."""


def clean_text(text: str | None) -> str | None:
    """Collapse whitespace; empty text is no caption (None), never an invented one."""
    if not isinstance(text, str):
        return None
    text = " ".join(text.split())
    return text or None


def metadata_caption(row: Mapping[str, Any], max_chars: int = 300) -> str | None:
    """`<title>. <description>` from the source row, cut at a word boundary to `max_chars`."""
    texts: list[str] = []
    for key in ("title", "description"):
        text = clean_text(row.get(key))
        if text and text not in texts:  # many sources repeat the title as the description
            texts.append(text)
    if not texts:
        return None
    caption = " ".join(text if text[-1] in ".!?" else text + "." for text in texts)
    if len(caption) > max_chars:
        cut = caption[:max_chars].rsplit(" ", 1)[0]
        caption = cut if cut else caption[:max_chars]
    return caption


def frame_grid(frames: np.ndarray, count: int) -> np.ndarray:
    """Tile `count` frames spread evenly over the clip into one image, row-major in time order."""
    total = len(frames)
    picks = np.unique(np.linspace(0, total - 1, min(count, total)).round().astype(int))
    cols = math.ceil(math.sqrt(len(picks)))
    rows = math.ceil(len(picks) / cols)
    _, h, w, c = frames.shape
    grid = np.zeros((rows * h, cols * w, c), dtype=np.uint8)
    for slot, index in enumerate(picks):
        r, col = divmod(slot, cols)
        grid[r * h : (r + 1) * h, col * w : (col + 1) * w] = frames[index]
    return grid


class ImageToText:
    """An image-to-text model with its processor and tokenizer; greedy captions for a batch of images."""

    def __init__(
        self, folder: Path, config_key: str, device: torch.device, dtype: torch.dtype, max_new_tokens: int
    ) -> None:
        from transformers import AutoModelForImageTextToText

        self.model = from_pretrained(AutoModelForImageTextToText, folder, config_key).eval()
        self.model.requires_grad_(False).to(device=device, dtype=dtype)
        self.processor = load_image_processor(folder, config_key)
        self.tokenizer = load_tokenizer(folder, config_key)
        self.device, self.dtype = device, dtype
        self.max_new_tokens = max_new_tokens
        self.fingerprint = weights_fingerprint(folder)

    @property
    def model_id(self) -> str:
        """Model class and weights hash, e.g. "BlipForConditionalGeneration.w1a2b3c4d" (caption provenance)."""
        return f"{type(self.model).__name__}.w{self.fingerprint}"

    def caption(self, images: list[np.ndarray]) -> list[str | None]:
        pixels = self.processor(images=images, return_tensors="pt")["pixel_values"]
        with torch.inference_mode():
            ids = self.model.generate(
                pixel_values=pixels.to(self.device, self.dtype),
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                num_beams=1,
            )
        return [clean_text(t) for t in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]


class LlmMerger:
    """A causal LM that merges the learned captions of one clip into one sentence (greedy decoding)."""

    def __init__(
        self,
        folder: Path,
        device: torch.device,
        dtype: torch.dtype,
        prompt: str,
        max_new_tokens: int,
        config_key: str = "llm_merger_path",
    ) -> None:
        from transformers import AutoModelForCausalLM

        self.model = from_pretrained(AutoModelForCausalLM, folder, config_key).eval()
        self.model.requires_grad_(False).to(device=device, dtype=dtype)
        self.tokenizer = load_tokenizer(folder, config_key)
        self.folder, self.config_key = folder, config_key
        self.device = device
        self.prompt = prompt
        self.max_new_tokens = max_new_tokens
        self.fingerprint = weights_fingerprint(folder)

    @property
    def model_id(self) -> str:
        """Model class, weights hash and prompt hash (caption provenance)."""
        return f"{type(self.model).__name__}.w{self.fingerprint}+p{short_hash(self.prompt)}"

    def build_prompt(self, captions: Mapping[str, str]) -> str:
        lines = "\n".join(f"- {SOURCE_LABELS[source]}: {text}" for source, text in captions.items())
        prompt = self.prompt.replace("{captions}", lines)
        if getattr(self.tokenizer, "chat_template", None):
            messages = [{"role": "user", "content": prompt}]
            prompt = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return prompt

    def merge(self, captions: Mapping[str, str]) -> str | None:
        """First line of the model's continuation, or None when it generated nothing usable."""
        encoded = self.tokenizer(self.build_prompt(captions), return_tensors="pt")
        encoded = {k: v.to(self.device) for k, v in encoded.items() if k in ("input_ids", "attention_mask")}
        if encoded["input_ids"].shape[1] == 0:
            raise InputError(
                f"{self.config_key}: the tokenizer in {self.folder} turned the merge prompt into no tokens; the "
                "folder needs the tokenizer files that belong to its model (tokenizer.json or vocab + merges)"
            )
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self.tokenizer.eos_token_id
        with torch.inference_mode():
            out = self.model.generate(
                **encoded,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                num_beams=1,
                pad_token_id=pad_id,
            )
        new_tokens = out[0, encoded["input_ids"].shape[1] :]
        text = self.tokenizer.decode(new_tokens, skip_special_tokens=True).strip()
        return clean_text(text.splitlines()[0] if text else None)


class CaptionChain:
    """ClipScorer filling `caption`, `caption_source`, one column per caption and `caption_provenance` (see
    the module docstring for the order)."""

    name = "caption"
    columns = ("caption", "caption_source", *CAPTION_COLUMNS, "caption_provenance")

    def __init__(
        self,
        image: ImageToText | None = None,
        video: ImageToText | None = None,
        llm: LlmMerger | None = None,
        video_frames: int = 4,
        metadata_max_chars: int = 300,
    ) -> None:
        self.image, self.video, self.llm = image, video, llm
        self.video_frames = video_frames
        self.metadata_max_chars = metadata_max_chars
        parts = [CODE_VERSION, "metadata"]
        for label, model in (("image", image), ("video", video), ("llm", llm)):
            if model is not None:
                parts.append(f"{label}.w{model.fingerprint}")
        settings = short_hash(video_frames, metadata_max_chars, llm.prompt if llm else None)
        self.version = "+".join([*parts, f"s{settings}"])
        self.producers: dict[str, str] = {"metadata": f"title+description:max{metadata_max_chars}"}
        """Chain step -> what produced its caption (the values of `caption_provenance`)."""
        if image is not None:
            self.producers["image"] = f"{image.model_id}+middle"
        if video is not None:
            self.producers["video"] = f"{video.model_id}+grid{video_frames}"
        if llm is not None:
            self.producers["llm"] = llm.model_id

    def learned_captions(self, frames: SampledFrames) -> dict[str, str]:
        """Image and video captions (only the configured ones that produced text), batched per model."""
        return self.learned_captions_batch([frames])[0]

    def learned_captions_batch(self, frames: Sequence[SampledFrames]) -> list[dict[str, str]]:
        """`learned_captions` of each clip: one generate call per model over every clip's images."""
        jobs: list[tuple[int, str, ImageToText, np.ndarray]] = []
        for i, clip in enumerate(frames):
            if self.image is not None:
                jobs.append((i, "image", self.image, clip.middle_frame()))
            if self.video is not None:
                jobs.append((i, "video", self.video, frame_grid(clip.frames, self.video_frames)))
        captions: list[dict[str, str]] = [{} for _ in frames]
        for model in {id(m): m for _, _, m, _ in jobs}.values():
            mine = [(i, label, image) for i, label, m, image in jobs if m is model]
            texts = model.caption([image for _, _, image in mine])
            for (i, label, _), text in zip(mine, texts, strict=True):
                if text:
                    captions[i][label] = text
        return [{label: c[label] for label in ("image", "video") if label in c} for c in captions]

    def score(self, frames: SampledFrames, row: Mapping[str, Any]) -> dict[str, Any]:
        return self.score_batch([frames], [row])[0]

    def score_batch(
        self, frames: Sequence[SampledFrames], rows: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        """`score` of each clip: image and video captions batched per model; the LLM merges clip by clip
        (prompts of different lengths would need left padding, which changes a greedy continuation)."""
        out = []
        for learned, row in zip(self.learned_captions_batch(frames), rows, strict=True):
            merged = self.llm.merge(learned) if self.llm is not None and learned else None
            out.append(self._captions(learned, merged, row))
        return out

    def _captions(
        self, learned: Mapping[str, str], merged: str | None, row: Mapping[str, Any]
    ) -> dict[str, Any]:
        metadata = metadata_caption(row, self.metadata_max_chars)
        if (
            metadata is None
        ):  # no title/description here (the score stage over stored clips): keep the stored one
            metadata = clean_text(row.get("caption_metadata"))
        steps = {
            "image": learned.get("image"),
            "video": learned.get("video"),
            "llm": merged,
            "metadata": metadata,
        }
        out: dict[str, Any] = {column: steps[step] for column, step in CAPTION_COLUMNS.items()}
        provenance = {
            column: self.producers.get(step, step) for column, step in CAPTION_COLUMNS.items() if steps[step]
        }
        out["caption_provenance"] = json.dumps(provenance, sort_keys=True) if provenance else None
        if merged:
            return {"caption": merged, "caption_source": "+".join([*learned, "llm"]), **out}
        for label in ("image", "video"):
            if label in learned:
                return {"caption": learned[label], "caption_source": label, **out}
        return {"caption": metadata, "caption_source": "metadata" if metadata else None, **out}
