"""Bradley-Terry ratings with bootstrap intervals, fitted for all bootstrap rounds at once.

Model: P(i beats j) = sigmoid(theta_i - theta_j); a tie counts as half a win for each side (as public
arenas do). Ratings are shown on the Elo scale, `scale` points per tenfold odds, mean `anchor`.

Why it is fast: resampling the votes with replacement only changes how often each (pair, outcome) cell
occurs, so a bootstrap round is one multinomial draw over the count table (a few hundred cells instead of
100k votes), and the rounds are independent problems of the same shape, solved together by batched
Newton steps (the Hessian is a weighted graph Laplacian, made invertible by pinning the mean to zero).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit

from svd_core.errors import InputError

MAX_STEP = 2.0  # natural-log units per Newton step: keeps separated data (a model never lost) from exploding
RIDGE = 1e-9  # makes the Newton system solvable when a resample drops every vote of a model


@dataclass(frozen=True)
class CountTable:
    """Votes reduced to counts per pair: `counts[k] = (wins of i[k], wins of j[k], ties)`."""

    models: tuple[str, ...]
    i: np.ndarray
    j: np.ndarray
    counts: np.ndarray

    @property
    def n_votes(self) -> int:
        return int(self.counts.sum())


def count_table(votes: pd.DataFrame) -> CountTable:
    """Count table of a vote DataFrame (columns model_a, model_b, winner), pairs as (i < j) in name order.

    Integer codes and one bincount: a single pass over the votes, however many there are.
    """
    models = tuple(sorted(set(votes["model_a"].unique()) | set(votes["model_b"].unique())))
    m = len(models)
    codes = pd.CategoricalDtype(list(models))
    a = votes["model_a"].astype(codes).cat.codes.to_numpy(np.int64)
    b = votes["model_b"].astype(codes).cat.codes.to_numpy(np.int64)
    winner = votes["winner"]
    won = np.where(winner == "model_a", a, np.where(winner == "model_b", b, -1))
    i, j = np.minimum(a, b), np.maximum(a, b)
    outcome = np.where(won == -1, 2, np.where(won == i, 0, 1))  # 0: i won, 1: j won, 2: tie
    cells = np.bincount((i * m + j) * 3 + outcome, minlength=m * m * 3).reshape(m * m, 3)
    present = np.flatnonzero(cells.sum(axis=1))
    return CountTable(models, present // m, present % m, cells[present].astype(np.float64))


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


def fit_log_strengths(
    i: np.ndarray,
    j: np.ndarray,
    counts: np.ndarray,
    n_models: int,
    max_iter: int = 60,
    tol: float = 1e-9,
    start: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-likelihood log-strengths for a batch of count tables.

    `counts` has shape (K, 3) or (B, K, 3); returns theta (B, n_models) with mean zero per row (natural-log
    odds) and a (B,) bool array saying which fits converged (False: a model never lost or never won).
    `start` is the first iterate (M,) shared by the batch; zeros when None.
    """
    counts = np.asarray(counts, dtype=np.float64)
    batch = counts[None] if counts.ndim == 2 else counts
    wins = batch[..., 0] + 0.5 * batch[..., 2]
    total = batch.sum(axis=-1)
    incidence = np.zeros((len(i), n_models))
    incidence[np.arange(len(i)), i] = 1.0
    incidence[np.arange(len(j)), j] = -1.0
    laplacian = _laplacian_map(i, j, n_models)
    pin_mean = np.full((n_models, n_models), 1.0 / n_models) + RIDGE * np.eye(n_models)
    theta = np.zeros((batch.shape[0], n_models)) if start is None else np.tile(start, (batch.shape[0], 1))
    converged = np.zeros(batch.shape[0], dtype=bool)
    for _ in range(max_iter):
        p = expit(theta @ incidence.T)
        grad = (wins - total * p) @ incidence
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


def bootstrap_counts(table: CountTable, rounds: int, rng: np.random.Generator) -> np.ndarray:
    """`rounds` resamples of the votes with replacement, as count tables of shape (rounds, K, 3)."""
    flat = table.counts.reshape(-1)
    draws = rng.multinomial(int(flat.sum()), flat / flat.sum(), size=rounds)
    return draws.reshape(rounds, *table.counts.shape).astype(np.float64)


@dataclass
class BradleyTerryFit:
    models: list[str]
    rating: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    bootstrap: np.ndarray
    """Elo ratings of every bootstrap round, shape (rounds, models)."""
    converged: bool
    bootstrap_converged: float
    """Share of bootstrap rounds whose fit converged."""

    def leaderboard(self) -> pd.DataFrame:
        frame = pd.DataFrame(
            {"model": self.models, "rating": self.rating, "lower": self.lower, "upper": self.upper}
        )
        return frame.sort_values("rating", ascending=False, ignore_index=True)


def bradley_terry(
    votes: pd.DataFrame | CountTable,
    rounds: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    scale: float = 400.0,
    anchor: float = 1000.0,
) -> BradleyTerryFit:
    """Point ratings and percentile bootstrap intervals (e.g. 2.5/97.5% for confidence 0.95)."""
    table = votes if isinstance(votes, CountTable) else count_table(votes)
    if len(table.models) < 2 or table.n_votes == 0:
        raise InputError("Bradley-Terry needs votes on at least one pair of different models; got none")
    check_connected(table)
    theta, converged = fit_log_strengths(table.i, table.j, table.counts, len(table.models))
    rating = to_elo(theta[0], scale, anchor)
    lower = upper = np.full(len(table.models), np.nan)
    boot = np.empty((0, len(table.models)))
    boot_ok = 1.0
    if rounds > 0:
        draws = bootstrap_counts(table, rounds, np.random.default_rng(seed))
        # resamples sit close to the point fit: starting there saves Newton steps
        boot_theta, boot_conv = fit_log_strengths(table.i, table.j, draws, len(table.models), start=theta[0])
        boot = to_elo(boot_theta, scale, anchor)
        tail = (1.0 - confidence) / 2.0
        lower, upper = np.quantile(boot, [tail, 1.0 - tail], axis=0)
        boot_ok = float(boot_conv.mean())
    return BradleyTerryFit(list(table.models), rating, lower, upper, boot, bool(converged[0]), boot_ok)


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
