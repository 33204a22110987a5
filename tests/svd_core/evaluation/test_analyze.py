"""analyze() end to end on simulated studies, the report files, promotion decisions, the synthetic rater."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from svd_core.errors import InputError
from svd_core.evaluation.analyze import analyze
from svd_core.evaluation.config import AnalysisConfig, PromotionConfig, StudyConfig
from svd_core.evaluation.evalsets import default_eval_set
from svd_core.evaluation.imports import votes_frame
from svd_core.evaluation.promotion import decide_promotion
from svd_core.evaluation.report import write_report
from svd_core.evaluation.schema import VOTE_COLUMNS
from svd_core.evaluation.study import design_study
from svd_core.evaluation.synthetic import SyntheticRater, simulate_bradley_terry_votes

TRUE_ELO = {"champion": 1000.0, "challenger": 1300.0, "weak": 750.0}
FAST = AnalysisConfig(bootstrap_rounds=200, paper_elo_orderings=20)


def study(models=tuple(TRUE_ELO), gold_rate=0.15, num_raters=6):
    eval_set = default_eval_set("text-to-video")
    samples = {m: {pid: f"/samples/{m}/{pid}.mp4" for pid in eval_set.prompt_ids} for m in models}
    return design_study(eval_set, samples, StudyConfig(gold_rate=gold_rate, num_raters=num_raters))


def rate(design, truth, careless=(), seed=0, synthetic=False) -> pd.DataFrame:
    """Votes of the design's raters: attentive ones follow Bradley-Terry `truth`, careless ones guess.

    Each task gets its own shift of the log-odds (some prompts suit one model better), so attentive raters
    agree beyond what the pair alone explains, as real raters do.
    """
    rng = np.random.default_rng(seed)
    tasks = {t["task_id"]: t for t in design.tasks}
    shift = {task_id: rng.normal(0, 1.5) for task_id in tasks}
    rows = []
    for rater, queue in design.assignment.items():
        for task_id in queue:
            task = tasks[task_id]
            if rater in careless:
                winner = str(rng.choice(["model_a", "model_b", "tie"]))
            elif task["is_gold"]:
                winner = "model_a" if rng.random() < 0.99 else "tie"
            else:
                log_odds = (truth[task["model_a"]] - truth[task["model_b"]]) * np.log(10) / 400
                p_a = 1 / (1 + np.exp(-(log_odds + shift[task_id])))
                winner = "tie" if rng.random() < 0.1 else ("model_a" if rng.random() < p_a else "model_b")
            rows.append(
                {
                    **{k: task[k] for k in VOTE_COLUMNS if k in task},
                    "rater_id": rater,
                    "winner": winner,
                    "synthetic": synthetic,
                    "created_at": "2026-01-01T00:00:00+00:00",
                }
            )
    return votes_frame(rows)


@pytest.fixture(scope="module")
def human_votes():
    return rate(study(), TRUE_ELO, careless=("rater_5",), seed=1)


@pytest.fixture(scope="module")
def result(human_votes):
    return analyze(human_votes, FAST)


def test_ranking_recovered_and_careless_rater_excluded(result, human_votes):
    assert list(result.leaderboard["model"]) == ["challenger", "champion", "weak"]
    assert result.excluded_raters == ["rater_5"]
    quality = result.rater_quality.set_index("rater_id")
    assert quality.loc["rater_5", "status"] == "failed" and quality.loc["rater_0", "status"] == "passed"
    assert result.counts["votes_of_excluded_raters"] == int((human_votes["rater_id"] == "rater_5").sum())
    assert result.counts["votes_analysed"] == int(
        (~human_votes["is_gold"] & (human_votes["rater_id"] != "rater_5")).sum()
    )
    assert sorted(result.questions) == ["prompt_alignment", "visual_quality"]
    assert not result.synthetic and any("excluded 1 rater" in w for w in result.warnings)
    board = result.leaderboard
    assert (board["lower"] <= board["rating"]).all() and (board["rating"] <= board["upper"]).all()
    assert board["rating"].mean() == pytest.approx(1000.0)
    assert "paper_elo" in board and board["paper_elo"].mean() == pytest.approx(1000.0)
    agreement = result.pooled.agreement
    assert agreement["tasks_with_2plus_votes"] > 0 and agreement["fleiss_kappa"] > 0.1


def test_keeping_the_careless_rater_adds_noise(human_votes, result):
    lenient = analyze(human_votes, FAST.model_copy(update={"exclusion_alpha": 0.0}))
    assert lenient.excluded_raters == []
    assert lenient.pooled.agreement["fleiss_kappa"] < result.pooled.agreement["fleiss_kappa"]


def test_synthetic_and_human_votes_are_never_mixed_silently(human_votes):
    synthetic = simulate_bradley_terry_votes(TRUE_ELO, 300, seed=1, question="visual_quality")
    mixed = pd.concat([human_votes, synthetic], ignore_index=True)
    with pytest.raises(InputError, match="mix 300 synthetic"):
        analyze(mixed, FAST)
    pooled = analyze(mixed, FAST.model_copy(update={"allow_synthetic_mix": True}))
    assert pooled.synthetic
    assert analyze(synthetic, FAST).synthetic


def test_question_filter_and_bad_tables(human_votes):
    only = analyze(human_votes, FAST.model_copy(update={"questions": ["visual_quality", "overall"]}))
    assert list(only.questions) == ["visual_quality"]
    assert any("[overall] no votes" in w for w in only.warnings)
    with pytest.raises(InputError, match="lacks column"):
        analyze(human_votes.drop(columns=["left"]), FAST)
    with pytest.raises(InputError, match="no non-gold votes"):
        analyze(human_votes[human_votes["is_gold"]], FAST)


def test_report_files(result, tmp_path):
    files = write_report(result, str(tmp_path / "report"))
    names = [f.rsplit("/", 1)[-1] for f in files]
    assert names[-1] == "summary.json"
    for expected in (
        "leaderboard.csv",
        "leaderboard_visual_quality.csv",
        "pairwise.csv",
        "rater_quality.csv",
        "leaderboard.png",
        "winrate_all.png",
        "winrate_prompt_alignment.png",
    ):
        assert expected in names
    board = pd.read_csv(tmp_path / "report" / "leaderboard.csv")
    assert list(board.columns[:4]) == ["model", "rating", "lower", "upper"] and not board["synthetic"].any()
    assert board["rating"].tolist() == pytest.approx(result.leaderboard["rating"].tolist())
    pairwise = pd.read_csv(tmp_path / "report" / "pairwise.csv")
    assert set(pairwise["question"]) == {"all", "prompt_alignment", "visual_quality"}
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["synthetic"] is False and summary["excluded_raters"] == ["rater_5"]
    assert summary["files"] == names[:-1]
    assert 750 <= summary["power_reference"]["decisive_votes_for_55%"] <= 850
    with Image.open(tmp_path / "report" / "leaderboard.png") as image:
        assert image.size[0] > 300


def test_promotion_needs_a_significant_win_on_every_question(result):
    # 5 attentive raters and strong prompt effects (sd 1.5 logits per task): only the 550-Elo gap over
    # `weak` is clear once votes are clustered by rater and prompt
    five_raters = PromotionConfig(min_raters=5, min_decisive_votes=30)
    assert not decide_promotion(result, "challenger", "weak", ["visual_quality"]).promote  # 7 raters needed
    yes = decide_promotion(
        result, "challenger", "weak", ["visual_quality", "prompt_alignment"], rule=five_raters
    )
    assert yes.promote, yes.evidence
    evidence = yes.evidence["questions"]["visual_quality"]
    assert evidence["passed"] and evidence["lower"] > 0.5 and evidence["n"] > 0
    assert not decide_promotion(result, "weak", "challenger", ["visual_quality"], rule=five_raters).promote
    strict = decide_promotion(
        result, "challenger", "weak", ["visual_quality"], min_lower_bound=0.95, rule=five_raters
    )
    assert not strict.promote and "<= 0.95" in strict.evidence["questions"]["visual_quality"]["reason"]
    missing = decide_promotion(result, "challenger", "champion", ["visual_quality", "overall"])
    assert not missing.promote and "no analysed votes" in missing.evidence["questions"]["overall"]["reason"]
    unknown = decide_promotion(result, "challenger", "nobody", ["visual_quality"])
    assert (
        not unknown.promote
        and "no votes compare" in unknown.evidence["questions"]["visual_quality"]["reason"]
    )
    with pytest.raises(InputError):
        decide_promotion(result, "challenger", "challenger", ["visual_quality"])


def test_close_models_with_few_votes_are_not_promoted():
    close = rate(
        study(models=("champion", "challenger"), gold_rate=0), {"champion": 1000, "challenger": 1010}
    )
    decision = decide_promotion(analyze(close, FAST), "challenger", "champion", ["visual_quality"])
    assert not decision.promote


def test_synthetic_results_never_promote_unless_allowed():
    votes = simulate_bradley_terry_votes(TRUE_ELO, 3000, seed=5, question="overall", n_prompts=16)
    synthetic_result = analyze(votes, FAST)
    blocked = decide_promotion(synthetic_result, "challenger", "champion", ["overall"])
    assert not blocked.promote and blocked.evidence["blocked_by_synthetic"]
    assert decide_promotion(
        synthetic_result, "challenger", "champion", ["overall"], allow_synthetic=True
    ).promote


def test_synthetic_rater_follows_its_proxy_and_passes_gold():
    design = study(gold_rate=0.2)
    quality = {"challenger": 2.0, "champion": 1.0, "weak": 0.0}
    scores = {}
    for task in design.tasks:
        base = quality[task["model_a"]]
        scores[task["sample_a_uri"]] = base
        scores[task["sample_b_uri"]] = base - 3.0 if task["is_gold"] else quality[task["model_b"]]
    rater = SyntheticRater("proxy", noise=0.3, seed=1)
    votes = rater.vote(design.tasks, scores, raters=2)
    assert list(votes.columns) == VOTE_COLUMNS and votes["synthetic"].all()
    assert set(votes["rater_id"]) == {"synthetic:proxy:0", "synthetic:proxy:1"}
    assert len(votes) == 2 * len(design.tasks)
    analysed = analyze(votes, FAST)
    assert analysed.synthetic and analysed.excluded_raters == []
    assert list(analysed.leaderboard["model"]) == ["challenger", "champion", "weak"]
    assert votes.equals(rater.vote(design.tasks, scores, raters=2).assign(created_at=votes["created_at"]))
    only_quality = rater.vote(design.tasks, scores, questions=["visual_quality"])
    assert set(only_quality["question"]) == {"visual_quality"}
    with pytest.raises(InputError, match="no proxy score"):
        rater.vote(design.tasks, {})


def test_both_bad_counts_as_a_tie_and_broken_votes_are_left_out_and_reported():
    votes = simulate_bradley_terry_votes(
        {"a": 1100.0, "b": 1000.0, "c": 950.0}, 600, seed=3, tie_rate=0.2, n_raters=8, n_prompts=6
    ).assign(synthetic=False)
    cfg = AnalysisConfig(bootstrap_rounds=100, paper_elo_orderings=0)
    ties = votes.index[votes["winner"] == "tie"]
    both_bad = votes.copy()
    both_bad.loc[ties[::2], "winner"] = "both_bad"  # half of the ties were "both bad" answers
    # Broken-video reports on top: extra rows that must change nothing but the counts and the report.
    broken = votes.iloc[:5].assign(
        winner="broken", rater_id="r-broken", task_id=["t1", "t1", "t2", "t3", "t3"]
    )
    plain, mixed = analyze(votes, cfg), analyze(pd.concat([both_bad, broken], ignore_index=True), cfg)
    pd.testing.assert_frame_equal(plain.leaderboard, mixed.leaderboard)
    pd.testing.assert_frame_equal(plain.pooled.pairwise, mixed.pooled.pairwise)  # both bad: not decisive
    assert mixed.pooled.position_bias == plain.pooled.position_bias
    assert mixed.counts["votes_in"] == len(votes) + 5 and mixed.counts["votes_analysed"] == len(votes)
    assert mixed.counts["broken_votes"] == 5 and mixed.counts["both_bad_votes"] == len(ties[::2])
    assert [(t["task_id"], t["reports"]) for t in mixed.broken_videos] == [("t1", 2), ("t2", 1), ("t3", 2)]
    assert mixed.broken_videos[0]["raters"] == ["r-broken"]
    assert any("5 vote(s) reported a broken video on 3 task(s)" in w for w in mixed.warnings)
    assert not plain.broken_videos and plain.counts["broken_votes"] == 0
    with pytest.raises(InputError, match=r"unknown winner value\(s\) \['left'\]"):
        analyze(votes.assign(winner="left"), cfg)


def test_broken_gold_votes_do_not_count_against_a_rater():
    design = study(gold_rate=0.3)
    votes = rate(design, TRUE_ELO)
    gold = votes["is_gold"] & (votes["rater_id"] == "rater_0")
    failing = votes.assign(winner=np.where(gold, "both_bad", votes["winner"]))  # both bad: a missed check
    assert "rater_0" in analyze(failing, FAST).excluded_raters
    reported = votes.assign(winner=np.where(gold, "broken", votes["winner"]))  # broken: not the rater's fault
    result = analyze(reported, FAST)
    assert "rater_0" not in result.excluded_raters
    assert result.counts["broken_votes"] == int(gold.sum())
