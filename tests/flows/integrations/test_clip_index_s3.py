"""Training range-reads LVD-F clips from s3:// shards (moto's S3 server behind S3Store, s3fs for ranges)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from svd_core import storage as svd_io
from svd_core.curation.clip_index import CLIP_INDEX_KIND
from svd_core.curation.publish import publish_dataset
from svd_core.data.video_dataset import VideoClipDataset
from svd_core.errors import InputError
from svd_core.video.shards import ShardWriter, split_clip_uri
from tests.svd_core.data.test_video_dataset import encode_clip

BUCKET = "svd-data"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[Any]]]:
    """A moto S3 server on a free port behind S3Store; yields the log of shard reads: "ranged" (uri,
    start, end, bytes) through the store's ranged GET, and "whole" (uri) downloads of a whole shard through the store."""
    moto_server = pytest.importorskip("moto.server")
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    from flows.integrations.s3 import S3Store

    svd_io.register_store("s3", lambda: S3Store(endpoint_url=f"http://{host}:{port}"))
    store = svd_io.store_for(f"s3://{BUCKET}/x")
    store.ensure_bucket(BUCKET)  # type: ignore[attr-defined]
    log: dict[str, list[Any]] = {"ranged": [], "whole": []}
    ranged, read_bytes, get_file = S3Store.read_range, S3Store.read_bytes, S3Store.get_file

    def counting_range(self: Any, uri: str, start: int, end: int) -> bytes:
        data = ranged(self, uri, start, end)
        log["ranged"].append((uri, start, end, len(data)))
        return data

    def counting_read(self: Any, uri: str) -> bytes:
        if uri.endswith(".tar"):
            log["whole"].append(uri)
        return read_bytes(self, uri)

    def counting_get(self: Any, uri: str, dest: str | Path) -> Path:
        if uri.endswith(".tar"):
            log["whole"].append(uri)
        return get_file(self, uri, dest)

    monkeypatch.setattr(S3Store, "read_range", counting_range)
    monkeypatch.setattr(S3Store, "read_bytes", counting_read)
    monkeypatch.setattr(S3Store, "get_file", counting_get)
    yield log
    svd_io.register_store("s3", S3Store)  # the next user gets a store for the configured endpoint
    server.stop()


def test_an_s3_lvd_f_is_range_read_and_a_stale_index_names_the_fix(
    s3: dict[str, list[Any]], tmp_path: Path
) -> None:
    writer = ShardWriter(f"s3://{BUCKET}/lvd", "video0", 1 << 30, tmp_path)
    for i in range(6):
        writer.add(f"c{i}", encode_clip(45, 30), {})
    uris = writer.publish()
    table = pd.DataFrame(
        {"clip_id": list(uris), "clip_uri": list(uris.values()), "fps": 30.0, "num_frames": 45}
    )
    (shard,) = {split_clip_uri(u)[0] for u in uris.values()}
    shard_bytes = len(svd_io.store_for(shard).read_bytes(shard))
    published = publish_dataset(f"s3://{BUCKET}/curated", "lvd_f", table[table.clip_id.isin(["c2", "c5"])])
    s3["ranged"].clear()
    s3["whole"].clear()

    ds = VideoClipDataset(f"s3://{BUCKET}/curated/lvd_f", 4, 32, 48, seed=1)
    frames = [ds[i]["frames"] for i in range(len(ds))]
    assert len(ds) == 2 and s3["whole"] == [] and len(s3["ranged"]) == 2
    ranged = sum(n for *_, n in s3["ranged"])
    lengths = [plan.byte_range[1] for plan in map(ds.plan, range(2)) if plan.byte_range is not None]
    assert ranged == sum(lengths) + 2 * 512 and len(lengths) == 2  # each clip plus its tar header
    assert ranged < shard_bytes / 2

    whole = VideoClipDataset(
        f"s3://{BUCKET}/curated/lvd_f",
        4,
        32,
        48,
        seed=1,
        use_clip_index=False,
        shard_cache_dir=str(tmp_path / "c"),
    )
    assert all(torch.equal(frames[i], whole[i]["frames"]) for i in range(2))
    assert s3["whole"] == [shard]  # the fallback downloads the shard once

    index_uri = published.files[CLIP_INDEX_KIND]
    index = pd.read_parquet(io.BytesIO(svd_io.read_bytes(index_uri)))
    stale = io.BytesIO()
    index.assign(offset=index.offset + shard_bytes).to_parquet(stale, index=False)
    svd_io.write_bytes(index_uri, stale.getvalue())
    with pytest.raises(InputError, match="past the end of the shard") as info:
        VideoClipDataset(f"s3://{BUCKET}/curated/lvd_f", 4, 32, 48)[0]
    assert shard in str(info.value) and "republish the dataset" in str(info.value)
