"""Build the learned clip scorers from config: caption chain, CRAFT text area, aesthetics, CLIP score.

The order matters: the CLIP score reads the caption the chain wrote into the row. Scorers whose weights are
not configured are left out (their LVD columns stay null) and one warning names them with the config key
that turns each on. Models shared between scorers (one CLIP folder for aesthetics and CLIP score, one
captioner for image and video captions) are loaded once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import Any, TypeVar

import torch

from svd_core.curation.aesthetic import AestheticScorer, load_aesthetic_head
from svd_core.curation.captioners import CaptionChain, ImageToText, LlmMerger
from svd_core.curation.clip_score import ClipEncoder, ClipScoreScorer
from svd_core.curation.config import LearnedScorersConfig
from svd_core.curation.craft import load_craft
from svd_core.curation.model_loading import local_model_dir, local_weights_file
from svd_core.curation.scorer_base import ClipScorer
from svd_core.curation.text_detect import TextAreaScorer
from svd_core.device import resolve_device
from svd_core.errors import InputError

logger = logging.getLogger("svd.curation")
T = TypeVar("T")

OFF_HINTS = {
    "image captioner": "image_captioner_path",
    "video captioner": "video_captioner_path",
    "LLM caption merger": "llm_merger_path",
    "text detector (text_area_ratio)": "craft_weights",
    "aesthetic predictor (aesthetic_score)": "aesthetic_clip_path + aesthetic_head_path",
    "CLIP score (clip_score)": "clip_score_model_path",
}
"""Scorer (or caption step) -> the config key(s) that turn it on; used in the single 'off' warning."""


class _SharedModels:
    """Loads each (kind, location) once per build so scorers sharing a model share one copy."""

    def __init__(self) -> None:
        self._loaded: dict[tuple[str, str], Any] = {}

    def get(self, kind: str, location: str, load: Callable[[], T]) -> T:
        key = (kind, location.rstrip("/"))
        if key not in self._loaded:
            self._loaded[key] = load()
        return self._loaded[key]


LEARNED_SCORERS: dict[str, tuple[str, ...]] = {
    "caption": ("image_captioner_path", "video_captioner_path", "llm_merger_path"),
    "craft": ("craft_weights",),
    "aesthetic": ("aesthetic_clip_path", "aesthetic_head_path"),
    "clip_score": ("clip_score_model_path",),
}
"""Learned scorer name (in run order) -> the config keys holding its models."""


def learned_scorer_names(cfg: LearnedScorersConfig) -> tuple[str, ...]:
    """Learned scorers this config turns on, in run order, without loading anything (the caption chain is
    always on: metadata captions need no model)."""
    return tuple(
        name
        for name, keys in LEARNED_SCORERS.items()
        if name == "caption" or all(getattr(cfg, key) is not None for key in keys)
    )


def only_scorers(cfg: LearnedScorersConfig, names: Collection[str]) -> LearnedScorersConfig:
    """`cfg` with the models of every learned scorer not in `names` unset, so building loads only those."""
    unknown = sorted(set(names) - set(LEARNED_SCORERS))
    if unknown:
        raise InputError(f"{unknown} are not learned scorers (learned: {list(LEARNED_SCORERS)})")
    dropped = [key for name, keys in LEARNED_SCORERS.items() if name not in names for key in keys]
    return cfg.model_copy(update=dict.fromkeys(dropped))


def build_learned_scorers(
    cfg: LearnedScorersConfig, device: str = "auto", only: Collection[str] | None = None
) -> list[ClipScorer]:
    """Scorers in run order: caption chain (always), text detector, aesthetic predictor, CLIP score.

    `device` other than "auto" overrides `cfg.device`. `only` (learned scorer names) builds just those and
    loads just their models (no 'off' warning then). Raises InputError when a configured location is
    missing or does not hold the expected model.
    """
    if only is not None:
        cfg = only_scorers(cfg, only)
    torch_device = resolve_device(device if device != "auto" else cfg.device)
    dtype = torch.float16 if torch_device.type == "cuda" and cfg.half_precision_on_gpu else torch.float32
    shared = _SharedModels()
    scorers: list[ClipScorer] = []
    if only is None or "caption" in only:
        scorers.append(_caption_chain(cfg, torch_device, dtype, shared))
    if cfg.craft_weights is not None:
        scorers.append(_text_detector(cfg, cfg.craft_weights, torch_device, dtype))
    encoders: dict[str, ClipEncoder] = {}
    for key, location in (
        ("aesthetic_clip_path", cfg.aesthetic_clip_path),
        ("clip_score_model_path", cfg.clip_score_model_path),
    ):
        if location is not None:

            def load_clip(key: str = key, location: str = location) -> ClipEncoder:
                return ClipEncoder(
                    local_model_dir(location, key, cfg.model_cache_dir), key, torch_device, dtype
                )

            encoders[key] = shared.get("clip", location, load_clip)
    if cfg.aesthetic_head_path is not None:
        head_path = local_weights_file(cfg.aesthetic_head_path, "aesthetic_head_path", cfg.model_cache_dir)
        head = load_aesthetic_head(head_path)
        scorers.append(AestheticScorer(encoders["aesthetic_clip_path"], head, head_path, cfg.clip_frames))
    if "clip_score_model_path" in encoders:
        scorers.append(ClipScoreScorer(encoders["clip_score_model_path"], cfg.clip_frames))
    if only is None:
        _warn_off(cfg)
    return scorers


def _caption_chain(
    cfg: LearnedScorersConfig, device: torch.device, dtype: torch.dtype, shared: _SharedModels
) -> CaptionChain:
    def captioner(key: str, location: str | None) -> ImageToText | None:
        if location is None:
            return None
        return shared.get(
            "image-to-text",
            location,
            lambda: ImageToText(
                local_model_dir(location, key, cfg.model_cache_dir),
                key,
                device,
                dtype,
                cfg.caption_max_new_tokens,
            ),
        )

    llm = None
    if cfg.llm_merger_path is not None:
        folder = local_model_dir(cfg.llm_merger_path, "llm_merger_path", cfg.model_cache_dir)
        llm = LlmMerger(folder, device, dtype, cfg.llm_prompt, cfg.llm_max_new_tokens)
    return CaptionChain(
        image=captioner("image_captioner_path", cfg.image_captioner_path),
        video=captioner("video_captioner_path", cfg.video_captioner_path),
        llm=llm,
        video_frames=cfg.video_caption_frames,
        metadata_max_chars=cfg.metadata_caption_max_chars,
    )


def _text_detector(
    cfg: LearnedScorersConfig, location: str, device: torch.device, dtype: torch.dtype
) -> TextAreaScorer:
    path = local_weights_file(location, "craft_weights", cfg.model_cache_dir)
    return TextAreaScorer(
        load_craft(path, cfg.craft_sha256),
        str(path),
        device,
        dtype,
        long_side=cfg.craft_long_side,
        text_threshold=cfg.craft_text_threshold,
        link_threshold=cfg.craft_link_threshold,
        low_text=cfg.craft_low_text,
        min_component_px=cfg.craft_min_component_px,
        mode=cfg.craft_mode,
        coarse_long_side=cfg.craft_coarse_long_side,
        crop_budget_px=cfg.craft_crop_budget_px,
        crop_margin_px=cfg.craft_crop_margin_px,
    )


def off_scorers(cfg: LearnedScorersConfig) -> dict[str, str]:
    """Scorers (and caption steps) this config leaves off -> the config key that turns each on."""
    configured = {
        "image captioner": cfg.image_captioner_path,
        "video captioner": cfg.video_captioner_path,
        "LLM caption merger": cfg.llm_merger_path,
        "text detector (text_area_ratio)": cfg.craft_weights,
        "aesthetic predictor (aesthetic_score)": cfg.aesthetic_clip_path,
        "CLIP score (clip_score)": cfg.clip_score_model_path,
    }
    return {name: OFF_HINTS[name] for name, location in configured.items() if location is None}


def _warn_off(cfg: LearnedScorersConfig) -> None:
    off = off_scorers(cfg)
    if not off:
        return
    listing = "; ".join(f"{name} (set {key})" for name, key in off.items())
    fallback = (
        "" if cfg.image_captioner_path or cfg.video_captioner_path else "; captions come from source metadata"
    )
    logger.warning("learned scorers off, their LVD columns stay null: %s%s", listing, fallback)
