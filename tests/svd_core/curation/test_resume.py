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


def _real_clip(path: Path) -> Path:
    """2 s of a slow pan over a real photo (scikit-image's coffee), H.264."""
    import cv2

    from svd_core.video.real_set import load_photo
    from svd_core.video.sample import encode_frames

    big = cv2.resize(load_photo("coffee"), (160, 48), interpolation=cv2.INTER_AREA)
    encode_frames([big[:, i : i + 64].copy() for i in range(50)], [i / 25 for i in range(50)], path=path)
    return path


def _limits(**run: Any) -> LvdConfig:
    return LvdConfig.model_validate(
        {"decode": {"timeout_s": 0.001}, "cuts": {"detector": "cascade", "min_clip_s": 1.0}, "run": run}
    )


def test_time_limit_scales_with_the_video_duration(tmp_path: Path) -> None:
    """The same 2 s video: far over a flat 1 ms limit, well within 30 min of limit per minute of video."""
    path = _real_clip(tmp_path / "pan.mp4")
    flat = lvd_module.process_video(str(path), _limits(time_limit_s_per_minute=0), str(tmp_path / "a"), [])
    assert flat.quarantine is not None and "timed out" in flat.quarantine["reason"] and not flat.final
    scaled = lvd_module.process_video(
        str(path), _limits(time_limit_s_per_minute=1800), str(tmp_path / "b"), []
    )
    assert scaled.quarantine is None and len(scaled.rows) == 1
    assert scaled.stats["time_limit_s"] == pytest.approx(60.0, rel=0.05)  # 2 s x 1800 s per minute


def test_a_video_that_keeps_timing_out_is_final_after_max_attempts(tmp_path: Path) -> None:
    path = _real_clip(tmp_path / "pan.mp4")
    out = str(tmp_path / "out")
    cfg = _limits(time_limit_s_per_minute=0, max_attempts=2)
    first = lvd_module.process_video(str(path), cfg, out, [])
    assert first.quarantine is not None and not first.final  # may pass on a retry: not stored
    assert not list((tmp_path / "out").glob("_parts/*.json"))
    second = lvd_module.process_video(str(path), cfg, out, [])
    assert second.final and second.quarantine is not None
    assert "timed out in 2 runs (run.max_attempts)" in second.quarantine["reason"]
    third = lvd_module.process_video(str(path), cfg, out, [])  # recorded as final: not tried again
    assert third.reused and third.quarantine == second.quarantine


def test_record_timeout_counts_per_video_and_pipeline_key(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    assert resume.timeouts(out, "vid", "k1") == 0
    assert [resume.record_timeout(out, "vid", "k1", 60.0) for _ in range(3)] == [1, 2, 3]
    assert resume.timeouts(out, "vid", "k2") == 0 and resume.timeouts(out, "other", "k1") == 0
    (tmp_path / "out" / "_attempts" / "vid-k1.json").write_text("not json")
    assert resume.timeouts(out, "vid", "k1") == 0  # a damaged entry costs one more attempt, nothing else


def test_batching_settings_do_not_change_the_pipeline_key() -> None:
    """How many clips a scorer batches, or which worker resource it asks for, changes no score: a finished
    build is not redone when they change."""
    from svd_core.curation.config import LvdConfig
    from svd_core.curation.lvd import pipeline_key

    base = pipeline_key(LvdConfig(), [])
    batched = LvdConfig(**{"models": {"batch_clips": 32, "decode_workers": 4, "gpu_resource": None}})
    assert pipeline_key(batched, []) == base
    assert pipeline_key(LvdConfig(**{"cuts": {"min_clip_s": 3.0}}), []) != base
