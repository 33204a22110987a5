"""MLflow model registry: register exported pipelines with lineage, resolve `models:/` URIs to local
pipeline folders, and move aliases (`champion`, `previous`) for promotion and rollback.

Registry stages are deprecated since MLflow 2.9; aliases are used instead (`models:/name@champion`).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from flows.integrations import tracking
from flows.integrations.pyfunc import log_pyfunc_model
from svd_core.errors import InputError

MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w-]+))$")
PIPELINE_ARTIFACT = "pipeline"
CHAMPION, PREVIOUS, CANDIDATE = "champion", "previous", "candidate"
"""Aliases: the serving model, the one before it (rollback), and the next challenger (weekly study)."""


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    version: str
    run_id: str
    tags: dict[str, str]

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    match = MODEL_URI.match(uri)
    if not match:
        raise InputError(f"model URI {uri!r} is not of the form models:/NAME/VERSION or models:/NAME@ALIAS")
    return match["name"], match["version"], match["alias"]


def resolve(uri: str) -> ResolvedModel:
    """`models:/name/3` or `models:/name@champion` -> the registered version; clear errors otherwise."""
    tracking.configure()
    name, version, alias = parse_model_uri(uri)
    client = MlflowClient()
    try:
        mv = (
            client.get_model_version_by_alias(name, alias)
            if alias
            else client.get_model_version(name, str(version))
        )
    except MlflowException:
        raise InputError(f"{uri}: {_what_exists(client, name)}") from None
    return ResolvedModel(mv.name, str(mv.version), mv.run_id or "", dict(mv.tags or {}))


def resolve_or_none(uri: str) -> ResolvedModel | None:
    try:
        return resolve(uri)
    except InputError:
        return None


def _what_exists(client: MlflowClient, name: str) -> str:
    versions: list[Any] = []
    with contextlib.suppress(MlflowException):
        versions = list(client.search_model_versions(f"name='{name}'"))
    if not versions:
        return f"no registered model named {name!r}; train and register one first (svd train ...)"
    numbers = sorted(int(v.version) for v in versions)
    # search_model_versions leaves `aliases` empty on some stores; the registered model has them all.
    registered = client.search_registered_models(f"name='{name}'")
    aliases = sorted({a for m in registered for a in (m.aliases or {})})
    return f"no such version or alias of {name!r}; versions: {numbers}, aliases: {aliases}"


def download_pipeline(uri: str, dest: Path | None = None) -> Path:
    """Local folder of the diffusers pipeline stored in a registered version.

    Without `dest` it is cached under `<SVD_HOME>/cache/models/<name>/<version>` (shared storage on a
    cluster, so every node finds it), downloaded once into a temporary folder and renamed into place.
    """
    model = resolve(uri)
    if dest is not None:
        local = mlflow.artifacts.download_artifacts(artifact_uri=model.uri, dst_path=str(dest))
        return pipeline_folder(Path(local), uri)
    from flows.settings import load_settings

    cached = load_settings().home / "cache" / "models" / model.name / model.version
    if not (cached / "MLmodel").is_file():
        cached.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cached.parent, prefix=".download-") as tmp:
            fetched = Path(mlflow.artifacts.download_artifacts(artifact_uri=model.uri, dst_path=tmp))
            with contextlib.suppress(OSError):  # another process finished first: keep its copy
                os.replace(fetched, cached)
    return pipeline_folder(cached, uri)


def pipeline_folder(model_dir: Path, uri: str = "") -> Path:
    """The pipeline folder inside a downloaded pyfunc model (its path is recorded in MLmodel)."""
    import yaml

    mlmodel = model_dir / "MLmodel"
    spec = yaml.safe_load(mlmodel.read_text()) if mlmodel.is_file() else {}
    entry = spec.get("flavors", {}).get("python_function", {}).get("artifacts", {}).get(PIPELINE_ARTIFACT)
    folder = model_dir / entry["path"] if entry else None
    if folder is None or not folder.is_dir():
        raise InputError(
            f"{uri or model_dir} holds no '{PIPELINE_ARTIFACT}' artifact; was it registered by svd?"
        )
    return folder


def register_pipeline(
    pipeline_dir: Path,
    model_name: str,
    lineage: dict[str, str],
    python_model: Any,
    description: str = "",
    signature: Any = None,
    input_example: Any = None,
) -> ResolvedModel:
    """Log the pipeline folder as a pyfunc model (as code) in the active run and register it with lineage
    tags."""
    info = log_pyfunc_model(
        python_model,
        {PIPELINE_ARTIFACT: str(pipeline_dir)},
        model_name,
        signature=signature,
        input_example=input_example,
    )
    client = MlflowClient()
    version = str(info.registered_model_version)
    for key, value in lineage.items():
        client.set_model_version_tag(model_name, version, key, value)
    if description:
        client.update_model_version(model_name, version, description=description)
    return ResolvedModel(model_name, version, info.run_id or "", dict(lineage))


def promote(name: str, version: str, evidence: dict[str, str]) -> str | None:
    """Point `champion` at `version`, keep the old champion as `previous`; return the old version."""
    tracking.configure()
    client = MlflowClient()
    old = _alias_version(client, name, CHAMPION)
    if old == version:
        return old
    if old is not None:
        client.set_registered_model_alias(name, PREVIOUS, old)
    client.set_registered_model_alias(name, CHAMPION, version)
    for key, value in evidence.items():
        client.set_model_version_tag(name, version, f"svd.promotion.{key}", value)
    return old


def set_alias(uri: str, alias: str) -> ResolvedModel:
    """Point `alias` of the model at the version `uri` names (`models:/NAME/N` or another alias)."""
    model = resolve(uri)
    MlflowClient().set_registered_model_alias(model.name, alias, model.version)
    return model


def rollback(name: str) -> str:
    """Move `champion` back to `previous` (and `previous` to the demoted version)."""
    tracking.configure()
    client = MlflowClient()
    prev = _alias_version(client, name, PREVIOUS)
    if prev is None:
        raise InputError(f"model {name!r} has no '{PREVIOUS}' alias to roll back to")
    current = _alias_version(client, name, CHAMPION)
    client.set_registered_model_alias(name, CHAMPION, prev)
    if current is not None:
        client.set_registered_model_alias(name, PREVIOUS, current)
        client.set_model_version_tag(name, current, "svd.promotion.rolled_back", "true")
    return prev


def _alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None
