"""`svd eval` commands design-study, import-votes and analyze through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from flows.cli.eval_stats import register
from svd_core.errors import ConfigError, InputError
from svd_core.evaluation.imports import write_votes
from svd_core.evaluation.synthetic import simulate_bradley_terry_votes

runner = CliRunner()
CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "eval"


@pytest.fixture()
def app() -> typer.Typer:
    group = typer.Typer()
    register(group)
    return group


def test_help_lists_the_commands(app):
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ("design-study", "import-votes", "analyze"):
        assert name in result.output
    assert "--from" in runner.invoke(app, ["import-votes", "--help"]).output


def test_import_votes_prints_rejections_and_writes_the_good_rows(app, tmp_path):
    csv = tmp_path / "arena.csv"
    csv.write_text(
        "model_a,model_b,winner,question,rater_id,prompt_id,left\n"
        "m1,m2,model_a,overall,ann,p1,model_a\n"
        "m1,m2,model_z,overall,bob,p1,model_a\n"
        "m2,m3,tie,overall,ann,p1,model_b\n"
    )
    out = tmp_path / "votes.parquet"
    refused = runner.invoke(app, ["import-votes", "--from", "csv", str(csv), "--out", str(out)])
    assert isinstance(refused.exception, InputError) and "above max_rejected_share=5%" in str(
        refused.exception
    )
    assert "unknown winner 'model_z'" in refused.output and not out.exists(), "rows listed, nothing written"
    args = ["import-votes", "--from", "csv", str(csv), "--out", str(out), "--max-rejected-share", "0.5"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (
        "unknown winner 'model_z'" in result.output
        and "2 vote(s) imported, 1 row(s) rejected" in result.output
    )
    assert len(pd.read_parquet(out)) == 2
    strict = runner.invoke(
        app, ["import-votes", "--from", "csv", str(csv), "--out", str(tmp_path / "s.parquet"), "--strict"]
    )
    assert isinstance(strict.exception, InputError) and not (tmp_path / "s.parquet").exists()
    wrong = runner.invoke(app, ["import-votes", "--from", "xlsx", str(csv), "--out", str(out)])
    assert isinstance(wrong.exception, InputError) and "csv or labelstudio" in str(wrong.exception)


def test_import_votes_from_an_arena_battle_export_and_analyze_refuses_a_bad_file(app, tmp_path):
    battles = [
        {"model_a": "svd/2", "model_b": "svd/1", "winner": w, "judge": f"user{k % 3}", "tstamp": 1.7e9 + k,
         "turn": 1, "anony": True, "language": "English", "question_id": f"q{k % 5}"}
        for k, w in enumerate(["model_a", "model_b", "tie (bothbad)", "model_a", "tie", "model_a"])
    ]  # fmt: skip
    export = tmp_path / "clean_battle.json"
    export.write_text(json.dumps(battles))
    out = tmp_path / "votes.csv"
    result = runner.invoke(app, ["import-votes", "--from", "arena", str(export), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "no row rejected" in result.output and "6 vote(s) imported" in result.output
    assert pd.read_csv(out)["rater_id"].tolist()[:3] == ["user0", "user1", "user2"]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps([*battles, *({**b, "winner": "model_c"} for b in battles[:2])]))
    args = ["analyze", "--votes", str(broken), "--out", str(tmp_path / "r"), "bootstrap_rounds=20"]
    refused = runner.invoke(app, args)
    assert isinstance(refused.exception, InputError) and "2 of 8 rows" in str(refused.exception)
    assert "unknown winner 'model_c'" in refused.output and not (tmp_path / "r").exists()
    accepted = runner.invoke(app, [*args, "max_rejected_share=0.3", "paper_elo_orderings=0"])
    assert accepted.exit_code == 0, accepted.output
    assert "2 rejected row(s)" in accepted.output


def test_import_votes_from_label_studio(app, tmp_path):
    export = tmp_path / "ls.json"
    data = {"model_a": "m1", "model_b": "m2", "prompt_id": "p", "question": "overall", "left": "model_b"}
    annotation = {"completed_by": 7, "result": [{"type": "choices", "value": {"choices": ["left"]}}]}
    export.write_text(json.dumps([{"id": 1, "data": data, "annotations": [annotation]}]))
    out = tmp_path / "votes.csv"
    result = runner.invoke(app, ["import-votes", "--from", "labelstudio", str(export), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert pd.read_csv(out)["winner"].tolist() == ["model_b"]


def test_analyze_writes_the_report_with_overrides(app, tmp_path):
    votes = simulate_bradley_terry_votes({"a": 1100, "b": 1000, "c": 900}, 1500, seed=2)
    write_votes(votes, str(tmp_path / "votes.parquet"))
    args = ["analyze", "--votes", str(tmp_path / "votes.parquet"), "--out", str(tmp_path / "report")]
    args += ["--config", str(CONFIGS / "analyze.yaml"), "bootstrap_rounds=50", "paper_elo_orderings=10"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "SYNTHETIC" in result.output and "wrote" in result.output
    board = pd.read_csv(tmp_path / "report" / "leaderboard.csv")
    assert board["model"].tolist() == ["a", "b", "c"] and board["synthetic"].all()
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["config"]["bootstrap_rounds"] == 50
    bad = runner.invoke(app, [*args[:5], "bootstrap_rounds=-1"])
    assert isinstance(bad.exception, ConfigError) and "bootstrap_rounds" in str(bad.exception)


def test_design_study_from_a_samples_folder(app, tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, size=(3, 16, 16, 3), dtype=np.uint8)
    for model in ("a", "b", "c"):
        for name in ("sunset", "road", "waves", "mountains"):
            path = tmp_path / "samples" / model / f"i2v-{name}.mp4"
            path.parent.mkdir(parents=True, exist_ok=True)
            with av.open(str(path), mode="w") as container:
                stream = container.add_stream("libx264", rate=8)
                stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
                for frame in frames:
                    container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
                container.mux(stream.encode())
    out = tmp_path / "design.json"
    args = ["design-study", "--samples", str(tmp_path / "samples"), "--out", str(out), "--config"]
    args += [
        str(CONFIGS / "study.yaml"),
        "task=image-to-video",
        "gold_rate=0.2",
        f"gold_dir={tmp_path / 'gold'}",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    design = json.loads(out.read_text())
    assert {t["question"] for t in design["tasks"]} == {"overall"}
    assert len([t for t in design["tasks"] if not t["is_gold"]]) == 4 * 3
    gold_files = list((tmp_path / "gold").glob("*.mp4"))
    assert gold_files and len(gold_files) == len(design["gold_copies"])
    assert f"{len(design['tasks'])} tasks" in result.output


def test_import_votes_maps_label_studio_questions_from_the_command_line(app, tmp_path):
    from tests.svd_core.evaluation.test_imports import ls_annotation, ls_region, ls_task

    regions = [ls_region("q1", "Left", "a"), ls_region("q2", "Right", "b")]
    export = tmp_path / "export.json"
    export.write_text(json.dumps([ls_task(5, "model_a", [ls_annotation(1, 5, 9, regions)])]))
    out = tmp_path / "votes.csv"
    args = ["import-votes", "--from", "labelstudio", str(export), "--out", str(out)]
    mapped = runner.invoke(
        app, [*args, "--question-map", "q1=overall", "--question-map", "q2=visual_quality"]
    )
    assert mapped.exit_code == 0, mapped.output
    assert pd.read_csv(out)[["question", "winner"]].values.tolist() == [
        ["overall", "model_a"], ["visual_quality", "model_b"],
    ]  # fmt: skip
    malformed = runner.invoke(app, [*args, "--question-map", "q1:overall"])
    assert isinstance(malformed.exception, InputError) and "CHOICES_NAME=QUESTION" in str(malformed.exception)
