"""Killing a build and rerunning it re-downloads nothing already finished: an s3:// source on moto behind
the real S3 backend, counting the GET requests for the source videos."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from svd_core import storage as svd_io
from svd_core.config import load_config
from svd_core.curation import lvd as lvd_module
from svd_core.curation.config import LvdConfig
from svd_core.curation.lvd import VideoResult, build_lvd
from svd_core.curation.schema import LVD_COLUMNS
from svd_core.curation.sources import VideoSource
from svd_core.curation.subsets import synthetic_lvd_table

CFG = load_config(LvdConfig, None, ["run.max_workers=1"])


def fake_process_local(path: Path, source: VideoSource, video_id: str, *args: Any) -> VideoResult:
    rows = synthetic_lvd_table(2, seed=int(video_id[:6], 16))
    rows["video_id"], rows["source_uri"] = video_id, source.uri
    return VideoResult(source.uri, video_id, rows=rows[LVD_COLUMNS].to_dict("records"))


@pytest.fixture
def s3_gets(svd_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """In-process S3 (moto) behind flows.integrations.s3's S3Store; yields the keys of every GetObject."""
    moto = pytest.importorskip("moto")
    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setattr(lvd_module, "_process_local", fake_process_local)
    with moto.mock_aws():
        import flows.integrations.s3

        svd_io.register_store("s3", flows.integrations.s3.S3Store)
        store = svd_io.store_for("s3://svd-raw/x")
        store.ensure_bucket("svd-raw")  # type: ignore[attr-defined]
        gets: list[str] = []
        store.client.meta.events.register(  # type: ignore[attr-defined]
            "before-parameter-build.s3.GetObject", lambda params, **_: gets.append(params["Key"])
        )
        yield gets
        svd_io.register_store("s3", flows.integrations.s3.S3Store)  # drop the mocked client


def test_rerun_after_a_kill_downloads_only_unfinished_sources(s3_gets: list[str], tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        svd_io.write_bytes(f"s3://svd-raw/raw/{name}.mp4", f"video {name}".encode() * 1000)
    out = str(tmp_path / "lvd")

    def source_gets() -> list[str]:
        return sorted(k for k in s3_gets if k.startswith("raw/"))

    killed = build_lvd(["s3://svd-raw/raw/a.mp4", "s3://svd-raw/raw/b.mp4"], out, CFG, scorers=[])
    assert killed.reused == 0 and source_gets() == ["raw/a.mp4", "raw/b.mp4"]
    s3_gets.clear()
    rerun = build_lvd("s3://svd-raw/raw/", out, CFG, scorers=[])  # the whole prefix, c never started
    assert source_gets() == ["raw/c.mp4"] and rerun.reused == 2 and rerun.clips == 6
    s3_gets.clear()
    svd_io.write_bytes("s3://svd-raw/raw/a.mp4", b"video a, re-uploaded with new content")
    changed = build_lvd("s3://svd-raw/raw/", out, CFG, scorers=[])
    assert source_gets() == ["raw/a.mp4"] and changed.reused == 2  # new ETag: fetched, hashed, processed
