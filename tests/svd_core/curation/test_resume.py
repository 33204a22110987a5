"""Cheap resume: a finished source is recognised from (URI, size, ETag/mtime, pipeline key) before any
download; only sources that are processed are fetched and hashed."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from svd_core import storage as svd_io
from svd_core.config import load_config
from svd_core.curation import lvd as lvd_module
from svd_core.curation import resume
from svd_core.curation.config import LvdConfig
from svd_core.curation.lvd import VideoResult, build_lvd
from svd_core.curation.schema import LVD_COLUMNS
from svd_core.curation.sources import VideoSource
from svd_core.curation.subsets import synthetic_lvd_table

CFG = load_config(LvdConfig, None, ["run.max_workers=1"])


def fake_process_local(path: Path, source: VideoSource, video_id: str, *args: Any) -> VideoResult:
    """Stands in for cut/encode/score: three rows per video, derived from its content hash."""
    rows = synthetic_lvd_table(3, seed=int(video_id[:6], 16))
    rows["video_id"], rows["source_uri"] = video_id, source.uri
    return VideoResult(source.uri, video_id, rows=rows[LVD_COLUMNS].to_dict("records"))


@pytest.fixture
def fetches(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every source video the build opens (downloads, for remote ones), in order."""
    opened: list[str] = []
    original = svd_io.local_copy

    @contextlib.contextmanager
    def counting(uri: Any, workdir: Any = None) -> Iterator[Path]:
        if str(uri).endswith(".mp4"):  # not the table parts the build merges
            opened.append(str(uri))
        with original(uri, workdir) as path:
            yield path

    monkeypatch.setattr(lvd_module, "_process_local", fake_process_local)
    monkeypatch.setattr(svd_io, "local_copy", counting)
    return opened


def test_a_rerun_opens_only_new_or_changed_sources(fetches: list[str], tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in ("a", "b"):
        (raw / f"{name}.mp4").write_bytes(f"video {name}".encode())
    out = str(tmp_path / "out")
    first = build_lvd([str(raw / "a.mp4")], out, CFG, scorers=[])  # the build that was killed after a
    assert first.reused == 0 and fetches == [str(raw / "a.mp4")]
    fetches.clear()
    second = build_lvd([str(raw / "a.mp4"), str(raw / "b.mp4")], out, CFG, scorers=[])
    assert fetches == [str(raw / "b.mp4")] and second.reused == 1 and second.clips == 6
    fetches.clear()
    os.utime(raw / "a.mp4", ns=(1, 1))  # touched, same bytes: fetched and hashed, then reused
    (raw / "b.mp4").write_bytes(b"video b, edited")  # changed: processed again
    third = build_lvd([str(raw / "a.mp4"), str(raw / "b.mp4")], out, CFG, scorers=[])
    assert sorted(fetches) == [str(raw / "a.mp4"), str(raw / "b.mp4")] and third.reused == 1
    fetches.clear()
    build_lvd([str(raw / "a.mp4"), str(raw / "b.mp4")], out, CFG, scorers=[])
    assert fetches == []


def test_a_new_pipeline_key_is_not_mistaken_for_finished_work(fetches: list[str], tmp_path: Path) -> None:
    (tmp_path / "a.mp4").write_bytes(b"video a")
    out = str(tmp_path / "out")
    build_lvd([str(tmp_path / "a.mp4")], out, CFG, scorers=[])
    fetches.clear()
    other = load_config(LvdConfig, None, ["run.max_workers=1", "clips.crf=30"])
    summary = build_lvd([str(tmp_path / "a.mp4")], out, other, scorers=[])
    assert fetches == [str(tmp_path / "a.mp4")] and summary.reused == 0


def test_fingerprint_needs_store_metadata(tmp_path: Path) -> None:
    path = tmp_path / "a.mp4"
    path.write_bytes(b"x")
    assert resume.fingerprint(str(path), "k1") != resume.fingerprint(str(path), "k2")
    assert resume.fingerprint(str(tmp_path / "missing.mp4"), "k1") is None

    class NoStat:
        pass

    svd_io.register_store("nostat", NoStat)  # type: ignore[arg-type]
    assert resume.source_stat("nostat://bucket/a.mp4") is None
