"""A 2-variant ablation end to end: tiny models, 2 training steps, 2 sampling steps, synthetic rater."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
import typer
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from flows import ablation_flow, eval_flow
from flows.cli.eval_ablation import register
from flows.integrations import registry
from svd_core import storage as svd_io
from svd_core.config import load_config
from svd_core.errors import InputError, SvdError
from svd_core.evaluation.config import AblationConfig
from svd_core.evaluation.evalsets import DATA_DIR
from svd_core.evaluation.imports import write_votes
from svd_core.evaluation.study import load_study_design
from tests.svd_core.data.test_video_dataset import standard_clips, write_lvd

pytestmark = pytest.mark.integration

FAST = ["trainer.max_steps=2", "trainer.checkpoint_every=2", "trainer.warmup_steps=0", "trainer.num_workers=0",
        "trainer.micro_batch_size=1", "height=32", "width=48"]  # fmt: skip
SPEC = {
    "name": "mini",
    "description": "image-pretrained on all clips vs scratch on the more moving half",
    "train_overrides": [*FAST, "num_frames=4"],
    "image_overrides": FAST,
    "variants": [
        {"name": "pretrained", "init": "image_pretrained"},
        {"name": "motion50", "init": "scratch", "dataset": {"score": "flow_score", "drop_bottom_pct": 50}},
    ],
    "evaluation": {
        "sampling": {"num_inference_steps": 2},
        "analysis": {"bootstrap_rounds": 100, "paper_elo_orderings": 10},
        # Two random tiny models often differ so much on the proxy that one would win every vote, which
        # leaves Bradley-Terry unbounded; noisier raters give both variants some wins.
        "synthetic": {"enabled": True, "noise": 3.0, "raters": 8},
    },
}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    with pytest.MonkeyPatch.context() as mp:
        root = tmp_path_factory.mktemp("ablation_home")
        mp.setenv("SVD_HOME", str(root))
        yield root


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("ablation_data")
    table = write_lvd(root / "lvd", standard_clips())
    images = root / "evalset"  # two of the shipped conditioning images: half the sampling of the full set
    images.mkdir()
    for name in ("sunset.png", "waves.png"):
        shutil.copyfile(DATA_DIR / "images" / name, images / name)
    spec = {**SPEC, "data": table, "evaluation": {**SPEC["evaluation"], "eval_set": str(images)}}
    path = root / "mini.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path, table


@pytest.fixture(scope="module")
def outcome(home: Path, spec_file: tuple[Path, str]) -> dict[str, Any]:
    return ablation_flow.run_ablation(load_config(AblationConfig, spec_file[0]))


def _cli(*args: str) -> Any:
    app = typer.Typer()
    register(app)

    @app.command("noop")  # a second command keeps `ablate` a named subcommand, as in the real group
    def noop() -> None: ...

    return CliRunner().invoke(app, ["ablate", *args])


def test_report_ranks_both_variants_with_intervals(
    outcome: dict[str, Any], spec_file: tuple[Path, str]
) -> None:
    report_dir = svd_io.local_path(outcome["report_uri"])
    board = pd.read_csv(report_dir / "leaderboard.csv")
    assert sorted(board["variant"]) == ["motion50", "pretrained"] and board["synthetic"].all()
    assert (board["lower"] <= board["rating"]).all() and (board["rating"] <= board["upper"]).all()
    assert (report_dir / "leaderboard.png").read_bytes().startswith(b"\x89PNG")
    report = json.loads((report_dir / "ablation_report.json").read_text())
    assert report["status"] == "rated" and report["synthetic"] is True
    pretrained, motion50 = report["variants"]
    assert pretrained["model_uri"] == "models:/ablation-mini-pretrained/1"
    assert motion50["model_uri"] == "models:/ablation-mini-motion50/1"
    assert registry.resolve(pretrained["model_uri"]).tags["svd.parent_model_version"] == report["image_model"]
    assert report["image_model"] == "models:/ablation-mini-image/1"
    assert registry.resolve(motion50["model_uri"]).tags["svd.parent_model_version"] == ""
    # The filtered variant trained on its own table: the two clips at or above the median flow score.
    assert motion50["dataset"]["rows"] == 2 and motion50["dataset"]["source_rows"] == 4
    assert motion50["dataset"]["thresholds"]["flow_score"]["min"] == pytest.approx(1.5)
    assert registry.resolve(motion50["model_uri"]).tags["svd.dataset_uri"] == motion50["dataset"]["table_uri"]
    assert pretrained["dataset"]["table_uri"] == spec_file[1]
    for entry in report["variants"]:
        row = board.set_index("variant").loc[entry["variant"]]
        assert entry["rating"] == pytest.approx(row["rating"]) and entry["overrides"][:2] == FAST[:2]
    # Per question: the variants' ratings and each pair's test, p-values corrected across the question's pairs.
    assert report["correction"] == {
        "method": "holm",
        "alpha": 0.05,
        "family": "the variant pairs of one question",
    }
    (question,) = report["questions"]  # image-to-video asks one question
    assert question == "overall"
    assert sorted(r["variant"] for r in report["questions"][question]["leaderboard"]) == [
        "motion50",
        "pretrained",
    ]
    pairs = pd.read_csv(report_dir / "pairs.csv")
    assert pairs[["question", "variant_x", "variant_y"]].values.tolist() == [
        ["overall", "motion50", "pretrained"]
    ]
    assert (pairs["p_adjusted"] >= pairs["p_value"]).all()  # one pair: a family of one, nothing to correct


def test_mlflow_run_carries_what_the_dashboard_reads(outcome: dict[str, Any], tmp_path: Path) -> None:
    from flows.apps.dashboard.evaluation import collect_study

    run = mlflow.get_run(outcome["run_id"])
    assert mlflow.get_experiment(run.info.experiment_id).name == "evaluation"
    assert run.data.tags["svd.kind"] == "ablation" and run.data.tags["svd.synthetic"] == "true"
    assert run.data.tags["svd.study_id"] == outcome["study_id"]
    assert set(run.data.metrics) == {"rating.pretrained", "rating.motion50"}
    artifacts = {a.path for a in MlflowClient().list_artifacts(outcome["run_id"])}
    assert {"leaderboard.csv", "leaderboard.png", "ablation_report.json", "ablation_spec.yaml"} <= artifacts
    study = collect_study(MlflowClient(), run, tmp_path, "ablation")
    assert study.synthetic and not study.notes
    for board in study.leaderboards:  # leaderboard.csv and the report's variants list
        assert sorted(r["model"] for r in board.rows) == ["motion50", "pretrained"]


def test_rerun_through_the_cli_reuses_models_and_samples(
    outcome: dict[str, Any], spec_file: tuple[Path, str]
) -> None:
    result = _cli("--spec", str(spec_file[0]), "evaluation.analysis.paper_elo_orderings=0")
    assert result.exit_code == 0, result.output
    assert "pretrained" in result.output and "motion50" in result.output
    assert "adjusted by holm across this question" in result.output  # the corrected pairs are printed
    for name in ("ablation-mini-image", "ablation-mini-pretrained", "ablation-mini-motion50"):
        assert len(MlflowClient().search_model_versions(f"name='{name}'")) == 1  # nothing retrained
    summary = json.loads(result.output.strip().splitlines()[-1])
    again = json.loads(svd_io.read_bytes(svd_io.join_uri(summary["report"], "ablation_report.json")))
    # Same samples, same seeded synthetic rater: the same ratings.
    assert [v["rating"] for v in again["variants"]] == pytest.approx(
        [v["rating"] for v in outcome["variants"]]
    )


def test_human_path_waits_for_votes_then_analyses_them(
    outcome: dict[str, Any], spec_file: tuple[Path, str], tmp_path: Path
) -> None:
    early = _cli("--spec", str(spec_file[0]), "--votes", str(tmp_path / "none.parquet"))
    assert isinstance(early.exception, SvdError) and "none.parquet" in str(early.exception)
    waiting = _cli("--spec", str(spec_file[0]), "evaluation.synthetic.enabled=false")
    assert waiting.exit_code == 0, waiting.output
    assert "waiting for human votes" in waiting.output and "svd eval create-study --tasks" in waiting.output
    design = load_study_design(ablation_flow.design_uri(outcome["study_id"]))
    assert design.study_id == outcome["study_id"]  # the same design the synthetic run rated
    # Stand-in for the raters' export: votes on that design's tasks, marked as human votes.
    cfg = load_config(AblationConfig, spec_file[0]).evaluation
    votes = eval_flow.step_synthetic_votes(design, cfg).assign(synthetic=False)
    write_votes(votes, str(tmp_path / "votes.parquet"))
    rated = _cli("--spec", str(spec_file[0]), "--votes", str(tmp_path / "votes.parquet"))
    assert rated.exit_code == 0, rated.output
    run_id = json.loads(rated.output.strip().splitlines()[-1])["mlflow_run"]
    run = mlflow.get_run(run_id)
    assert run.data.tags["svd.synthetic"] == "false" and run.data.tags["svd.status"] == "rated"
    board = pd.read_csv(
        svd_io.local_path(json.loads(rated.output.strip().splitlines()[-1])["report"]) / "leaderboard.csv"
    )
    assert sorted(board["variant"]) == ["motion50", "pretrained"] and not board["synthetic"].any()
    write_votes(votes.assign(model_a="someone-else/9"), str(tmp_path / "other.parquet"))
    other = _cli("--spec", str(spec_file[0]), "--votes", str(tmp_path / "other.parquet"))
    assert isinstance(other.exception, InputError) and "['someone-else/9'] that are not variants" in str(
        other.exception
    )


def test_human_votes_with_a_few_bad_rows_are_read_and_too_many_are_refused(tmp_path: Path, capsys) -> None:
    """Ablations read votes by the rule of every vote-reading command: bad rows listed and skipped, the file
    refused above max_rejected_share (it used to refuse any rejected row)."""
    from svd_core.evaluation.imports import write_votes
    from svd_core.evaluation.synthetic import simulate_bradley_terry_votes

    votes = simulate_bradley_terry_votes({"a": 1100, "b": 1000}, 40, seed=1)
    bad = votes.head(1).assign(winner="model_z")
    write_votes(pd.concat([votes, bad], ignore_index=True), str(tmp_path / "one_bad.csv"))
    read = ablation_flow.load_human_votes(str(tmp_path / "one_bad.csv"), max_rejected_share=0.05)
    assert len(read) == 40 and "rejected" in capsys.readouterr().err
    with pytest.raises(InputError, match="above max_rejected_share=0%"):
        ablation_flow.load_human_votes(str(tmp_path / "one_bad.csv"), max_rejected_share=0.0)
