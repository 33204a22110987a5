"""MLflow integration: experiments with artifacts under the configured artifact root, runs that log the
resolved config, dataset inputs, metrics streamed from a trainer's metrics.jsonl, and lineage tags.

Works against the embedded default (SQLite store, local artifacts) and against the stack's server
(artifacts proxied to S3) without code changes: the URIs come from `flows.settings`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from flows.integrations.tags import PREFECT_FLOW_RUN
from flows.settings import Settings, activate, ensure_home, load_settings
from svd_core.config import StageConfig
from svd_core.storage import join_uri

MAX_PARAM_LEN = 6000


def configure(s: Settings | None = None) -> Settings:
    """Point MLflow at the configured tracking/registry URIs (embedded SQLite by default)."""
    s = s or load_settings()
    activate(s)
    if s.embedded_tracking:  # the SQLite store's folder; a server or MLFLOW_TRACKING_URI needs none
        ensure_home(s)
    mlflow.set_tracking_uri(s.resolved_tracking_uri)
    mlflow.set_registry_uri(s.resolved_registry_uri)
    return s


def experiment_id(name: str, s: Settings | None = None) -> str:
    """Get or create an experiment whose artifacts live under `<artifact_root>/mlflow/<name>`.

    Against a tracking server with proxied artifacts the server decides the location.
    """
    s = configure(s)
    client = MlflowClient()
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    location = None
    if not s.resolved_tracking_uri.startswith("http"):
        location = join_uri(s.resolved_artifact_root, "mlflow", name)
    return client.create_experiment(name, artifact_location=location)


GIT_COMMIT_TAG = "mlflow.source.git.commit"
"""MLflow's own tag for the code version of a run (shown in its UI)."""


def git_commit() -> str:
    """The commit of the checkout the platform runs from (MLflow's git helper, not the entry script's)."""
    from mlflow.utils.git_utils import get_git_commit

    return get_git_commit(str(Path(__file__).resolve().parent)) or "unknown"


@contextlib.contextmanager
def run(
    experiment: str, run_name: str, tags: Mapping[str, str] | None = None, system_metrics: bool = False
) -> Iterator[Run]:
    """Start (or resume, inside a parent) an MLflow run with the platform's standard tags.

    MLflow derives `mlflow.source.git.commit` from the entry script, which is the venv's `svd` or a Prefect
    worker; the tag is set from the platform's own checkout instead. `system_metrics` turns on MLflow's
    system metrics (CPU, memory, GPU utilisation and memory where pynvml finds a GPU).
    """
    exp = experiment_id(experiment)
    base_tags = {GIT_COMMIT_TAG: git_commit(), **_prefect_flow_run_tag(), **(tags or {})}
    nested = mlflow.active_run() is not None
    with mlflow.start_run(
        experiment_id=exp,
        run_name=run_name,
        tags=base_tags,
        nested=nested,
        log_system_metrics=system_metrics or None,  # None: MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING decides
    ) as active:
        yield active


def _prefect_flow_run_tag() -> dict[str, str]:
    """`svd.prefect_flow_run_id` when this runs inside a Prefect flow run (the dashboard links the MLflow run
    to its flow run). Outside Prefect nothing is imported: a process that never imported prefect is in no
    flow run."""
    if "prefect" not in sys.modules:
        return {}
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    run = context.flow_run if context is not None else None
    return {PREFECT_FLOW_RUN: str(run.id)} if run is not None else {}


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            text = json.dumps(value) if not isinstance(value, str) else value
            out[name] = text[:MAX_PARAM_LEN]
    return out


def log_config(cfg: StageConfig, name: str = "config") -> None:
    """Full resolved config as params (dotted keys), as a YAML artifact and its hash as a tag."""
    from svd_core.config import dump_config

    mlflow.log_params(flatten(cfg.to_dict()))
    mlflow.log_text(dump_config(cfg), f"{name}.yaml")
    mlflow.set_tag(f"svd.{name}_hash", cfg.config_hash())


def log_dataset(
    table_uri: str, name: str, version: str, context: str, profile: Mapping[str, Any] | None = None
) -> None:
    """Reference a dataset table as an MLflow dataset input (source URI + version digest)."""
    from mlflow.data.http_dataset_source import HTTPDatasetSource
    from mlflow.data.meta_dataset import MetaDataset

    source = HTTPDatasetSource(url=table_uri)  # a plain URI reference; the table itself stays where it is
    dataset = MetaDataset(source=source, name=name, digest=version[:36])  # type: ignore[abstract]
    mlflow.log_input(
        dataset,
        context=context,
        tags={"svd.version": version, **{k: str(v) for k, v in (profile or {}).items()}},
    )


class MetricsTail:
    """Stream a trainer's `metrics.jsonl` (one JSON object per line with a `step`) into the active run.

    Runs in a thread while training processes write the file, so curves appear live in the MLflow UI.
    Reading is svd_core's `MetricsTail` (the launcher's): it follows the file's rewrite on resume and
    delivers each step once. Rows a crashed attempt wrote after its last checkpoint are dropped before the
    first read, so the run logs exactly the resumed run's history (one value per step).
    """

    def __init__(self, path: Path, run_id: str, poll_s: float = 1.0):
        self.path, self.run_id, self.poll_s = path, run_id, poll_s
        from svd_core.training.metrics import MetricsTail as RowTail  # torch: imported only when training

        self._stop = threading.Event()
        self._tail = RowTail(path)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.logged = 0

    def __enter__(self) -> MetricsTail:
        from svd_core.training.checkpoint import discard_unresumable_metrics

        discard_unresumable_metrics(self.path.parent)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._drain()

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            self._drain()

    def _drain(self) -> None:
        rows = self._tail.new_rows()
        if not rows:
            return
        client = MlflowClient()
        for record in rows:
            step = int(record.pop("step", 0))
            metrics = {
                k: float(v)
                for k, v in record.items()
                if isinstance(v, int | float) and not isinstance(v, bool)
            }
            timestamp = int(time.time() * 1000)
            from mlflow.entities import Metric

            client.log_batch(self.run_id, metrics=[Metric(k, v, timestamp, step) for k, v in metrics.items()])
            self.logged += 1


def environment_tags() -> dict[str, str]:
    return {"svd.host": os.uname().nodename, "svd.pid": str(os.getpid())}
