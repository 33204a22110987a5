"""Ablation specs: validation, deterministic expansion into stage configs, datasets, report files, CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import typer
import yaml
from typer.testing import CliRunner

from flows.cli.eval_ablation import register
from svd_core.config import load_config, validate_config
from svd_core.curation.publish import publish_dataset
from svd_core.errors import ConfigError, InputError
from svd_core.evaluation.ablation import (
    AblationConfig,
    DatasetVariantConfig,
    pair_report,
    pairs_table,
    plan_ablation,
    prepare_dataset,
    question_reports,
    report_variants,
    variant_leaderboard,
    write_ablation_report,
)
from svd_core.evaluation.analyze import analyze
from svd_core.evaluation.config import AnalysisConfig
from svd_core.evaluation.synthetic import simulate_bradley_terry_votes

SHIPPED = sorted(Path("configs/eval/ablations").glob("*.yaml"))
TWO = [{"name": "a"}, {"name": "b", "init": "scratch"}]


def spec(**fields: Any) -> AblationConfig:
    return validate_config(AblationConfig, {"name": "t", "variants": TWO, **fields}, "<test spec>")


def test_shipped_specs_plan_their_variants() -> None:
    assert {p.stem for p in SHIPPED} == {"image_pretraining", "curation", "filter_sweep"}
    for path in SHIPPED:
        plan = plan_ablation(load_config(AblationConfig, path))
        assert len(plan.variants) >= 2 and all(v.train_config.stage == "video" for v in plan.variants)
        assert all(v.model_name == f"ablation-{plan.spec.name}-{v.name}" for v in plan.variants)
        assert plan.image_config is not None and plan.image_config.stage == "image"
    sweep = load_config(AblationConfig, "configs/eval/ablations/filter_sweep.yaml")
    assert [v.dataset.drop_bottom_pct for v in sweep.variants] == [None, 12.5, 25.0, 50.0]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"variants": []}, "variants: an ablation compares at least two variants, got 0"),
        ({"variants": [{"name": "a"}]}, "variants: an ablation compares at least two variants, got 1"),
        ({"variants": [{"name": "Big Model"}, {"name": "b"}]}, "variants.0.name: .*'Big Model' must be"),
        ({"variants": [{"name": "a/b"}, {"name": "b"}]}, "variants.0.name: .*'a/b' must be"),
        (
            {"variants": [{"name": "image"}, {"name": "b"}]},
            "variants.0.name: .*reserved for the shared stage-I",
        ),
        ({"variants": [{"name": "a"}, {"name": "a"}]}, r"names must be unique, \['a'\]"),
        (
            {
                "variants": [
                    {"name": "a"},
                    {"name": "b", "dataset": {"score": "beauty", "drop_bottom_pct": 25}},
                ]
            },
            r"variants.1.dataset.score: .*unknown score 'beauty'; use one of \['flow_score'",
        ),
        (
            {"variants": [{"name": "a"}, {"name": "b", "dataset": {"score": "flow_score"}}]},
            "variants.1.dataset: .*score and drop_bottom_pct go together",
        ),
        (
            {"variants": [{"name": "a"}, {"name": "b", "dataset": {"drop_bottom_pct": 100}}]},
            "variants.1.dataset.drop_bottom_pct: Input should be less than 100",
        ),
        (
            {"variants": [{"name": "a"}, {"name": "b", "overrides": ["init.kind=pipeline"]}]},
            "variants.1.overrides: .*set keys the runner owns",
        ),
        ({"train_overrides": ["trainer.lr"]}, "override 'trainer.lr' is not of the form dotted.key=value"),
        ({"name": "My Ablation"}, "name: .*'My Ablation' must be"),
        ({"evaluation": {"study": {"axes": {"x": ["a", "zz"]}}}}, r"axes.x: unknown variant\(s\) \['zz'\]"),
        ({"grid": {"inits": []}, "variants": []}, "grid.inits is empty"),
        ({"varients": TWO}, "varients: unknown field"),
        ({"grid": {"configs": {"x": ["data.table_uri=y"]}}}, "grid: .*set keys the runner owns"),
        ({"grid": {"datasets": {"image": {}}}}, "grid: .*would be named 'image', reserved for stage I"),
    ],
)
def test_bad_specs_name_the_field(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        spec(**fields)


def test_grid_expansion_is_deterministic_and_names_only_varying_axes() -> None:
    grid = {
        "datasets": {"lvd": {}, "motion25": {"score": "flow_score", "drop_bottom_pct": 25}},
        "inits": ["image_pretrained", "scratch"],
        "configs": {"base": ["trainer.lr=2e-4"]},
    }
    first = spec(grid=grid)
    names = [v.name for v in first.expanded()]
    assert names == [
        "a",
        "b",
        "lvd_image_pretrained",
        "lvd_scratch",
        "motion25_image_pretrained",
        "motion25_scratch",
    ]
    assert [v.init for v in first.expanded()[2:]] == ["image_pretrained", "scratch"] * 2
    again = plan_ablation(spec(grid=grid))
    hashes = [v.train_config.config_hash() for v in plan_ablation(first).variants]
    assert hashes == [v.train_config.config_hash() for v in again.variants]
    # the grid's datasets differ only in data (set at training time): a, b, grid pretrained, grid scratch
    assert len(set(hashes)) == 4 and hashes[2] == hashes[4] and hashes[3] == hashes[5]
    single = spec(
        variants=[], grid={"datasets": {"lvd": {}, "lvd-f": {"score": "flow_score", "drop_bottom_pct": 25}}}
    )
    assert [v.name for v in single.expanded()] == ["lvd", "lvd-f"]


def test_plan_sets_init_and_layers_overrides() -> None:
    variants = [{"name": "a", "overrides": ["trainer.lr=3e-5"]}, {"name": "b", "init": "scratch"}]
    plan = plan_ablation(spec(variants=variants, train_overrides=["num_frames=4", "trainer.lr=1e-3"]))
    pretrained, scratch = plan.variants
    assert pretrained.train_config.trainer.lr == 3e-5 and scratch.train_config.trainer.lr == 1e-3
    assert pretrained.train_config.num_frames == scratch.train_config.num_frames == 4
    assert scratch.train_config.init.kind == "scratch" and scratch.train_config.init.image_unet_uri is None
    assert plan.image_config is not None and plan.image_model_name == "ablation-t-image"
    all_scratch = plan_ablation(
        spec(variants=[{"name": "a", "init": "scratch"}, {"name": "b", "init": "scratch"}])
    )
    assert all_scratch.image_config is None


def test_plan_refuses_configs_of_the_wrong_stage_or_with_bad_overrides() -> None:
    with pytest.raises(
        ConfigError,
        match=r"variant a: configs/train/image\.yaml is a stage-image config; it must be stage video",
    ):
        plan_ablation(spec(train_config="configs/train/image.yaml"))
    with pytest.raises(
        ConfigError, match=r"configs/train/video.yaml \(variant a\): .*height: 33 is not divisible"
    ):
        plan_ablation(spec(train_overrides=["height=33"]))
    with pytest.raises(ConfigError, match=r"config file missing\.yaml does not exist"):
        plan_ablation(spec(image_config="missing.yaml"))


def _table(tmp_path: Path, scores: list[float]) -> str:
    frame = pd.DataFrame(
        {
            "clip_id": [f"c{i}" for i in range(len(scores))],
            "clip_uri": [f"file:///shard.tar#c{i}.mp4" for i in range(len(scores))],
            "duration_s": 2.0,
            "flow_score": scores,
            "caption": None,
        }
    )
    path = tmp_path / "lvd.parquet"
    frame.to_parquet(path)
    return str(path)


def test_prepare_dataset_filters_by_percentile_and_records_thresholds(tmp_path: Path) -> None:
    source = _table(tmp_path, [float(i) for i in range(1, 9)])
    out = tmp_path / "ablation"
    drop = prepare_dataset(
        DatasetVariantConfig(score="flow_score", drop_bottom_pct=25), source, str(out), "drop25"
    )
    (written,) = out.glob("drop25-*.parquet")  # named by content: a rerun finds the same file
    kept = pd.read_parquet(written)
    assert drop.table_uri == str(written) and drop.rows == len(kept) == 6 and drop.source_rows == 8
    again = prepare_dataset(
        DatasetVariantConfig(score="flow_score", drop_bottom_pct=25), source, str(out), "drop25"
    )
    assert again == drop and len(list(out.iterdir())) == 1
    assert kept["flow_score"].min() == 3.0 and drop.thresholds["flow_score"]["min"] == pytest.approx(2.75)
    assert drop.to_dict()["kept_fraction"] == 0.75
    as_is = prepare_dataset(DatasetVariantConfig(), source, str(tmp_path / "unused"), "all")
    assert as_is.table_uri == source and as_is.rows == 8 and not (tmp_path / "unused").exists()
    # The drop-everything case fails loudly instead of training on nothing.
    variant = DatasetVariantConfig.model_validate({"filter": {"scores": {"flow_score": {"min": {"abs": 99}}, "text_area_ratio": {"enabled": False}, "aesthetic_score": {"enabled": False}, "clip_score": {"enabled": False}}, "caption": {"enabled": False}}})  # fmt: skip
    with pytest.raises(InputError, match="removed all 8 rows"):
        prepare_dataset(variant, source, str(tmp_path / "none"), "none")
    assert not (tmp_path / "none").exists()


def test_a_published_folder_is_pinned_to_its_current_version(tmp_path: Path) -> None:
    table = pd.read_parquet(_table(tmp_path, [1.0, 2.0, 3.0]))
    published = publish_dataset(str(tmp_path / "curated"), "lvd_f", table)
    prepared = prepare_dataset(
        DatasetVariantConfig(table_uri=str(tmp_path / "curated" / "lvd_f")), "unused", "x", "v"
    )
    assert prepared.table_uri == published.files["table"] and prepared.rows == 3


def _rated() -> tuple[Any, pd.DataFrame, dict[str, str]]:
    votes = simulate_bradley_terry_votes({"ablation-t-a/1": 1100, "ablation-t-b/1": 1000}, 400, seed=1)
    result = analyze(votes, AnalysisConfig(bootstrap_rounds=50, paper_elo_orderings=0))
    board = variant_leaderboard(result.leaderboard, {"ablation-t-a/1": "a", "ablation-t-b/1": "b"}, True)
    return result, board, {"a": "models:/ablation-t-a/1", "b": "models:/ablation-t-b/1"}


def test_report_files_rank_variants_for_the_dashboard(tmp_path: Path) -> None:
    from flows.apps.dashboard.evaluation import leaderboard_rows, variant_leaderboards

    result, board, models = _rated()
    assert list(board["variant"]) == ["a", "b"] and list(board.columns[:2]) == ["variant", "model_version"]
    plan = plan_ablation(spec())
    source = _table(tmp_path, [1.0, 2.0])
    datasets = {v: prepare_dataset(DatasetVariantConfig(), source, "", v) for v in ("a", "b")}
    variants = report_variants(plan, models, datasets, board)
    assert variants[1]["init"] == "scratch" and variants[1]["model_uri"] == models["b"]
    report = {"name": "t", "synthetic": True, "variants": variants}
    files = write_ablation_report(str(tmp_path / "report"), report, board, result.pooled)
    assert [Path(f).name for f in files] == ["leaderboard.csv", "leaderboard.png", "ablation_report.json"]
    assert (tmp_path / "report" / "leaderboard.png").read_bytes().startswith(b"\x89PNG")
    written = json.loads((tmp_path / "report" / "ablation_report.json").read_text())
    (board_from_report,) = variant_leaderboards(written)
    rows = leaderboard_rows(pd.read_csv(tmp_path / "report" / "leaderboard.csv"))
    assert [r["model"] for r in rows] == [r["model"] for r in board_from_report.rows] == ["a", "b"]
    for row in rows:
        assert row["lower"] <= row["rating"] <= row["upper"]
    unrated = report_variants(plan, models, datasets, None)
    assert all(v["rating"] is None for v in unrated)
    assert write_ablation_report(str(tmp_path / "waiting"), {**report, "variants": unrated}, None, None)[
        0
    ].endswith("ablation_report.json")


def test_cli_help_and_bad_spec_fail_before_any_work(tmp_path: Path, svd_home: Path) -> None:
    app = typer.Typer()
    register(app)

    @app.command("noop")  # a second command keeps `ablate` a named subcommand, as in the real group
    def noop() -> None: ...

    runner = CliRunner()
    assert "--spec" in runner.invoke(app, ["ablate", "--help"]).output
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "t", "variants": [{"name": "only"}]}))
    result = runner.invoke(app, ["ablate", "--spec", str(bad)])
    assert isinstance(result.exception, ConfigError) and "at least two variants, got 1" in str(
        result.exception
    )
    override = runner.invoke(app, ["ablate", "--spec", str(SHIPPED[0]), "evaluation.synthetic.noise=-1"])
    assert isinstance(override.exception, ConfigError)
    assert not svd_home.exists()  # nothing was started


def _pair_votes(question: str, x: str, y: str, wins_x: int, wins_y: int, start: int) -> list[dict[str, Any]]:
    """Decisive votes on one pair, each from its own rater on its own prompt (no clustering to speak of)."""
    rows = []
    for k in range(wins_x + wins_y):
        n = start + k
        rows.append(
            {"study_id": "s", "task_id": f"t{n}", "question": question, "rater_id": f"r{n}",
             "prompt_id": f"p{n}", "model_a": x, "model_b": y, "left": "model_a" if n % 2 else "model_b",
             "winner": "model_a" if k < wins_x else "model_b", "is_gold": False, "synthetic": False,
             "created_at": "2026-01-01T00:00:00+00:00"}
        )  # fmt: skip
    return rows


def test_per_question_pairs_are_corrected_across_pairs() -> None:
    """4 variants (6 pairs per question): a 16-4 pair is significant alone (p ~ 0.012) but not once it is
    read as one of six tests (Holm and BH both give ~0.071); balanced pairs stay at p = 1."""
    variants = {f"ablation-t-{v}/1": v for v in "abcd"}
    models = list(variants)
    rows: list[dict[str, Any]] = []
    for question, lopsided in (("prompt_alignment", (16, 4)), ("visual_quality", (10, 10))):
        for i, x in enumerate(models):
            for y in models[i + 1 :]:
                wins = lopsided if (x, y) == (models[0], models[1]) else (10, 10)
                rows += _pair_votes(question, x, y, *wins, start=len(rows))
    result = analyze(pd.DataFrame(rows), AnalysisConfig(bootstrap_rounds=100, paper_elo_orderings=0))
    for method in ("holm", "bh"):
        reports = question_reports(result, variants, method, alpha=0.05)
        assert sorted(reports) == ["prompt_alignment", "visual_quality"]
        for report in reports.values():
            pairs = report["pairs"]
            assert len(pairs) == 6 and (pairs["p_adjusted"] >= pairs["p_value"]).all()
            assert sorted(report["leaderboard"]["variant"]) == ["a", "b", "c", "d"]
        pairs = reports["prompt_alignment"]["pairs"].set_index(["variant_x", "variant_y"])
        ab = pairs.loc[("a", "b")]
        assert ab["wins_x"] == 16 and ab["p_value"] < 0.05 and ab["significant"]
        assert ab["p_adjusted"] == pytest.approx(6 * ab["p_value"]) and not ab["significant_adjusted"]
        assert not reports["visual_quality"]["pairs"]["significant"].any()
    # The same pair tested alone (a family of one) keeps its p-value and its significance.
    alone = pair_report(result.questions["prompt_alignment"].pairwise.iloc[:1], variants, "holm", 0.05)
    assert alone["p_adjusted"].iloc[0] == alone["p_value"].iloc[0] and alone["significant_adjusted"].iloc[0]
    table = pairs_table(reports)
    assert list(table.columns[:3]) == ["question", "variant_x", "variant_y"] and len(table) == 12


def test_report_files_carry_the_corrected_pairs(tmp_path: Path) -> None:
    result, board, _ = _rated()
    questions = question_reports(result, {"ablation-t-a/1": "a", "ablation-t-b/1": "b"}, "holm", 0.05)
    report = {"name": "t", "synthetic": True, "variants": [], "questions": questions}
    files = write_ablation_report(str(tmp_path), report, board, result.pooled, pairs_table(questions))
    assert [Path(f).name for f in files] == [
        "leaderboard.csv", "leaderboard.png", "pairs.csv", "ablation_report.json",
    ]  # fmt: skip
    pairs = pd.read_csv(tmp_path / "pairs.csv")
    assert pairs[["question", "variant_x", "variant_y"]].values.tolist() == [["overall", "a", "b"]]
    written = json.loads((tmp_path / "ablation_report.json").read_text())
    (pair,) = written["questions"]["overall"]["pairs"]
    assert pair["p_adjusted"] == pytest.approx(pair["p_value"])  # one pair: a family of one
    assert [r["variant"] for r in written["questions"]["overall"]["leaderboard"]] == ["a", "b"]


def test_correction_is_part_of_the_spec() -> None:
    assert spec().correction == "holm" and spec(correction="bh").correction == "bh"
    with pytest.raises(ConfigError, match="correction"):
        spec(correction="bonferroni")
