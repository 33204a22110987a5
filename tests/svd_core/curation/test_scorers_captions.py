"""Caption chain: metadata default, image/video captioners and the LLM merger on tiny random models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from svd_core.curation.captioners import CaptionChain, ImageToText, LlmMerger, frame_grid, metadata_caption
from svd_core.curation.config import DEFAULT_LLM_PROMPT
from svd_core.curation.model_loading import local_model_dir
from svd_core.curation.schema import CAPTION_COLUMNS, LVD_COLUMNS
from tests.scorer_fixtures import WORDS, clip_frames, make_blip, make_llm, sampled

CPU = torch.device("cpu")
SPECIALS = {"[PAD]", "[UNK]", "[BOS]", "[EOS]"}


@pytest.fixture(scope="module")
def blip(tmp_path_factory: pytest.TempPathFactory) -> ImageToText:
    folder = make_blip(tmp_path_factory.mktemp("blip") / "blip")
    return ImageToText(
        local_model_dir(str(folder), "image_captioner_path", "unused"), "k", CPU, torch.float32, 6
    )


@pytest.fixture(scope="module")
def llm(tmp_path_factory: pytest.TempPathFactory) -> LlmMerger:
    folder = make_llm(tmp_path_factory.mktemp("llm") / "llm")
    return LlmMerger(folder, CPU, torch.float32, DEFAULT_LLM_PROMPT, max_new_tokens=8)


def _vocabulary_words(text: str) -> bool:
    return all(word in WORDS and word not in SPECIALS for word in text.split())


def test_metadata_caption_joins_title_and_description() -> None:
    row = {"title": "  Dog on the beach ", "description": "A dog runs\nalong the sea!"}
    assert metadata_caption(row) == "Dog on the beach. A dog runs along the sea!"
    assert metadata_caption({"title": "Same", "description": "Same"}) == "Same."
    assert metadata_caption({"title": None, "description": 3}) is None
    assert metadata_caption({}) is None


def test_metadata_caption_is_cut_at_a_word_boundary() -> None:
    caption = metadata_caption({"title": "word " * 100}, max_chars=32)
    assert caption is not None and len(caption) <= 32 and caption.split() == ["word"] * len(caption.split())


def test_frame_grid_tiles_frames_in_time_order() -> None:
    frames = np.stack([np.full((4, 6, 3), i * 10, dtype=np.uint8) for i in range(9)])
    grid = frame_grid(frames, 4)
    assert grid.shape == (8, 12, 3)
    assert [grid[0, 0, 0], grid[0, 6, 0], grid[4, 0, 0], grid[4, 6, 0]] == [0, 30, 50, 80]
    short = frame_grid(frames[:2], 4)  # fewer frames than slots: each frame once
    assert short.shape == (4, 12, 3) and short[0, 6, 0] == 10


NO_CAPTIONS = {column: None for column in CAPTION_COLUMNS}


def test_metadata_is_the_offline_default() -> None:
    chain = CaptionChain()
    out = chain.score(clip_frames(3), {"title": "City street at night"})
    assert out == {
        **NO_CAPTIONS,
        "caption": "City street at night.",
        "caption_source": "metadata",
        "caption_metadata": "City street at night.",
        "caption_provenance": json.dumps({"caption_metadata": "title+description:max300"}),
    }
    nothing = chain.score(clip_frames(3), {})
    assert nothing == {**NO_CAPTIONS, "caption": None, "caption_source": None, "caption_provenance": None}
    assert set(out) == set(chain.columns) and set(chain.columns) <= set(LVD_COLUMNS)
    assert chain.version.startswith("caption-v2+metadata+s")


def test_a_stored_metadata_caption_survives_rescoring_without_metadata() -> None:
    """The score stage over stored clips has no title/description: the build's metadata caption stays."""
    out = CaptionChain().score(clip_frames(3), {"caption_metadata": "Sea at dawn."})
    assert out["caption_metadata"] == out["caption"] == "Sea at dawn." and out["caption_source"] == "metadata"


def test_image_captioner_captions_the_middle_frame(blip: ImageToText) -> None:
    frames = clip_frames(5)
    out = CaptionChain(image=blip).score(frames, {"title": "ignored when a model captions"})
    assert out["caption_source"] == "image"
    assert out["caption"] and _vocabulary_words(out["caption"])
    assert out["caption"] == blip.caption([frames.middle_frame()])[0]


def test_full_chain_merges_image_and_video_captions_with_the_llm(blip: ImageToText, llm: LlmMerger) -> None:
    chain = CaptionChain(image=blip, video=blip, llm=llm, video_frames=4)
    frames = clip_frames(6)
    learned = chain.learned_captions(frames)
    assert set(learned) == {"image", "video"}
    assert learned["video"] == blip.caption([frame_grid(frames.frames, 4)])[0]
    out = chain.score(frames, {"title": "Harbour"})
    assert out["caption_source"] == "image+video+llm"
    assert out["caption"] and _vocabulary_words(out["caption"])
    assert out["caption"] == out["caption_merged"] == llm.merge(learned)
    assert "image.w" in chain.version and "video.w" in chain.version and "llm.w" in chain.version


def test_every_caption_is_kept_with_its_provenance(blip: ImageToText, llm: LlmMerger) -> None:
    chain = CaptionChain(image=blip, video=blip, llm=llm, video_frames=4)
    frames = clip_frames(6)
    learned = chain.learned_captions(frames)
    out = chain.score(frames, {"title": "Harbour", "description": "Boats at dusk"})
    assert out["caption_image"] == learned["image"] and out["caption_video"] == learned["video"]
    assert (
        out["caption_merged"] == llm.merge(learned) and out["caption_metadata"] == "Harbour. Boats at dusk."
    )
    provenance = json.loads(out["caption_provenance"])
    assert set(provenance) == set(CAPTION_COLUMNS)  # one producer per caption column, nothing else
    model = type(blip.model).__name__
    assert provenance["caption_image"] == f"{model}.w{blip.fingerprint}+middle"
    assert provenance["caption_video"] == f"{model}.w{blip.fingerprint}+grid4"
    assert provenance["caption_merged"].startswith(f"{type(llm.model).__name__}.w{llm.fingerprint}+p")
    assert provenance["caption_metadata"] == "title+description:max300"


def test_image_only_chain_keeps_the_metadata_caption_too(blip: ImageToText) -> None:
    out = CaptionChain(image=blip).score(clip_frames(5), {"title": "Harbour"})
    assert out["caption_source"] == "image" and out["caption"] == out["caption_image"]
    assert out["caption_video"] is None and out["caption_merged"] is None
    assert out["caption_metadata"] == "Harbour."
    assert set(json.loads(out["caption_provenance"])) == {"caption_image", "caption_metadata"}


def test_merger_prompt_names_each_caption(llm: LlmMerger) -> None:
    prompt = llm.build_prompt({"image": "a dog", "video": "a dog runs"})
    assert "- middle frame: a dog\n- whole clip: a dog runs" in prompt
    assert "{captions}" not in prompt


def test_empty_learned_captions_fall_back_to_metadata(
    blip: ImageToText, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(blip, "caption", lambda images: [None] * len(images))
    out = CaptionChain(image=blip).score(sampled([np.zeros((32, 32, 3), np.uint8)] * 2), {"title": "Sea"})
    assert out["caption"] == "Sea." and out["caption_source"] == "metadata"
    assert out["caption_image"] is None and json.loads(out["caption_provenance"]) == {
        "caption_metadata": "title+description:max300"
    }
