"""What every flow run reports: Prefect artifacts (a markdown summary with dashboard links, plus tables)
and the `svd.dataset.published` events that start training.

Plain functions of the results (`*_artifacts` builders, `dataset_published_events`) plus two thin
publishers (`publish_run_artifacts`, `emit_dataset_published`). This module imports no flow, so every flow
and the deployment entry points can import it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.integrations.tags import SYNTHETIC_LABEL
from flows.settings import load_settings

if TYPE_CHECKING:
    from flows.integrations.registry import ResolvedModel
    from svd_core.curation.config import DatasetBuildConfig

DATASET_PUBLISHED = "svd.dataset.published"
"""Event emitted once per dataset whose published version changed; prefect.yaml triggers training on it."""
DASHBOARD_URL = "http://127.0.0.1:8765/"
"""Where `svd dashboard --serve` serves the site (its default host and port)."""


# --- artifacts -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunArtifacts:
    """What one flow run reports: a markdown summary and named tables (keys: lowercase letters, digits, -)."""

    key: str
    markdown: str
    description: str
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def dashboard_markdown(home: Path | None = None) -> str:
    """Links to the team dashboard: the served site and its static copy under the SVD home."""
    home = home if home is not None else load_settings().home
    index = home / "dashboard" / "index.html"
    state = "" if index.is_file() else " (not built yet)"
    return (
        f"**Dashboard:** [{DASHBOARD_URL}]({DASHBOARD_URL}) after `svd dashboard --out {home / 'dashboard'} "
        f"--serve`; static copy{state}: [{index}](file://{index})"
    )


def _cell(value: Any) -> Any:
    """JSON-safe table cell: plain numbers rounded for reading, NaN as empty, other objects as text."""
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()  # numpy scalar
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else round(value, 4)
    if value is None or isinstance(value, bool | int | str):
        return value
    return json.dumps(value, default=str) if isinstance(value, dict | list) else str(value)


def _rows(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{str(k): _cell(v) for k, v in record.items()} for record in records]


def _md_table(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "_none_"
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += [
        "| " + " | ".join("" if r.get(c) is None else str(r.get(c)) for c in columns) + " |" for r in rows
    ]
    return "\n".join(lines)


FUNNEL_COLUMNS = ("removed_alone_rows", "removed_in_order_rows", "remaining_rows", "remaining_fraction",
                  "remaining_hours")  # fmt: skip


def _funnel_rows(dataset: str, metrics: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """One row for the input, then one per filter in the order they were applied."""
    if not metrics:
        return []
    start = {"removed_alone_rows": None, "removed_in_order_rows": None, "remaining_rows": metrics["input_rows"],
             "remaining_fraction": 1.0, "remaining_hours": metrics["input_hours"]}  # fmt: skip
    rows = [{"dataset": dataset, "step": "input", **start}]
    for step, numbers in (metrics.get("filters") or {}).items():
        rows.append({"dataset": dataset, "step": step, **{k: numbers.get(k) for k in FUNNEL_COLUMNS}})
    return rows


def dataset_artifacts(
    lvd: Mapping[str, Any],
    built: Mapping[str, Any],
    mlflow_run_id: str,
    new_versions: Sequence[str] = (),
    home: Path | None = None,
) -> RunArtifacts:
    """Dataset build: LVD summary, published versions (GX status) and the filter funnel of each dataset."""
    datasets = [
        {
            "dataset": name,
            "version": info["version"],
            "new": name in new_versions,
            "rows": info["rows"],
            "kept_fraction": info.get("kept_fraction"),
            "gx_passed": bool((info.get("validation") or {}).get("success")),
            "table": info["files"]["table"],
        }
        for name, info in built["datasets"].items()
    ]
    # An unfiltered subset (LVD-10M) has no funnel.
    funnel = [
        row for name, info in built["datasets"].items() for row in _funnel_rows(name, info.get("funnel"))
    ]
    markdown = "\n\n".join(
        [
            "# Dataset build",
            f"LVD: {lvd.get('videos')} videos -> {lvd.get('clips')} clips ({_cell(lvd.get('hours'))} h), "
            f"{lvd.get('quarantined')} quarantined; table `{lvd.get('lvd_uri')}`",
            "## Published datasets",
            _md_table(_rows(datasets)),
            f"MLflow run `{mlflow_run_id}` (experiment `datasets`); funnel: table artifact `svd-dataset-funnel`.",
            dashboard_markdown(home),
        ]
    )
    return RunArtifacts(
        "svd-dataset-build",
        markdown,
        "LVD -> LVD-F build: published versions and GX gate",
        {"svd-dataset-funnel": _rows(funnel)},
    )


def lvd_artifacts(summary: Mapping[str, Any], home: Path | None = None) -> RunArtifacts:
    """LVD build alone: videos, clips, hours, quarantined and throughput, with the table URIs."""
    row = {k: summary.get(k) for k in ("videos", "clips", "hours", "quarantined", "reused", "clips_per_s")}
    markdown = "\n\n".join(
        [
            "# LVD build",
            _md_table(_rows([row])),
            f"Table `{summary.get('lvd_uri')}`; quarantine `{summary.get('quarantine_uri')}`.",
            dashboard_markdown(home),
        ]
    )
    return RunArtifacts("svd-lvd-build", markdown, "Long videos -> clips + LVD table")


LINEAGE_TAGS = ("svd.stage", "svd.parent_model_version", "svd.dataset_version", "svd.dataset_uri",
                "svd.config_hash", "svd.git_commit")  # fmt: skip


def training_artifacts(models: Sequence[ResolvedModel], home: Path | None = None) -> RunArtifacts:
    """Training: each registered `models:/` URI with its lineage tags (parent, dataset, config, commit)."""
    rows = [
        {"model": m.uri, **{tag.removeprefix("svd."): m.tags.get(tag, "") for tag in LINEAGE_TAGS}}
        for m in models
    ]
    lines = ["# Training", "## Registered models"]
    for m in models:
        lines.append(f"- `{m.uri}` (stage {m.tags.get('svd.stage', '?')}, MLflow run `{m.run_id}`)")
    if models:
        lines.append(
            f"Compare the newest with the champion: `svd eval promote --challenger {models[-1].uri}`"
        )
    lines += ["## Lineage", _md_table(rows), dashboard_markdown(home)]
    return RunArtifacts(
        "svd-training",
        "\n\n".join(lines),
        "Registered model versions and lineage",
        {"svd-model-lineage": rows},
    )


"""How every report names a study whose votes came from the synthetic rater."""


def leaderboard_artifacts(
    study_id: str,
    leaderboard: Sequence[Mapping[str, Any]] | None,
    home: Path | None = None,
    synthetic: bool = False,
) -> RunArtifacts:
    """Preference study: the leaderboard, or where the study waits for human votes. A study rated by the
    synthetic rater says so in its title and heading: it is never presented as a human-preference study."""
    if leaderboard is None:
        body = (
            f"Study `{study_id}` waits for human votes: store it for raters with `svd eval create-study`, "
            "serve it with `svd eval serve`, then analyse the exported votes."
        )
        tables: dict[str, list[dict[str, Any]]] = {}
    else:
        rows = _rows(leaderboard)
        body = _md_table(rows)
        tables = {"svd-leaderboard": rows}
    if synthetic:
        heading = f"# Preference study `{study_id}`: {SYNTHETIC_LABEL}"
        description = f"Preference study and leaderboard: {SYNTHETIC_LABEL}"
    else:
        heading, description = f"# Preference study `{study_id}`", "Human-preference study and leaderboard"
    markdown = "\n\n".join([heading, body, dashboard_markdown(home)])
    return RunArtifacts("svd-study", markdown, description, tables)


def promotion_artifacts(
    challenger: str, outcome: Mapping[str, Any], home: Path | None = None
) -> RunArtifacts:
    """Promotion: the decision, the champion now, and the per-question evidence (win rate and bounds)."""
    evidence = outcome.get("evidence") or {}
    questions = [{"question": q, **e} for q, e in (evidence.get("questions") or {}).items()]
    decision = "promoted" if outcome.get("promoted") else "not promoted"
    lines = [
        "# Promotion",
        f"Challenger `{challenger}`: **{decision}**; champion now `{outcome.get('champion', '?')}`.",
    ]
    if outcome.get("reason"):
        lines.append(f"Reason: {outcome['reason']}")
    if questions:
        extra = "; ".join(
            f"{k}: {_cell(evidence.get(k))}"
            for k in ("min_lower_bound", "synthetic", "confidence", "cluster")
        )
        lines += ["## Evidence", extra, _md_table(_rows(questions))]
    lines.append(dashboard_markdown(home))
    tables = {"svd-promotion-evidence": _rows(questions)} if questions else {}
    description = "Challenger vs @champion decision"
    if str(evidence.get("synthetic", "")).lower() == "true":
        lines.insert(1, f"**{SYNTHETIC_LABEL}**")
        description += f" ({SYNTHETIC_LABEL})"
    return RunArtifacts("svd-promotion", "\n\n".join(lines), description, tables)


def publish_run_artifacts(artifacts: RunArtifacts) -> list[str]:
    """Create the markdown and table artifacts on the current flow run; returns their ids.

    Reporting never fails a run whose work is done (dataset published, model registered): an API error
    is logged as a warning instead.
    """
    from prefect.artifacts import create_markdown_artifact, create_table_artifact
    from prefect.logging import get_run_logger

    ids: list[str] = []
    try:
        ids.append(str(create_markdown_artifact(artifacts.markdown, artifacts.key, artifacts.description)))
        for key, rows in artifacts.tables.items():
            ids.append(str(create_table_artifact(rows, key, f"{artifacts.description} ({key})")))
    except Exception as exc:  # reporting must not fail finished work (see docstring)
        get_run_logger().warning("could not create the %s artifacts: %s", artifacts.key, exc)
    return ids


# --- dataset events ------------------------------------------------------------------------------------
def published_names(cfg: DatasetBuildConfig) -> list[str]:
    """The datasets a build publishes: LVD-F, plus LVD-10M and LVD-10M-F when the subset is configured."""
    return [cfg.filter.name] + ([cfg.subset.name, cfg.subset.filtered_name] if cfg.subset else [])


def current_dataset_versions(cfg: DatasetBuildConfig) -> dict[str, str | None]:
    """The version each dataset's CURRENT pointer names now (None: never published)."""
    from svd_core.curation.publish import current_version

    out: dict[str, str | None] = {}
    for name in published_names(cfg):
        current = current_version(cfg.curated_uri, name)
        out[name] = current.version if current else None
    return out


def dataset_published_events(
    cfg: DatasetBuildConfig, built: Mapping[str, Any], before: Mapping[str, str | None], mlflow_run_id: str
) -> list[dict[str, Any]]:
    """One `svd.dataset.published` event per dataset whose version changed (a rerun on identical inputs
    republishes nothing and emits nothing, so it starts no training)."""
    events = []
    for name, info in built["datasets"].items():
        if info["version"] == before.get(name):
            continue
        resource = {"prefect.resource.id": f"svd.dataset.{name}", "prefect.resource.name": name,
                    "svd.dataset.version": info["version"]}  # fmt: skip
        payload = {
            "name": name,
            "version": info["version"],
            "previous_version": before.get(name),
            "table_uri": info["files"]["table"],
            "rows": info["rows"],
            "curated_uri": cfg.curated_uri,
            "mlflow_run_id": mlflow_run_id,
        }
        events.append({"event": DATASET_PUBLISHED, "resource": resource, "payload": payload})
    return events


def emit_dataset_published(
    cfg: DatasetBuildConfig, built: Mapping[str, Any], before: Mapping[str, str | None], mlflow_run_id: str
) -> list[dict[str, Any]]:
    """Emit the events of `dataset_published_events` to Prefect; returns them."""
    from prefect.events import emit_event

    events = dataset_published_events(cfg, built, before, mlflow_run_id)
    for event in events:
        emit_event(**event)
    return events
