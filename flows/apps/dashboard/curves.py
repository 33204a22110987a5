"""Interactive training curves: one inline SVG per (stage, metric) with every run of the stage, plus the
drawn points as JSON that `assets/dashboard.js` uses to show a point's run, step and value on hover.

Nothing is capped: the collector keeps every logged point, and drawing downsamples per pixel column while
keeping each column's minimum and maximum (and the first and last point), so a spike or a divergence
stays visible however long the run. The page links to MLflow's own chart for the full-resolution view.
Without JavaScript the SVG still shows the curves, with the run name as each line's tooltip.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from html import escape
from typing import Any

import numpy as np
from matplotlib.ticker import LogLocator, MaxNLocator

from flows.apps.dashboard.model import Curve, TrainingRun

WIDTH, HEIGHT = 560, 250
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 62, 14, 12, 34
PLOT_W, PLOT_H = WIDTH - PAD_LEFT - PAD_RIGHT, HEIGHT - PAD_TOP - PAD_BOTTOM
BUCKETS = PLOT_W
"""Downsampling buckets along the step axis: one per pixel column of the plot."""
LOG_SPAN = 20.0
"""Positive metrics spanning more than this factor are drawn on a log axis (losses, schedules)."""
LOG_KEYS = ("loss", "lr", "grad_norm")
PALETTE = ("#2f6fdf", "#d64545", "#1f8a4c", "#c58a00", "#7b3fbf", "#00838f", "#b83280", "#52606d",
           "#e67e22", "#2c3e50")  # fmt: skip
METRIC_LABELS = {
    "loss": "loss",
    "lr": "learning rate",
    "grad_norm": "gradient norm",
    "samples_per_s": "samples / s",
    "step_time_s": "step time (s)",
}


def downsample(
    steps: list[int], values: list[float], buckets: int = BUCKETS
) -> tuple[list[int], list[float]]:
    """The points to draw: non-finite values dropped, then per bucket of the step range its minimum and
    maximum (in step order), plus the first and last point. Short curves come back whole."""
    x = np.asarray(steps, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(y) & np.isfinite(x)
    x, y = x[finite], y[finite]
    if len(x) <= 2 * buckets + 2:
        return [int(s) for s in x], [float(v) for v in y]
    span = x[-1] - x[0]
    if span > 0:
        bucket = np.minimum(((x - x[0]) / span * buckets).astype(np.int64), buckets - 1)
    else:
        bucket = np.zeros(len(x), dtype=np.int64)
    order = np.lexsort((y, bucket))  # by bucket, then by value: a bucket's first is its min, last its max
    sorted_buckets = bucket[order]
    _, first = np.unique(sorted_buckets, return_index=True)
    last = np.r_[first[1:] - 1, len(order) - 1]
    keep = np.unique(np.r_[0, len(x) - 1, order[first], order[last]])
    return [int(s) for s in x[keep]], [float(v) for v in y[keep]]


@dataclass
class Series:
    run_id: str
    label: str
    color: str
    steps: list[int]
    values: list[float]
    logged: int
    """Points MLflow holds for this metric of this run (before downsampling for drawing)."""


@dataclass
class Chart:
    stage: str
    key: str
    title: str
    log: bool
    series: list[Series] = field(default_factory=list)
    x_range: tuple[float, float] = (0.0, 1.0)
    y_range: tuple[float, float] = (0.0, 1.0)

    @property
    def logged(self) -> int:
        return sum(s.logged for s in self.series)

    @property
    def drawn(self) -> int:
        return sum(len(s.steps) for s in self.series)

    @property
    def dom_id(self) -> str:
        return f"chart-{_slug(self.stage)}-{_slug(self.key)}"

    def to_json(self) -> str:
        """What dashboard.js needs to map the mouse to the nearest drawn point ( `</` escaped for <script>)."""
        data = {
            "key": self.key,
            "title": self.title,
            "log": self.log,
            "x": list(self.x_range),
            "y": list(self.y_range),
            "box": [PAD_LEFT, PAD_TOP, PLOT_W, PLOT_H],
            "series": [
                {"run": s.run_id, "label": s.label, "color": s.color, "steps": s.steps, "values": s.values}
                for s in self.series
            ],
        }
        return json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")

    def svg(self) -> str:
        return chart_svg(self)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text) or "x"


def run_label(run: TrainingRun) -> str:
    return f"{run.run_name or 'run'} {run.run_id[:7]}"


def run_colors(runs: list[TrainingRun]) -> dict[str, str]:
    return {run.run_id: PALETTE[i % len(PALETTE)] for i, run in enumerate(runs)}


def _padded(lo: float, hi: float, log: bool) -> tuple[float, float]:
    if log:
        lo, hi = math.log10(lo), math.log10(hi)
    if hi <= lo:
        delta = abs(lo) * 0.05 or 0.5
        return lo - delta, hi + delta
    margin = (hi - lo) * 0.05
    return lo - margin, hi + margin


def stage_charts(stage: str, runs: list[TrainingRun]) -> list[Chart]:
    """One chart per standard metric any run of the stage logged; one series per run (every run)."""
    colors = run_colors(runs)
    charts = []
    for key in METRIC_LABELS:
        curves: list[tuple[TrainingRun, Curve]] = [(r, r.curves[key]) for r in runs if key in r.curves]
        series = []
        for run, curve in curves:
            steps, values = downsample(curve.steps, curve.values)
            if steps:
                series.append(
                    Series(run.run_id, run_label(run), colors[run.run_id], steps, values, len(curve.steps))
                )
        if not series:
            continue
        all_x = [s for x in series for s in (x.steps[0], x.steps[-1])]
        all_y = [v for x in series for v in x.values]
        lo, hi = min(all_y), max(all_y)
        log = key in LOG_KEYS and lo > 0 and hi / lo > LOG_SPAN
        x0, x1 = float(min(all_x)), float(max(all_x))
        chart = Chart(stage, key, METRIC_LABELS[key], log, series, (x0, x1 if x1 > x0 else x0 + 1.0))
        chart.y_range = _padded(lo, hi, log)
        charts.append(chart)
    return charts


# --- SVG -----------------------------------------------------------------------------------------------
def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e4 or abs(value) < 1e-3:
        return f"{value:.0e}".replace("e-0", "e-").replace("e+0", "e")
    return f"{value:.3g}"


def _px(chart: Chart, step: float) -> float:
    x0, x1 = chart.x_range
    return PAD_LEFT + (step - x0) / (x1 - x0) * PLOT_W


def _py(chart: Chart, value: float) -> float:
    y0, y1 = chart.y_range
    v = math.log10(value) if chart.log else value
    return PAD_TOP + (1.0 - (v - y0) / (y1 - y0)) * PLOT_H


def _ticks(chart: Chart) -> tuple[list[float], list[float]]:
    x0, x1 = chart.x_range
    xs = [t for t in MaxNLocator(nbins=6, integer=True).tick_values(x0, x1) if x0 <= t <= x1]
    y0, y1 = chart.y_range
    if chart.log:
        ys = [t for t in LogLocator(base=10).tick_values(10**y0, 10**y1) if y0 <= math.log10(t) <= y1]
    else:
        ys = [t for t in MaxNLocator(nbins=5).tick_values(y0, y1) if y0 <= t <= y1]
    return xs, ys


def chart_svg(chart: Chart) -> str:
    """The chart as an inline SVG (axes, grid, one polyline per run); text is escaped here."""
    xs, ys = _ticks(chart)
    parts: list[Any] = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'role="img" aria-label="{escape(chart.title)} by step">',
        f'<rect class="plot-bg" x="{PAD_LEFT}" y="{PAD_TOP}" width="{PLOT_W}" height="{PLOT_H}"/>',
    ]
    for t in ys:
        y = _py(chart, t)
        parts.append(
            f'<line class="grid" x1="{PAD_LEFT}" x2="{PAD_LEFT + PLOT_W}" y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        parts.append(
            f'<text class="tick" x="{PAD_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(t)}</text>'
        )
    for t in xs:
        x = _px(chart, t)
        parts.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{PAD_TOP}" y2="{PAD_TOP + PLOT_H}"/>')
        parts.append(
            f'<text class="tick" x="{x:.1f}" y="{PAD_TOP + PLOT_H + 15}" text-anchor="middle">{_fmt(t)}</text>'
        )
    parts.append(
        f'<text class="axis" x="{PAD_LEFT + PLOT_W / 2:.0f}" y="{HEIGHT - 3}" text-anchor="middle">step</text>'
    )
    if chart.log:
        parts.append(f'<text class="axis" x="{PAD_LEFT + 4}" y="{PAD_TOP + 12}">log scale</text>')
    for s in chart.series:
        points = " ".join(
            f"{_px(chart, x):.1f},{_py(chart, v):.1f}" for x, v in zip(s.steps, s.values, strict=True)
        )
        parts.append(
            f'<polyline class="series" data-run="{escape(s.run_id)}" stroke="{s.color}" points="{points}">'
            f"<title>{escape(s.label)}: {escape(chart.title)}, {s.logged} points logged</title></polyline>"
        )
        if len(s.steps) == 1:  # a single point draws no line
            x, y = _px(chart, s.steps[0]), _py(chart, s.values[0])
            parts.append(f'<circle class="single" cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{s.color}"/>')
    parts.append('<circle class="hover-dot" r="4.5" cx="-10" cy="-10" visibility="hidden"/>')
    parts.append("</svg>")
    return "".join(parts)
