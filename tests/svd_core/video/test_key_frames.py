"""The sampler keeps the clip's first, middle and last scoring frame at a larger size (for text detection)
in bounded memory, also when a stream-copied clip is cut back to an earlier keyframe."""

from __future__ import annotations

import av
import numpy as np
import pytest

from svd_core.video.decode import FrameSampler
from svd_core.video.frames import key_indices

SIZE = (160, 96)  # width, height of the "decoded" frames


def _frame(i: int) -> av.VideoFrame:
    """A frame whose grey level tells which sample it is."""
    level = 16 + (i * 7) % 220
    return av.VideoFrame.from_ndarray(np.full((SIZE[1], SIZE[0], 3), level, np.uint8), "rgb24").reformat(
        format="yuv420p"
    )


def _level(image: np.ndarray) -> int:
    return round(float(image.mean()))


def _offer(sampler: FrameSampler, first: int, last: int) -> None:
    for i in range(first, last):
        sampler.offer(_frame(i), i / 2.0)  # one frame per 2 fps sampling time
        assert len(sampler.candidates) <= FrameSampler.MAX_KEY_CANDIDATES + 3


@pytest.mark.parametrize("count", [1, 2, 3, 8, 33, 34])  # exact up to 2 x MAX_KEY_CANDIDATES + 2
def test_key_frames_are_the_first_middle_and_last_sample_at_the_larger_size(count: int) -> None:
    sampler = FrameSampler(2.0, 32, SIZE, key_short_side=96)
    _offer(sampler, 0, count)
    clip = sampler.build()
    assert clip.frames.shape[1:] == (32, 53, 3)
    assert clip.key_frames_large is not None and clip.key_frames_large.shape[1:] == (96, 160, 3)
    wanted = [_level(_frame(i).to_ndarray(format="rgb24")) for i in key_indices(count)]
    assert [_level(f) for f in clip.key_frames_large] == wanted
    small = [_level(f) for f in clip.key_frames()]  # the same frames as the small key frames (+-rounding)
    assert np.abs(np.subtract(small, wanted)).max() <= 2


def test_a_long_shot_keeps_bounded_memory_and_a_near_middle() -> None:
    sampler = FrameSampler(2.0, 32, SIZE, key_short_side=96)
    _offer(sampler, 0, 400)  # 200 s at 2 fps
    clip = sampler.build()
    assert clip.key_frames_large is not None
    first, middle, last = (_level(f) for f in clip.key_frames_large)
    assert first == _level(_frame(0).to_ndarray(format="rgb24"))
    assert last == _level(_frame(399).to_ndarray(format="rgb24"))
    near = {_level(_frame(i).to_ndarray(format="rgb24")) for i in range(200 - 16, 200 + 17)}
    assert middle in near  # within the thinning stride of the exact middle


def test_a_copied_clip_cut_back_to_a_keyframe_keeps_its_new_key_frames() -> None:
    sampler = FrameSampler(2.0, 32, SIZE, key_short_side=96, provisional=True)
    _offer(sampler, 0, 40)
    sampler.commit()  # a keyframe at sample 40: the clip ends there or later
    _offer(sampler, 40, 55)
    sampler.truncate(40 / 2.0)  # the clip ended at that keyframe
    clip = sampler.build()
    assert clip.num_frames == 40
    assert clip.key_frames_large is not None
    wanted = [_level(_frame(i).to_ndarray(format="rgb24")) for i in key_indices(40)]
    assert [_level(f) for f in clip.key_frames_large] == wanted


def test_no_large_key_frames_unless_asked() -> None:
    sampler = FrameSampler(2.0, 32, SIZE)
    _offer(sampler, 0, 5)
    assert sampler.build().key_frames_large is None and not sampler.candidates
