"""Batched learned scoring: `score_batch` equals `score` clip by clip, the score stage gives the same table
batched or not, the Dask path loads each model once per worker, and a bad batch size is a config error.

Models are the tiny random-weight CLIP, LAION head and BLIP of tests/scorer_fixtures.py, loaded through the
real loading code; the LVD table is built from a generated video (6 stored clips)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from svd_core.config import load_config
from svd_core.curation import learned
from svd_core.curation.config import LvdConfig
from svd_core.curation.learned import build_learned_scorers
from svd_core.curation.lvd import build_lvd
from svd_core.curation.publish import read_table
from svd_core.curation.score_stage import (
    DaskStageStats,
    score_stored_clips,
    score_stored_clips_dask,
    stage_scorers,
)
from svd_core.curation.scorer_base import is_batched, score_many
from svd_core.errors import ConfigError, InputError
from svd_core.video.sample import encode_frames, render_video, sample_specs
from tests.scorer_fixtures import clip_frames, make_aesthetic_head, make_blip, make_clip

SCORERS = ["caption", "aesthetic", "clip_score"]
FLOAT_COLUMNS = ["aesthetic_score", "clip_score"]
TEXT_COLUMNS = ["caption", "caption_image", "caption_video", "caption_source"]


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> LvdConfig:
    root = tmp_path_factory.mktemp("batch-models")
    clip, blip = make_clip(root / "clip"), make_blip(root / "blip")
    models = {
        "device": "cpu",
        "model_cache_dir": str(root / "cache"),
        "craft_weights": None,
        "aesthetic_clip_path": str(clip),
        "aesthetic_head_path": str(make_aesthetic_head(root / "head.safetensors")),
        "clip_score_model_path": str(clip),  # the same folder: one encoder shared by both scorers
        "image_captioner_path": str(blip),
        "video_captioner_path": str(blip),
        "caption_max_new_tokens": 4,
    }
    # 4 s shots cut into 2 s clips: 6 stored clips, so groups of 4 leave a short last group
    return LvdConfig.model_validate({"cuts": {"min_clip_s": 1.0, "max_clip_s": 2.0}, "models": models})


@pytest.fixture(scope="module")
def lvd_uri(cfg: LvdConfig, tmp_path_factory: pytest.TempPathFactory) -> str:
    raw = tmp_path_factory.mktemp("batch-raw")
    spec = sample_specs()[0]
    frames, times, _ = render_video(spec, np.random.default_rng(0))
    encode_frames(frames, times, path=raw / spec.name)
    summary = build_lvd(str(raw), str(tmp_path_factory.mktemp("batch-lvd")), cfg, scorers=[])
    assert summary.clips == 6
    return summary.lvd_uri


def _assert_same_scores(batched: pd.DataFrame, single: pd.DataFrame) -> None:
    batched, single = batched.set_index("clip_id"), single.set_index("clip_id").loc[batched.clip_id]
    for column in FLOAT_COLUMNS:
        assert batched[column].notna().all(), column
        np.testing.assert_allclose(batched[column], single[column], rtol=1e-5, atol=1e-5, err_msg=column)
    for column in TEXT_COLUMNS:
        assert list(batched[column]) == list(single[column]), column


def test_score_batch_equals_score_clip_by_clip(cfg: LvdConfig) -> None:
    clips = [clip_frames(5, seed=10 * i) for i in range(5)]
    rows: list[dict[str, Any]] = [{"clip_id": str(i), "caption": "a dog runs on the beach"} for i in range(5)]
    rows[2]["caption"] = "   "  # no caption: no CLIP score, batched or not
    rows[3]["caption"] = "red car at night in the city"
    one = build_learned_scorers(cfg.models, only=SCORERS)  # separate copies: no embedding cache shared
    many = build_learned_scorers(cfg.models, only=SCORERS)
    assert [s.name for s in many] == SCORERS and all(is_batched(s) for s in many)
    for single, batched in zip(one, many, strict=True):
        expected = [single.score(frames, row) for frames, row in zip(clips, rows, strict=True)]
        got = score_many(batched, clips, rows)
        assert len(got) == len(expected)
        for want, have in zip(expected, got, strict=True):
            assert want.keys() == have.keys()
            for key, value in want.items():
                if isinstance(value, float):
                    assert have[key] == pytest.approx(value, rel=1e-5, abs=1e-5), (single.name, key)
                else:
                    assert have[key] == value, (single.name, key)
    clip_scores = [r["clip_score"] for r in score_many(many[-1], clips, rows)]
    assert clip_scores[2] is None and all(isinstance(v, float) for i, v in enumerate(clip_scores) if i != 2)
    assert len({round(v, 6) for v in clip_scores if v is not None}) > 1  # different clips, different scores


def test_the_stage_gives_the_same_table_batched_or_clip_by_clip(
    cfg: LvdConfig, lvd_uri: str, tmp_path: Path
) -> None:
    scorers = stage_scorers(cfg, ["clip_score", "caption", "aesthetic"])
    assert [s.name for s in scorers] == SCORERS  # run order: the caption before the CLIP score reading it
    single = score_stored_clips(lvd_uri, str(tmp_path / "b1"), scorers, cfg.scoring, batch_clips=1)
    batched = score_stored_clips(
        lvd_uri, str(tmp_path / "b4"), scorers, cfg.scoring, batch_clips=4, decode_workers=3
    )
    assert single.clips == batched.clips == 6 and single.scorer_versions == batched.scorer_versions
    _assert_same_scores(read_table(batched.table_uri), read_table(single.table_uri))
    assert read_table(batched.table_uri).caption_source.eq("image").all()  # BLIP's caption fed clip_score


@pytest.fixture
def cluster() -> Iterator[Any]:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=2,
            processes=False,
            resources={"GPU": 1},
            dashboard_address=None,
        ) as local,
        Client(local) as client,
    ):
        yield client


def test_dask_stage_loads_each_model_once_per_gpu_worker(
    cfg: LvdConfig, lvd_uri: str, tmp_path: Path, cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: dict[str, int] = {"clip": 0, "captioner": 0}

    class CountingClip(learned.ClipEncoder):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            loads["clip"] += 1
            super().__init__(*args, **kwargs)

    class CountingCaptioner(learned.ImageToText):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            loads["captioner"] += 1
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(learned, "ClipEncoder", CountingClip)
    monkeypatch.setattr(learned, "ImageToText", CountingCaptioner)
    one_clip = cfg.model_copy(update={"models": cfg.models.model_copy(update={"batch_clips": 1})})
    stats = DaskStageStats()
    summary = score_stored_clips_dask(
        lvd_uri, str(tmp_path / "dask"), one_clip, SCORERS, cluster, stats=stats
    )
    assert summary.clips == stats.groups == 6  # one scoring task per clip
    workers = len(stats.workers)
    assert workers == 2  # both GPU workers scored (one scoring task at a time each: GPU=1)
    # each worker built the scorers once (the shared CLIP folder once, the captioner once) and reused them
    # for its later tasks; nothing was loaded outside the workers
    assert loads == {"clip": workers, "captioner": workers}

    # another batch size changes no model: the workers keep theirs
    again = score_stored_clips_dask(lvd_uri, str(tmp_path / "dask2"), cfg, SCORERS, cluster)
    assert again.clips == 6 and loads == {"clip": workers, "captioner": workers}

    local = score_stored_clips(
        lvd_uri, str(tmp_path / "local"), stage_scorers(cfg, SCORERS), cfg.scoring, batch_clips=4
    )
    for dask_run in (summary, again):
        _assert_same_scores(read_table(dask_run.table_uri), read_table(local.table_uri))
        assert dask_run.scorer_versions == local.scorer_versions

    no_gpu = cfg.model_copy(update={"models": cfg.models.model_copy(update={"gpu_resource": "TPU"})})
    with pytest.raises(InputError, match=r"no Dask worker offers the resource 'TPU'.*--resources TPU=1"):
        score_stored_clips_dask(lvd_uri, str(tmp_path / "x"), no_gpu, SCORERS, cluster)


@pytest.mark.parametrize("value", ["0", "-4", "2000", "eight"])
def test_a_bad_batch_size_is_a_config_error(value: str, lvd_uri: str, cfg: LvdConfig, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="batch_clips"):
        load_config(LvdConfig, None, [f"models.batch_clips={value}"])
    if value.lstrip("-").isdigit():
        with pytest.raises(ConfigError, match=r"models.batch_clips=.*whole number of clips from 1"):
            score_stored_clips(lvd_uri, str(tmp_path / "x"), [], cfg.scoring, batch_clips=int(value))


def test_unavailable_scorers_are_named(cfg: LvdConfig) -> None:
    off = cfg.model_copy(update={"models": cfg.models.model_copy(update={"clip_score_model_path": None})})
    with pytest.raises(InputError, match=r"\['clip_score'\]: not available.*'aesthetic'"):
        stage_scorers(off, ["clip_score"])
