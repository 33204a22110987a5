"""Bradley-Terry with bootstrap: the platform's vectorised fit vs two public-arena methods, same run.

    .venv/bin/python bench/bench_bradley_terry.py [--votes 100000 --models 20 --raters 500 --prompts 1000
        --rounds 1000 --arena-rounds 50 --fastchat-rounds 50]

Votes are simulated with rater and prompt effects (`--effect-sd` Elo each), so they carry rater_id and
prompt_id and the platform's default multiway (rater x prompt) cluster bootstrap has real clusters.

Arena notebook method: every round resamples the battles with `DataFrame.sample(frac=1, replace=True)`,
builds pandas pivot tables of wins/ties and fits a plain scikit-learn `LogisticRegression` on the pair
rows weighted by counts.

FastChat's current `compute_elo_mle_with_tie` bootstrap (fastchat/serve/monitor/elo_analysis.py,
reimplemented here, no network): the battles become unique (model_a, model_b, outcome) rows with counts,
each round is a multinomial draw of those counts, and each round is fitted on its own by scipy L-BFGS-B
(maxiter 100, gtol 1e-6) on the tie-as-half-win log-likelihood; FastChat maps the rounds over a process
pool of all cores, here they run in this one process, so its time is CPU time (divide by the cores a
pool would use for its ideal wall time; the ratio printed is per core).

Both arena methods take minutes for 1,000 rounds, so `--arena-rounds` / `--fastchat-rounds` rounds are
timed and the per-round time is extrapolated to `--rounds` (said so in the output).

Platform method: the votes become a (pair, outcome) count table with its (rater, prompt) groups once;
each bootstrap round is raters x prompts drawn with replacement (or one multinomial draw for the vote
bootstrap); all rounds are fitted at once by batched Newton steps. The script checks that the point
ratings agree with the arena fit (the platform's small prior aside) and compares bootstrap spreads.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit
from sklearn.linear_model import LogisticRegression

from svd_core.evaluation.bradley_terry import BradleyTerryFit, bradley_terry
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


def fastchat_unique_outcomes(battles: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Unique (model_a, model_b, outcome) rows and their counts; outcome 1 (a won), 0.5 (tie), 0 (b won)."""
    models = sorted(set(battles["model_a"]) | set(battles["model_b"]))
    index = {m: k for k, m in enumerate(models)}
    rows = np.empty((len(battles), 3), dtype=np.int64)
    rows[:, 0] = battles["model_a"].map(index).to_numpy()
    rows[:, 1] = battles["model_b"].map(index).to_numpy()
    rows[:, 2] = np.select([battles["winner"] == "model_a", battles["winner"] == "model_b"], [2, 0], 1)
    unique, counts = np.unique(rows, axis=0, return_counts=True)
    return unique[:, :2], unique[:, 2] / 2.0, counts.astype(np.float64), models


def fastchat_fit(
    matchups: np.ndarray, outcomes: np.ndarray, weights: np.ndarray, n_models: int
) -> np.ndarray:
    """One L-BFGS-B fit of the weighted tie-as-half-win likelihood (ratings in base-10 log-odds units)."""
    alpha = math.log(10.0)

    def loss_and_grad(ratings: np.ndarray) -> tuple[float, np.ndarray]:
        logits = alpha * (ratings[matchups[:, 0]] - ratings[matchups[:, 1]])
        probs = expit(logits)
        loss = -((np.log(probs) * outcomes + np.log1p(-probs) * (1.0 - outcomes)) * weights).sum()
        pair_grad = -alpha * (outcomes - probs) * weights
        grad = np.zeros(n_models)
        np.add.at(grad, matchups[:, 0], pair_grad)
        np.add.at(grad, matchups[:, 1], -pair_grad)
        return float(loss), grad

    result = minimize(
        loss_and_grad, np.zeros(n_models), jac=True, method="L-BFGS-B", options={"maxiter": 100, "gtol": 1e-6}
    )
    return np.asarray(result.x)


def fastchat_bootstrap(battles: pd.DataFrame, rounds: int, seed: int) -> pd.DataFrame:
    """FastChat's current bootstrap: multinomial draws of the unique-row counts, one L-BFGS-B fit each."""
    matchups, outcomes, weights, models = fastchat_unique_outcomes(battles)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(len(battles), weights / weights.sum(), size=rounds) / len(battles)
    fits = [fastchat_fit(matchups, outcomes, w, len(models)) for w in draws]
    return pd.DataFrame(400.0 * np.array(fits) + 1000.0, columns=models)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--votes", type=int, default=100_000)
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--arena-rounds", type=int, default=50, help="arena notebook rounds actually timed")
    parser.add_argument("--fastchat-rounds", type=int, default=50, help="FastChat rounds actually timed")
    parser.add_argument("--raters", type=int, default=500)
    parser.add_argument("--prompts", type=int, default=1000)
    parser.add_argument("--effect-sd", type=float, default=60.0, help="rater and prompt effects (Elo)")
    parser.add_argument("--repeats", type=int, default=3, help="platform runs per method (median time)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    truth = {f"model-{k:02d}": float(v) for k, v in enumerate(rng.normal(1000, 120, args.models))}
    votes = simulate_bradley_terry_votes(
        truth,
        args.votes,
        seed=args.seed,
        tie_rate=0.1,
        n_raters=args.raters,
        n_prompts=args.prompts,
        rater_sd=args.effect_sd,
        prompt_sd=args.effect_sd,
    )
    battles = votes[["model_a", "model_b", "winner"]]
    groups = votes.groupby(["rater_id", "prompt_id"]).ngroups
    print(
        f"{args.votes} votes over {args.models} models (10% ties), {args.raters} raters x {args.prompts} "
        f"prompts ({groups} rater-prompt groups, effects {args.effect_sd:g} Elo), {args.rounds} bootstrap rounds"
    )

    def timed(cluster: str) -> tuple[BradleyTerryFit, float]:
        """Median wall time of `--repeats` full runs (point fit + rounds); this machine may be shared."""
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = bradley_terry(votes, rounds=args.rounds, seed=args.seed, cluster=cluster)
            times.append(time.perf_counter() - start)
        return result, float(np.median(times))

    fit, fast_s = timed("rater_prompt")  # the default: rater x prompt clusters
    vote_fit, vote_s = timed("vote")

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

    start = time.perf_counter()
    fastchat_rounds = fastchat_bootstrap(battles, args.fastchat_rounds, args.seed)
    fastchat_round_s = (time.perf_counter() - start) / args.fastchat_rounds
    fastchat_total_s = fastchat_round_s * args.rounds
    fastchat_measured = (
        "measured"
        if args.fastchat_rounds >= args.rounds
        else f"extrapolated from {args.fastchat_rounds} timed rounds"
    )

    diff = np.abs(fit.rating - arena_point[fit.models].to_numpy())
    fast_sd = fit.bootstrap.std(axis=0)
    vote_sd = vote_fit.bootstrap.std(axis=0)
    arena_sd = arena_rounds[fit.models].std(axis=0).to_numpy()
    fastchat_sd = fastchat_rounds[fit.models].std(axis=0).to_numpy()
    print(
        f"platform, rater x prompt clusters: point fit + {args.rounds} rounds {fast_s:8.3f} s (median of {args.repeats})"
    )
    print(
        f"platform, vote bootstrap:          point fit + {args.rounds} rounds {vote_s:8.3f} s (median of {args.repeats})"
    )
    print(
        f"arena notebook: point fit {arena_point_s:.3f} s + {arena_round_s:.4f} s/round -> {arena_total_s:8.1f} s ({measured})"
    )
    print(
        f"FastChat compute_elo_mle_with_tie bootstrap: {fastchat_round_s:.4f} s/round -> {fastchat_total_s:8.1f} s "
        f"CPU ({fastchat_measured}; FastChat spreads rounds over a process pool)"
    )
    print(f"speed-up vs arena notebook (clustered): {arena_total_s / fast_s:.0f}x (platform target >= 100x)")
    print(f"speed-up vs FastChat (clustered, per core): {fastchat_total_s / fast_s:.0f}x")
    print(f"speed-up vs arena notebook (vote bootstrap): {arena_total_s / vote_s:.0f}x")
    print(
        f"point ratings: max |platform - arena| = {diff.max():.4f} Elo (same ranking: "
        f"{list(pd.Series(fit.rating, fit.models).sort_values().index) == list(arena_point.sort_values().index)})"
    )
    print(
        f"bootstrap sd (Elo, median over models): platform clustered {np.median(fast_sd):.2f}, platform vote "
        f"{np.median(vote_sd):.2f}, arena {np.median(arena_sd):.2f} ({args.arena_rounds} rounds), FastChat "
        f"{np.median(fastchat_sd):.2f} ({args.fastchat_rounds} rounds); the vote-level ones ignore the clusters"
    )
    if diff.max() > 0.5:
        raise SystemExit(f"point ratings differ by {diff.max():.3f} Elo: the two fits disagree")


if __name__ == "__main__":
    main()
