"""`analyze(votes, cfg)`: from a vote table to ratings, pairwise tests, rater checks and warnings.

Order of work: refuse a silent human/synthetic mix; set aside votes that reported a broken video (they
judge the media, not the models: left out and reported per task) and count "both bad" as a tie (a
non-decisive vote); test raters on gold pairs (binomial test against an
attentive rater's accuracy) and drop the failing ones
(all their votes); keep non-gold votes of the analysed questions; then per question and pooled over the
questions: Bradley-Terry ratings with bootstrap intervals (plus the paper's online Elo), pairwise win rates
with clustered intervals and exact tests, position bias and inter-rater agreement.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from svd_core.errors import InputError
from svd_core.evaluation.agreement import agreement_report
from svd_core.evaluation.bradley_terry import bradley_terry, paper_online_elo
from svd_core.evaluation.config import AnalysisConfig
from svd_core.evaluation.rater_quality import exclude_raters, excluded_raters, rater_quality
from svd_core.evaluation.schema import BROKEN, VOTE_COLUMNS, WINNERS
from svd_core.evaluation.stats import pair_win_rate, pairwise_table, position_bias

POOLED = "all"


@dataclass
class QuestionResult:
    """Everything computed on one slice of votes (one question, or all analysed questions pooled)."""

    question: str
    n_votes: int
    leaderboard: pd.DataFrame
    pairwise: pd.DataFrame
    position_bias: dict[str, Any]
    agreement: dict[str, Any]
    fit: dict[str, Any]


@dataclass
class AnalysisResult:
    pooled: QuestionResult
    questions: dict[str, QuestionResult]
    rater_quality: pd.DataFrame
    excluded_raters: list[str]
    synthetic: bool
    counts: dict[str, int]
    config: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    broken_videos: list[dict[str, Any]] = field(default_factory=list)
    """Tasks some rater reported as a broken video (task_id, question, prompt_id, models, reports, raters);
    their votes are not in the analysis."""

    @property
    def leaderboard(self) -> pd.DataFrame:
        return self.pooled.leaderboard

    def slice(self, question: str) -> QuestionResult:
        if question == POOLED:
            return self.pooled
        if question not in self.questions:
            raise InputError(f"question {question!r} was not analysed; analysed: {sorted(self.questions)}")
        return self.questions[question]

    def win_rate(self, model: str, opponent: str, question: str = POOLED) -> dict[str, Any] | None:
        """`model`'s win rate (ties half) against `opponent` with its Wilson interval; None if never compared."""
        return pair_win_rate(self.slice(question).pairwise, model, opponent)


def check_vote_table(votes: pd.DataFrame) -> None:
    missing = [c for c in VOTE_COLUMNS if c not in votes.columns]
    if missing:
        raise InputError(
            f"vote table lacks column(s) {missing}; import it with `svd eval import-votes` (expected {VOTE_COLUMNS})"
        )


def split_outcomes(votes: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(votes to rate with "both_bad" read as "tie", votes reporting a broken video); unknown answers are refused."""
    winners = votes["winner"].astype(str)
    unknown = sorted(set(winners) - set(WINNERS))
    if unknown:
        raise InputError(
            f"the votes hold unknown winner value(s) {unknown[:5]}; expected one of {list(WINNERS)} "
            "(import them with `svd eval import-votes`)"
        )
    broken = votes[winners == BROKEN]
    rated = votes[winners != BROKEN]
    return rated.assign(winner=rated["winner"].replace("both_bad", "tie")), broken


def broken_videos(broken: pd.DataFrame) -> list[dict[str, Any]]:
    """One entry per task with broken-video reports: what to re-render or re-upload, and who saw it."""
    out = []
    for task_id, group in broken.groupby("task_id", sort=True):
        first = group.iloc[0]
        out.append(
            {
                "task_id": str(task_id),
                "question": str(first["question"]),
                "prompt_id": str(first["prompt_id"]),
                "model_a": str(first["model_a"]),
                "model_b": str(first["model_b"]),
                "reports": len(group),
                "raters": sorted(group["rater_id"].astype(str).unique().tolist()),
            }
        )
    return out


def _synthetic_flag(votes: pd.DataFrame, cfg: AnalysisConfig) -> bool:
    synthetic = votes["synthetic"].astype(bool)
    if synthetic.any() and not synthetic.all() and not cfg.allow_synthetic_mix:
        raise InputError(
            f"the votes mix {int(synthetic.sum())} synthetic and {int((~synthetic).sum())} human votes; "
            "analyse them separately, or set allow_synthetic_mix=true to pool them on purpose"
        )
    return bool(synthetic.any())


def _model_vote_counts(votes: pd.DataFrame) -> pd.Series:
    return pd.concat([votes["model_a"], votes["model_b"]]).value_counts()


def analyse_slice(name: str, votes: pd.DataFrame, cfg: AnalysisConfig, seed: int) -> QuestionResult:
    """Ratings, pairwise table, position bias and agreement for one set of (non-gold) votes."""
    fit = bradley_terry(
        votes,
        cfg.bootstrap_rounds,
        cfg.confidence,
        seed,
        cfg.elo_scale,
        cfg.elo_anchor,
        cluster=cfg.cluster,
        prior=cfg.prior,
    )
    board = fit.leaderboard()
    board["n_votes"] = board["model"].map(_model_vote_counts(votes)).astype(int)
    if cfg.paper_elo_orderings:
        paper = paper_online_elo(votes, cfg.paper_elo_orderings, seed=seed)
        board["paper_elo"] = board["model"].map(paper + (cfg.elo_anchor - 1000.0))
    return QuestionResult(
        question=name,
        n_votes=len(votes),
        leaderboard=board,
        pairwise=pairwise_table(votes, cfg.confidence, cfg.power_alpha, cfg.power_target, fit),
        position_bias=position_bias(votes, cfg.confidence),
        agreement=agreement_report(votes),
        fit={
            "converged": fit.converged,
            "bootstrap_converged_share": fit.bootstrap_converged,
            "cluster": fit.cluster,
            "prior": fit.prior,
            "separated": list(fit.separated),
        },
    )


def _slice_warnings(result: QuestionResult, cfg: AnalysisConfig) -> list[str]:
    out = []
    name = result.question
    if result.fit.get("separated"):
        out.append(
            f"[{name}] {result.fit['separated']} never lost or never won: the rating stays finite only "
            f"through the prior (precision {result.fit['prior']}); collect more votes"
        )
    if not result.fit["converged"] or result.fit["bootstrap_converged_share"] < 1.0:
        out.append(
            f"[{name}] some fits did not converge (bootstrap rounds converged: "
            f"{result.fit['bootstrap_converged_share']:.0%}); raise the prior or collect more votes"
        )
    bias = result.position_bias
    if bias["decisive_votes"] and bias["p_value"] < cfg.power_alpha:
        out.append(
            f"[{name}] position bias: the left sample won {bias['left_win_rate']:.1%} of "
            f"{bias['decisive_votes']} decisive votes (p={bias['p_value']:.3g}); sides were randomised, "
            "so ratings stay unbiased but raters may be careless"
        )
    return out


def analyze(votes: pd.DataFrame, cfg: AnalysisConfig | None = None) -> AnalysisResult:
    """Analyse a vote table (`VOTE_COLUMNS`) with `cfg` (defaults: the paper's and the arenas' choices)."""
    cfg = cfg or AnalysisConfig()
    check_vote_table(votes)
    synthetic = _synthetic_flag(votes, cfg)
    votes_in = len(votes)
    both_bad = int((votes["winner"].astype(str) == "both_bad").sum())
    votes, broken = split_outcomes(votes)
    quality = rater_quality(
        votes,
        cfg.attentive_accuracy,
        cfg.exclusion_alpha,
        cfg.min_gold_votes,
        cfg.exclude_unchecked_raters,
        cfg.confidence,
    )
    dropped = excluded_raters(quality)
    kept = exclude_raters(votes, dropped)
    ranking = kept[~kept["is_gold"].astype(bool)]
    questions = list(cfg.questions) if cfg.questions else sorted(ranking["question"].unique())
    warnings = [f"excluded {len(dropped)} rater(s) failing gold checks: {dropped}"] if dropped else []
    broken_tasks = broken_videos(broken)
    if broken_tasks:
        warnings.append(
            f"{len(broken)} vote(s) reported a broken video on {len(broken_tasks)} task(s), left out of the "
            f"analysis: {[t['task_id'] for t in broken_tasks[:5]]}; check those samples (broken_videos)"
        )
    per_question: dict[str, QuestionResult] = {}
    for offset, question in enumerate(questions, start=1):
        subset = ranking[ranking["question"] == question]
        if subset.empty:
            warnings.append(f"[{question}] no votes left to analyse; question skipped")
            continue
        per_question[question] = analyse_slice(question, subset, cfg, cfg.seed + offset)
    if not per_question:
        raise InputError(
            f"no non-gold votes left for questions {questions} after excluding raters {dropped}; "
            "check the question names and the attention-check test (exclusion_alpha, attentive_accuracy)"
        )
    pooled_votes = ranking[ranking["question"].isin(per_question)]
    if len(per_question) == 1:  # pooled == the one question: reuse it so both files agree exactly
        pooled = dataclasses.replace(next(iter(per_question.values())), question=POOLED)
    else:
        pooled = analyse_slice(POOLED, pooled_votes, cfg, cfg.seed)
    for result in (pooled, *per_question.values()):
        warnings.extend(_slice_warnings(result, cfg))
    counts = {
        "votes_in": votes_in,
        "broken_votes": len(broken),
        "both_bad_votes": both_bad,
        "gold_votes": int(votes["is_gold"].astype(bool).sum()),
        "votes_of_excluded_raters": int(len(votes) - len(kept)),
        "votes_analysed": len(pooled_votes),
        "raters": int(votes["rater_id"].nunique()),
        "models": len(pooled.leaderboard),
    }
    return AnalysisResult(
        pooled=pooled,
        questions=per_question,
        rater_quality=quality,
        excluded_raters=dropped,
        synthetic=synthetic,
        counts=counts,
        config={"hash": cfg.config_hash(), **cfg.to_dict()},
        warnings=warnings,
        broken_videos=broken_tasks,
    )


def jsonable(value: Any) -> Any:
    """NaN/inf -> None, numpy scalars -> Python, frames -> records: strict JSON for the summary file."""
    if isinstance(value, pd.DataFrame):
        return [jsonable(r) for r in value.to_dict(orient="records")]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
