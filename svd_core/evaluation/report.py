"""Write an `AnalysisResult` as files: CSV tables, a JSON summary and PNG plots, through svd_core.storage.

Files (every one written atomically; `summary.json` goes last and lists the others, so its presence
means the report is complete):
  leaderboard.csv              model, rating, lower, upper (Elo, rater x prompt cluster bootstrap interval),
                               n_votes, ... (pooled)
  leaderboard_<question>.csv   the same per question
  pairwise.csv                 per question (and `all`): wins, ties, win rate, clustered interval, p-value
                               (max of the clustered and the exact test), decisive votes, raters, prompts
  rater_quality.csv            gold accuracy per rater, the exclusion test's p-value, whether excluded
  leaderboard.png, winrate_<question>.png, winrate_all.png
  summary.json                 counts, synthetic flag, warnings, position bias, agreement, config
Every table carries a `synthetic` column and every plot title says so when the votes were synthetic.
"""

from __future__ import annotations

import io as _io
import json

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg  # no pyplot: headless, no global state
from matplotlib.figure import Figure

from svd_core import storage as svd_io
from svd_core.evaluation.analyze import POOLED, AnalysisResult, QuestionResult, jsonable
from svd_core.evaluation.power import decisive_votes_needed
from svd_core.evaluation.stats import win_rate_matrix


def _csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def _png_bytes(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _title(text: str, synthetic: bool) -> str:
    return f"{text} (SYNTHETIC votes)" if synthetic else text


def leaderboard_figure(slices: list[QuestionResult], synthetic: bool) -> Figure:
    """One panel per slice: ratings with their bootstrap intervals, best model on top."""
    rows = max(len(s.leaderboard) for s in slices)
    fig = Figure(figsize=(5.5 * len(slices), 0.45 * rows + 1.6))
    for k, result in enumerate(slices):
        ax = fig.add_subplot(1, len(slices), k + 1)
        board = result.leaderboard.iloc[::-1]
        y = np.arange(len(board))
        err = np.vstack([board["rating"] - board["lower"], board["upper"] - board["rating"]])
        # A clean sweep caps the point fit and the bootstrap draws at different bounds, which can put the
        # rating outside its interval; draw a zero-length bar on that side rather than fail the report.
        err = np.clip(np.nan_to_num(err.astype(float)), 0.0, None)
        ax.errorbar(board["rating"], y, xerr=err, fmt="o", capsize=4, color="tab:blue")
        ax.set_yticks(y, board["model"])
        ax.set_xlabel("Elo (Bradley-Terry, bootstrap interval)")
        ax.set_title(_title(f"{result.question} ({result.n_votes} votes)", synthetic), fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def win_rate_figure(result: QuestionResult, synthetic: bool) -> Figure:
    """Heatmap of the row model's win rate against the column model (models in leaderboard order)."""
    models = list(result.leaderboard["model"])
    matrix = win_rate_matrix(result.pairwise, models)
    size = 1.2 + 0.55 * len(models)
    fig = Figure(figsize=(size + 1.5, size))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(matrix.to_numpy(np.float64), vmin=0, vmax=1, cmap="RdBu")
    for (r, c), value in np.ndenumerate(matrix.to_numpy(np.float64)):
        if np.isfinite(value):
            ax.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(models)), models, rotation=45, ha="right")
    ax.set_yticks(range(len(models)), models)
    ax.set_title(_title(f"win rate of row vs column: {result.question}", synthetic), fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def _tables(result: AnalysisResult) -> dict[str, pd.DataFrame]:
    flag = {"synthetic": result.synthetic}
    tables = {"leaderboard.csv": result.leaderboard.assign(**flag)}
    pairwise = []
    for name, sliced in [(POOLED, result.pooled), *result.questions.items()]:
        if name != POOLED:
            tables[f"leaderboard_{name}.csv"] = sliced.leaderboard.assign(**flag)
        pairwise.append(sliced.pairwise.assign(question=name, **flag))
    tables["pairwise.csv"] = pd.concat(pairwise, ignore_index=True)
    tables["rater_quality.csv"] = result.rater_quality
    return tables


def _power_reference(result: AnalysisResult) -> dict[str, float]:
    """Decisive votes per pair that detect a 55% / 60% / 65% win rate at the configured alpha and power."""
    alpha, power = result.config["power_alpha"], result.config["power_target"]
    return {f"decisive_votes_for_{p:.0%}": decisive_votes_needed(p, alpha, power) for p in (0.55, 0.6, 0.65)}


def summary_dict(result: AnalysisResult, files: list[str]) -> dict:
    slices = {name: s for name, s in [(POOLED, result.pooled), *result.questions.items()]}
    return jsonable(
        {
            "synthetic": result.synthetic,
            "counts": result.counts,
            "excluded_raters": result.excluded_raters,
            "warnings": result.warnings,
            "questions": sorted(result.questions),
            "leaderboards": {name: s.leaderboard for name, s in slices.items()},
            "position_bias": {name: s.position_bias for name, s in slices.items()},
            "agreement": {name: s.agreement for name, s in slices.items()},
            "fit": {name: s.fit for name, s in slices.items()},
            "power_reference": _power_reference(result),
            "config": result.config,
            "files": files,
        }
    )


def write_report(result: AnalysisResult, out_dir: str) -> list[str]:
    """Write every report file under `out_dir` (local path or URI); returns their URIs, summary last."""
    payloads: dict[str, bytes] = {name: _csv_bytes(t) for name, t in _tables(result).items()}
    slices = [result.pooled, *result.questions.values()]
    panels = slices if len(slices) > 2 else [result.pooled]  # one question: its panel equals the pooled one
    payloads["leaderboard.png"] = _png_bytes(leaderboard_figure(panels, result.synthetic))
    for sliced in slices:
        payloads[f"winrate_{sliced.question}.png"] = _png_bytes(win_rate_figure(sliced, result.synthetic))
    written = []
    for name, data in payloads.items():
        uri = svd_io.join_uri(out_dir, name)
        svd_io.write_bytes(uri, data)
        written.append(uri)
    summary_uri = svd_io.join_uri(out_dir, "summary.json")
    summary = summary_dict(result, [u.rsplit("/", 1)[-1] for u in written])
    svd_io.write_bytes(summary_uri, json.dumps(summary, indent=2, allow_nan=False).encode())
    return [*written, summary_uri]
