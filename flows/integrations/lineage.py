"""Lineage of trained models: exact parent versions, data content versions, lineage keys and reuse.

A registered version is reused by a rerun only when its lineage key matches: the config without local
paths, the parent *version* and the data *content*. Parents enter the key and the tags as
`models:/NAME/N`: an alias (`@champion`) moves, so a key built from it would reuse a stale model.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from flows.integrations import registry, tags, tracking
from svd_core import storage as svd_io
from svd_core.errors import InputError


def dataset_version(table_uri: str) -> str:
    """Content version of a training table: sha256 of its bytes (a published LVD-F version is immutable)."""
    from svd_core.data.video_dataset import resolve_table_uri

    try:
        return "sha256:" + hashlib.sha256(svd_io.read_bytes(resolve_table_uri(table_uri))).hexdigest()[:16]
    except Exception as exc:
        raise InputError(
            f"training data {table_uri}: cannot read it ({exc}); pass --data with an LVD(-F) table"
        ) from exc


def pin_parent(uri: str | None) -> str:
    """`models:/NAME@ALIAS` or `models:/NAME/N` -> `models:/NAME/N` (clear error when unknown); a folder or
    an empty reference is returned as it is."""
    if not uri:
        return ""
    if uri.startswith("models:/"):
        return registry.resolve(uri).uri
    return uri


def lineage_key(config: Mapping[str, Any], parent: str, data_version: str) -> str:
    """sha256 (16 hex digits) of the config without local paths, the pinned parent and the data version."""
    source = json.dumps({"config": config, "parent": parent, "data": data_version}, sort_keys=True)
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def find_registered(model_name: str, key: str) -> registry.ResolvedModel | None:
    """The registered version of `model_name` trained with lineage key `key` (server-side tag filter)."""
    tracking.configure()
    client = MlflowClient()
    try:  # every MLflow 3 store (SQL, file, REST) filters on tags server-side
        versions = client.search_model_versions(
            f"name='{model_name}' and tags.`{tags.LINEAGE_KEY}` = '{key}'",
            order_by=["version_number DESC"],
            max_results=1,
        )
    except MlflowException:
        return None  # no such registered model yet
    for mv in versions:
        return registry.ResolvedModel(mv.name, str(mv.version), mv.run_id or "", dict(mv.tags))
    return None
