"""The streaming data path: seeking decode, bounded clip caches, column projection, stream config errors."""

from __future__ import annotations

import io
import os
import pickle
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pandas as pd
import pytest
import torch
from pydantic import ValidationError

from svd_core import storage as svd_io
from svd_core.config import validate_config
from svd_core.curation.publish import publish_dataset
from svd_core.data import streaming
from svd_core.data.config import StreamConfig
from svd_core.data.streaming import ClipCache, DiskClipCache, ShardReader, decode_window
from svd_core.data.video_dataset import REQUIRED_COLUMNS, VideoClipDataset
from svd_core.errors import InputError
from svd_core.tasks.stages.config import TrainStageConfig
from svd_core.video.shards import ShardWriter
from tests.svd_core.data.test_clip_index import memory  # noqa: F401  (fixture: a counted memory:// store)
from tests.svd_core.data.test_video_dataset import encode_clip, source_index, write_lvd

TIME_BASE = Fraction(1, 90000)


def textured_clip(
    num_frames: int = 120,
    keyint: int = 10,
    vfr: bool = True,
    fmt: str = "mp4",
    size: tuple[int, int] = (64, 48),
) -> bytes:
    """An H.264 clip with B-frames, a keyframe every `keyint` frames, noise texture that changes every frame
    (so a wrong frame or a broken reference shows) and, with `vfr`, irregular frame durations."""
    width, height = size
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if fmt == "mp4":
            stream.time_base = TIME_BASE
            stream.codec_context.time_base = TIME_BASE
        stream.options = {
            "preset": "medium",
            "crf": "18",
            "x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0:bframes=3",
        }
        pts = 0
        for k in range(num_frames):
            base = rng.integers(0, 200, (height, width, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(base + np.uint8(k % 50), format="rgb24")
            if fmt == "mp4":
                frame.pts, frame.time_base = pts, TIME_BASE
                pts += (4500 if k % 3 == 0 else 3000) if vfr else 3000
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return buf.getvalue()


# --- seeking ---------------------------------------------------------------------------------------------
def test_seeking_decodes_the_same_frames_as_decoding_from_frame_0_for_a_late_window() -> None:
    data = textured_clip(120, keyint=10, vfr=True)
    window = [93, 96, 99, 102, 105, 108, 111, 114, 117, 119]  # late in the clip, not on a keyframe
    seeked = decode_window(data, window, "textured", seek=True)
    linear = decode_window(data, window, "textured", seek=False)
    assert seeked.seeked and not linear.seeked
    assert seeked.start == 90  # the keyframe at or before frame 93 (one every 10 frames)
    assert linear.decoded == 120 and seeked.decoded <= 30
    assert seeked.frames.shape == (10, 48, 64, 3)
    assert np.array_equal(seeked.frames, linear.frames)
    assert len({f.tobytes() for f in seeked.frames}) == 10  # ten different frames, not one repeated
    for start in (1, 9, 10, 11, 47, 88):  # windows starting on, just before and just after keyframes
        idx = [start, start + 1, start + 7]
        assert np.array_equal(
            decode_window(data, idx, "t").frames, decode_window(data, idx, "t", False).frames
        )


def test_seeking_in_real_footage_matches_decoding_from_frame_0() -> None:
    from svd_core.video.real_set import transnet_test_video

    try:
        path = transnet_test_video()
    except InputError as exc:
        pytest.skip(str(exc))
    data = path.read_bytes()
    window = [700 + 3 * k for k in range(14)]
    seeked = decode_window(data, window, "transnet", seek=True)
    linear = decode_window(data, window, "transnet", seek=False)
    assert seeked.seeked and 0 < seeked.start <= 700 and seeked.decoded < linear.decoded / 5
    assert np.array_equal(seeked.frames, linear.frames)


def test_a_stream_without_timestamps_falls_back_to_decoding_from_frame_0() -> None:
    data = textured_clip(40, keyint=10, vfr=False, fmt="h264")  # raw Annex B: packets carry no pts
    window = [25, 30, 35]
    fallback = decode_window(data, window, "raw", seek=True)
    assert not fallback.seeked and fallback.start == 0 and fallback.decoded == 36
    assert np.array_equal(fallback.frames, decode_window(data, window, "raw", seek=False).frames)
    with pytest.raises(InputError, match="fewer frames than its table row"):
        decode_window(data, [38, 60], "raw", seek=True)


def test_dataset_items_are_identical_with_and_without_seeking(tmp_path: Path) -> None:
    writer_dir = tmp_path / "w"
    writer_dir.mkdir()
    writer = ShardWriter(str(tmp_path / "lvd"), "v", 1 << 30, writer_dir)
    writer.add("c0", textured_clip(120, keyint=10), {})
    writer.add("c1", encode_clip(45, 30), {})
    uris = writer.publish()
    table = pd.DataFrame(
        {
            "clip_id": ["c0", "c1"],
            "clip_uri": [uris["c0"], uris["c1"]],
            "fps": [30.0, 30.0],
            "num_frames": [120, 45],
        }
    )
    publish_dataset(str(tmp_path / "curated"), "lvd_f", table)
    kwargs: dict[str, Any] = {
        "num_frames": 8,
        "height": 32,
        "width": 48,
        "fps_min": 3,
        "fps_max": 30,
        "seed": 4,
    }
    seeking = VideoClipDataset(str(tmp_path / "curated" / "lvd_f"), **kwargs)
    linear = VideoClipDataset(str(tmp_path / "curated" / "lvd_f"), stream={"seek": False}, **kwargs)
    assert seeking.clip_index_uri is not None
    for epoch in range(4):
        seeking.set_epoch(epoch)
        linear.set_epoch(epoch)
        for i in range(len(seeking)):
            assert torch.equal(seeking[i]["frames"], linear[i]["frames"])
        assert [source_index(f) for f in seeking[1]["frames"]] == seeking.plan(1).indices


# --- caches ----------------------------------------------------------------------------------------------
def test_the_memory_cache_evicts_least_recently_used_beyond_its_byte_limit() -> None:
    cache = ClipCache(250)
    for key in "abc":
        cache.put(key, key.encode() * 100)  # 100 bytes each: c evicts a
    assert "a" not in cache and cache.get("b") is not None and cache.get("c") is not None
    assert cache.stats().bytes == 200 and cache.stats().evictions == 1
    cache.get("b")  # b is now the most recent: d evicts c
    cache.put("d", b"d" * 100)
    assert "c" not in cache and "b" in cache and "d" in cache
    cache.put("huge", b"x" * 251)  # larger than the whole bound: never stored, nothing evicted for it
    assert "huge" not in cache and cache.stats().items == 2
    stats = cache.stats()
    assert (stats.hits, stats.misses) == (3, 0) and stats.bytes <= 250
    off = ClipCache(0)
    off.put("a", b"a")
    assert "a" not in off and off.stats().items == 0
    again = pickle.loads(pickle.dumps(cache))  # a spawned worker: same bound, empty, its own lock
    assert again.max_bytes == 250 and again.stats().items == 0


def test_the_memory_cache_stays_within_its_bound_under_threads() -> None:
    cache = ClipCache(10_000)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for _ in range(2000):
                key = str(int(rng.integers(200)))
                if cache.get(key) is None:
                    cache.put(key, bytes(int(rng.integers(1, 400))))
                assert cache.stats().bytes <= 10_000
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    stats = cache.stats()
    assert stats.hits + stats.misses == 8 * 2000 and stats.evictions > 0 and stats.bytes <= 10_000


def test_the_disk_cache_evicts_least_recently_used_files_beyond_its_bound(tmp_path: Path) -> None:
    cache = DiskClipCache(tmp_path / "c", max_bytes=1000, rescan_every=1)
    for k in range(4):
        cache.put(f"k{k}", bytes([k]) * 300)
        os.utime(cache.path(f"k{k}"), (time.time() - 100 + k, time.time() - 100 + k))  # distinct mtimes
    # the 4th file made 1200 bytes > 1000: the oldest went, down to 900 (LOW_WATERMARK)
    assert cache.get("k0") is None and cache.stats().bytes == 900 and cache.stats().evictions == 1
    assert cache.get("k1") == bytes([1]) * 300  # a hit refreshes its mtime: now the most recent
    cache.put("k4", b"\x04" * 300)  # 1200 again: k2 is now the least recently used
    assert cache.get("k2") is None and cache.get("k1") is not None and cache.get("k3") is not None
    assert cache.stats().bytes == 900 and cache.stats().evictions == 2
    other = DiskClipCache(tmp_path / "c", max_bytes=1000)  # another process of the node sees the same files
    assert other.get("k4") == b"\x04" * 300


def test_clip_reads_are_served_from_the_cache_without_a_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = write_lvd(tmp_path / "src", [{"num_frames": 45, "fps": 30}, {"num_frames": 40, "fps": 30}])
    publish_dataset(str(tmp_path / "curated"), "lvd_f", pd.read_parquet(svd_io.local_path(uri)))
    reads: list[str] = []
    real = streaming.read_clip_range

    def counted(clip_uri: str, offset: int, length: int) -> bytes:
        reads.append(clip_uri)
        return real(clip_uri, offset, length)

    monkeypatch.setattr(streaming, "read_clip_range", counted)
    table = str(tmp_path / "curated" / "lvd_f")
    ds = VideoClipDataset(table, 4, 32, 48, seed=1)
    assert ds.clip_index_uri is not None
    first = [ds[i]["frames"] for i in range(2)]
    assert len(reads) == 2
    for epoch in (1, 2):  # other windows of the same clips: same bytes, no read
        ds.set_epoch(epoch)
        _ = [ds[i] for i in range(2)]
    ds.set_epoch(0)
    assert all(torch.equal(ds[i]["frames"], first[i]) for i in range(2))
    assert len(reads) == 2
    stats = ds.reader.stats()
    assert stats.reads == 2 and stats.memory.hits == 6 and stats.memory.misses == 2

    one_clip = max(ds.plan(i).byte_range[1] for i in range(2))  # type: ignore[index]
    small = VideoClipDataset(table, 4, 32, 48, seed=1, stream={"cache_bytes": one_clip})
    reads.clear()
    for i in (0, 1, 0, 1):  # room for one clip: each read evicts the other
        _ = small[i]
    assert len(reads) == 4 and small.reader.stats().memory.evictions == 3
    off = VideoClipDataset(table, 4, 32, 48, seed=1, stream={"cache_bytes": 0})
    reads.clear()
    for _ in range(2):
        _ = off[0]
    assert len(reads) == 2


def test_remote_clips_are_kept_in_the_node_disk_cache_across_processes(
    memory: list[tuple[str, int | None, int | None, int]],  # noqa: F811
    tmp_path: Path,
) -> None:
    writer_dir = tmp_path / "w"
    writer_dir.mkdir()
    writer = ShardWriter("memory://lvd", "v", 1 << 30, writer_dir)
    for i in range(3):
        writer.add(f"c{i}", encode_clip(45, 30), {})
    uris = writer.publish()
    table = pd.DataFrame(
        {"clip_id": list(uris), "clip_uri": list(uris.values()), "fps": 30.0, "num_frames": 45}
    )
    publish_dataset("memory://curated", "lvd_f", table)
    stream = {"disk_cache_dir": str(tmp_path / "node"), "cache_bytes": 0}
    memory.clear()
    ds = VideoClipDataset("memory://curated/lvd_f", 4, 32, 48, seed=2, stream=stream)
    items = [ds[i]["frames"] for i in range(3)]
    assert len(memory) == 3  # one ranged read per clip
    memory.clear()
    worker = pickle.loads(pickle.dumps(ds))  # a fresh worker process of the next epoch: empty memory tier
    assert all(torch.equal(worker[i]["frames"], items[i]) for i in range(3))
    assert memory == [] and worker.reader.stats().disk.hits == 3  # type: ignore[union-attr]
    assert worker.reader.stats().reads == 0
    tiny = VideoClipDataset(
        "memory://curated/lvd_f", 4, 32, 48, seed=2, stream={**stream, "disk_cache_dir": str(tmp_path / "n2"),
                                                              "disk_cache_bytes": 1}
    )  # fmt: skip
    for _ in range(2):
        _ = tiny[0]
    assert len(memory) == 2  # a bound below one clip keeps nothing


def test_local_shards_are_never_copied_to_the_disk_cache(tmp_path: Path) -> None:
    uri = write_lvd(tmp_path / "src", [{"num_frames": 45, "fps": 30}])
    reader = ShardReader(stream=StreamConfig(disk_cache_dir=str(tmp_path / "node")))
    ds = VideoClipDataset(uri, 4, 32, 48)
    reader.read(ds.plan(0).clip_uri)
    assert reader.disk is not None and reader.disk.stats().items == 0 and reader.stats().reads == 1


# --- column projection ------------------------------------------------------------------------------------
def _table_with_a_huge_column(root: Path, rows: int = 400, blob_bytes: int = 20_000) -> tuple[str, int]:
    """An LVD table (real clips) plus a `blob` column of incompressible bytes; (table uri, blob bytes)."""
    uri = write_lvd(root, [{"num_frames": 30, "fps": 24, "caption": "a ball", "flow_score": 1.0}])
    one = pd.read_parquet(svd_io.local_path(uri))
    table = pd.concat([one] * rows, ignore_index=True)
    rng = np.random.default_rng(0)
    table["blob"] = [rng.bytes(blob_bytes) for _ in range(rows)]
    table["other_note"] = "unused"
    table.to_parquet(svd_io.local_path(uri), index=False)
    return uri, rows * blob_bytes


def test_only_the_columns_the_dataset_uses_are_read(tmp_path: Path) -> None:
    uri, blob = _table_with_a_huge_column(tmp_path)
    size = svd_io.local_path(uri).stat().st_size
    assert size > blob
    ds = VideoClipDataset(uri, 4, 32, 48)
    read = ds.table_read
    assert set(read.columns) == {*REQUIRED_COLUMNS, "flow_score", "caption"}
    assert {"blob", "other_note", "video_id", "width"} <= set(read.skipped)
    assert "blob" not in ds.table.columns and len(ds) == 400
    assert read.source == "local" and read.file_bytes == size
    assert read.bytes_read < size / 20  # the footer and six small column chunks, not the 8 MB blob
    extra = VideoClipDataset(uri, 4, 32, 48, extra_columns=["other_note"], caption_weights={"absent": 1.0})
    assert "other_note" in extra.table.columns and "caption" not in extra.table.columns
    assert "blob" not in extra.table.columns


def test_a_remote_table_is_projected_and_read_once_per_node(
    memory: list[tuple[str, int | None, int | None, int]],  # noqa: F811
    tmp_path: Path,
) -> None:
    uri, blob = _table_with_a_huge_column(tmp_path / "local")
    svd_io.write_bytes("memory://tables/lvd.parquet", svd_io.local_path(uri).read_bytes())
    size = len(svd_io.read_bytes("memory://tables/lvd.parquet"))
    node = {"disk_cache_dir": str(tmp_path / "node")}
    first = VideoClipDataset("memory://tables/lvd.parquet", 4, 32, 48, stream=node)
    assert size > blob and first.table_read.file_bytes == size
    assert first.table_read.source == "ranged" and first.table_read.bytes_read < size / 20
    assert "blob" not in first.table.columns
    second = VideoClipDataset("memory://tables/lvd.parquet", 4, 32, 48, stream=node)  # another rank
    assert second.table_read.source == "node-cache"
    pd.testing.assert_frame_equal(first.table, second.table)
    assert torch.equal(first[0]["frames"], second[0]["frames"])
    no_node = VideoClipDataset("memory://tables/lvd.parquet", 4, 32, 48)  # no disk tier: ranged every time
    assert no_node.table_read.source == "ranged" and no_node.table_read.bytes_read < size / 20


def test_a_table_missing_a_required_column_or_not_parquet_names_it(tmp_path: Path) -> None:
    bad = tmp_path / "t.parquet"
    pd.DataFrame({"clip_id": ["a"], "fps": [24.0]}).to_parquet(bad)
    with pytest.raises(InputError, match=r"lacks columns \['clip_uri', 'num_frames'\]"):
        VideoClipDataset(str(bad), 4, 32, 48)
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match="is not a Parquet file"):
        VideoClipDataset(str(junk), 4, 32, 48)


# --- config ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"cache_bytes": -1}, "cache_bytes must be >= 0 bytes"),
        ({"disk_cache_bytes": "-2GiB"}, "disk_cache_bytes must be >= 0 bytes"),
        ({"cache_bytes": "lots"}, r"cache_bytes must be a size in bytes \(e.g. 268435456 or '256MiB'\)"),
        ({"cache_bytes": True}, "cache_bytes must be a size in bytes"),
        ({"disk_cache_dir": "  "}, "disk_cache_dir is empty"),
        ({"cache_byte": 5}, "cache_byte"),
    ],
)
def test_bad_stream_config_gives_a_clear_error(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        StreamConfig.model_validate(fields)
    with pytest.raises(ValueError, match=message):
        VideoClipDataset("unused.parquet", 4, 32, 48, stream=fields)


def test_stream_sizes_take_units_and_the_caches_refuse_bad_bounds(tmp_path: Path) -> None:
    cfg = StreamConfig(cache_bytes="512MiB", disk_cache_bytes="2GB")
    assert cfg.cache_bytes == 512 << 20 and cfg.disk_cache_bytes == 2_000_000_000
    with pytest.raises(ValueError, match="max_bytes must be an int >= 0"):
        ClipCache(-1)
    with pytest.raises(ValueError, match="max_bytes must be an int >= 0"):
        DiskClipCache(tmp_path, -5)


def test_a_stage_config_without_a_stream_section_gets_the_defaults(tmp_path: Path) -> None:
    uri = write_lvd(tmp_path, [{"num_frames": 30, "fps": 24}])
    cfg = validate_config(
        TrainStageConfig,
        {"preset": "tiny", "num_frames": 4, "height": 32, "width": 48, "data": {"table_uri": uri}},
    )
    ds = VideoClipDataset.from_config(cfg)
    stream = getattr(cfg.data, "stream", None)
    assert ds.stream == (stream if stream is not None else StreamConfig())


def test_an_unreadable_clip_index_names_the_index_and_the_fix(tmp_path: Path) -> None:
    from svd_core.curation.clip_index import CLIP_INDEX_KIND

    uri = write_lvd(tmp_path / "src", [{"num_frames": 30, "fps": 24}])
    published = publish_dataset(str(tmp_path / "curated"), "lvd_f", pd.read_parquet(svd_io.local_path(uri)))
    index = Path(published.files[CLIP_INDEX_KIND])
    index.write_bytes(b"garbage")
    with pytest.raises(InputError, match=r"clip index .*_clips\.parquet is not a Parquet file"):
        VideoClipDataset(str(tmp_path / "curated" / "lvd_f"), 4, 32, 48)
    index.unlink()
    with pytest.raises(InputError, match=r"clip index .* cannot be read .*republish the dataset"):
        VideoClipDataset(str(tmp_path / "curated" / "lvd_f"), 4, 32, 48)
