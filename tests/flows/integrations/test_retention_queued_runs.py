"""Retention keeps dataset versions that unfinished Prefect flow runs name in their parameters.

The integration test runs against Prefect's test server (`prefect_test_harness`, the embedded server on a
temporary database): flow runs are created in Scheduled, Late, Pending, Running and Completed states with
parameters naming published versions the ways a training run does, then retention prunes with
`dataset_refs_in_use()`, the call the `build_dataset` flow makes.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from flows.integrations import retention
from svd_core.curation.publish import list_versions, publish_dataset
from svd_core.curation.subsets import synthetic_lvd_table

if TYPE_CHECKING:
    from prefect.states import State

VERSION = "20250101T000000000000Z-0123abcd"


def test_refs_in_parameters_finds_versions_at_any_depth() -> None:
    folder = f"s3://bucket/curated/lvd_f/{VERSION}"
    params = {
        "cfg": {"data": {"table_uri": folder}, "trainer": {"seed": 3}},
        "overrides": [f"data.table_uri={folder}/lvd_f.parquet", "trainer.max_steps=10"],
        "max_steps": 10,
        "tags": ("sha256:0123456789abcdef",),
    }
    refs = retention.refs_in_parameters(params)
    assert {folder, folder + "/", f"{folder}/lvd_f.parquet", "sha256:0123456789abcdef"} <= refs
    assert "s3://bucket/curated/lvd_f/" not in refs  # the dataset folder itself protects nothing
    assert retention.refs_in_parameters({"data": "s3://bucket/curated/lvd_f"}) == {
        "s3://bucket/curated/lvd_f"
    }
    assert retention.refs_in_parameters({"n": 1, "flag": None}) == set()


@pytest.fixture(scope="module")
def harness() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        from prefect.testing.utilities import prefect_test_harness

        with prefect_test_harness(server_startup_timeout=180):
            yield


def _publish(out: str, n: int, in_use: set[str] | None = None) -> str:
    table = synthetic_lvd_table(20 + n, seed=n)
    return publish_dataset(out, "lvd_f", table, keep_versions=1, in_use=in_use or set()).version


@pytest.mark.integration
def test_versions_named_by_unfinished_flow_runs_survive_retention(
    svd_home: Path, tmp_path: Path, harness: None
) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.states import Completed, Late, Pending, Running, Scheduled

    @flow(name="train_stage_queued")
    def train_stage_queued(cfg: dict, data: str | None = None, overrides: list[str] | None = None) -> None:
        """Stands in for a training deployment's flow; it never runs here."""

    out = str(tmp_path / "curated")
    versions = [  # five versions, all kept for now
        publish_dataset(out, "lvd_f", synthetic_lvd_table(20 + n, seed=n), keep_versions=10).version
        for n in range(5)
    ]
    folder = f"{out}/lvd_f"
    later = datetime.now(UTC) + timedelta(days=1)
    with get_client(sync_client=True) as client:
        runs: dict[str, tuple[State[Any], dict[str, Any]]] = {
            # A scheduled training run pinned to v0's table, as the train flow's `data` parameter.
            "scheduled": (Scheduled(scheduled_time=later), {"cfg": {}, "data": f"{folder}/{versions[0]}/lvd_f.parquet"}),
            # Late (a SCHEDULED-type state): v1's folder inside the nested stage config.
            "late": (Late(scheduled_time=later), {"cfg": {"data": {"table_uri": f"{folder}/{versions[1]}"}}}),
            # Pending on a worker: v2 by a `key=value` override.
            "pending": (Pending(), {"cfg": {}, "overrides": [f"data.table_uri={folder}/{versions[2]}/lvd_f.parquet"]}),
            # Finished: v3 is free to go.
            "completed": (Completed(), {"cfg": {}, "data": f"{folder}/{versions[3]}/lvd_f.parquet"}),
            # Running against CURRENT (the dataset folder): keeps nothing but the current version.
            "running": (Running(), {"cfg": {}, "data": folder}),
        }  # fmt: skip
        for name, (state, params) in runs.items():
            run = client.create_flow_run(train_stage_queued, name=name, parameters=params, state=state)
            assert run.state is not None and run.state.name == state.name

    in_use = retention.dataset_refs_in_use()
    newest = _publish(out, 5, in_use)
    kept = list_versions(out, "lvd_f")
    assert kept == [versions[0], versions[1], versions[2], newest]  # v3 (completed) and v4 (unused) pruned
    assert Path(folder, versions[0], "lvd_f.parquet").is_file()
    assert retention.dataset_refs_in_use(flow_runs=False).isdisjoint(f"{folder}/{v}/" for v in versions)
