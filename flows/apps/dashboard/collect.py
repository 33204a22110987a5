"""Read MLflow (runs, metric histories, registry) and the dataset tables into the dashboard's data model.

Entry point: `collect(site_dir)`. Files the page links to (Data Docs, a study's own plots) are copied
under `site_dir/artifacts/`, so the built site is self-contained. A run whose artifacts cannot be read
becomes a note on the page; it never stops the whole dashboard.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from mlflow.entities import Run
from mlflow.entities.model_registry import RegisteredModel as MlflowRegisteredModel
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

import flows.integrations.s3  # noqa: F401  (registers s3:// with svd_core.storage so S3 dataset tables are readable)
from flows.apps.dashboard.datasets import collect_build
from flows.apps.dashboard.evaluation import collect_study
from flows.apps.dashboard.mlflow_read import READ_ERRORS, iso_time, log, runs_of_kind, tag
from flows.apps.dashboard.model import Curve, Dashboard, ModelVersion, RegisteredModel, TrainingRun
from flows.integrations import tracking
from flows.settings import Settings, mask_url

TRAIN_METRICS = ("loss", "lr", "grad_norm", "samples_per_s", "step_time_s")
MAX_BUILDS = 6
MAX_TRAIN_RUNS = 40
MAX_STUDIES = 10
MAX_POINTS = 1500
"""Curves longer than this are thinned evenly (the last point is always kept)."""


def _thin(steps: list[int], values: list[float]) -> Curve:
    if len(steps) <= MAX_POINTS:
        return Curve(steps, values)
    stride = -(-len(steps) // MAX_POINTS)
    keep = [*range(0, len(steps) - 1, stride), len(steps) - 1]
    return Curve([steps[i] for i in keep], [values[i] for i in keep])


def training_run(client: MlflowClient, run: Run) -> TrainingRun:
    """A training run with the step history of each standard metric it logged."""
    curves: dict[str, Curve] = {}
    for key in TRAIN_METRICS:
        if key not in run.data.metrics:
            continue
        history = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: (m.step, m.timestamp))
        curves[key] = _thin([m.step for m in history], [float(m.value) for m in history])
    return TrainingRun(
        run_id=run.info.run_id,
        run_name=run.info.run_name or "",
        stage=tag(run, "svd.stage", "unknown"),
        status=run.info.status,
        started=iso_time(run.info.start_time),
        registered_model=tag(run, "svd.registered_model"),
        curves=curves,
        config_hash=next((v for k, v in sorted(run.data.tags.items()) if _is_config_hash(k)), ""),
    )


def _is_config_hash(key: str) -> bool:
    """`svd.config_hash` or what tracking.log_config sets (`svd.<name>_hash`, e.g. svd.train_config_hash)."""
    return key.startswith("svd.") and key.endswith("config_hash")


def registered_models(client: MlflowClient) -> list[RegisteredModel]:
    """Every registered model with its versions (newest first), version tags and aliases."""
    models: list[MlflowRegisteredModel] = []
    token: str | None = None
    while True:
        page = client.search_registered_models(max_results=100, page_token=token)
        models.extend(page)
        token = page.token
        if not token:
            break
    out = []
    for rm in sorted(models, key=lambda m: m.name):
        # search_model_versions leaves `aliases` empty on some stores: the registered model has them all.
        aliases = {alias: str(version) for alias, version in sorted((rm.aliases or {}).items())}
        escaped = rm.name.replace("'", "\\'")
        versions = [
            ModelVersion(
                name=mv.name,
                version=str(mv.version),
                run_id=mv.run_id or "",
                created=iso_time(mv.creation_timestamp),
                aliases=sorted(a for a, v in aliases.items() if v == str(mv.version)),
                tags=dict(mv.tags or {}),
            )
            for mv in client.search_model_versions(f"name='{escaped}'")
        ]
        versions.sort(key=lambda v: int(v.version), reverse=True)
        out.append(RegisteredModel(rm.name, versions, aliases))
    return out


def _guarded(problems: list[str], what: str, fn, default):  # type: ignore[no-untyped-def]
    """Run one collector; a failure becomes a visible problem line instead of a crash."""
    try:
        return fn()
    except READ_ERRORS as exc:
        log.warning("dashboard: cannot read %s: %s", what, exc)
        problems.append(f"cannot read {what}: {exc}")
        return default


def collect(site_dir: Path, settings: Settings | None = None) -> Dashboard:
    """Read everything the dashboard shows from the configured MLflow store (and the dataset tables)."""
    s = tracking.configure(settings)
    # one tqdm bar per downloaded artifact would flood the CLI's output
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = MlflowClient()
    problems: list[str] = []

    def builds():  # type: ignore[no-untyped-def]
        runs = runs_of_kind(client, "dataset", MAX_BUILDS)
        return [collect_build(client, r, site_dir, with_scores=i == 0) for i, r in enumerate(runs)]

    def training():  # type: ignore[no-untyped-def]
        return [training_run(client, r) for r in runs_of_kind(client, "train", MAX_TRAIN_RUNS)]

    def studies(kind: str):  # type: ignore[no-untyped-def]
        return [collect_study(client, r, site_dir, kind) for r in runs_of_kind(client, kind, MAX_STUDIES)]

    try:
        client.search_experiments(max_results=1)
    except MlflowException as exc:
        raise_unreachable(s, exc)
    return Dashboard(
        generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        tracking_uri=mask_url(s.resolved_tracking_uri),
        builds=_guarded(problems, "dataset builds", builds, []),
        training=_guarded(problems, "training runs", training, []),
        models=_guarded(problems, "the model registry", lambda: registered_models(client), []),
        studies=_guarded(problems, "preference studies", lambda: studies("study"), []),
        ablations=_guarded(problems, "ablations", lambda: studies("ablation"), []),
        problems=problems,
    )


def raise_unreachable(s: Settings, exc: Exception) -> None:
    from svd_core.errors import InputError

    raise InputError(
        f"cannot reach the MLflow tracking store {mask_url(s.resolved_tracking_uri)}: {exc}; "
        "start it with `svd stack up` or unset SVD_TRACKING_URI to use the embedded store"
    ) from exc
