"""The dashboard's figures, drawn with matplotlib's Agg canvas (no pyplot: headless, no global state).

Each function takes plain data from `flows.apps.dashboard.model` and returns a Figure; `save_png` writes it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from flows.apps.dashboard.model import Leaderboard, ScoreColumn
from flows.integrations.tags import SYNTHETIC_LABEL

BEFORE, AFTER, CUT = "#9aa5b1", "#2f6fdf", "#d64545"


def save_png(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100, bbox_inches="tight")
    return path


def _style(ax: Any) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="x", alpha=0.25)


def funnel_figure(funnel: dict[str, Any], title: str) -> Figure:
    """Rows and hours left after each filter in order, with what each filter removed on its own."""
    filters = list((funnel.get("filters") or {}).items())
    labels = ["input", *[f"after {name}" for name, _ in filters]]
    fig = Figure(figsize=(10, 0.42 * len(labels) + 1.4))
    for k, (unit, total_key) in enumerate((("rows", "input_rows"), ("hours", "input_hours"))):
        ax = fig.add_subplot(1, 2, k + 1)
        values = [float(funnel.get(total_key) or 0.0)]
        values += [float(step.get(f"remaining_{unit}") or 0.0) for _, step in filters]
        y = np.arange(len(values))[::-1]
        ax.barh(y, values, color=[BEFORE, *[AFTER] * len(filters)], height=0.65)
        top = max(values) or 1.0
        for yi, value, (_, step) in zip(y[1:], values[1:], filters, strict=True):
            alone = step.get(f"removed_alone_{unit}")
            text = f"{_short(value)}  (alone removes {_short(alone)})" if alone is not None else _short(value)
            ax.text(value + top * 0.01, yi, text, va="center", fontsize=8)
        ax.text(values[0] + top * 0.01, y[0], _short(values[0]), va="center", fontsize=8)
        ax.set_yticks(y, labels if k == 0 else [""] * len(labels))
        ax.set_xlim(0, top * 1.55)
        ax.set_xlabel(f"clips ({unit})" if unit == "rows" else "hours of video")
        _style(ax)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def _short(value: float | None) -> str:
    if value is None:
        return "n/a"
    if abs(value) >= 1e6:
        return f"{value / 1e6:.3g}M"
    if abs(value) >= 1e3:
        return f"{value / 1e3:.3g}k"
    return f"{value:.3g}"


def score_figure(score: ScoreColumn) -> Figure:
    """Histogram of one score over LVD, LVD-F's on the same bins, and the filter's bounds as lines."""
    assert score.before is not None
    fig = Figure(figsize=(5, 3))
    ax = fig.add_subplot(1, 1, 1)
    edges = np.asarray(score.before.edges)
    widths, lefts = np.diff(edges), edges[:-1]
    ax.bar(lefts, score.before.counts, width=widths, align="edge", color=BEFORE, label="LVD (all clips)")
    if score.after is not None:
        ax.bar(lefts, score.after.counts, width=widths, align="edge", color=AFTER, alpha=0.85,
               label=f"{score.after_name} (kept)")  # fmt: skip
    for bound, name in ((score.threshold_min, "min"), (score.threshold_max, "max")):
        if bound is not None and math.isfinite(bound):
            ax.axvline(bound, color=CUT, linestyle="--", linewidth=1.2, label=f"filter {name} {bound:.3g}")
    ax.set_title(f"{score.column} ({score.before.values} clips, {score.before.nulls} null)", fontsize=10)
    ax.set_ylabel("clips")
    ax.legend(fontsize=7, frameon=False)
    _style(ax)
    fig.tight_layout()
    return fig


def leaderboard_figure(board: Leaderboard, synthetic: bool) -> Figure:
    """Ratings with their intervals, best on top; points without an interval are drawn hollow."""
    rows = board.rows[::-1]
    fig = Figure(figsize=(7, 0.42 * len(rows) + 1.3))
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(rows))
    rating = np.array([r["rating"] for r in rows], dtype=np.float64)
    has_ci = np.array([r["lower"] is not None and r["upper"] is not None for r in rows])
    lower = np.array([r["lower"] if ok else r["rating"] for r, ok in zip(rows, has_ci, strict=True)], float)
    upper = np.array([r["upper"] if ok else r["rating"] for r, ok in zip(rows, has_ci, strict=True)], float)
    err = np.vstack([np.clip(rating - lower, 0, None), np.clip(upper - rating, 0, None)])
    color = CUT if synthetic else AFTER
    ax.errorbar(rating[has_ci], y[has_ci], xerr=err[:, has_ci], fmt="o", capsize=4, color=color)
    if (~has_ci).any():
        ax.plot(rating[~has_ci], y[~has_ci], "o", mfc="none", color=color, label="no interval")
        ax.legend(fontsize=7, frameon=False)
    ax.set_yticks(y, [r["model"] for r in rows])
    ax.set_xlabel("rating (Elo scale) with interval")
    title = board.title + (f"\n{SYNTHETIC_LABEL}" if synthetic else "")
    ax.set_title(title, fontsize=10, color=CUT if synthetic else "black")
    _style(ax)
    fig.tight_layout()
    return fig
