"""Collect preference studies (svd.kind=study) and ablations (svd.kind=ablation) from their artifacts.

Studies log `leaderboard.csv` (+ per-question leaderboards, `summary.json`, PNG plots) and the pairs
they asked (`design.json` + `votes.csv`: shown side by side with their votes, see `media.study_pairs`).
Ablation reports are free-form JSON, so every `leaderboard*.csv` in an ablation run is drawn, and any list
of objects with a numeric `rating` inside `ablation_report.json` becomes one more leaderboard.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from flows.apps.dashboard.links import PREFECT_FLOW_RUN_TAG
from flows.apps.dashboard.media import MediaCopier, study_pairs
from flows.apps.dashboard.mlflow_read import READ_ERRORS, artifact_paths, download, iso_time, load_json, tag
from flows.apps.dashboard.model import Leaderboard, Study

NAME_KEYS = ("model", "variant", "name", "label", "id")
MAX_IMAGES = 4


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def leaderboard_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of a leaderboard table, best rating first; missing intervals stay None."""
    name_column = next((c for c in NAME_KEYS if c in frame.columns), None)
    if name_column is None or "rating" not in frame.columns:
        raise ValueError(
            f"a leaderboard needs a model (or variant) and a rating column; found {list(frame.columns)}"
        )
    rows = []
    for record in frame.to_dict(orient="records"):
        rows.append(
            {
                "model": str(record[name_column]),
                "rating": _number(record["rating"]),
                "lower": _number(record.get("lower")),
                "upper": _number(record.get("upper")),
                "n_votes": int(v) if (v := _number(record.get("n_votes"))) is not None else None,
            }
        )
    rows = [r for r in rows if r["rating"] is not None]
    return sorted(rows, key=lambda r: r["rating"], reverse=True)


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


def _leaderboard_title(path: str) -> str:
    stem = Path(path).stem
    question = stem.removeprefix("leaderboard").lstrip("_")
    folder = str(Path(path).parent)
    where = "" if folder == "." else f"{folder}/"
    return f"{where}{question or 'all questions'}"


def variant_leaderboards(report: Any, path: str = "report") -> list[Leaderboard]:
    """Lists of objects with a numeric `rating` anywhere in a free-form report, as leaderboards."""
    found: list[Leaderboard] = []
    if isinstance(report, dict):
        for key, value in report.items():
            found += variant_leaderboards(value, f"{path}.{key}")
    elif isinstance(report, list):
        items = [x for x in report if isinstance(x, dict) and _number(x.get("rating")) is not None]
        if items and len(items) == len(report):
            frame = pd.DataFrame(
                [
                    {"model": next((x[k] for k in NAME_KEYS if k in x), f"#{i}"), **x}
                    for i, x in enumerate(items)
                ]
            )
            found.append(Leaderboard(path, leaderboard_rows(frame)))
        else:
            for index, value in enumerate(report):
                found += variant_leaderboards(value, f"{path}[{index}]")
    return found


def _read_leaderboards(client: MlflowClient, run_id: str, paths: list[str]) -> tuple[list[Leaderboard], bool]:
    """Leaderboards of the given CSV artifacts (pooled first) and whether any row is marked synthetic."""
    boards, synthetic = [], False
    ordered = sorted(paths, key=lambda p: (Path(p).name != "leaderboard.csv", p))
    with tempfile.TemporaryDirectory(prefix="svd-dashboard-") as tmp:
        for path in ordered:
            frame = pd.read_csv(download(client, run_id, path, Path(tmp)))
            if "synthetic" in frame.columns:
                synthetic = synthetic or any(_truthy(v) for v in frame["synthetic"])
            boards.append(Leaderboard(_leaderboard_title(path), leaderboard_rows(frame)))
    return boards, synthetic


def _copy_images(client: MlflowClient, run_id: str, paths: list[str], site: Path) -> list[str]:
    """Copy the run's own plots (win-rate heatmaps first) into the site; return site-relative paths."""
    pngs = sorted((p for p in paths if p.endswith(".png")), key=lambda p: ("winrate" not in p, p))
    out = []
    for path in pngs[:MAX_IMAGES]:
        rel = Path("artifacts") / run_id / path
        with tempfile.TemporaryDirectory(prefix="svd-dashboard-") as tmp:
            local = download(client, run_id, path, Path(tmp))
            (site / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(local, site / rel)
        out.append(str(rel))
    return out


def collect_study(
    client: MlflowClient, run: Run, site: Path, kind: str, media: MediaCopier | None = None
) -> Study:
    """A study or ablation run: its leaderboards, summary/report JSON, plots, the synthetic flag and (when
    the run logged its design) the side-by-side pairs with their votes."""
    run_id = run.info.run_id
    depth = 3 if kind == "ablation" else 1
    paths = artifact_paths(client, run_id, depth)
    study = Study(kind, run_id, run.info.run_name or "", iso_time(run.info.start_time), False, [])
    study.experiment_id = run.info.experiment_id
    study.prefect_flow_run = tag(run, PREFECT_FLOW_RUN_TAG)
    study.synthetic = _truthy(tag(run, "svd.synthetic", "false"))
    boards = [p for p in paths if Path(p).name.startswith("leaderboard") and p.endswith(".csv")]
    try:
        study.leaderboards, csv_synthetic = _read_leaderboards(client, run_id, boards)
        study.synthetic = study.synthetic or csv_synthetic
    except READ_ERRORS as exc:
        study.notes.append(f"cannot read the leaderboards: {exc}")
    summary_name = "ablation_report.json" if kind == "ablation" else "summary.json"
    if summary_name in paths:
        try:
            study.summary = load_json(client, run_id, summary_name)
        except READ_ERRORS as exc:
            study.notes.append(f"cannot read {summary_name}: {exc}")
    if isinstance(study.summary, dict) and study.summary.get("synthetic") is True:
        study.synthetic = True
    if kind == "ablation" and study.summary is not None:
        study.leaderboards += variant_leaderboards(study.summary, "ablation_report")
    if not study.leaderboards:
        study.notes.append(f"no leaderboard.csv artifact{' or rated variants' if kind == 'ablation' else ''}")
    try:
        study.images = _copy_images(client, run_id, paths, site)
    except READ_ERRORS as exc:
        study.notes.append(f"cannot copy plots: {exc}")
    if kind == "study" or "design.json" in paths:
        try:
            pairs, study.pairs_total, study.gold_pairs, notes = study_pairs(
                client, run_id, paths, media or MediaCopier(site)
            )
            study.pairs = pairs
            study.notes += notes
        except READ_ERRORS as exc:
            study.notes.append(f"cannot read the study design: {exc}")
    return study
