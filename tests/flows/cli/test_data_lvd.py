"""`svd data sample` and `svd data build-lvd` through typer's CliRunner on a throwaway app."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from flows.cli.data_lvd import register
from svd_core.errors import InputError
from svd_core.video.sample import GROUND_TRUTH


@pytest.fixture()
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def test_sample_then_build_lvd(app: typer.Typer, tmp_path: Path) -> None:
    runner = CliRunner()
    sample = tmp_path / "raw"
    result = runner.invoke(app, ["sample", "--out", str(sample), "--seed", "0"])
    assert result.exit_code == 0, result.output
    assert "6 videos and 8 bad files" in result.output
    truth = json.loads((sample / GROUND_TRUTH).read_text())
    keep = ["v00_static_cuts.mp4", "bad_zero_byte.mp4"]
    for path in sample.iterdir():
        if path.name not in keep:
            path.unlink()

    out = tmp_path / "lvd"
    args = [
        "build-lvd",
        "--source",
        str(sample),
        "--out",
        str(out),
        "--config",
        "configs/data/lvd.yaml",
        "models.craft_weights=null",
        "cuts.min_clip_s=3",
        "run.max_workers=1",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "videos 1, clips 3, hours 0.003, quarantined 1, clips/s" in result.output
    table = pd.read_parquet(out / "lvd.parquet")
    assert len(table) == len(truth["videos"]["v00_static_cuts.mp4"]["shots"])

    score = [
        "score",
        "--lvd",
        str(out / "lvd_parts"),
        "--out",
        str(out / "scored"),
        "models.craft_weights=null",
    ]
    result = runner.invoke(app, [*score, "--scorer", "flow"])
    assert result.exit_code == 0, result.output
    assert f"scored {len(table)} clips with flow (flow_score)" in result.output
    assert len(pd.read_parquet(out / "scored" / "part-00000.parquet")) == len(table)
    result = runner.invoke(app, [*score, "--scorer", "aesthetic"])
    assert isinstance(result.exception, InputError) and "available: ['camera', 'caption', 'flow']" in str(
        result.exception
    )

    result = runner.invoke(app, [*args[:-1], "cuts.min_clip_s=5"])  # every shot is 4 s: nothing left
    assert isinstance(result.exception, InputError)
    assert "no clips from 2 input video(s)" in str(result.exception)

    result = runner.invoke(app, [*args, "cuts.no_such_key=1"])
    assert result.exit_code != 0 and "cuts.no_such_key" in str(result.exception)


def test_build_lvd_needs_videos(app: typer.Typer, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no videos here")
    result = CliRunner().invoke(app, ["build-lvd", "--source", str(tmp_path), "--out", str(tmp_path / "o")])
    assert isinstance(result.exception, InputError) and "no videos under" in str(result.exception)
    shutil.rmtree(tmp_path / "o", ignore_errors=True)
