"""Training-ready LVD-F: publishing writes a clip index of byte ranges and training range-reads clips.

The remote tests put shards on an fsspec in-memory filesystem behind a `memory://` store with no ranged
read of its own, so every ranged read goes through fsspec's `cat_file` (the s3fs route for s3://) and an
instrumented `cat_file` counts exactly which bytes of which shard were read.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from fsspec.implementations.memory import MemoryFileSystem

from svd_core import storage as svd_io
from svd_core.config import load_config
from svd_core.curation.clip_index import CLIP_INDEX_COLUMNS, CLIP_INDEX_KIND
from svd_core.curation.config import FilterConfig, SubsetConfig
from svd_core.curation.publish import ValidationReport, build_filtered, current_version, publish_dataset
from svd_core.curation.subsets import synthetic_lvd_table
from svd_core.data.video_dataset import VideoClipDataset
from svd_core.errors import InputError, StorageError
from svd_core.video.shards import (
    INDEX_SUFFIX,
    ShardWriter,
    member_table,
    open_clip,
    read_clip_range,
    split_clip_uri,
)
from tests.svd_core.data.test_video_dataset import encode_clip, source_index

CLIPS = 6
KEPT = ("c1", "c4")


class MemoryStore:
    """An svd_core store over fsspec's in-memory filesystem; deliberately without `read_range`."""

    def __init__(self) -> None:
        self.fs = fsspec.filesystem("memory")

    @staticmethod
    def _path(uri: str) -> str:
        return "/" + uri.removeprefix("memory://").lstrip("/")

    def read_bytes(self, uri: str) -> bytes:
        try:
            return bytes(self.fs.cat_file(self._path(uri)))
        except FileNotFoundError:
            raise StorageError(f"{uri}: no such object") from None

    def write_bytes(self, uri: str, data: bytes) -> None:
        self.fs.pipe_file(self._path(uri), data)

    def put_file(self, local_path: str | Path, uri: str) -> None:
        self.fs.put_file(str(local_path), self._path(uri))

    def get_file(self, uri: str, local_path: str | Path) -> Path:
        self.fs.get_file(self._path(uri), str(local_path))
        return Path(local_path)

    def exists(self, uri: str) -> bool:
        return bool(self.fs.exists(self._path(uri)))

    def list(self, prefix_uri: str) -> list[str]:
        return sorted(f"memory://{p.lstrip('/')}" for p in self.fs.find(self._path(prefix_uri)))

    def delete(self, uri: str) -> None:
        if self.fs.exists(self._path(uri)):
            self.fs.rm(self._path(uri), recursive=True)


@pytest.fixture
def memory(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, int | None, int | None, int]]]:
    """A clean `memory://` store; yields the log of every read of a `.tar` object as (path, start, end,
    bytes returned): ranged reads and whole reads (start None) alike, whoever issues them."""
    MemoryFileSystem.store.clear()
    MemoryFileSystem.pseudo_dirs.clear()
    MemoryFileSystem.pseudo_dirs.append("")
    svd_io.register_store("memory", MemoryStore)
    reads: list[tuple[str, int | None, int | None, int]] = []
    cat_file, get_file = MemoryFileSystem.cat_file, MemoryFileSystem.get_file

    def counting_cat(
        self: Any, path: str, start: int | None = None, end: int | None = None, **kw: Any
    ) -> bytes:
        data = cat_file(self, path, start=start, end=end, **kw)
        if str(path).endswith(".tar"):
            reads.append((str(path), start, end, len(data)))
        return data

    def counting_get(self: Any, rpath: str, lpath: str, **kw: Any) -> None:
        get_file(self, rpath, lpath, **kw)
        if str(rpath).endswith(".tar"):
            reads.append((str(rpath), None, None, Path(lpath).stat().st_size))

    monkeypatch.setattr(MemoryFileSystem, "cat_file", counting_cat)
    monkeypatch.setattr(MemoryFileSystem, "get_file", counting_get)
    yield reads
    svd_io._FACTORIES.pop("memory", None)
    svd_io._INSTANCES.pop("memory", None)
    MemoryFileSystem.store.clear()


def _lvd_with_shard(out: str, workdir: Path) -> tuple[pd.DataFrame, str]:
    """CLIPS real clips (45 gray-coded frames each) in one published shard, and their LVD-style table."""
    workdir.mkdir(parents=True, exist_ok=True)
    writer = ShardWriter(out, "video0", max_bytes=1 << 30, workdir=workdir)
    for i in range(CLIPS):
        writer.add(f"c{i}", encode_clip(45, 30), {"k": i})
    uris = writer.publish()
    table = pd.DataFrame(
        {
            "clip_id": [f"c{i}" for i in range(CLIPS)],
            "video_id": "video0",
            "clip_uri": [uris[f"c{i}"] for i in range(CLIPS)],
            "fps": 30.0,
            "num_frames": 45,
            "flow_score": [float(i) for i in range(CLIPS)],
            "caption": "gray",
        }
    )
    shards = {split_clip_uri(u)[0] for u in uris.values()}
    assert len(shards) == 1
    return table, shards.pop()


def test_training_on_a_2_of_n_lvd_f_reads_only_those_byte_ranges(
    memory: list[tuple[str, int | None, int | None, int]], tmp_path: Path
) -> None:
    table, shard = _lvd_with_shard("memory://lvd", tmp_path / "w")
    shard_bytes = len(svd_io.read_bytes(shard))
    published = publish_dataset("memory://curated", "lvd_f", table[table.clip_id.isin(KEPT)])
    assert CLIP_INDEX_KIND in published.files
    manifest = json.loads(svd_io.read_bytes(svd_io.join_uri(published.uri, "manifest.json")))
    assert manifest["clip_index"] == {"rows": 2, "shards": 1}
    index = pq.read_table(io.BytesIO(svd_io.read_bytes(published.files[CLIP_INDEX_KIND]))).to_pandas()
    assert tuple(index.columns) == CLIP_INDEX_COLUMNS and sorted(index.clip_id) == list(KEPT)
    assert set(index.shard_uri) == {shard}

    memory.clear()
    ds = VideoClipDataset("memory://curated/lvd_f", 4, 32, 48, seed=3)
    assert ds.clip_index_uri == published.files[CLIP_INDEX_KIND] and len(ds) == 2
    items = [ds[i] for i in range(len(ds))]
    # One ranged read per item: the member's 512-byte tar header plus its data, nothing else of the shard.
    expected = {
        (shard.removeprefix("memory:/"), int(r.offset) - 512, int(r.offset) + int(r.length))
        for r in index.itertuples()
    }
    assert {(p, s, e) for p, s, e, _ in memory} == expected and len(memory) == 2
    ranged = sum(n for *_, n in memory)
    assert ranged == sum(int(length) + 512 for length in index.length)
    assert ranged < shard_bytes / 2  # 2 of 6 clips: about a third of the shard, never the shard

    memory.clear()
    whole = VideoClipDataset(
        "memory://curated/lvd_f", 4, 32, 48, seed=3, use_clip_index=False, shard_cache_dir=str(tmp_path / "c")
    )
    for i, item in enumerate(items):
        plan = ds.plan(i)
        assert torch.equal(item["frames"], whole[i]["frames"])  # same pixels as from the whole shard
        assert [source_index(f) for f in item["frames"]] == plan.indices
        assert plan.byte_range is not None and whole.plan(i).byte_range is None
        assert read_clip_range(plan.clip_uri, *plan.byte_range) == open_clip(plan.clip_uri)
    assert [(n, s) for _, s, _, n in memory][:1] == [(shard_bytes, None)]  # the fallback fetched it whole
    print(f"\nbytes read for {len(KEPT)} of {CLIPS} clips: ranged {ranged}, whole shard {shard_bytes}")


def test_an_index_entry_past_the_shard_end_names_the_shard_and_the_fix(tmp_path: Path) -> None:
    table, shard = _lvd_with_shard(str(tmp_path / "lvd"), tmp_path / "w")
    published = publish_dataset(str(tmp_path / "curated"), "lvd_f", table[table.clip_id.isin(KEPT)])
    index_path = Path(published.files[CLIP_INDEX_KIND])
    index = pd.read_parquet(index_path)
    size = Path(shard).stat().st_size
    stale = index.assign(offset=index.offset + size)  # the shard was rewritten shorter since publishing
    stale.to_parquet(index_path, index=False)
    ds = VideoClipDataset(str(tmp_path / "curated" / "lvd_f"), 4, 32, 48)
    with pytest.raises(InputError, match="past the end of the shard") as info:
        ds[0]
    assert shard in str(info.value) and "republish the dataset" in str(info.value)

    # An entry inside the shard but on another member (the shard was rebuilt with other clips).
    other = index.assign(offset=index.offset[::-1].to_numpy(), length=index.length[::-1].to_numpy())
    other.to_parquet(index_path, index=False)
    ds = VideoClipDataset(str(tmp_path / "curated" / "lvd_f"), 4, 32, 48)
    with pytest.raises(InputError, match=r"does not point at member 'c\d\.mp4'.*republish") as info:
        ds[0]
    assert shard in str(info.value)


def test_shards_without_sidecars_are_indexed_from_their_tar_headers(
    memory: list[tuple[str, int | None, int | None, int]], tmp_path: Path
) -> None:
    _, shard = _lvd_with_shard("memory://lvd", tmp_path / "w")
    from_sidecar = member_table(shard)
    assert set(from_sidecar) == {f"c{i}.{ext}" for i in range(CLIPS) for ext in ("mp4", "json")}
    svd_io.store_for(shard).delete(shard + INDEX_SUFFIX)
    memory.clear()
    assert member_table(shard) == from_sidecar  # remote: walked header by header
    headers = [(s, e) for _, s, e, _ in memory]
    assert len(headers) == 2 * CLIPS + 1  # one 512-byte read per member header, plus the end marker
    assert all(s is not None and e is not None and e - s == 512 for s, e in headers)
    _, local_shard = _lvd_with_shard(str(tmp_path / "local"), tmp_path / "w2")
    Path(local_shard + INDEX_SUFFIX).unlink()
    assert member_table(local_shard) == from_sidecar  # same clips, same bytes, same offsets


def test_filtered_tables_and_seeded_subsets_are_published_with_clip_indexes(tmp_path: Path) -> None:
    """build_filtered over a synthetic LVD whose clips live in real shards (arbitrary bytes): LVD-F,
    LVD-10M and LVD-10M-F each get an index whose every entry reads back exactly its clip."""
    lvd = synthetic_lvd_table(60, seed=5)
    payloads = {cid: cid.encode() * (3 + k % 7) for k, cid in enumerate(lvd.clip_id)}
    uris: dict[str, str] = {}
    for video, group in lvd.groupby("video_id", sort=False):
        work = tmp_path / "w" / str(video)[:8]
        work.mkdir(parents=True)
        writer = ShardWriter(str(tmp_path / "lvd"), str(video)[:8], 1 << 20, work)
        for cid in group.clip_id:
            writer.add(cid, payloads[cid], {})
        uris.update(writer.publish())
    lvd["clip_uri"] = lvd.clip_id.map(uris)
    lvd_path = tmp_path / "lvd.parquet"
    lvd.to_parquet(lvd_path, index=False)
    subset = load_config(SubsetConfig, None, ["size=30", "seed=3"])

    def passes(_table: Any, _funnel: Any, _name: str) -> ValidationReport:
        return ValidationReport(success=True, evaluated=0)

    out = str(tmp_path / "curated")
    summary = build_filtered(str(lvd_path), out, FilterConfig(), subset, passes)
    assert set(summary["datasets"]) == {"lvd_f", "lvd_10m", "lvd_10m_f"}
    for name in summary["datasets"]:
        current = current_version(out, name)
        assert current is not None
        kept = pd.read_parquet(current.files["table"])
        index = pd.read_parquet(current.files[CLIP_INDEX_KIND])
        assert sorted(index.clip_id) == sorted(kept.clip_id) and len(kept) < len(lvd)
        for row in index.itertuples():
            assert read_clip_range(row.clip_uri, row.offset, row.length) == payloads[row.clip_id]


def test_a_table_whose_shards_are_gone_is_published_without_an_index(tmp_path: Path) -> None:
    published = publish_dataset(str(tmp_path), "lvd_f", synthetic_lvd_table(20))
    assert CLIP_INDEX_KIND not in published.files
    manifest = json.loads((Path(published.uri) / "manifest.json").read_text())
    assert "does not exist" in manifest["clip_index"]["skipped"]
