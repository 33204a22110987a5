"""How many votes separate two models: sample size and power of the pairwise binomial test.

Only decisive votes (not ties) carry information in the exact test, so sizes are in decisive votes;
`more_votes_needed` converts back to total votes with the observed tie share. Reference (svd-facts):
about 800 decisive votes detect a 55% win rate (~35 Elo) at alpha 0.05 and power 0.8; the paper's ~192
votes per pair detect about 60% (~70 Elo).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def elo_to_win_rate(elo_difference: float, scale: float = 400.0) -> float:
    """Expected win rate of a model `elo_difference` points above its opponent."""
    return 1.0 / (1.0 + 10.0 ** (-elo_difference / scale))


def win_rate_to_elo(win_rate: float, scale: float = 400.0) -> float:
    return scale * math.log10(win_rate / (1.0 - win_rate))


def decisive_votes_needed(win_rate: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Decisive votes for a two-sided test of 50% to detect `win_rate` (normal approximation).

    n = ((z_{1-alpha/2} * 0.5 + z_{power} * sqrt(p (1-p))) / (p - 0.5))^2; infinite at p = 0.5.
    """
    if not 0.0 < win_rate < 1.0:
        raise ValueError(f"win_rate must be strictly between 0 and 1, got {win_rate}")
    if win_rate == 0.5:
        return math.inf
    z_alpha = stats.norm.ppf(1.0 - alpha / 2.0)
    z_power = stats.norm.ppf(power)
    n = ((z_alpha * 0.5 + z_power * math.sqrt(win_rate * (1.0 - win_rate))) / (win_rate - 0.5)) ** 2
    return float(math.ceil(n))


def exact_binomial_power(n: int, win_rate: float, alpha: float = 0.05) -> float:
    """Power of the exact two-sided binomial test (H0: 50%) with `n` decisive votes at a true `win_rate`."""
    if n <= 0:
        return 0.0
    k = np.arange(n + 1)
    # two-sided p-value of a symmetric null: twice the smaller tail, capped at 1
    p_values = np.minimum(1.0, 2.0 * np.minimum(stats.binom.cdf(k, n, 0.5), stats.binom.sf(k - 1, n, 0.5)))
    return float(stats.binom.pmf(k[p_values <= alpha], n, win_rate).sum())


def votes_still_needed(
    wins: float, losses: float, ties: float = 0, alpha: float = 0.05, power: float = 0.8
) -> dict[str, float]:
    """For an observed pair: decisive votes needed at the observed win rate, how many more, in total votes.

    Returns a dict with `decisive_needed`, `more_decisive_needed` and `more_votes_needed` (tie share
    included); all infinite when the pair is tied so far (no evidence of any difference).
    """
    decisive = wins + losses
    if decisive == 0 or wins == losses:
        return {"decisive_needed": math.inf, "more_decisive_needed": math.inf, "more_votes_needed": math.inf}
    observed = wins / decisive
    observed = min(max(observed, 1e-6), 1 - 1e-6)
    needed = decisive_votes_needed(observed, alpha, power)
    more_decisive = max(0.0, needed - decisive)
    decisive_share = decisive / (decisive + ties)
    return {
        "decisive_needed": needed,
        "more_decisive_needed": more_decisive,
        "more_votes_needed": float(math.ceil(more_decisive / decisive_share)),
    }
