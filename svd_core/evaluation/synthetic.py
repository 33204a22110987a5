"""Synthetic rater: votes in the human vote schema from a measurable per-sample proxy, always flagged.

The caller supplies one score per sample URI (higher = better): a CLIP similarity, an aesthetic score, or
one of the simple frame proxies below. Scores are standardised over the samples given, so `noise` is in
standard deviations; each judgement adds independent Gaussian noise to both sides and calls a tie when
the difference is within `tie_margin`. Every vote has `synthetic=True`, and the analysis refuses to mix
such votes with human ones unless told to.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from svd_core.errors import InputError
from svd_core.evaluation.imports import votes_frame


def _gray(frames: np.ndarray) -> np.ndarray:
    if frames.ndim != 4 or frames.shape[0] == 0:
        raise InputError(f"frames must be a non-empty (T, H, W, C) array, got shape {frames.shape}")
    return frames.astype(np.float32).mean(axis=-1) / 255.0


def sharpness_score(frames: np.ndarray) -> float:
    """Mean absolute Laplacian of the grey frames: detail and edges (blur lowers it)."""
    g = _gray(frames)
    lap = 4 * g[:, 1:-1, 1:-1] - g[:, :-2, 1:-1] - g[:, 2:, 1:-1] - g[:, 1:-1, :-2] - g[:, 1:-1, 2:]
    return float(np.abs(lap).mean())


def temporal_consistency_score(frames: np.ndarray) -> float:
    """1 - mean absolute change between consecutive frames (flicker and jumps lower it; 1.0 for one frame)."""
    g = _gray(frames)
    if len(g) < 2:
        return 1.0
    return float(1.0 - np.abs(np.diff(g, axis=0)).mean())


FRAME_PROXIES: dict[str, Callable[[np.ndarray], float]] = {
    "sharpness": sharpness_score,
    "temporal_consistency": temporal_consistency_score,
}


def frame_scores(frames_by_uri: Mapping[str, np.ndarray], proxy: str = "sharpness") -> dict[str, float]:
    """Score every sample's frames with a named frame proxy."""
    if proxy not in FRAME_PROXIES:
        raise InputError(f"unknown frame proxy {proxy!r}; use one of {sorted(FRAME_PROXIES)}")
    return {uri: FRAME_PROXIES[proxy](frames) for uri, frames in frames_by_uri.items()}


def _standardise(scores: Mapping[str, float]) -> dict[str, float]:
    values = np.array(list(scores.values()), dtype=np.float64)
    if not np.isfinite(values).all():
        raise InputError("synthetic rater scores must be finite numbers; fix the proxy output")
    spread = values.std() if len(values) > 1 and values.std() > 0 else 1.0
    return {uri: (float(v) - values.mean()) / spread for uri, v in scores.items()}


@dataclass(frozen=True)
class SyntheticRater:
    """An automatic rater; `name` becomes the rater id `synthetic:<name>` (plus `:<k>` for several)."""

    name: str
    noise: float = 0.5
    """Standard deviation of the per-judgement noise, in standard deviations of the scores."""
    tie_margin: float = 0.0
    """Noisy score differences within this margin (same units) are ties."""
    seed: int = 0

    def vote(
        self,
        tasks: Sequence[Mapping[str, Any]],
        scores: Mapping[str, float],
        questions: Sequence[str] | None = None,
        raters: int = 1,
    ) -> pd.DataFrame:
        """One vote per task (of `questions`, default all) per synthetic rater, in `VOTE_COLUMNS`."""
        if raters < 1:
            raise InputError(f"raters={raters}: a synthetic rater run needs at least one rater")
        chosen = [t for t in tasks if questions is None or t["question"] in questions]
        missing = sorted(
            {u for t in chosen for u in (t["sample_a_uri"], t["sample_b_uri"]) if u not in scores}
        )
        if missing:
            raise InputError(
                f"no proxy score for {len(missing)} sample(s), e.g. {missing[:3]}; score them first"
            )
        z = _standardise(scores)
        rng = np.random.default_rng(self.seed)
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        rows = []
        for k in range(raters):
            rater_id = f"synthetic:{self.name}" + (f":{k}" if raters > 1 else "")
            noise = rng.normal(0.0, self.noise, size=(len(chosen), 2))
            for task, (noise_a, noise_b) in zip(chosen, noise, strict=True):
                diff = (z[task["sample_a_uri"]] + noise_a) - (z[task["sample_b_uri"]] + noise_b)
                winner = "tie" if abs(diff) <= self.tie_margin else ("model_a" if diff > 0 else "model_b")
                rows.append(_vote_row(task, rater_id, winner, stamp))
        return votes_frame(rows)


def _vote_row(task: Mapping[str, Any], rater_id: str, winner: str, stamp: str) -> dict[str, Any]:
    return {
        "study_id": task.get("study_id", "synthetic"),
        "task_id": task["task_id"],
        "question": task["question"],
        "rater_id": rater_id,
        "prompt_id": task["prompt_id"],
        "model_a": task["model_a"],
        "model_b": task["model_b"],
        "left": task["left"],
        "winner": winner,
        "is_gold": bool(task.get("is_gold", False)),
        "synthetic": True,
        "created_at": stamp,
    }


def simulate_bradley_terry_votes(
    ratings: Mapping[str, float],
    n_votes: int,
    seed: int = 0,
    question: str = "overall",
    tie_rate: float = 0.0,
    n_raters: int = 10,
    scale: float = 400.0,
    n_prompts: int = 1,
    rater_sd: float = 0.0,
    prompt_sd: float = 0.0,
) -> pd.DataFrame:
    """Votes drawn from a known Bradley-Terry model (Elo `ratings`): for tests, power studies, benchmarks.

    Pairs are uniform over distinct models, sides uniform, raters uniform over `n_raters` and prompts over
    `n_prompts`; a vote is a tie with probability `tie_rate` (which shrinks the fitted differences),
    otherwise model_a wins with probability 1 / (1 + 10^((R_b - R_a) / scale)). With `rater_sd` /
    `prompt_sd` > 0 (Elo points) every rater and every prompt shifts each model's rating by its own
    N(0, sd^2) draw (raters' tastes, prompts' difficulty), so votes sharing a rater or a prompt are
    correlated: the population-level truth is then `marginal_truth`. Votes are flagged synthetic.
    """
    models = list(ratings)
    if len(models) < 2 or n_votes < 1:
        raise InputError("simulation needs at least two models and one vote")
    if n_raters < 1 or n_prompts < 1 or rater_sd < 0 or prompt_sd < 0:
        raise InputError("n_raters and n_prompts must be >= 1 and rater_sd, prompt_sd >= 0")
    rng = np.random.default_rng(seed)
    strength = np.array([ratings[m] for m in models], dtype=np.float64)
    a = rng.integers(0, len(models), n_votes)
    b = (a + rng.integers(1, len(models), n_votes)) % len(models)
    effects = np.random.default_rng([seed, 1])  # a second stream: the plain simulation stays unchanged
    prompt = effects.integers(0, n_prompts, n_votes)
    rater = rng.integers(0, n_raters, n_votes)
    shift = np.zeros((n_votes, len(models)))
    if rater_sd > 0:
        shift += effects.normal(0.0, rater_sd, (n_raters, len(models)))[rater]
    if prompt_sd > 0:
        shift += effects.normal(0.0, prompt_sd, (n_prompts, len(models)))[prompt]
    rows = np.arange(n_votes)
    diff = (strength[b] + shift[rows, b]) - (strength[a] + shift[rows, a])
    p_a = 1.0 / (1.0 + 10.0 ** (diff / scale))
    outcome = np.where(rng.random(n_votes) < p_a, "model_a", "model_b")
    outcome = np.where(rng.random(n_votes) < tie_rate, "tie", outcome)
    names = np.array(models, dtype=object)
    frame = pd.DataFrame(
        {
            "study_id": "simulated",
            "task_id": [f"sim-{k}" for k in range(n_votes)],
            "question": question,
            "rater_id": [f"sim-rater-{r}" for r in rater],
            "prompt_id": [f"sim-prompt-{p}" for p in prompt] if n_prompts > 1 else "sim",
            "model_a": names[a],
            "model_b": names[b],
            "left": np.where(rng.random(n_votes) < 0.5, "model_a", "model_b"),
            "winner": outcome,
            "is_gold": False,
            "synthetic": True,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )
    return votes_frame(frame)


def marginal_truth(
    ratings: Mapping[str, float], effect_sd: float = 0.0, tie_rate: float = 0.0, scale: float = 400.0
) -> np.ndarray:
    """Population-level Bradley-Terry ratings (Elo, mean 1000, in `ratings` order) of votes simulated with
    per-rater / per-prompt effects of total standard deviation `effect_sd` = sqrt(rater_sd^2 + prompt_sd^2).

    Averaged over raters and prompts, P(a beats b) = E[sigmoid(d + Z)] with Z ~ N(0, 2 effect_sd^2)
    (Gauss-Hermite), which is flatter than sigmoid(d); the truth a pooled fit estimates is the
    Bradley-Terry fit to those marginal win rates over uniformly drawn pairs.
    """
    from svd_core.evaluation.bradley_terry import fit_log_strengths, to_elo

    models = list(ratings)
    per_point = np.log(10.0) / scale
    strength = np.array([ratings[m] for m in models]) * per_point
    i, j = np.triu_indices(len(models), 1)
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    z = nodes * np.sqrt(2.0) * effect_sd * per_point
    p = (weights[None, :] / weights.sum() / (1.0 + np.exp(-(strength[i] - strength[j])[:, None] - z))).sum(1)
    p = (1.0 - tie_rate) * p + tie_rate / 2.0
    counts = np.stack([p, 1.0 - p, np.zeros_like(p)], axis=1) * 1e6
    theta, _ = fit_log_strengths(i, j, counts, len(models), prior=0.0)
    return to_elo(theta[0], scale)
