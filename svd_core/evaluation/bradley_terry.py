"""Bradley-Terry ratings with clustered bootstrap intervals, fitted for all bootstrap rounds at once.

Model: P(i beats j) = sigmoid(theta_i - theta_j); a tie counts as half a win for each side (as public
arenas do). Ratings are shown on the Elo scale, `scale` points per tenfold odds, mean `anchor`.

Prior: a Gaussian prior N(0, 1/prior) on every log-strength, i.e. the L2 penalty prior/2 * ||theta||^2
that choix applies through the `alpha` argument of `opt_pairwise` / `ilsr_pairwise`. A model that never
lost then gets a finite rating that no longer depends on the iteration limit; with the default 0.01 a
model's rating moves by about 0.01 / (its Fisher information), under 0.1% once it has ~50 votes.

Intervals: raters have tastes and prompts have difficulty, so votes sharing a rater or a prompt are not
independent. The default `cluster="rater_prompt"` is a multiway cluster bootstrap: each round draws the
raters with replacement and, independently, the prompts with replacement, and a vote counts the mean of
(times its rater was drawn) and (times its prompt was drawn). The rounds' spread is then (V_rater +
V_prompt) / 4, where V_rater and V_prompt are the one-way cluster-bootstrap variances; each model's draws
are rescaled about the point fit to the two-way variance of Cameron, Gelbach & Miller (2011),
V_rater + V_prompt - V_cell (never below V_cell), V_cell being the analytic sandwich variance clustered on
(rater, prompt) cells, times the small-sample factor G / (G - 1) and (t_{G-1} / z)^2 of the axis with
fewer clusters. (Product weights, Owen's 2007 pigeonhole bootstrap, count each cell's own variance ~3
times and cost rounds x (rater, prompt) groups; the mean of the two draws costs rounds x (raters +
prompts) x cells in two matrix products.) `cluster="rater"` / `"prompt"` are the one-way cluster
bootstraps; `cluster="vote"` is the plain vote bootstrap of the public arenas (right only for
independent votes).

Why it is fast: a round only changes how often each (pair, outcome) cell occurs. Without clustering a
round is one multinomial draw over the count table; with clustering it is (rater draws @ votes per rater
and cell + prompt draws @ votes per prompt and cell) / 2. The rounds are independent problems of the same
shape, solved together by batched Newton steps (the Hessian is a weighted graph Laplacian plus the prior,
with the mean pinned to zero).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import sparse
from scipy import stats as sps
from scipy.special import expit

from svd_core.errors import InputError

MAX_STEP = 2.0  # natural-log units per Newton step: keeps early iterates of separated data from exploding
RIDGE = 1e-9  # makes the Newton system solvable when a resample drops every vote of a model
DEFAULT_PRIOR = 0.01  # precision of the Gaussian prior on log-strengths (choix's `alpha`)
OUTCOME_SCORE = np.array([1.0, 0.0, 0.5])  # what a vote in each cell (i won, j won, tie) scores for i
DENSE_CELLS = 2_000_000  # clusters x cells up to which the per-cluster vote table is multiplied densely

Cluster = Literal["rater_prompt", "rater", "prompt", "vote"]
CLUSTERS: tuple[str, ...] = ("rater_prompt", "rater", "prompt", "vote")


@dataclass(frozen=True)
class VoteGroups:
    """How the votes of a count table fall into (rater, prompt) groups: the clustering of the bootstrap."""

    rater: np.ndarray
    """(G,) rater code of each group."""
    prompt: np.ndarray
    """(G,) prompt code of each group."""
    n_raters: int
    n_prompts: int
    counts: sparse.csr_matrix
    """(G, K*3) votes of each group in each (pair, outcome) cell."""


@dataclass(frozen=True)
class CountTable:
    """Votes reduced to counts per pair: `counts[k] = (wins of i[k], wins of j[k], ties)`."""

    models: tuple[str, ...]
    i: np.ndarray
    j: np.ndarray
    counts: np.ndarray
    groups: VoteGroups | None = None
    """Votes per (rater, prompt) group; None when the votes carry neither rater_id nor prompt_id."""

    @property
    def n_votes(self) -> int:
        return int(self.counts.sum())


def _codes(values: pd.Series) -> tuple[np.ndarray, int]:
    codes, uniques = pd.factorize(values.astype(str), sort=True)
    return codes.astype(np.int64), len(uniques)


def count_table(votes: pd.DataFrame) -> CountTable:
    """Count table of a vote DataFrame (columns model_a, model_b, winner), pairs as (i < j) in name order.

    Integer codes and one bincount: a single pass over the votes, however many there are. When the votes
    have `rater_id` and/or `prompt_id`, the table also records the (rater, prompt) groups for the clustered
    bootstrap (a missing `rater_id` makes every vote its own rater, a missing `prompt_id` one prompt).
    """
    models = tuple(sorted(set(votes["model_a"].unique()) | set(votes["model_b"].unique())))
    m = len(models)
    codes = pd.CategoricalDtype(list(models))
    a = votes["model_a"].astype(codes).cat.codes.to_numpy(np.int64)
    b = votes["model_b"].astype(codes).cat.codes.to_numpy(np.int64)
    winner = votes["winner"].to_numpy()
    won = np.where(winner == "model_a", a, np.where(winner == "model_b", b, -1))
    i, j = np.minimum(a, b), np.maximum(a, b)
    outcome = np.where(won == -1, 2, np.where(won == i, 0, 1))  # 0: i won, 1: j won, 2: tie
    pair_flat = i * m + j
    cells = np.bincount(pair_flat * 3 + outcome, minlength=m * m * 3).reshape(m * m, 3)
    present = np.flatnonzero(cells.sum(axis=1))
    groups = None
    if len(votes) and ("rater_id" in votes.columns or "prompt_id" in votes.columns):
        if "rater_id" in votes.columns:
            rater, n_raters = _codes(votes["rater_id"])
        else:
            rater, n_raters = np.arange(len(votes), dtype=np.int64), len(votes)
        if "prompt_id" in votes.columns:
            prompt, n_prompts = _codes(votes["prompt_id"])
        else:
            prompt, n_prompts = np.zeros(len(votes), dtype=np.int64), 1
        group_keys, group_of_vote = np.unique(rater * n_prompts + prompt, return_inverse=True)
        cell_of_vote = np.searchsorted(present, pair_flat) * 3 + outcome
        matrix = sparse.coo_matrix(
            (np.ones(len(votes)), (group_of_vote.ravel(), cell_of_vote)),
            shape=(len(group_keys), len(present) * 3),
        ).tocsr()
        groups = VoteGroups(group_keys // n_prompts, group_keys % n_prompts, n_raters, n_prompts, matrix)
    return CountTable(models, present // m, present % m, cells[present].astype(np.float64), groups)


def check_connected(table: CountTable) -> None:
    """Ratings are comparable only within a connected comparison graph; refuse anything else."""
    parent = list(range(len(table.models)))

    def root(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b in zip(table.i, table.j, strict=True):
        parent[root(int(a))] = root(int(b))
    groups: dict[int, list[str]] = {}
    for k, model in enumerate(table.models):
        groups.setdefault(root(k), []).append(model)
    if len(groups) > 1:
        raise InputError(
            f"the votes split the models into {len(groups)} groups never compared with each other "
            f"({list(groups.values())}); add votes across groups or analyse each group on its own"
        )


def _laplacian_map(i: np.ndarray, j: np.ndarray, n_models: int) -> np.ndarray:
    """(K, M*M) matrix: pair weights @ it = the flattened weighted graph Laplacian (one GEMM per batch)."""
    out = np.zeros((len(i), n_models * n_models))
    rows = np.arange(len(i))
    np.add.at(out, (rows, i * n_models + i), 1.0)
    np.add.at(out, (rows, j * n_models + j), 1.0)
    np.add.at(out, (rows, i * n_models + j), -1.0)
    np.add.at(out, (rows, j * n_models + i), -1.0)
    return out


def _incidence(i: np.ndarray, j: np.ndarray, n_models: int) -> np.ndarray:
    incidence = np.zeros((len(i), n_models))
    incidence[np.arange(len(i)), i] = 1.0
    incidence[np.arange(len(j)), j] = -1.0
    return incidence


def fit_log_strengths(
    i: np.ndarray,
    j: np.ndarray,
    counts: np.ndarray,
    n_models: int,
    max_iter: int = 60,
    tol: float = 1e-9,
    start: np.ndarray | None = None,
    prior: float = DEFAULT_PRIOR,
) -> tuple[np.ndarray, np.ndarray]:
    """Maximum a-posteriori log-strengths for a batch of count tables (maximum likelihood at prior=0).

    `counts` has shape (K, 3) or (B, K, 3); returns theta (B, n_models) with mean zero per row (natural-log
    odds) and a (B,) bool array saying which fits converged (with prior=0, False when a model never lost
    or never won; with a prior every fit has a finite optimum). `start` is the first iterate (M,) shared
    by the batch; zeros when None.
    """
    if prior < 0:
        raise InputError(f"prior={prior} must be >= 0 (0: plain maximum likelihood)")
    counts = np.asarray(counts, dtype=np.float64)
    batch = counts[None] if counts.ndim == 2 else counts
    wins = batch[..., 0] + 0.5 * batch[..., 2]
    total = batch.sum(axis=-1)
    incidence = _incidence(i, j, n_models)
    laplacian = _laplacian_map(i, j, n_models)
    pin_mean = np.full((n_models, n_models), 1.0 / n_models) + (RIDGE + prior) * np.eye(n_models)
    theta = np.zeros((batch.shape[0], n_models)) if start is None else np.tile(start, (batch.shape[0], 1))
    converged = np.zeros(batch.shape[0], dtype=bool)
    for _ in range(max_iter):
        p = expit(theta @ incidence.T)
        grad = (wins - total * p) @ incidence - prior * theta
        weight = total * p * (1.0 - p)
        hessian = (weight @ laplacian).reshape(-1, n_models, n_models) + pin_mean
        step = np.linalg.solve(hessian, grad[..., None])[..., 0]
        size = np.abs(step).max(axis=1)
        step *= np.minimum(1.0, MAX_STEP / np.maximum(size, 1e-300))[:, None]
        theta += step
        theta -= theta.mean(axis=1, keepdims=True)
        converged = size < tol
        if converged.all():
            break
    return theta, converged


def to_elo(theta: np.ndarray, scale: float = 400.0, anchor: float = 1000.0) -> np.ndarray:
    """Natural-log strengths (mean zero) -> Elo points (`scale` per tenfold odds, mean `anchor`)."""
    return anchor + scale * theta / math.log(10.0)


def _check_cluster(cluster: str) -> None:
    if cluster not in CLUSTERS:
        raise InputError(f"cluster={cluster!r} is unknown; use one of {list(CLUSTERS)}")


def _resamples_axis(cluster: str, axis: str) -> bool:
    return cluster == "rater_prompt" or cluster == axis


def bootstrap_counts(
    table: CountTable, rounds: int, rng: np.random.Generator, cluster: str = "vote"
) -> np.ndarray:
    """`rounds` bootstrap count tables of shape (rounds, K, 3).

    cluster="vote" (or a table without groups): votes resampled with replacement, i.e. one multinomial
    draw over the cells. Otherwise raters and/or prompts are drawn with replacement and a vote's weight
    is its rater's draw count, its prompt's, or (both axes) the mean of the two (see the module doc).
    """
    _check_cluster(cluster)
    groups = table.groups
    if cluster == "vote" or groups is None:
        flat = table.counts.reshape(-1)
        draws = rng.multinomial(int(flat.sum()), flat / flat.sum(), size=rounds)
        return draws.reshape(rounds, *table.counts.shape).astype(np.float64)

    def weights(_axis: str, n: int) -> np.ndarray:
        """(n, rounds) draw counts of each cluster per round: n draws with replacement, counted
        (Multinomial(n, 1/n), cheaper than rng.multinomial)."""
        drawn = rng.integers(0, n, size=(rounds, n)) + (np.arange(rounds) * n)[:, None]
        counts = np.bincount(drawn.ravel(), minlength=rounds * n).reshape(rounds, n)
        return counts.T.astype(np.float64)

    # a vote's weight is the mean of its rater's and its prompt's draw counts (one of them when only one
    # axis is resampled), so a round's cell counts are two small products: draws @ votes per (cluster, cell)
    axes = [("rater", groups.rater, groups.n_raters), ("prompt", groups.prompt, groups.n_prompts)]
    resampled = [(codes, n) for axis, codes, n in axes if _resamples_axis(cluster, axis)]
    out = np.zeros((rounds, groups.counts.shape[1]))
    for codes, n in resampled:
        by_cluster = (
            sparse.csr_matrix((np.ones(len(codes)), (codes, np.arange(len(codes)))), shape=(n, len(codes)))
            @ groups.counts
        )  # (clusters, cells) votes
        drawn = weights("", n)  # (n, rounds) draw counts
        if n * by_cluster.shape[1] <= DENSE_CELLS:
            out += drawn.T @ by_cluster.toarray()
        else:
            out += np.asarray((by_cluster.T.tocsr() @ drawn).T)
    out /= len(resampled)
    return out.reshape(rounds, *table.counts.shape)


def bootstrap_variance_scale(table: CountTable, cluster: str) -> tuple[float, float]:
    """(k, m) such that k * V_boot - m * V_cell is the two-way cluster variance V_R + V_P - V_cell.

    With both axes resampled a vote's weight is (W_r + W_p) / 2, so the bootstrap variance is
    (V_R + V_P) / 4 and (k, m) = (4, 1); one axis alone is the one-way cluster bootstrap, (1, 0).
    """
    if cluster == "vote" or table.groups is None:
        return 1.0, 0.0
    if cluster == "rater_prompt":
        return 4.0, 1.0
    return 1.0, 0.0


def finite_cluster_factor(table: CountTable, cluster: str, confidence: float = 0.95) -> float:
    """Small-sample variance factor of cluster-robust inference (Cameron, Gelbach & Miller 2011) for the
    resampled axis with the fewest clusters G: G / (G - 1) (multinomial draws of G clusters have variance
    1 - 1/G) times (t_{G-1} / z)^2, the t critical value with G - 1 degrees of freedom they recommend."""
    groups = table.groups
    if cluster == "vote" or groups is None:
        return 1.0
    sizes = [
        n
        for axis, n in (("rater", groups.n_raters), ("prompt", groups.n_prompts))
        if n > 1 and _resamples_axis(cluster, axis)
    ]
    if not sizes:
        return 1.0
    g = min(sizes)
    quantile = 0.5 + confidence / 2.0
    return g / (g - 1.0) * (sps.t.ppf(quantile, g - 1) / sps.norm.ppf(quantile)) ** 2


def _cell_residuals(table: CountTable, theta: np.ndarray) -> np.ndarray:
    """(K, 3) score of one vote in each cell for the pair's first model: outcome - P(i beats j)."""
    p = expit(theta[table.i] - theta[table.j])
    return OUTCOME_SCORE[None, :] - p[:, None]


def cell_clustered_variance(table: CountTable, theta: np.ndarray, prior: float = DEFAULT_PRIOR) -> np.ndarray:
    """Sandwich variance of each (mean-zero) log-strength with votes clustered on (rater, prompt) groups.

    H^-1 M H^-1 with H the Fisher information (plus the prior) and M = sum over groups of (group score)
    (group score)^T; votes without groups are their own cluster.
    """
    m = len(table.models)
    incidence = _incidence(table.i, table.j, m)
    resid = _cell_residuals(table, theta)  # (K, 3)
    cell_scores = (resid[:, :, None] * incidence[:, None, :]).reshape(-1, m)  # (K*3, M)
    if table.groups is None:
        meat = cell_scores.T @ (table.counts.reshape(-1)[:, None] * cell_scores)
    else:
        group_scores = np.asarray(table.groups.counts @ cell_scores)  # (G, M)
        meat = group_scores.T @ group_scores
    p = expit(theta[table.i] - theta[table.j])
    weight = table.counts.sum(axis=1) * p * (1 - p)
    hessian = (weight @ _laplacian_map(table.i, table.j, m)).reshape(m, m) + prior * np.eye(m)
    centre = np.eye(m) - 1.0 / m
    inverse = centre @ np.linalg.pinv(hessian) @ centre
    return np.clip(np.diag(inverse @ meat @ inverse), 0.0, None)


def pair_rate_variance(table: CountTable) -> np.ndarray:
    """(K,) variance of each pair's observed win rate (ties half) with votes clustered on (rater, prompt)."""
    n = table.counts.sum(axis=1)
    rate = (table.counts[:, 0] + 0.5 * table.counts[:, 2]) / n
    resid = (OUTCOME_SCORE[None, :] - rate[:, None]).reshape(-1)  # (K*3,)
    if table.groups is None:
        meat = (table.counts.reshape(-1) * resid**2).reshape(-1, 3).sum(axis=1)
    else:
        to_pair = sparse.csr_matrix(
            (np.ones(len(resid)), (np.arange(len(resid)), np.arange(len(resid)) // 3)),
            shape=(len(resid), len(n)),
        )
        per_group = table.groups.counts.multiply(resid[None, :]).tocsr() @ to_pair  # (G, K)
        meat = np.asarray(per_group.multiply(per_group).sum(axis=0)).ravel()
    return meat / n**2


def shrink_draws(
    draws: np.ndarray,
    point: np.ndarray,
    cell_variance: np.ndarray,
    scale: tuple[float, float],
    inflate: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Scale the bootstrap deviations from `point` so their variance is
    inflate * max(k V_boot - m V_cell, V_cell) ((k, m): `scale`, inflate: the G / (G - 1) factor).

    Returns the adjusted draws and their target standard deviations (NaN-aware over rounds).
    """
    k, m = scale
    boot_var = np.nanvar(draws, axis=0)
    target = inflate * np.maximum(k * boot_var - m * cell_variance, cell_variance)
    factor = np.where(boot_var > 0, np.sqrt(target / np.where(boot_var > 0, boot_var, 1.0)), 1.0)
    return point + factor * (draws - point), np.sqrt(target)


@dataclass
class BradleyTerryFit:
    models: list[str]
    rating: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    bootstrap: np.ndarray
    """Elo ratings of every bootstrap round, shape (rounds, models), after the clustering adjustment."""
    converged: bool
    bootstrap_converged: float
    """Share of bootstrap rounds whose fit converged."""
    cluster: str = "rater_prompt"
    """How the bootstrap resampled: rater_prompt | rater | prompt | vote."""
    prior: float = DEFAULT_PRIOR
    """Precision of the Gaussian prior on log-strengths (0: maximum likelihood)."""
    separated: tuple[str, ...] = ()
    """Models that never lost or never won (their rating is finite only through the prior)."""
    pair_i: np.ndarray | None = None
    """(K,) first model (index into `models`) of each compared pair, in name order."""
    pair_j: np.ndarray | None = None
    pair_rate: np.ndarray | None = None
    """(K,) observed win rate of pair_i over pair_j (ties half)."""
    pair_bootstrap: np.ndarray | None = None
    """(rounds, K) clustered bootstrap win rates of each pair (adjusted like the ratings)."""
    pair_se: np.ndarray | None = None
    """(K,) clustered standard error of each pair's win rate."""

    def leaderboard(self) -> pd.DataFrame:
        frame = pd.DataFrame(
            {"model": self.models, "rating": self.rating, "lower": self.lower, "upper": self.upper}
        )
        return frame.sort_values("rating", ascending=False, ignore_index=True)

    def pair_tests(self, confidence: float = 0.95) -> pd.DataFrame:
        """Per compared pair (model_x < model_y): clustered interval of the win rate and Wald p-value."""
        if self.pair_i is None or self.pair_rate is None:
            return pd.DataFrame(columns=["model_x", "model_y", "cluster_lower", "cluster_upper", "cluster_p"])
        tail = (1.0 - confidence) / 2.0
        if self.pair_bootstrap is not None and len(self.pair_bootstrap):
            lower, upper = np.nanquantile(self.pair_bootstrap, [tail, 1.0 - tail], axis=0)
        else:
            lower = upper = np.full(len(self.pair_rate), np.nan)
        se = self.pair_se if self.pair_se is not None else np.full(len(self.pair_rate), np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.abs(self.pair_rate - 0.5) / se
        p = np.where(se > 0, 2.0 * sps.norm.sf(z), np.nan)
        names = np.array(self.models, dtype=object)
        return pd.DataFrame(
            {
                "model_x": names[self.pair_i],
                "model_y": names[self.pair_j],
                "cluster_lower": lower,
                "cluster_upper": upper,
                "cluster_p": p,
            }
        )


def separated_models(table: CountTable) -> tuple[str, ...]:
    """Models that never lost (no loss, no tie) or never won (no win, no tie) in the table."""
    m = len(table.models)
    gained = np.zeros(m)
    conceded = np.zeros(m)
    np.add.at(gained, table.i, table.counts[:, 0] + table.counts[:, 2])
    np.add.at(gained, table.j, table.counts[:, 1] + table.counts[:, 2])
    np.add.at(conceded, table.i, table.counts[:, 1] + table.counts[:, 2])
    np.add.at(conceded, table.j, table.counts[:, 0] + table.counts[:, 2])
    return tuple(model for k, model in enumerate(table.models) if gained[k] == 0 or conceded[k] == 0)


def bradley_terry(
    votes: pd.DataFrame | CountTable,
    rounds: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    scale: float = 400.0,
    anchor: float = 1000.0,
    cluster: str = "rater_prompt",
    prior: float = DEFAULT_PRIOR,
) -> BradleyTerryFit:
    """Point ratings and clustered percentile bootstrap intervals (e.g. 2.5/97.5% for confidence 0.95)."""
    _check_cluster(cluster)
    table = votes if isinstance(votes, CountTable) else count_table(votes)
    if len(table.models) < 2 or table.n_votes == 0:
        raise InputError("Bradley-Terry needs votes on at least one pair of different models; got none")
    check_connected(table)
    m = len(table.models)
    theta, converged = fit_log_strengths(table.i, table.j, table.counts, m, prior=prior)
    rating = to_elo(theta[0], scale, anchor)
    lower = upper = np.full(m, np.nan)
    boot = np.empty((0, m))
    pair_boot = np.empty((0, len(table.i)))
    n_pair = table.counts.sum(axis=1)
    pair_rate = (table.counts[:, 0] + 0.5 * table.counts[:, 2]) / n_pair
    pair_se = np.sqrt(pair_rate_variance(table))
    boot_ok = 1.0
    if rounds > 0:
        draws = bootstrap_counts(table, rounds, np.random.default_rng(seed), cluster)
        # resamples sit close to the point fit: starting there saves Newton steps
        boot_theta, boot_conv = fit_log_strengths(table.i, table.j, draws, m, start=theta[0], prior=prior)
        var_scale = bootstrap_variance_scale(table, cluster)
        inflate = finite_cluster_factor(table, cluster, confidence)
        clustered = cluster != "vote" and table.groups is not None
        if clustered:
            boot_theta, _ = shrink_draws(
                boot_theta, theta[0], cell_clustered_variance(table, theta[0], prior), var_scale, inflate
            )
        boot = to_elo(boot_theta, scale, anchor)
        tail = (1.0 - confidence) / 2.0
        lower, upper = np.quantile(boot, [tail, 1.0 - tail], axis=0)
        boot_ok = float(boot_conv.mean())
        with np.errstate(divide="ignore", invalid="ignore"):
            pair_boot = (draws[..., 0] + 0.5 * draws[..., 2]) / draws.sum(axis=-1)
        if clustered:
            pair_boot, pair_se = shrink_draws(pair_boot, pair_rate, pair_se**2, var_scale, inflate)
        else:
            pair_se = np.sqrt(np.nanvar(pair_boot, axis=0))
    return BradleyTerryFit(
        models=list(table.models),
        rating=rating,
        lower=lower,
        upper=upper,
        bootstrap=boot,
        converged=bool(converged[0]),
        bootstrap_converged=boot_ok,
        cluster=cluster,
        prior=prior,
        separated=separated_models(table),
        pair_i=table.i,
        pair_j=table.j,
        pair_rate=pair_rate,
        pair_bootstrap=pair_boot,
        pair_se=pair_se,
    )


def paper_online_elo(
    votes: pd.DataFrame, orderings: int = 1000, k: float = 1.0, start: float = 1000.0, seed: int = 0
) -> pd.Series:
    """The paper's ranking (appendix E): online Elo with K=1 from 1000, averaged over random vote orders.

    All orderings advance together, one vote position per step, so the cost is one pass over the votes;
    per block of orderings the flat rating indices of every step are precomputed (time-major, so each
    step reads contiguous rows).
    """
    models = sorted(set(votes["model_a"]) | set(votes["model_b"]))
    index = {m: n for n, m in enumerate(models)}
    a = votes["model_a"].map(index).to_numpy(np.int64)
    b = votes["model_b"].map(index).to_numpy(np.int64)
    score_a = np.select([votes["winner"] == "model_a", votes["winner"] == "model_b"], [1.0, 0.0], 0.5)
    rng = np.random.default_rng(seed)
    n_models, n_votes = len(models), len(votes)
    totals = np.zeros(n_models)
    block = max(1, min(orderings, 2_000_000 // max(n_votes, 1)))  # bounds the precomputed index memory
    per_point = math.log(10.0) / 400.0
    for done in range(0, orderings, block):
        size = min(block, orderings - done)
        order = np.argsort(rng.random((n_votes, size)), axis=0)  # (steps, orderings)
        offset = (np.arange(size) * n_models)[None, :]
        flat_a, flat_b, scores = a[order] + offset, b[order] + offset, score_a[order]
        ratings = np.full(size * n_models, start)
        for t in range(n_votes):
            ia, ib = flat_a[t], flat_b[t]
            expected = 1.0 / (1.0 + np.exp((ratings[ib] - ratings[ia]) * per_point))
            delta = k * (scores[t] - expected)
            ratings[ia] += delta
            ratings[ib] -= delta
        totals += ratings.reshape(size, n_models).sum(axis=0)
    return pd.Series(totals / orderings, index=models, name="paper_elo")
