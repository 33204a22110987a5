"""Bradley-Terry with bootstrap: the platform's vectorised fit vs the public-arena method, same run.

    .venv/bin/python bench/bench_bradley_terry.py [--votes 100000 --models 20 --rounds 1000 --arena-rounds 50]

Arena method (as in the public arena notebooks): every round resamples the battles with
`DataFrame.sample(frac=1, replace=True)`, builds pandas pivot tables of wins/ties and fits a plain
scikit-learn `LogisticRegression` on the pair rows weighted by counts. Running 1,000 such rounds takes
minutes, so by default `--arena-rounds` rounds are timed and the per-round time is extrapolated to
`--rounds` (said so in the output; pass `--arena-rounds 1000` to time them all).

Platform method: the votes become a (pair, outcome) count table once; each bootstrap round is a
multinomial draw over that table; all rounds are fitted at once by batched Newton steps.
The script checks that both give the same point ratings and similar bootstrap spreads.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from svd_core.evaluation.bradley_terry import bradley_terry
from svd_core.evaluation.synthetic import simulate_bradley_terry_votes


def arena_mle_elo(
    battles: pd.DataFrame, scale: float = 400, base: float = 10, init: float = 1000
) -> pd.Series:
    """The public arena's `compute_mle_elo` (pivot tables + logistic regression; ties half a win)."""
    a_win = pd.pivot_table(
        battles[battles["winner"] == "model_a"],
        index="model_a",
        columns="model_b",
        aggfunc="size",
        fill_value=0,
    )
    tie = pd.pivot_table(
        battles[battles["winner"] == "tie"], index="model_a", columns="model_b", aggfunc="size", fill_value=0
    )
    b_win = pd.pivot_table(
        battles[battles["winner"] == "model_b"],
        index="model_a",
        columns="model_b",
        aggfunc="size",
        fill_value=0,
    )
    models = sorted(np.union1d(battles["model_a"].unique(), battles["model_b"].unique()))
    a_win, tie, b_win = (t.reindex(index=models, columns=models, fill_value=0) for t in (a_win, tie, b_win))
    win = a_win * 2 + b_win.T * 2 + tie + tie.T
    index = {m: k for k, m in enumerate(models)}
    rows, labels, weights = [], [], []
    for m_a in models:
        for m_b in models:
            if m_a == m_b:
                continue
            x = np.zeros(len(models))
            x[index[m_a]], x[index[m_b]] = math.log(base), -math.log(base)
            rows += [x, x]
            labels += [1.0, 0.0]
            weights += [win.loc[m_a, m_b], win.loc[m_b, m_a]]
    # penalty=None in the arena code; scikit-learn 1.8+ spells "no penalty" as C=inf
    lr = LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-6)
    lr.fit(np.array(rows), np.array(labels), sample_weight=np.array(weights))
    return pd.Series(scale * lr.coef_[0] + init, index=models)


def arena_bootstrap(battles: pd.DataFrame, rounds: int, seed: int) -> pd.DataFrame:
    return pd.DataFrame(
        [arena_mle_elo(battles.sample(frac=1.0, replace=True, random_state=seed + r)) for r in range(rounds)]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--votes", type=int, default=100_000)
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--arena-rounds", type=int, default=50, help="arena rounds actually timed")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    truth = {f"model-{k:02d}": float(v) for k, v in enumerate(rng.normal(1000, 120, args.models))}
    votes = simulate_bradley_terry_votes(truth, args.votes, seed=args.seed, tie_rate=0.1)
    battles = votes[["model_a", "model_b", "winner"]]
    print(f"{args.votes} votes over {args.models} models (10% ties), {args.rounds} bootstrap rounds")

    start = time.perf_counter()
    fit = bradley_terry(votes, rounds=args.rounds, seed=args.seed)
    fast_s = time.perf_counter() - start

    start = time.perf_counter()
    arena_point = arena_mle_elo(battles)
    arena_point_s = time.perf_counter() - start
    start = time.perf_counter()
    arena_rounds = arena_bootstrap(battles, args.arena_rounds, args.seed)
    arena_round_s = (time.perf_counter() - start) / args.arena_rounds
    arena_total_s = arena_point_s + arena_round_s * args.rounds
    measured = (
        "measured"
        if args.arena_rounds >= args.rounds
        else (f"extrapolated from {args.arena_rounds} timed rounds")
    )

    diff = np.abs(fit.rating - arena_point[fit.models].to_numpy())
    fast_sd = fit.bootstrap.std(axis=0)
    arena_sd = arena_rounds[fit.models].std(axis=0).to_numpy()
    print(f"platform: point fit + {args.rounds} rounds            {fast_s:8.3f} s")
    print(
        f"arena:    point fit {arena_point_s:.3f} s + {arena_round_s:.4f} s/round -> {arena_total_s:8.1f} s ({measured})"
    )
    print(f"speed-up: {arena_total_s / fast_s:.0f}x (platform target >= 100x)")
    print(
        f"point ratings: max |platform - arena| = {diff.max():.4f} Elo (same ranking: "
        f"{list(pd.Series(fit.rating, fit.models).sort_values().index) == list(arena_point.sort_values().index)})"
    )
    print(
        f"bootstrap sd (Elo): platform median {np.median(fast_sd):.2f}, arena median {np.median(arena_sd):.2f} "
        f"(arena from {args.arena_rounds} rounds)"
    )
    if diff.max() > 0.5:
        raise SystemExit(f"point ratings differ by {diff.max():.3f} Elo: the two fits disagree")


if __name__ == "__main__":
    main()
