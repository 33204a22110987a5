"""`svd eval promote` / rollback: the alias moves only when the challenger's evidence clears the rule."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest

from flows import eval_flow
from flows.integrations import registry, tracking
from svd_core.config import load_config
from svd_core.evaluation.config import EvaluateConfig
from svd_core.evaluation.imports import votes_frame
from tests.flows.integrations.test_registry import Echo


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    with pytest.MonkeyPatch.context() as mp:
        root = tmp_path_factory.mktemp("promotion_home")
        mp.setenv("SVD_HOME", str(root))
        yield root


def _register(root: Path, name: str) -> registry.ResolvedModel:
    folder = root / f"pipe-{len(list(root.glob('pipe-*')))}"
    folder.mkdir()
    (folder / "model_index.json").write_text("{}")
    with tracking.run("promotion-test", "stage"):
        return registry.register_pipeline(folder, name, {"svd.stage": "finetune"}, Echo())


def _votes(challenger: str, champion: str, wins: int, losses: int, synthetic: bool = False) -> pd.DataFrame:
    rows = []
    for k in range(wins + losses):
        rows.append({
            "study_id": "s", "task_id": f"t{k}", "question": "overall", "rater_id": f"r{k % 8}",
            "prompt_id": f"p{k % 10}", "model_a": challenger, "model_b": champion,
            "left": "model_a" if k % 2 else "model_b", "winner": "model_a" if k < wins else "model_b",
            "is_gold": False, "synthetic": synthetic, "created_at": "2026-11-24T00:00:00+00:00",
        })  # fmt: skip
    return votes_frame(rows)


def _cfg(*overrides: str) -> EvaluateConfig:
    return load_config(
        EvaluateConfig, "configs/eval/evaluate.yaml", ["analysis.bootstrap_rounds=50", *overrides]
    )


def test_promotion_moves_alias_only_when_bound_is_met_and_rollback_restores(home: Path) -> None:
    v1, v2, v3 = (_register(home, "svd-promo") for _ in range(3))
    first = eval_flow.run_promotion(v1.uri, _cfg())
    assert first["promoted"] and first["champion"] == v1.uri

    close = eval_flow.run_promotion(v2.uri, _cfg(), _votes("svd-promo/2", "svd-promo/1", wins=26, losses=24))
    assert not close["promoted"]
    assert registry.resolve("models:/svd-promo@champion").version == "1"

    clear = eval_flow.run_promotion(v2.uri, _cfg(), _votes("svd-promo/2", "svd-promo/1", wins=40, losses=10))
    assert clear["promoted"] and clear["evidence"]["questions"]["overall"]["lower"] > 0.5
    assert registry.resolve("models:/svd-promo@champion").version == "2"
    assert registry.resolve("models:/svd-promo@previous").version == "1"
    assert registry.resolve(v2.uri).tags["svd.promotion.questions.overall.passed"] == "True"
    assert registry.resolve(v2.uri).tags["svd.promotion.questions.overall.checks.sequential"] == "True"

    stricter = eval_flow.run_promotion(
        v3.uri, _cfg("min_lower_bound=0.7"), _votes("svd-promo/3", "svd-promo/2", wins=40, losses=10)
    )
    assert not stricter["promoted"], "the bar is configurable"

    assert registry.rollback("svd-promo") == "1"
    assert registry.resolve("models:/svd-promo@champion").version == "1"


def test_synthetic_votes_never_promote_unless_allowed(home: Path) -> None:
    a, b = _register(home, "svd-synth"), _register(home, "svd-synth")
    eval_flow.run_promotion(a.uri, _cfg())
    votes = _votes("svd-synth/2", "svd-synth/1", wins=45, losses=5, synthetic=True)
    assert not eval_flow.run_promotion(b.uri, _cfg(), votes)["promoted"]
    assert eval_flow.run_promotion(b.uri, _cfg("allow_synthetic_promotion=true"), votes)["promoted"]
    # the study runs say who rated: tag, rater kind, run name and the description MLflow shows
    runs = mlflow.search_runs(
        experiment_names=["evaluation"],
        filter_string="tags.`svd.study_id` = 'promote-svd-synth-2-vs-1'",
        output_format="list",
    )
    assert len(runs) == 2
    for run in runs:
        assert run.data.tags["svd.synthetic"] == "true" and run.data.tags["svd.raters"].startswith(
            "synthetic:"
        )
        assert run.info.run_name.startswith("synthetic-study-")
        assert run.data.tags["mlflow.note.content"].startswith("SYNTHETIC votes")
    human = mlflow.search_runs(
        experiment_names=["evaluation"], filter_string="tags.`svd.synthetic` = 'false'", output_format="list"
    )
    assert human and all(r.data.tags["svd.raters"] == "human" for r in human)


def test_four_wins_from_one_rater_do_not_move_the_alias(home: Path) -> None:
    a, b = _register(home, "svd-one"), _register(home, "svd-one")
    eval_flow.run_promotion(a.uri, _cfg())
    votes = _votes("svd-one/2", "svd-one/1", wins=4, losses=0).assign(rater_id="r0")
    outcome = eval_flow.run_promotion(b.uri, _cfg(), votes)
    assert not outcome["promoted"]
    assert "1 distinct raters < 7" in outcome["evidence"]["questions"]["overall"]["reason"]
    assert registry.resolve("models:/svd-one@champion").version == "1"
