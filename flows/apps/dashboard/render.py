"""Turn a `Dashboard` into a static site: `index.html`, `assets/dashboard.{css,js}`, `plots/*.png`, and
the `media/` videos the collector copied.

No network at view time: static plots are PNG files drawn here with matplotlib (Agg); training curves and
the lineage graph are inline SVG, the curves made interactive by the local `assets/dashboard.js`. The HTML
comes from the Jinja template `page.html` with autoescaping on (run names and tags are user text).
"""

from __future__ import annotations

import functools
import json
import re
import shutil
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from flows.apps.dashboard import curves, hints, links, plots
from flows.apps.dashboard.lineage import build_graph, lineage_svg
from flows.apps.dashboard.media import OUTCOMES
from flows.apps.dashboard.model import Dashboard, Study, TrainingRun
from flows.integrations.tags import SYNTHETIC_LABEL

HERE = Path(__file__).parent
STAGE_ORDER = ("image", "video", "finetune", "lora", "multiview", "interpolation")
MAX_BOARDS_PER_RUN = 4
MAX_REPORT_CHARS = 20_000
OUTCOME_LABELS = {outcome: outcome.replace("_", " ") for outcome in OUTCOMES}


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "x"


def fmt_number(value: Any) -> str:
    """Readable numbers: thousands separators for big ones, 3 significant digits for small ones."""
    if value is None or isinstance(value, bool):
        return "—" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if number != number:  # NaN
        return "—"
    if number.is_integer() and abs(number) >= 1:
        return f"{int(number):,}"
    if abs(number) >= 1000:
        return f"{number:,.0f}"
    if abs(number) >= 1:
        return f"{number:.2f}"
    return f"{number:.3g}"


def fmt_rating(value: Any) -> str:
    """Elo-scale ratings as whole numbers, as `svd eval analyze` prints them."""
    return "—" if value is None else f"{float(value):.0f}"


def fmt_percent(value: Any) -> str:
    return "—" if value is None else f"{float(value) * 100:.1f}%"


def stage_groups(runs: list[TrainingRun]) -> list[tuple[str, list[TrainingRun]]]:
    """Runs grouped by stage in pipeline order (unknown stages last, alphabetically)."""
    stages = sorted(
        {r.stage for r in runs}, key=lambda s: (STAGE_ORDER.index(s) if s in STAGE_ORDER else 99, s)
    )
    return [(s, [r for r in runs if r.stage == s]) for s in stages]


def _study_plots(studies: list[Study], site: Path, prefix: str) -> dict[tuple[str, int], str]:
    out = {}
    for study in studies:
        for index, board in enumerate(study.leaderboards[:MAX_BOARDS_PER_RUN]):
            if not board.rows:
                continue
            rel = f"plots/{prefix}-{study.run_id[:12]}-{index}.png"
            plots.save_png(plots.leaderboard_figure(board, study.synthetic), site / rel)
            out[(study.run_id, index)] = rel
    return out


def draw_plots(dash: Dashboard, site: Path) -> dict[str, Any]:
    """Every PNG the page shows, keyed the way the template looks them up."""
    funnels: dict[tuple[str, str], str] = {}
    for build in dash.builds:
        for ds in build.datasets:
            if ds.funnel and ds.funnel.get("filters") is not None:
                rel = f"plots/funnel-{build.run_id[:12]}-{slug(ds.name)}.png"
                fig = plots.funnel_figure(ds.funnel, f"{ds.name}: clips and hours left after each filter")
                plots.save_png(fig, site / rel)
                funnels[(build.run_id, ds.name)] = rel
    scores: dict[str, str] = {}
    for score in dash.builds[0].scores if dash.builds else []:
        if score.before is not None:
            rel = f"plots/score-{slug(score.column)}.png"
            plots.save_png(plots.score_figure(score), site / rel)
            scores[score.column] = rel
    return {
        "funnels": funnels,
        "scores": scores,
        "studies": _study_plots(dash.studies, site, "study"),
        "ablations": _study_plots(dash.ablations, site, "ablation"),
    }


def _report_text(study: Study) -> str:
    text = json.dumps(study.summary, indent=2, default=str)
    return text if len(text) <= MAX_REPORT_CHARS else text[:MAX_REPORT_CHARS] + "\n... (truncated)"


def _environment(dash: Dashboard) -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,  # a typo in the template fails the build instead of showing blanks
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(num=fmt_number, pct=fmt_percent, rating=fmt_rating, report=_report_text)
    env.filters["duration"] = fmt_duration
    env.globals.update({name: functools.partial(fn, dash.links) for name, fn in links.URL_BUILDERS.items()})
    return env


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def training_charts(dash: Dashboard) -> dict[str, list[curves.Chart]]:
    """Stage -> its interactive charts (every run of the stage, every logged point before downsampling)."""
    return {stage: curves.stage_charts(stage, runs) for stage, runs in stage_groups(dash.training)}


def render(dash: Dashboard, site: Path) -> Path:
    """Write the site for `dash` into `site` (an existing, empty-or-staging folder); returns index.html."""
    site.mkdir(parents=True, exist_ok=True)
    figures = draw_plots(dash, site)
    graph = build_graph(dash.models, dash.builds)
    charts = training_charts(dash)
    html = (
        _environment(dash)
        .get_template("page.html")
        .render(
            d=dash,
            plots=figures,
            lineage=Markup(lineage_svg(graph)),  # built from escaped parts in lineage.py
            lineage_dropped=graph.dropped,
            stages=stage_groups(dash.training),
            charts=charts,
            chart_svg=lambda chart: Markup(chart.svg()),  # built from escaped parts in curves.py
            chart_json=lambda chart: Markup(chart.to_json()),  # JSON with `</` escaped, in a data <script>
            run_colors=curves.run_colors,
            run_label=curves.run_label,
            hints=hints.suggestions(dash),
            synthetic_label=SYNTHETIC_LABEL,
            outcomes=OUTCOME_LABELS,
        )
    )
    (site / "assets").mkdir(exist_ok=True)
    shutil.copyfile(HERE / "dashboard.css", site / "assets" / "dashboard.css")
    shutil.copyfile(HERE / "dashboard.js", site / "assets" / "dashboard.js")
    index = site / "index.html"
    index.write_text(html, encoding="utf-8")
    return index
