"""Retention keeps dataset versions a registered model was trained on (its svd.dataset_version tag)."""

from __future__ import annotations

import json
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from svd_core.curation.publish import LOCK_FILE, content_version, list_versions, publish_dataset, publish_lock
from svd_core.curation.subsets import synthetic_lvd_table
from svd_core.errors import StorageError


def _publish(out: str, n: int, in_use: Collection[str] = ()) -> str:
    return publish_dataset(
        out, "lvd_f", synthetic_lvd_table(20 + n, seed=n), keep_versions=1, in_use=in_use
    ).version


def test_a_version_in_use_survives_pruning(tmp_path: Path) -> None:
    out = str(tmp_path)
    first = _publish(out, 0)
    pointer = json.loads((tmp_path / "lvd_f" / "CURRENT").read_text())
    in_use = {content_version(pointer["table_sha256"])}
    second = _publish(out, 1, in_use)
    third = _publish(out, 2, in_use)
    assert list_versions(out, "lvd_f") == [first, third]  # second was not in use: pruned
    by_uri = {f"{tmp_path}/lvd_f/{third}/lvd_f.parquet"}
    fourth = _publish(out, 3, by_uri)
    assert list_versions(out, "lvd_f") == [third, fourth]  # first no longer in use; third is, by URI
    assert second not in list_versions(out, "lvd_f")


def test_registered_model_tags_protect_their_dataset(svd_home: Path, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from flows.integrations import retention, tags, tracking
    from flows.integrations.lineage import dataset_version

    out = str(tmp_path / "curated")
    first = _publish(out, 0)
    table = f"{out}/lvd_f/{first}/lvd_f.parquet"
    tracking.configure()
    client = MlflowClient()
    client.create_registered_model("svd-retention")
    client.create_model_version(
        "svd-retention", str(tmp_path), tags={tags.DATASET_VERSION: dataset_version(table)}
    )
    in_use = retention.dataset_refs_in_use(flow_runs=False)  # Prefect runs: test_retention_queued_runs
    assert dataset_version(table) in in_use
    for n in range(1, 4):
        _publish(out, n, in_use)
    assert first in list_versions(out, "lvd_f") and len(list_versions(out, "lvd_f")) == 2
    assert Path(table).is_file()


def test_a_held_publish_lock_blocks_and_a_stale_one_is_broken(tmp_path: Path) -> None:
    out = str(tmp_path)
    lock = tmp_path / "lvd_f" / LOCK_FILE
    with publish_lock(out, "lvd_f"):
        assert json.loads(lock.read_text())["owner"]
        with (
            pytest.raises(StorageError, match=r"another publisher .* is publishing 'lvd_f'"),
            publish_lock(out, "lvd_f", wait_s=0.3),
        ):
            pass
    assert not lock.exists()
    lock.write_text(json.dumps({"owner": "dead-host:1", "at": 0.0}))
    version = _publish(out, 0)
    assert list_versions(out, "lvd_f") == [version] and not lock.exists()


def test_racing_publishers_take_turns(tmp_path: Path) -> None:
    out = str(tmp_path)
    tables = [synthetic_lvd_table(30 + n, seed=n) for n in range(4)]
    with ThreadPoolExecutor(4) as pool:
        versions = list(
            pool.map(lambda t: publish_dataset(out, "lvd_f", t, keep_versions=10).version, tables)
        )
    assert sorted(versions) == list_versions(out, "lvd_f")
    current = json.loads((tmp_path / "lvd_f" / "CURRENT").read_text())["version"]
    assert current in versions and not (tmp_path / "lvd_f" / LOCK_FILE).exists()
    for version in versions:  # every version complete: manifest and table
        assert (tmp_path / "lvd_f" / version / "manifest.json").is_file()
