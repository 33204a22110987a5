"""One decode pass -> frame-exact clips (+ scoring frames), clip length rules, VFR timing, tar shards."""

from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path

import av
import numpy as np
import pytest

from svd_core import storage as svd_io
from svd_core.curation.config import CutConfig, LvdConfig
from svd_core.errors import InputError
from svd_core.video.clips import ClipOutput, split_video
from svd_core.video.decode import probe_video
from svd_core.video.sample import GROUND_TRUTH, write_sample_set
from svd_core.video.shards import ShardWriter, open_clip

# Clip mechanics on the planted sample set: the cascade is exact there and ~100x cheaper than TransNetV2 on
# CPU; the learned detector in this same pass is tested in test_transnet.py and test_real_world_video.py.
CFG = LvdConfig(cuts=CutConfig(detector="cascade"))


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.getbasetemp() / "lvd-sample-0"
    if not (out / GROUND_TRUTH).exists():
        write_sample_set(out, seed=0)
    return out, json.loads((out / GROUND_TRUTH).read_text())


def _split(path: Path, cfg: LvdConfig = CFG) -> list[ClipOutput]:
    clips: list[ClipOutput] = []
    probe = probe_video(path, str(path), cfg.decode)
    stats = split_video(path, str(path), probe, cfg, time.monotonic() + 60, clips.append)
    assert stats.decode_passes == 1 and stats.frames_decoded > 0
    return clips


def _decode(data: bytes) -> list[av.VideoFrame]:
    with av.open(io.BytesIO(data), "r") as container:
        return list(container.decode(video=0))


def _source_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24").astype(np.float32) for f in container.decode(video=0)]


def test_clips_are_frame_exact_reencodes(sample: tuple[Path, dict]) -> None:
    root, _truth = sample
    path = root / "v00_static_cuts.mp4"
    clips = _split(path)
    assert [(c.first_frame, c.num_frames) for c in clips] == [(0, 100), (100, 100), (200, 100)]
    assert [(c.start_s, c.end_s) for c in clips] == [(0.0, 4.0), (4.0, 8.0), (8.0, 12.0)]
    source = _source_frames(path)
    for clip in clips:
        frames = _decode(clip.data)
        assert len(frames) == clip.num_frames
        first, last = (f.to_ndarray(format="rgb24").astype(np.float32) for f in (frames[0], frames[-1]))
        assert np.abs(first - source[clip.first_frame]).mean() < 3  # the cut frame itself...
        if clip.first_frame:
            assert np.abs(first - source[clip.first_frame - 1]).mean() > 20  # ...not the shot before
        assert np.abs(last - source[clip.first_frame + clip.num_frames - 1]).mean() < 3


def test_scoring_frames_are_sampled_once_at_2_fps(sample: tuple[Path, dict]) -> None:
    clips = _split(sample[0] / "v01_pans_dissolve.mp4")
    frames = clips[0].frames
    assert frames.sample_fps == 2.0
    assert np.allclose(np.diff(frames.timestamps_s), 0.5, atol=0.03)
    assert frames.num_frames == int(np.ceil(clips[0].duration_s * 2))
    assert frames.frames.shape[1:] == (192, 320, 3) and (frames.source_width, frames.source_height) == (
        320,
        192,
    )
    smaller = CFG.model_copy(update={"scoring": CFG.scoring.model_copy(update={"frames_max_short_side": 96})})
    assert _split(sample[0] / "v00_static_cuts.mp4", smaller)[0].frames.frames.shape[1:] == (96, 160, 3)


def test_short_shots_are_dropped_or_merged(sample: tuple[Path, dict]) -> None:
    path = sample[0] / "v05_mixed.mp4"
    dropped = _split(path)
    starts = [c.first_frame for c in dropped]
    # The 1 s shot at 415 gives no clip; the dissolve at 195 (0.5 s) and its margin are trimmed from both
    # neighbouring clips, so the clip after it starts past the blend, and the clip before it ends before.
    assert starts[:2] + starts[3:] == [0, 75, 290, 440]
    margin = round(CFG.cuts.transition_margin_s * 25)
    assert 195 + margin < starts[2] <= 195 + 7 + margin
    assert dropped[1].first_frame + dropped[1].num_frames < 195 - margin
    merge = CFG.model_copy(update={"cuts": CFG.cuts.model_copy(update={"short_clip_policy": "merge"})})
    merged = _split(path, merge)
    assert [(c.first_frame, c.num_frames) for c in merged][-1] == (415, 125)
    capped = CFG.model_copy(update={"cuts": CFG.cuts.model_copy(update={"max_clip_s": 3.0})})
    assert [c.duration_s for c in _split(sample[0] / "v00_static_cuts.mp4", capped)] == [3.0, 3.0, 3.0]


def test_variable_frame_rate_keeps_source_timestamps(sample: tuple[Path, dict]) -> None:
    root, truth = sample
    video = truth["videos"]["v04_vfr.mp4"]
    clips = _split(root / "v04_vfr.mp4")
    cut = video["cuts"][0]["frame"]
    assert [c.first_frame for c in clips] == [0, cut]
    assert clips[1].start_s == pytest.approx(video["frame_times"][cut], abs=1e-3)
    assert clips[0].end_s == pytest.approx(video["frame_times"][cut], abs=1e-3)
    times = [float(f.time) for f in _decode(clips[1].data)]
    gaps = np.diff(times)
    assert gaps.max() > 1.5 * gaps.min()  # still variable: timestamps were kept, not resampled
    assert times[-1] == pytest.approx(video["frame_times"][-1] - video["frame_times"][cut], abs=2e-3)


def test_shards_publish_atomically_and_read_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = str(tmp_path / "out")

    def write(workdir: Path) -> dict[str, str]:
        workdir.mkdir()
        writer = ShardWriter(out, "video0", max_bytes=1500, workdir=workdir)
        for k in range(3):
            writer.add(f"clip{k}", bytes([k]) * 1000, {"k": k})
        return writer.publish()

    uris = write(tmp_path / "w1")
    assert len({u.split("#")[0] for u in uris.values()}) == 3  # rolled over at max_bytes
    assert open_clip(uris["clip1"]) == bytes([1]) * 1000
    shard = uris["clip1"].split("#")[0]
    with tarfile.open(shard) as tar:
        assert tar.getnames() == ["clip1.mp4", "clip1.json"]
        assert json.loads(tar.extractfile("clip1.json").read()) == {"k": 1}  # type: ignore[union-attr]
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out" / "shards").iterdir()}
    assert write(tmp_path / "w2") == uris  # same members, same names: reused, not uploaded again
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out" / "shards").iterdir()} == before

    def broken_copy(src: object, dst: object) -> None:
        Path(str(dst)).write_bytes(b"half a shard")
        raise OSError("disk full")

    monkeypatch.setattr("svd_core.storage.shutil.copyfile", broken_copy)
    writer = ShardWriter(str(tmp_path / "other"), "video1", 10**6, tmp_path)
    writer.add("clipx", b"data", {})
    with pytest.raises(OSError):
        writer.publish()
    assert svd_io.list_uris(str(tmp_path / "other")) == []  # nothing visible under a final name

    with pytest.raises(InputError, match="no member"):
        open_clip(shard + "#missing.mp4")
    with pytest.raises(InputError, match="<shard uri>#<member>"):
        open_clip(shard)
