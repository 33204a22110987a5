"""Training clips from an LVD table: frame sampling, micro-conditioning, determinism, errors."""

from __future__ import annotations

import io as pyio
import shutil
import tarfile
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import torch

from svd_core import storage as svd_io
from svd_core.data.transforms import feasible_fps, frame_indices, resize_and_center_crop
from svd_core.data.video_dataset import MotionBuckets, VideoClipDataset, read_table
from svd_core.errors import InputError
from svd_core.model.text_conditioning import build_byte_level_tokenizer, tokenize

GRAY_BASE, GRAY_STEP = 20, 5
"""Frame k of a test clip is uniform gray 20 + 5k, so decoded frames reveal their source index."""


def encode_clip(num_frames: int, fps: int, width: int = 64, height: int = 48) -> bytes:
    """An H.264 MP4 whose frame k is uniform gray GRAY_BASE + GRAY_STEP * k (at most 45 frames)."""
    assert num_frames <= 45
    buf = pyio.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "10"}
        for k in range(num_frames):
            arr = np.full((height, width, 3), GRAY_BASE + GRAY_STEP * k, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def source_index(frame: torch.Tensor) -> int:
    """Invert the gray coding of a (3, H, W) frame in [-1, 1]."""
    gray = float((frame.mean() + 1) * 127.5)
    return round((gray - GRAY_BASE) / GRAY_STEP)


def write_lvd(
    root: Path,
    clips: list[dict],
    name: str = "lvd.parquet",
    uri_prefix: str | None = None,
    table_frames: dict[int, int] | None = None,
) -> str:
    """Write clips into one tar shard and an LVD-style table; returns the table URI.

    Each clip dict: num_frames, fps, and optionally flow_score, caption, width, height.
    `uri_prefix` rewrites clip URIs (e.g. to a fake remote scheme over the same files).
    """
    root.mkdir(parents=True, exist_ok=True)
    shard = root / "shard-000000.tar"
    rows = []
    with tarfile.open(shard, "w") as tar:
        for i, clip in enumerate(clips):
            data = encode_clip(clip["num_frames"], clip["fps"], clip.get("width", 64), clip.get("height", 48))
            info = tarfile.TarInfo(f"clip{i:03d}.mp4")
            info.size = len(data)
            tar.addfile(info, pyio.BytesIO(data))
            shard_uri = f"{uri_prefix}/{shard.name}" if uri_prefix else f"file://{shard}"
            frames = (table_frames or {}).get(i, clip["num_frames"])
            rows.append(
                {
                    "clip_id": f"c{i}",
                    "video_id": "v",
                    "source_uri": "file:///src.mp4",
                    "clip_uri": f"{shard_uri}#clip{i:03d}.mp4",
                    "fps": float(clip["fps"]),
                    "num_frames": frames,
                    "duration_s": frames / clip["fps"],
                    "width": clip.get("width", 64),
                    "height": clip.get("height", 48),
                    "flow_score": clip.get("flow_score"),
                    "caption": clip.get("caption"),
                }
            )
    table = root / name
    pd.DataFrame(rows).to_parquet(table)
    return f"{uri_prefix}/{name}" if uri_prefix else f"file://{table}"


def standard_clips() -> list[dict]:
    return [
        {"num_frames": 30, "fps": 24, "flow_score": 1.0, "caption": "a red ball"},
        {"num_frames": 40, "fps": 30, "flow_score": 3.0, "caption": "waves on a beach"},
        {"num_frames": 20, "fps": 10, "flow_score": 2.0, "caption": None},
        {"num_frames": 3, "fps": 24, "flow_score": 0.5, "caption": "too short"},
    ]


@pytest.fixture(scope="module")
def table_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_lvd(tmp_path_factory.mktemp("lvd"), standard_clips())


def test_items_have_frames_at_the_sampled_rate_and_conditioning(table_uri: str) -> None:
    ds = VideoClipDataset(table_uri, num_frames=6, height=32, width=48, fps_min=3, fps_max=30, seed=1)
    assert len(ds) == 3 and ds.skipped_too_short == 1
    for i in range(len(ds)):
        item, plan = ds[i], ds.plan(i)
        row = ds.table.iloc[i]
        assert item["frames"].shape == (6, 3, 32, 48) and item["frames"].dtype == torch.float32
        assert item["frames"].min() >= -1.0 and item["frames"].max() <= 1.0
        assert 3 <= plan.target_fps <= min(30, row["fps"])
        assert item["fps_id"].item() == plan.target_fps - 1  # the pipeline feeds fps - 1
        expected = frame_indices(row["fps"], plan.target_fps, 6, plan.indices[0])
        assert plan.indices == expected and expected[-1] < row["num_frames"]
        assert [source_index(f) for f in item["frames"]] == expected
        assert 0 <= item["motion_bucket_id"].item() <= 255
        assert 0 < item["cond_aug"].item() < 1
        assert item["cond_noise_seed"].dtype == torch.int64


def test_items_are_deterministic_and_identical_through_worker_processes(table_uri: str) -> None:
    ds = VideoClipDataset(table_uri, num_frames=4, height=32, width=48, seed=5)
    again = VideoClipDataset(table_uri, num_frames=4, height=32, width=48, seed=5)
    other = VideoClipDataset(table_uri, num_frames=4, height=32, width=48, seed=6)
    assert [ds.plan(i) for i in range(len(ds))] == [again.plan(i) for i in range(len(ds))]
    assert [ds.plan(i) for i in range(len(ds))] != [other.plan(i) for i in range(len(ds))]
    loader = torch.utils.data.DataLoader(ds, batch_size=1, num_workers=2, shuffle=False)
    for i, batch in enumerate(loader):
        direct = ds[i]
        for key, value in direct.items():
            assert torch.equal(batch[key][0], value), key


def test_cond_aug_is_log_normal_minus3_05(tmp_path: Path) -> None:
    uri = write_lvd(tmp_path, [{"num_frames": 30, "fps": 24}])
    samples = [np.log(VideoClipDataset(uri, 2, 32, 48, seed=s).plan(0).cond_aug) for s in range(400)]
    assert abs(np.mean(samples) + 3.0) < 0.1 and abs(np.std(samples) - 0.5) < 0.07


def test_motion_buckets_are_flow_quantiles_with_median_near_127() -> None:
    buckets = MotionBuckets(np.array([0.1, 0.2, 0.3, 0.4, 0.5, np.nan]))
    assert buckets.bucket(0.3) in (127, 128)
    assert buckets.bucket(0.1) < buckets.bucket(0.2) < buckets.bucket(0.4) < buckets.bucket(0.5)
    assert buckets.bucket(0.0) == 0 and buckets.bucket(9.0) == 255
    assert buckets.bucket(None) == 127 and buckets.bucket(float("nan")) == 127
    assert MotionBuckets(np.array([])).bucket(1.0) == 127


def test_feasible_rates_never_exceed_native_fps_and_fit_the_clip() -> None:
    assert feasible_fps(24.0, 30, 14, 3, 30) == list(range(11, 25))  # 13 * 24 / f <= 29 from f = 11
    assert feasible_fps(10.0, 20, 6, 3, 30) == list(range(3, 11))
    assert feasible_fps(24.0, 5, 14, 3, 30) == []
    for fps in feasible_fps(24.0, 30, 14, 3, 30):
        assert frame_indices(24.0, fps, 14, 0)[-1] <= 29


def test_resize_covers_and_centre_crops() -> None:
    frames = np.zeros((2, 40, 100, 3), np.uint8)
    frames[:, :, 40:60] = 255  # a centred white band survives the crop
    out = resize_and_center_crop(frames, 32, 32)
    assert out.shape == (2, 32, 32, 3)
    assert out[:, :, 10:22].min() > 200 and out[:, :, :4].max() < 30


def test_text_items_sample_captions_by_weight(tmp_path: Path) -> None:
    clips = [
        {"num_frames": 20, "fps": 24, "caption": "a dog"},
        {"num_frames": 20, "fps": 24, "caption": None},
    ]
    uri = write_lvd(tmp_path, clips)
    table = pd.read_parquet(svd_io.local_path(uri))
    table["caption_llm"] = ["an llm caption", "only llm"]
    table.to_parquet(svd_io.local_path(uri))
    tok = build_byte_level_tokenizer()
    ds = VideoClipDataset(
        uri,
        2,
        32,
        48,
        caption_weights={"caption": 0.5, "caption_llm": 0.5},
        tokenize=lambda t: tokenize(tok, [t])[0],
    )
    picks = {
        ds.__class__(uri, 2, 32, 48, seed=s, caption_weights=ds.caption_weights).plan(0).caption
        for s in range(30)
    }
    assert picks == {"a dog", "an llm caption"}
    assert ds.plan(1).caption == "only llm"  # null caption column skipped, weights renormalised
    assert torch.equal(ds[0]["input_ids"], tokenize(tok, [ds.plan(0).caption])[0])
    with pytest.raises(InputError, match="caption columns"):
        VideoClipDataset(uri, 2, 32, 48, caption_weights={"coca": 1.0}, tokenize=lambda t: torch.zeros(77))


def test_bad_tables_raise_input_errors_naming_the_table(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot be read"):
        VideoClipDataset(f"file://{tmp_path}/missing.parquet", 4, 32, 48)
    empty = tmp_path / "empty.parquet"
    pd.DataFrame(
        {c: pd.Series(dtype=object) for c in ("clip_id", "clip_uri", "fps", "num_frames")}
    ).to_parquet(empty)
    with pytest.raises(InputError, match="no rows"):
        read_table(str(empty))
    nocols = tmp_path / "nocols.parquet"
    pd.DataFrame({"clip_id": ["a"]}).to_parquet(nocols)
    with pytest.raises(InputError, match="lacks columns"):
        read_table(str(nocols))
    short = write_lvd(tmp_path / "short", [{"num_frames": 3, "fps": 24}])
    with pytest.raises(InputError, match="none of its 1 clips has 14 frames"):
        VideoClipDataset(short, 14, 32, 48)


def test_clip_shorter_than_its_row_raises_naming_the_clip(tmp_path: Path) -> None:
    uri = write_lvd(tmp_path, [{"num_frames": 10, "fps": 24}], table_frames={0: 40})
    ds = VideoClipDataset(uri, 8, 32, 48, fps_min=8, fps_max=8, seed=0)  # spans 21 of the 40 frames claimed
    with pytest.raises(InputError, match=r"clip .*clip000.mp4 has fewer frames"):
        ds[0]


class DirBackedStore(svd_io.LocalStore):
    """A fake remote scheme `fakes3://` served from a local folder (stands in for S3)."""

    def __init__(self, root: Path):
        self.root = root

    def _path(self, uri: str) -> str:
        return str(self.root / uri.removeprefix("fakes3://"))

    def read_bytes(self, uri: str) -> bytes:
        return super().read_bytes(self._path(uri))

    def get_file(self, uri: str, dest: str | Path) -> Path:
        return super().get_file(self._path(uri), dest)

    def exists(self, uri: str) -> bool:
        return super().exists(self._path(uri))

    def list(self, prefix_uri: str) -> list[str]:
        return [
            "fakes3://" + str(Path(p).relative_to(self.root)) for p in super().list(self._path(prefix_uri))
        ]

    def write_bytes(self, uri: str, data: bytes) -> None:
        super().write_bytes(self._path(uri), data)


@pytest.fixture
def fake_remote(tmp_path: Path):
    root = tmp_path / "bucket"
    root.mkdir()
    svd_io.register_store("fakes3", lambda: DirBackedStore(root))
    yield root
    svd_io._FACTORIES.pop("fakes3", None)
    svd_io._INSTANCES.pop("fakes3", None)


def test_remote_table_and_shards_are_read_through_svd_core_io(tmp_path: Path, fake_remote: Path) -> None:
    uri = write_lvd(fake_remote / "lvd", standard_clips(), uri_prefix="fakes3://lvd")
    cache = tmp_path / "shard-cache"
    ds = VideoClipDataset(uri, 4, 32, 48, seed=2, shard_cache_dir=str(cache))
    local = VideoClipDataset(f"file://{fake_remote}/lvd/lvd.parquet", 4, 32, 48, seed=2)
    for i in range(len(ds)):
        assert torch.equal(ds[i]["frames"], local[i]["frames"])
    assert [source_index(f) for f in ds[1]["frames"]] == ds.plan(1).indices
    assert len(list(cache.glob("*.tar"))) == 1  # copied once, then read by offset
    shutil.rmtree(cache)


def test_a_published_dataset_folder_resolves_to_its_current_table(tmp_path: Path) -> None:
    from svd_core.curation.publish import publish_dataset

    uri = write_lvd(tmp_path / "src", standard_clips())
    published = publish_dataset(str(tmp_path / "curated"), "lvd_f", pd.read_parquet(svd_io.local_path(uri)))
    ds = VideoClipDataset(str(tmp_path / "curated" / "lvd_f"), 4, 32, 48)
    assert ds.table_uri == published.files["table"] and len(ds) == 3


def test_each_epoch_draws_a_new_window_rate_cond_aug_and_caption_and_resume_repeats_them(
    tmp_path: Path,
) -> None:
    from svd_core.training.checkpoint import BatchStream, DataPosition
    from svd_core.training.config import TrainerConfig

    uri = write_lvd(tmp_path, [{"num_frames": 45, "fps": 30, "caption": "merged caption"}])
    table = pd.read_parquet(svd_io.local_path(uri))
    table["caption_image"], table["caption_video"] = ["image caption"], ["video caption"]
    table.to_parquet(svd_io.local_path(uri))
    tok = build_byte_level_tokenizer()
    ds = VideoClipDataset(
        uri,
        4,
        32,
        48,
        fps_min=3,
        fps_max=60,
        seed=7,
        caption_weights={"caption": 0.5, "caption_image": 0.25, "caption_video": 0.25},
        tokenize=lambda t: tokenize(tok, [t])[0],
    )
    plans = [ds.plan(0, epoch=e) for e in range(12)]
    assert len({p.target_fps for p in plans}) > 3 and all(3 <= p.target_fps <= 30 for p in plans)  # <= source
    assert len({p.indices[0] for p in plans}) > 3  # window start
    assert len({p.cond_aug for p in plans}) == 12 and len({p.cond_noise_seed for p in plans}) == 12
    # the paper's 0.5 / 0.25 / 0.25 caption mix
    picks = [ds.plan(0, epoch=e).caption for e in range(2000)]
    assert len({p.caption for p in plans}) > 1
    assert abs(picks.count("merged caption") / 2000 - 0.5) < 0.04
    assert abs(picks.count("video caption") / 2000 - 0.25) < 0.04

    cfg = TrainerConfig(micro_batch_size=1, num_workers=1, seed=7)
    stream = BatchStream(ds, cfg, rank=0, world=1, device=torch.device("cpu"))
    first, second = stream.next_batch(), stream.next_batch()  # one clip: one batch per epoch
    assert stream.position == DataPosition(epoch=1, batch=1)
    for epoch, batch in ((0, first), (1, second)):  # drawn in the worker process for that epoch
        plan = plans[epoch]
        assert [source_index(f) for f in batch["frames"][0]] == plan.indices
        assert batch["fps_id"].item() == plan.target_fps - 1
        assert batch["cond_aug"].item() == pytest.approx(plan.cond_aug)
        assert torch.equal(batch["input_ids"][0], tokenize(tok, [plan.caption])[0])
    assert plans[0].indices != plans[1].indices or plans[0].target_fps != plans[1].target_fps

    resumed = BatchStream(ds, cfg, rank=0, world=1, device=torch.device("cpu"))
    resumed.seek(DataPosition(epoch=1, batch=0))  # a checkpoint taken after epoch 0
    again = resumed.next_batch()
    for key, value in second.items():
        assert torch.equal(again[key], value), key
