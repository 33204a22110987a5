"""How many votes separate two models: sample size and power of the pairwise binomial test.

Only decisive votes (not ties) carry information in the exact test, so sizes are in decisive votes;
`more_votes_needed` converts back to total votes with the observed tie share. Reference (svd-facts):
about 800 decisive votes detect a 55% win rate (~35 Elo) at alpha 0.05 and power 0.8; the paper's ~192
votes per pair detect about 60% (~70 Elo).
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from scipy import special, stats


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


# --- promotion: one-sided, sequential and clustered sizes --------------------------------------------------
def one_sided_votes_needed(win_rate: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Decisive votes for a one-sided test of 50% vs `win_rate` > 0.5 (normal approximation).

    n = ((z_{1-alpha} * 0.5 + z_{power} * sqrt(p (1-p))) / (p - 0.5))^2.
    """
    if not 0.5 < win_rate < 1.0:
        raise ValueError(f"win_rate must be in (0.5, 1) for a one-sided test, got {win_rate}")
    z_alpha, z_power = stats.norm.ppf(1.0 - alpha), stats.norm.ppf(power)
    n = ((z_alpha * 0.5 + z_power * math.sqrt(win_rate * (1.0 - win_rate))) / (win_rate - 0.5)) ** 2
    return float(math.ceil(n))


def mixture_log_evidence(wins: Any, losses: Any, alternatives: Sequence[float]) -> Any:
    """Log of the mixture likelihood ratio (equal weights over `alternatives`) of decisive votes vs 50%.

    Each component prod (p/0.5)^wins ((1-p)/0.5)^losses is a nonnegative martingale of mean 1 under
    H0 (win rate 0.5 or lower for alternatives > 0.5), and so is their average; by Ville's inequality
    P(it ever reaches 1/alpha) <= alpha, however often it is checked (a mixture SPRT).
    """
    w = np.asarray(wins, dtype=np.float64)[..., None]
    lose = np.asarray(losses, dtype=np.float64)[..., None]
    p = np.asarray(alternatives, dtype=np.float64)
    terms = w * np.log(2.0 * p) + lose * np.log(2.0 * (1.0 - p))
    return special.logsumexp(terms, axis=-1) - math.log(len(p))


def _crossing_probabilities(
    win_rate: float, alpha: float, alternatives: Sequence[float], limit: int
) -> Iterator[float]:
    """P(the mixture SPRT has crossed 1/alpha by vote t) for t = 1 .. limit: an exact dynamic programme
    over (votes so far, wins so far), crossed paths absorbed."""
    threshold = math.log(1.0 / alpha)
    alive = np.array([1.0])  # probability of each win count among paths that have not crossed yet
    crossed = 0.0
    for t in range(1, limit + 1):
        nxt = np.zeros(t + 1)
        nxt[1:] += alive * win_rate
        nxt[:-1] += alive * (1.0 - win_rate)
        k = np.arange(t + 1)
        over = mixture_log_evidence(k, t - k, alternatives) >= threshold
        crossed += float(nxt[over].sum())
        nxt[over] = 0.0
        alive = nxt
        yield crossed


def sequential_power(n: int, win_rate: float, alpha: float, alternatives: Sequence[float]) -> float:
    """Probability that the mixture SPRT crosses 1/alpha within `n` decisive votes at a true `win_rate`.

    Exact dynamic programme over (votes so far, wins so far), the crossed paths absorbed.
    """
    return (
        collections.deque(_crossing_probabilities(win_rate, alpha, alternatives, n), maxlen=1)[0]
        if n
        else 0.0
    )


def sequential_votes_needed(
    win_rate: float, alpha: float, power: float, alternatives: Sequence[float], limit: int = 5000
) -> int:
    """Fewest decisive votes with which the mixture SPRT reaches `power` at a true `win_rate`."""
    for t, crossed in enumerate(_crossing_probabilities(win_rate, alpha, alternatives, limit), start=1):
        if crossed >= power:
            return t
    raise ValueError(f"the sequential test does not reach power {power} at {win_rate} within {limit} votes")


def min_clusters(total_votes: float, needed_votes: float, icc: float) -> int:
    """Fewest clusters (raters or prompts) over which `total_votes` must be spread so that their effective
    size under the design effect 1 + (m - 1) icc (m = votes per cluster) still reaches `needed_votes`."""
    if total_votes < needed_votes:
        raise ValueError(f"total_votes {total_votes} < needed_votes {needed_votes}: no spread is enough")
    if icc <= 0:
        return 1
    # total / (1 + (total/g - 1) icc) >= needed  <=>  total/g - 1 <= (total/needed - 1) / icc
    per_cluster = 1.0 + (total_votes / needed_votes - 1.0) / icc
    return max(1, math.ceil(total_votes / per_cluster))
