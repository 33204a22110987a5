"""Scorers as a stage over stored clips: a new scorer's column is joined by clip_id, and no source video
is decoded again (every decoder open is counted)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import av
import numpy as np
import pandas as pd
import pytest

from svd_core.curation.camera import CameraMotionScorer
from svd_core.curation.config import LvdConfig
from svd_core.curation.lvd import build_lvd
from svd_core.curation.motion import FarnebackFlow, MotionScorer
from svd_core.curation.publish import read_table, write_table
from svd_core.curation.schema import CAPTION_COLUMNS
from svd_core.curation.score_stage import score_stored_clips
from svd_core.errors import InputError
from svd_core.video.frames import SampledFrames
from svd_core.video.sample import encode_frames, render_video, sample_specs

CFG = LvdConfig()


class Brightness:
    """A stand-in learned scorer: mean brightness on the aesthetic scale."""

    name, version, columns = "brightness", "1", ("aesthetic_score",)

    def __init__(self) -> None:
        self.calls = 0

    def score(self, frames: SampledFrames, row: Mapping[str, Any]) -> dict[str, Any]:
        self.calls += 1
        assert frames.num_frames >= 2 and row["clip_id"]  # sampled frames of the clip, and its row
        return {"aesthetic_score": float(frames.frames.mean()) / 25.5, "caption": "not mine to set"}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    raw = tmp_path_factory.mktemp("score-raw")
    spec = sample_specs()[0]
    frames, times, _ = render_video(spec, np.random.default_rng(0))
    encode_frames(frames, times, path=raw / spec.name)
    flow = FarnebackFlow(CFG.scoring)
    out = tmp_path_factory.mktemp("score-lvd")
    summary = build_lvd(
        str(raw), str(out), CFG, scorers=[MotionScorer(flow), CameraMotionScorer(flow, CFG.camera)]
    )
    assert summary.clips >= 1
    return summary.lvd_uri, out


def test_a_new_scorer_runs_on_stored_clips_only(
    built: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lvd_uri, _ = built
    before = read_table(lvd_uri)
    opened: list[str] = []
    real_open = av.open

    def counting_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append("clip bytes" if hasattr(file, "read") else f"file {file}")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(av, "open", counting_open)
    scorer = Brightness()
    summary = score_stored_clips(lvd_uri, str(tmp_path / "scored"), [scorer], CFG.scoring)
    assert opened == ["clip bytes"] * len(before)  # one open per stored clip, no source file
    assert scorer.calls == summary.clips == len(before)
    after = read_table(summary.table_uri).set_index("clip_id").loc[before.clip_id]
    assert after.aesthetic_score.notna().all() and before.aesthetic_score.isna().all()
    assert (after.aesthetic_score > 0).all()
    pd.testing.assert_series_equal(
        after.flow_score.reset_index(drop=True), before.flow_score.reset_index(drop=True), check_names=False
    )
    assert after.caption.isna().all()  # only the scorer's own columns are taken
    versions = json.loads(after.scorer_versions.iloc[0])
    assert versions["brightness"] == "1+stored-clips" and {"cuts", "clips", "flow", "camera"} <= set(versions)


def test_scorers_without_lvd_columns_are_refused(built: tuple[str, Path], tmp_path: Path) -> None:
    class Nothing(Brightness):
        columns = ("sharpness",)

    with pytest.raises(InputError, match=r"\['sharpness'\] are not LVD columns"):
        score_stored_clips(built[0], str(tmp_path / "x"), [Nothing()], CFG.scoring)


class MiddleFrameCaptions:
    """A stand-in image captioner: describes the clip's middle frame by its brightness."""

    name, version, columns = "image_captions", "1", ("caption_image",)

    def score(self, frames: SampledFrames, row: Mapping[str, Any]) -> dict[str, Any]:
        return {"caption_image": f"brightness {frames.middle_frame().mean():.0f}"}


def test_a_stage_adds_a_column_a_table_from_an_older_build_lacks(
    built: tuple[str, Path], tmp_path: Path
) -> None:
    lvd_uri, _ = built
    old = read_table(lvd_uri).drop(columns=[*CAPTION_COLUMNS, "caption_provenance"])
    old_uri = str(tmp_path / "old.parquet")
    write_table(old, old_uri)
    summary = score_stored_clips(old_uri, str(tmp_path / "scored"), [MiddleFrameCaptions()], CFG.scoring)
    after = read_table(summary.table_uri)
    assert list(after.columns) == [*old.columns, "caption_image"]  # the old columns as they were, plus it
    assert after.caption_image.str.startswith("brightness ").all()
    pd.testing.assert_series_equal(after.flow_score, old.flow_score)
