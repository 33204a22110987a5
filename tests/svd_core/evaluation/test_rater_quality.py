"""Attention checks: the binomial exclusion test keeps attentive raters and catches guessers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from svd_core.evaluation.config import AnalysisConfig, StudyConfig
from svd_core.evaluation.rater_quality import checks_needed, exclusion_p_value, rater_quality


def gold_votes(accuracies: dict[str, float], checks: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for rater, accuracy in accuracies.items():
        for k in range(checks):
            hit = rng.random() < accuracy
            rows.append({"rater_id": rater, "is_gold": True, "winner": "model_a" if hit else "tie", "k": k})
    return pd.DataFrame(rows)


def test_attentive_raters_are_excluded_at_most_at_alpha_unlike_a_fixed_cut():
    raters = {f"r{k}": 0.9 for k in range(4000)}
    quality = rater_quality(gold_votes(raters, 8, seed=1))
    rate = quality["excluded"].mean()
    assert rate <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 4000)
    fixed_cut = (quality["accuracy"] < 0.8).mean()
    assert fixed_cut == pytest.approx(stats.binom.cdf(6, 8, 0.9), abs=0.02) and fixed_cut > 0.15


@pytest.mark.parametrize(("guess", "power"), [(0.5, 0.85), (1 / 3, 0.95)])
def test_guessers_are_caught_with_the_quota(guess, power):
    quality = rater_quality(gold_votes({f"g{k}": guess for k in range(3000)}, 8, seed=2))
    assert quality["excluded"].mean() >= power - 0.03


def test_the_quota_default_follows_the_power_calculation():
    assert checks_needed(0.5) == StudyConfig().gold_per_rater == 8
    assert checks_needed(1 / 3) == 6
    cfg = AnalysisConfig()
    assert (cfg.attentive_accuracy, cfg.exclusion_alpha) == (0.9, 0.05)


def test_few_checks_leave_a_rater_unchecked_and_p_values_are_binomial():
    votes = gold_votes({"new": 0.0}, 2)
    quality = rater_quality(votes, min_gold_votes=3)
    assert quality["status"].tolist() == ["unchecked"] and not quality["excluded"].any()
    assert rater_quality(votes, min_gold_votes=3, exclude_unchecked=True)["excluded"].all()
    assert exclusion_p_value(5, 8) == pytest.approx(stats.binom.cdf(5, 8, 0.9))
    assert exclusion_p_value(0, 0) == 1.0
