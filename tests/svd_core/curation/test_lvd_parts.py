"""The LVD table as parts: batches write Parquet parts and return counts; finalize writes the manifest."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from svd_core.config import load_config
from svd_core.curation import lvd as lvd_module
from svd_core.curation import table_steps
from svd_core.curation.config import FilterConfig, LvdConfig, RunConfig
from svd_core.curation.lvd import (
    TABLE_PARTS_DIR,
    BatchResult,
    VideoResult,
    finalize_parts,
    plan_batches,
    process_batch,
)
from svd_core.curation.schema import CAPTION_COLUMNS, LVD_COLUMNS, LVD_SCHEMA
from svd_core.curation.sources import VideoSource
from svd_core.curation.subsets import synthetic_lvd_table
from svd_core.curation.table import MANIFEST, Part, table_session, write_manifest
from svd_core.errors import InputError, StorageError

CFG = load_config(LvdConfig, None, ["run.task_retries=1", "run.retry_delay_s=0"])
ROWS_PER_VIDEO = 2000


def fake_process_video(source: VideoSource, cfg: LvdConfig, out_uri: str, scorers: Any) -> VideoResult:
    """Stands in for decoding: a video named bad* is quarantined, lost* raises, dup* repeats video a."""
    name = source.uri.rsplit("/", 1)[-1]
    if name.startswith("bad"):
        return VideoResult(
            source.uri, None, quarantine={"source_uri": source.uri, "reason": "x", "stage": "probe"}
        )
    if name.startswith("lost"):
        raise StorageError(f"{source.uri}: cannot reach the store")
    seed = 0 if name.startswith(("a", "dup")) else sum(map(ord, name))
    rows = synthetic_lvd_table(ROWS_PER_VIDEO, seed=seed)
    rows["video_id"] = f"video-{seed}"
    rows["source_uri"] = source.uri
    return VideoResult(source.uri, f"video-{seed}", rows=rows[LVD_COLUMNS].to_dict("records"))


@pytest.fixture
def fake_videos(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lvd_module, "process_video", fake_process_video)


def sources(*names: str) -> list[VideoSource]:
    return [VideoSource(f"mem://raw/{n}.mp4") for n in names]


def test_plan_batches_bounds_task_count_and_feeds_every_worker() -> None:
    many = sources(*(f"v{k}" for k in range(10_000)))
    assert len(plan_batches(many, RunConfig(batch_size=1000, max_workers=8))) == 10
    small = plan_batches(sources("a", "b", "c"), RunConfig(batch_size=64, max_workers=2))
    assert [len(b) for b in small] == [2, 1]
    flat = [s for b in plan_batches(many, RunConfig(batch_size=7, max_workers=3)) for s in b]
    assert flat == many  # order kept, nothing lost or repeated


def test_a_batch_writes_one_part_and_returns_only_counts(fake_videos: None, tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    batch = process_batch(sources("a", "b", "bad1", "lost1"), CFG, out, [], max_workers=2)
    assert batch.rows == 2 * ROWS_PER_VIDEO and batch.sources == 4
    assert sorted(q["source_uri"] for q in batch.quarantine) == ["mem://raw/bad1.mp4", "mem://raw/lost1.mp4"]
    lost = next(q for q in batch.quarantine if "lost1" in q["source_uri"])
    assert "task failed after retries" in lost["reason"] and "cannot reach" in lost["reason"]
    part = pq.read_table(tmp_path / "out" / TABLE_PARTS_DIR / str(batch.part))
    assert part.schema.equals(LVD_SCHEMA) and part.num_rows == batch.rows
    # What travels back to the driver is a few hundred bytes, whatever the row count.
    assert len(pickle.dumps(batch)) < 2000 and not hasattr(batch, "results")


def test_finalize_skips_a_video_seen_in_an_earlier_part(fake_videos: None, tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    first = process_batch(sources("a", "b"), CFG, out, [])
    second = process_batch(sources("c", "dup"), CFG, out, [])  # dup has the bytes of a
    summary = finalize_parts(out, [first, second], 1.0, single_file_max_rows=0)
    assert summary.clips == 3 * ROWS_PER_VIDEO and summary.videos == 3
    assert summary.lvd_uri == str(tmp_path / "out" / TABLE_PARTS_DIR)
    assert (tmp_path / "out" / TABLE_PARTS_DIR / MANIFEST).is_file()
    assert not (tmp_path / "out" / "lvd.parquet").exists()
    with table_session() as session:
        view = session.open(summary.lvd_uri)
        assert view.rows == summary.clips
        assert session.scalar(f"SELECT count(DISTINCT clip_id) FROM {view.ident}") == summary.clips
    hours = (
        pd.concat(
            [
                pq.read_table(tmp_path / "out" / TABLE_PARTS_DIR / str(b.part)).to_pandas()
                for b in (first, second)
            ]
        )
        .drop_duplicates("clip_id")["duration_s"]
        .sum()
    )
    assert summary.hours == pytest.approx(hours / 3600)


def test_small_tables_are_also_merged_into_one_file(fake_videos: None, tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    batches = [process_batch(sources(n), CFG, out, []) for n in ("a", "b", "dup")]
    summary = finalize_parts(out, batches, 1.0, single_file_max_rows=10 * ROWS_PER_VIDEO)
    assert summary.lvd_uri == str(tmp_path / "out" / "lvd.parquet")
    merged = pq.read_table(summary.lvd_uri)
    assert merged.schema.equals(LVD_SCHEMA) and merged.num_rows == 2 * ROWS_PER_VIDEO
    assert merged.column("clip_id").to_pylist()[:3] == synthetic_lvd_table(3, seed=0).clip_id.tolist()
    bigger = [*batches, process_batch(sources("c"), CFG, out, [])]
    again = finalize_parts(out, bigger, 1.0, single_file_max_rows=2 * ROWS_PER_VIDEO)
    assert again.lvd_uri.endswith(TABLE_PARTS_DIR) and not Path(summary.lvd_uri).exists()  # no stale file


def test_nothing_usable_raises_and_writes_the_quarantine(tmp_path: Path) -> None:
    batch = BatchResult(
        part=None,
        rows=0,
        quarantine=[{"source_uri": "x", "reason": "zero-byte", "stage": "probe"}],
        sources=1,
    )
    with pytest.raises(InputError, match=r"no clips from 1 input video\(s\)"):
        finalize_parts(str(tmp_path), [batch], 1.0)
    assert pq.read_table(tmp_path / "quarantine.parquet").num_rows == 1


def test_a_part_written_before_the_caption_columns_reads_and_merges(tmp_path: Path) -> None:
    """Parts of an older build lack the per-caption columns: readers see them null, the merge adds them."""
    folder = tmp_path / TABLE_PARTS_DIR
    folder.mkdir()
    new = synthetic_lvd_table(50, seed=1)
    old = synthetic_lvd_table(50, seed=2).drop(columns=[*CAPTION_COLUMNS, "caption_provenance"])
    pq.write_table(
        pa.Table.from_pandas(new, schema=LVD_SCHEMA, preserve_index=False), folder / "part-new.parquet"
    )
    pq.write_table(pa.Table.from_pandas(old, preserve_index=False), folder / "part-old.parquet")
    parts = [Part("part-old.parquet", 50), Part("part-new.parquet", 50)]
    write_manifest(str(folder), parts)
    with table_session() as session:
        view = session.open(str(folder))
        assert set(LVD_COLUMNS) <= set(view.columns) and view.rows == 100
        kept = table_steps.apply_filters(session, view, FilterConfig())  # the caption filter reads `caption`
        assert 0 < kept.kept_rows < 100
        assert session.scalar(f"SELECT count_if(caption_merged IS NULL) FROM {view.ident}") == 50
    lvd_module._merge_parts(str(folder), parts, str(tmp_path / "lvd.parquet"))
    merged = pq.read_table(tmp_path / "lvd.parquet")
    assert merged.schema.equals(LVD_SCHEMA) and merged.num_rows == 100
    assert merged.column("caption_merged").null_count == 50
    assert merged.column("caption").null_count == 0


def test_a_part_without_a_required_column_is_refused_by_name() -> None:
    batch = pa.RecordBatch.from_pandas(
        synthetic_lvd_table(3).drop(columns=["video_id"]), preserve_index=False
    )
    with pytest.raises(InputError, match=r"\['video_id'\].*svd data build-lvd"):
        lvd_module.conform_to_lvd(batch)
