"""Small read helpers over MlflowClient shared by the collectors: runs by `svd.kind`, artifacts, times."""

from __future__ import annotations

import json
import logging
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

log = logging.getLogger("svd.dashboard")

READ_ERRORS = (MlflowException, OSError, ValueError, KeyError)
"""What a missing or malformed artifact raises; the collectors turn these into notes on the page."""


def iso_time(ms: int | None) -> str:
    """MLflow's epoch milliseconds -> `2024-05-01 12:00 UTC` ("" when unknown)."""
    if not ms:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def runs_of_kind(client: MlflowClient, kind: str, limit: int) -> list[Run]:
    """Active runs tagged `svd.kind=<kind>` in any experiment, newest first.

    Searching every experiment (not a fixed name) keeps runs logged to a renamed experiment visible.
    """
    experiments = client.search_experiments()
    if not experiments:
        return []
    return list(
        client.search_runs(
            [e.experiment_id for e in experiments],
            filter_string=f"tags.`svd.kind` = '{kind}'",
            order_by=["attributes.start_time DESC"],
            max_results=limit,
        )
    )


def artifact_paths(client: MlflowClient, run_id: str, depth: int = 1, path: str | None = None) -> list[str]:
    """Artifact file paths of a run, descending `depth` folder levels below `path` (best effort)."""
    try:
        entries = client.list_artifacts(run_id, path)
    except READ_ERRORS as exc:
        log.warning("cannot list artifacts of run %s: %s", run_id, exc)
        return []
    files: list[str] = []
    for entry in entries:
        if not entry.is_dir:
            files.append(entry.path)
        elif depth > 1:
            files.extend(artifact_paths(client, run_id, depth - 1, entry.path))
    return files


def download(client: MlflowClient, run_id: str, path: str, dest: Path) -> Path:
    """Download one artifact (file or folder) of a run into `dest`; returns its local path."""
    dest.mkdir(parents=True, exist_ok=True)
    return Path(client.download_artifacts(run_id, path, str(dest)))


def load_json(client: MlflowClient, run_id: str, path: str) -> Any:
    """A JSON artifact of a run, parsed; raises one of READ_ERRORS when absent or malformed."""
    with tempfile.TemporaryDirectory(prefix="svd-dashboard-") as tmp:
        return json.loads(download(client, run_id, path, Path(tmp)).read_text())


def tag(run: Run, key: str, default: str = "") -> str:
    return run.data.tags.get(key, default)
