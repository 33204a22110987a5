"""Collect dataset builds (runs tagged svd.kind=dataset): versions, funnels, GX results, score histograms.

The funnel and validation numbers come from the run's `build_summary.json`; where that artifact is
missing the run's tags and metrics still give versions, row counts and GX status. Histograms read the
LVD table the build names (only the score columns) through svd_core.storage, so S3 tables work too.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from flows.apps.dashboard.links import PREFECT_FLOW_RUN_TAG
from flows.apps.dashboard.mlflow_read import READ_ERRORS, download, iso_time, load_json, tag
from flows.apps.dashboard.model import DatasetBuild, DatasetVersion, Histogram, ScoreColumn
from svd_core import storage as svd_io
from svd_core.curation.schema import SCORE_COLUMNS
from svd_core.errors import SvdError

HISTOGRAM_BINS = 40
DATASET_TAG = re.compile(r"^svd\.dataset\.(?P<name>.+)\.(?P<field>version|uri|gx_success)$")


def _bool_tag(text: str | None) -> bool | None:
    if text is None:
        return None
    return text.strip().lower() == "true"


def _versions_from_tags(run: Run) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for key, value in run.data.tags.items():
        match = DATASET_TAG.match(key)
        if match:
            found.setdefault(match["name"], {})[match["field"]] = value
    return found


def dataset_versions(run: Run, summary: dict[str, Any] | None) -> list[DatasetVersion]:
    """One entry per dataset the build published, from tags (always logged) plus the summary's details."""
    details = (summary or {}).get("datasets") or {}
    tagged = _versions_from_tags(run)
    out = []
    # the build's own order (LVD-F first, then the subsets), then anything only the tags name
    for name in [*details, *sorted(set(tagged) - set(details))]:
        info, tags = details.get(name) or {}, tagged.get(name, {})
        validation = info.get("validation")
        gx = _bool_tag(tags.get("gx_success"))
        if gx is None and isinstance(validation, dict) and "success" in validation:
            gx = bool(validation["success"])
        rows = run.data.metrics.get(f"{name}.rows", info.get("rows"))
        out.append(
            DatasetVersion(
                name=name,
                version=tags.get("version") or str(info.get("version", "")),
                uri=tags.get("uri") or str((info.get("files") or {}).get("table", "")),
                rows=int(rows) if rows is not None else None,
                gx_success=gx,
                funnel=info.get("funnel"),
                validation=validation,
            )
        )
    return out


def histogram(column: str, values: np.ndarray, nulls: int, edges: np.ndarray | None = None) -> Histogram:
    if edges is None:
        edges = np.histogram_bin_edges(values, bins=HISTOGRAM_BINS)
    counts, edges = np.histogram(values, bins=edges)
    return Histogram(column, [float(e) for e in edges], [int(c) for c in counts], len(values), nulls)


def _score_arrays(uri: str) -> dict[str, np.ndarray]:
    """Score columns of a parquet table (only those present), as float arrays with NaN for nulls."""
    with svd_io.local_copy(uri) as path:
        schema = pq.read_schema(path)
        columns = [c for c in SCORE_COLUMNS if c in schema.names]
        table = pq.read_table(path, columns=columns)
    return {c: table.column(c).to_numpy(zero_copy_only=False).astype(np.float64) for c in columns}


def _filtered_dataset(versions: list[DatasetVersion], lvd_rows: int | None) -> DatasetVersion | None:
    """The dataset filtered from the whole LVD (LVD-F): a funnel whose input is every LVD row."""
    for version in versions:
        funnel = version.funnel or {}
        if funnel and version.uri and (lvd_rows is None or funnel.get("input_rows") == lvd_rows):
            return version
    return None


def score_columns(
    lvd_uri: str, versions: list[DatasetVersion], thresholds: dict[str, Any], lvd_rows: int | None
) -> list[ScoreColumn]:
    """Histograms of each score column in the LVD table, with LVD-F's on the same bins when readable."""
    before = _score_arrays(lvd_uri)
    filtered = _filtered_dataset(versions, lvd_rows)
    after: dict[str, np.ndarray] = {}
    if filtered is not None:
        try:
            after = _score_arrays(filtered.uri)
        except (SvdError, *READ_ERRORS):
            after = {}  # the filtered table may have been pruned; LVD alone is still worth showing
    out = []
    for column in SCORE_COLUMNS:
        values = before.get(column)
        bounds = thresholds.get(column) or {}
        item = ScoreColumn(column, None, threshold_min=bounds.get("min"), threshold_max=bounds.get("max"))
        if values is not None and np.isfinite(values).any():
            finite = values[np.isfinite(values)]
            item.before = histogram(column, finite, int(len(values) - len(finite)))
            kept = after.get(column)
            if kept is not None and filtered is not None:
                kept_finite = kept[np.isfinite(kept)]
                item.after = histogram(
                    column, kept_finite, int(len(kept) - len(kept_finite)), np.asarray(item.before.edges)
                )
                item.after_name = filtered.name
        out.append(item)
    return out


def _copy_data_docs(client: MlflowClient, run: Run, site: Path) -> list[str]:
    """Copy the run's GX Data Docs into the site; return links to their index pages."""
    rel = Path("artifacts") / run.info.run_id
    try:
        local = download(client, run.info.run_id, "data_docs", site / rel)
    except READ_ERRORS:
        return []
    return sorted(str(p.relative_to(site)) for p in local.rglob("index.html"))


def collect_build(client: MlflowClient, run: Run, site: Path, with_scores: bool) -> DatasetBuild:
    """Everything the page shows about one build; histograms and Data Docs only when `with_scores`."""
    summary: dict[str, Any] | None
    note = ""
    try:
        summary = load_json(client, run.info.run_id, "build_summary.json")
    except READ_ERRORS:
        summary, note = None, "this run has no build_summary.json artifact; funnels are unavailable"
    versions = dataset_versions(run, summary)
    metrics = run.data.metrics
    build = DatasetBuild(
        run_id=run.info.run_id,
        run_name=run.info.run_name or "",
        started=iso_time(run.info.start_time),
        data_dvc_md5=tag(run, "svd.data_dvc_md5"),
        lvd={k[len("lvd.") :]: v for k, v in metrics.items() if k.startswith("lvd.")},
        lvd_uri=str((summary or {}).get("lvd_uri", "")),
        datasets=versions,
        scores_note=note,
        experiment_id=run.info.experiment_id,
        prefect_flow_run=tag(run, PREFECT_FLOW_RUN_TAG),
    )
    if not with_scores:
        build.scores_note = build.scores_note or "histograms are drawn for the newest build only"
        return build
    build.data_docs = _copy_data_docs(client, run, site)
    if not build.lvd_uri:
        build.scores_note = build.scores_note or "the build did not record its LVD table URI"
        return build
    try:
        lvd_rows = (summary or {}).get("lvd_rows")
        build.scores = score_columns(
            build.lvd_uri, versions, (summary or {}).get("thresholds") or {}, lvd_rows
        )
    except (SvdError, *READ_ERRORS) as exc:
        build.scores_note = f"cannot read the LVD table {build.lvd_uri}: {exc}"
    return build
