"""Rater quality from gold (attention-check) pairs, and exclusion of raters who fail them.

A gold pair shows a real sample (`model_a`, the right answer) against a check the question makes
obvious: for prompt following, a video of a *different* prompt by the same model; for visual quality and
overall preference, a visibly degraded copy. Anything but `model_a` (a tie included) is a miss.

Exclusion is a binomial test, not a fixed cut: an attentive rater answers a check right with probability
`attentive_accuracy` (0.9), so a rater is excluded only when their hits are improbably few for an
attentive rater, P(X <= hits | n checks, attentive_accuracy) < `alpha`. That excludes at most `alpha` of
attentive raters whatever their number of checks (a fixed 0.8 cut on 8 checks excludes ~19% of raters
whose true accuracy is 0.9), and with the per-rater quota of 8 checks it excludes a rater who always
clicks one side (50% right on checks) with probability 0.86, a random clicker (1/3) with 0.97
(`checks_needed`). Raters with fewer than `min_gold_votes` checks are "unchecked" (kept unless the config
says otherwise). Excluded raters lose all their votes, since inattention is not specific to gold pairs.
The rating app's admin page shows the same test (`exclusion_p_value`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from svd_core.evaluation.stats import wilson_interval

ATTENTIVE_ACCURACY = 0.9
EXCLUSION_ALPHA = 0.05
QUALITY_COLUMNS = [
    "rater_id",
    "gold_votes",
    "gold_correct",
    "accuracy",
    "lower",
    "upper",
    "p_value",
    "status",
    "excluded",
]


def exclusion_p_value(hits: Any, checks: Any, attentive_accuracy: float = ATTENTIVE_ACCURACY) -> Any:
    """P(X <= hits) for X ~ Binomial(checks, attentive_accuracy): small when a rater misses too many checks
    for an attentive rater (1.0 without checks)."""
    n = np.asarray(checks)
    p = np.where(n > 0, stats.binom.cdf(np.asarray(hits), n, attentive_accuracy), 1.0)
    return float(p) if p.ndim == 0 else p


def checks_needed(
    guess_accuracy: float,
    attentive_accuracy: float = ATTENTIVE_ACCURACY,
    alpha: float = EXCLUSION_ALPHA,
    power: float = 0.8,
    limit: int = 200,
) -> int:
    """Fewest checks per rater with which the exclusion test catches a rater whose hit rate on checks is
    `guess_accuracy` (1/3: random among left/right/tie; 1/2: always one side) with probability `power`."""
    for n in range(1, limit + 1):
        failing = [h for h in range(n + 1) if stats.binom.cdf(h, n, attentive_accuracy) < alpha]
        if failing and stats.binom.cdf(max(failing), n, guess_accuracy) >= power:
            return n
    raise ValueError(f"no quota up to {limit} checks detects {guess_accuracy} with power {power}")


def rater_quality(
    votes: pd.DataFrame,
    attentive_accuracy: float = ATTENTIVE_ACCURACY,
    alpha: float = EXCLUSION_ALPHA,
    min_gold_votes: int = 3,
    exclude_unchecked: bool = False,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """One row per rater: gold votes, hits, accuracy (Wilson interval), exclusion p-value, status
    passed|failed|unchecked, excluded."""
    raters = pd.Index(sorted(votes["rater_id"].unique()), name="rater_id")
    gold = votes[votes["is_gold"]]
    counts = (
        gold.assign(correct=gold["winner"] == "model_a").groupby("rater_id")["correct"].agg(["size", "sum"])
    )
    counts = counts.reindex(raters, fill_value=0)
    n, hits = counts["size"].astype(int), counts["sum"].astype(int)
    accuracy = hits / n.where(n > 0)
    lower, upper = wilson_interval(hits.to_numpy(), n.to_numpy(), confidence)
    p_value = exclusion_p_value(hits.to_numpy(), n.to_numpy(), attentive_accuracy)
    checked = (n >= min_gold_votes).to_numpy()
    status = np.where(checked, np.where(p_value < alpha, "failed", "passed"), "unchecked")
    frame = pd.DataFrame(
        {
            "rater_id": raters,
            "gold_votes": n.to_numpy(),
            "gold_correct": hits.to_numpy(),
            "accuracy": accuracy.to_numpy(),
            "lower": lower,
            "upper": upper,
            "p_value": p_value,
            "status": status,
            "excluded": (status == "failed") | ((status == "unchecked") & exclude_unchecked),
        }
    )
    return frame[QUALITY_COLUMNS]


def excluded_raters(quality: pd.DataFrame) -> list[str]:
    return sorted(quality.loc[quality["excluded"], "rater_id"])


def exclude_raters(votes: pd.DataFrame, raters: list[str]) -> pd.DataFrame:
    """All votes except those of `raters`."""
    return votes[~votes["rater_id"].isin(raters)]
