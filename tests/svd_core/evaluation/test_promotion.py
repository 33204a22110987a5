"""The promotion rule: evidence minimums, the mixture SPRT (checked after every batch of votes), the
clustered bound, and defaults that follow the power calculation for a 60% win rate."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from svd_core.config import load_config
from svd_core.evaluation.analyze import analyze
from svd_core.evaluation.config import AnalysisConfig, EvaluateConfig, PromotionConfig
from svd_core.evaluation.imports import votes_frame
from svd_core.evaluation.power import (
    min_clusters,
    mixture_log_evidence,
    one_sided_votes_needed,
    sequential_power,
    sequential_votes_needed,
)
from svd_core.evaluation.promotion import decide_promotion, sequential_evidence, study_plan
from svd_core.evaluation.stats import wilson_interval
from svd_core.evaluation.synthetic import simulate_bradley_terry_votes

FAST = AnalysisConfig(bootstrap_rounds=200, paper_elo_orderings=0)


def votes(rows: list[tuple[str, str, str]], question: str = "overall") -> pd.DataFrame:
    """(rater, prompt, winner) rows of challenger (model_a) vs champion (model_b)."""
    return votes_frame(
        [
            {
                "study_id": "s",
                "task_id": f"t{k}",
                "question": question,
                "rater_id": rater,
                "prompt_id": prompt,
                "model_a": "challenger",
                "model_b": "champion",
                "left": "model_a" if k % 2 else "model_b",
                "winner": winner,
                "is_gold": False,
                "synthetic": False,
                "created_at": "2026-12-04T00:00:00+00:00",
            }
            for k, (rater, prompt, winner) in enumerate(rows)
        ]
    )


def test_four_nil_from_one_rater_does_not_promote_even_with_every_minimum_waived():
    sweep = votes([("r0", f"p{k}", "model_a") for k in range(4)])
    result = analyze(sweep, FAST)
    decision = decide_promotion(result, "challenger", "champion", ["overall"])
    assert not decision.promote
    checks = decision.evidence["questions"]["overall"]["checks"]
    assert checks == {
        "decisive_votes": False, "raters": False, "prompts": False, "sequential": False,
        "clustered_bound": True,
    }  # fmt: skip
    assert result.win_rate("challenger", "champion", "overall")["p_value"] == pytest.approx(0.125)
    waived = PromotionConfig(min_decisive_votes=1, min_raters=1, min_prompts=1)
    again = decide_promotion(result, "challenger", "champion", ["overall"], rule=waived)
    assert not again.promote, "the sequential test alone refuses 4-0: its evidence is ~3.5, not 20"
    assert sequential_evidence(4, 0, waived) == pytest.approx(np.mean([1.2**4, 1.3**4, 1.4**4, 1.5**4]))


def test_a_study_that_meets_the_rule_promotes():
    truth = {"challenger": 1150.0, "champion": 1000.0}  # ~70% win rate
    study = simulate_bradley_terry_votes(
        truth, 300, seed=11, n_raters=12, n_prompts=16, tie_rate=0.1, question="overall"
    ).assign(synthetic=False)
    result = analyze(study, FAST)
    decision = decide_promotion(result, "challenger", "champion", ["overall"])
    evidence = decision.evidence["questions"]["overall"]
    assert decision.promote, evidence["reason"]
    assert all(evidence["checks"].values())
    assert evidence["raters"] == 12 and evidence["prompts"] == 16
    assert evidence["sequential_evidence"] >= 20
    assert not decide_promotion(result, "champion", "challenger", ["overall"]).promote


def test_rater_concentration_blocks_promotion_that_vote_counts_alone_would_allow():
    # 60 decisive wins, but from 3 raters: the evidence is about 3 people's taste
    rows = [(f"r{k % 3}", f"p{k % 20}", "model_a" if k % 5 else "model_b") for k in range(75)]
    decision = decide_promotion(analyze(votes(rows), FAST), "challenger", "champion", ["overall"])
    assert not decision.promote
    assert "3 distinct raters < 7" in decision.evidence["questions"]["overall"]["reason"]


def test_defaults_follow_the_power_calculation_for_a_60_percent_win_rate():
    rule = PromotionConfig()
    fixed = one_sided_votes_needed(0.6, rule.alpha, 0.8)
    sequential = sequential_votes_needed(0.6, rule.alpha, 0.8, rule.alternatives)
    assert (fixed, sequential) == (153, 277)
    assert rule.min_decisive_votes == one_sided_votes_needed(0.7, rule.alpha, 0.8)
    assert rule.min_raters == min_clusters(sequential, fixed, 0.02)
    assert rule.min_prompts == min_clusters(sequential, fixed, 0.02)
    assert sequential_power(sequential, 0.6, rule.alpha, rule.alternatives) >= 0.8
    assert sequential_power(sequential - 1, 0.6, rule.alpha, rule.alternatives) < 0.8
    plan = study_plan(rule)
    assert plan["votes_per_pair"] == math.ceil(277 / 0.9)
    # the shipped promotion study (16-prompt sets x raters_per_pair) plans at least that many votes per pair
    shipped = load_config(EvaluateConfig, "configs/eval/evaluate.yaml", [])
    assert 16 * shipped.study.raters_per_pair >= plan["votes_per_pair"]


def test_mixture_evidence_is_a_martingale_of_mean_one_under_the_null():
    n = 40
    k = np.arange(n + 1)
    from scipy import stats

    mean = (stats.binom.pmf(k, n, 0.5) * np.exp(mixture_log_evidence(k, n - k, [0.6, 0.7]))).sum()
    assert mean == pytest.approx(1.0)


def _peeking_false_promotions(studies: int, batch: int, looks: int, seed: int) -> dict[str, float]:
    """H0 (true win rate 50%, independent decisive votes): check after every batch, stop at the first pass."""
    rule = PromotionConfig()
    rng = np.random.default_rng(seed)
    wins = rng.binomial(1, 0.5, size=(studies, batch * looks)).cumsum(axis=1)[:, batch - 1 :: batch]
    n = np.arange(1, looks + 1) * batch
    losses = n - wins
    sprt = (mixture_log_evidence(wins, losses, rule.alternatives) >= math.log(1 / rule.alpha)) & (
        n >= rule.min_decisive_votes
    )
    lower, _ = wilson_interval(wins, np.broadcast_to(n, wins.shape))
    return {"sequential": float(sprt.any(axis=1).mean()), "wilson": float((lower > 0.5).any(axis=1).mean())}


def test_checking_after_every_batch_keeps_false_promotions_at_alpha():
    studies = 20_000
    rates = _peeking_false_promotions(studies, batch=10, looks=40, seed=3)  # up to 400 decisive votes
    mc_error = math.sqrt(0.05 * 0.95 / studies)
    assert rates["sequential"] <= 0.05 + 3 * mc_error, rates
    assert rates["wilson"] > 0.1, "the old rule, re-run as votes arrive, promotes far too often"


@pytest.mark.slow
def test_full_rule_false_promotion_rate_with_clustered_votes_and_peeking():
    """The whole rule re-run after every 40 votes up to 400, on 500 studies where the two models are equally
    good on average but raters (20) and prompts (32) have tastes of 60 Elo each: false promotions must
    stay within alpha + 3 MC errors. The cheap checks (counts, raters, prompts, the SPRT) run first; only
    when they all pass is the study analysed (clustered bootstrap) and `decide_promotion` asked, which
    applies every check again: the same decisions as calling it at every look, far faster."""
    rule = PromotionConfig()
    truth = {"challenger": 1000.0, "champion": 1000.0}
    studies, promoted, sprt_only = 500, 0, 0
    for s in range(studies):
        study = simulate_bradley_terry_votes(
            truth, 400, seed=7000 + s, n_raters=20, n_prompts=32, rater_sd=60.0, prompt_sd=60.0,
            tie_rate=0.1, question="overall",
        ).assign(synthetic=False)  # fmt: skip
        a, b, winner = (study[c].to_numpy(str) for c in ("model_a", "model_b", "winner"))
        won = np.where(winner == "model_a", a, np.where(winner == "model_b", b, ""))
        sprt_passed = False
        for end in range(40, 401, 40):
            wins, losses = int((won[:end] == "challenger").sum()), int((won[:end] == "champion").sum())
            decisive = study.iloc[:end][won[:end] != ""]
            cheap = (
                wins + losses >= rule.min_decisive_votes
                and decisive["rater_id"].nunique() >= rule.min_raters
                and decisive["prompt_id"].nunique() >= rule.min_prompts
                and sequential_evidence(wins, losses, rule) >= 1 / rule.alpha
            )
            if not cheap:
                continue
            sprt_passed = True
            result = analyze(study.iloc[:end], FAST.model_copy(update={"seed": s}))
            if decide_promotion(result, "challenger", "champion", ["overall"], rule=rule).promote:
                promoted += 1
                break
        sprt_only += sprt_passed
    rate = promoted / studies
    mc_error = math.sqrt(0.05 * 0.95 / studies)
    print(
        f"false promotions with peeking (clustered votes): full rule {rate:.4f}, evidence + SPRT alone "
        f"{sprt_only / studies:.4f} (nominal 0.05, MC error {mc_error:.4f})"
    )
    assert rate <= 0.05 + 3 * mc_error
