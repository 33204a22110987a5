"""Aesthetic predictor and CLIP score on tiny random CLIP models loaded through the real loading code."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from svd_core.curation.aesthetic import AestheticScorer, load_aesthetic_head
from svd_core.curation.clip_score import ClipEncoder, ClipScoreScorer, frames_for
from svd_core.curation.model_loading import local_model_dir
from svd_core.curation.schema import SCORE_RANGES
from svd_core.errors import InputError
from tests.scorer_fixtures import clip_frames, gradient_frame, make_aesthetic_head, make_clip, sampled

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip")


@pytest.fixture(scope="module")
def encoder(clip_dir: Path) -> ClipEncoder:
    return ClipEncoder(
        local_model_dir(str(clip_dir), "clip_score_model_path", "unused"), "k", CPU, torch.float32
    )


def _reference_cosines(clip_dir: Path, images: np.ndarray, caption: str) -> np.ndarray:
    """Cosine similarities straight from transformers' CLIPModel forward (logits / logit_scale)."""
    from transformers import AutoTokenizer, CLIPImageProcessorPil, CLIPModel

    model = CLIPModel.from_pretrained(clip_dir).eval()
    pixels = CLIPImageProcessorPil.from_pretrained(clip_dir)(images=list(images), return_tensors="pt")
    tokens = AutoTokenizer.from_pretrained(clip_dir)([caption], return_tensors="pt")
    with torch.no_grad():
        out = model(pixel_values=pixels["pixel_values"], **tokens)
        return (out.logits_per_image[:, 0] / model.logit_scale.exp()).numpy()


def test_clip_score_matches_transformers_clip_on_first_middle_last(
    clip_dir: Path, encoder: ClipEncoder
) -> None:
    frames = clip_frames(5)
    scorer = ClipScoreScorer(encoder, "key")
    value = scorer.score(frames, {"caption": "a dog runs on the beach"})["clip_score"]
    expected = _reference_cosines(clip_dir, frames.key_frames(), "a dog runs on the beach").mean()
    assert value == pytest.approx(float(expected), abs=1e-5)
    low, high = SCORE_RANGES["clip_score"]
    assert low <= value <= high and math.isfinite(value)


def test_clip_score_middle_frame_mode_and_caption_sensitivity(clip_dir: Path, encoder: ClipEncoder) -> None:
    frames = clip_frames(5)
    scorer = ClipScoreScorer(encoder, "middle")
    dog = scorer.score(frames, {"caption": "a dog runs on the beach"})["clip_score"]
    car = scorer.score(frames, {"caption": "red car at night in the city"})["clip_score"]
    expected = _reference_cosines(clip_dir, frames.middle_frame()[None], "a dog runs on the beach")[0]
    assert dog == pytest.approx(float(expected), abs=1e-5)
    assert dog != pytest.approx(car, abs=1e-6)


@pytest.mark.parametrize("caption", [None, "", "   "])
def test_clip_score_is_null_without_a_caption(encoder: ClipEncoder, caption: str | None) -> None:
    assert ClipScoreScorer(encoder).score(clip_frames(3), {"caption": caption}) == {"clip_score": None}


def test_image_embeddings_are_cached_per_frame_batch(encoder: ClipEncoder) -> None:
    frames = clip_frames(3)
    first = encoder.image_embeddings(frames.key_frames())
    assert encoder.image_embeddings(frames.key_frames()) is first  # same pixels: no second forward
    other = encoder.image_embeddings(clip_frames(3, seed=7).key_frames())
    assert other is not first and not torch.allclose(other, first)
    assert torch.allclose(first.norm(dim=-1), torch.ones(len(first)), atol=1e-5)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_aesthetic_score_equals_laion_head_on_normalised_clip_embeddings(
    clip_dir: Path, encoder: ClipEncoder, tmp_path: Path, suffix: str
) -> None:
    head_path = make_aesthetic_head(tmp_path / f"head{suffix}", input_size=16, rating=5.0)
    head = load_aesthetic_head(head_path)
    scorer = AestheticScorer(encoder, head, head_path, "key")
    frames = clip_frames(5)
    value = scorer.score(frames, {})["aesthetic_score"]

    from transformers import CLIPImageProcessorPil, CLIPModel

    model = CLIPModel.from_pretrained(clip_dir).eval()
    pixels = CLIPImageProcessorPil.from_pretrained(clip_dir)(
        images=list(frames.key_frames()), return_tensors="pt"
    )
    with torch.no_grad():
        embeds = model.get_image_features(**pixels).pooler_output
        expected = head(embeds / embeds.norm(dim=-1, keepdim=True)).mean()
    assert value == pytest.approx(float(expected), abs=1e-4)
    low, high = SCORE_RANGES["aesthetic_score"]
    assert low < value < high  # inside the range by itself, not clamped onto an edge


def test_aesthetic_score_varies_with_the_image(encoder: ClipEncoder, tmp_path: Path) -> None:
    head_path = make_aesthetic_head(tmp_path / "head.pth")
    scorer = AestheticScorer(encoder, load_aesthetic_head(head_path), head_path, "middle")
    smooth = scorer.score(sampled([gradient_frame(seed=1)] * 3), {})["aesthetic_score"]
    noise = np.random.default_rng(0).integers(0, 256, (3, 96, 160, 3), dtype=np.uint8)
    noisy = scorer.score(sampled(list(noise)), {})["aesthetic_score"]
    assert smooth != pytest.approx(noisy, abs=1e-6)


def test_aesthetic_head_must_fit_the_clip_embedding(encoder: ClipEncoder, tmp_path: Path) -> None:
    head_path = make_aesthetic_head(tmp_path / "head768.pth", input_size=768)
    with pytest.raises(InputError, match=r"768.*16"):
        AestheticScorer(encoder, load_aesthetic_head(head_path), head_path)


def test_aesthetic_head_with_foreign_keys_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(1, 16)}, path)
    with pytest.raises(InputError, match=r"layers\.0\.weight"):
        load_aesthetic_head(path)


def test_image_only_clip_serves_aesthetics_but_not_clip_score(tmp_path: Path) -> None:
    folder = make_clip(tmp_path / "vision", image_only=True)
    encoder = ClipEncoder(folder, "aesthetic_clip_path", CPU, torch.float32)
    assert encoder.tokenizer is None and encoder.embed_dim == 16
    head_path = make_aesthetic_head(tmp_path / "head.pth")
    value = AestheticScorer(encoder, load_aesthetic_head(head_path), head_path).score(clip_frames(3), {})
    assert math.isfinite(value["aesthetic_score"])
    with pytest.raises(InputError, match="clip_score_model_path"):
        ClipScoreScorer(encoder)


def test_frames_for_picks_key_or_middle() -> None:
    frames = clip_frames(5)
    assert frames_for(frames, "key").shape[0] == 3
    assert np.array_equal(frames_for(frames, "middle")[0], frames.frames[2])
