"""The Prefect flow of the LVD build on a thread pool and on a local 2-worker Dask cluster."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from svd_core.video.sample import GROUND_TRUTH, write_sample_set

pytestmark = pytest.mark.integration
NO_LEARNED = ["models.craft_weights=null"]  # the non-learned pass only: keeps the test fast on CPU


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two good videos (one VFR) and two bad files from the sample set."""
    sample = tmp_path_factory.getbasetemp() / "lvd-sample-0"
    if not (sample / GROUND_TRUTH).exists():
        write_sample_set(sample, seed=0)
    raw = tmp_path_factory.mktemp("flow-raw")
    for name in ("v00_static_cuts.mp4", "v04_vfr.mp4", "bad_zero_byte.mp4", "bad_audio_only.mp4"):
        shutil.copy(sample / name, raw / name)
    return raw


@pytest.fixture(scope="module")
def harness() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        from prefect.testing.utilities import prefect_test_harness

        with prefect_test_harness(server_startup_timeout=120):
            yield


@pytest.mark.parametrize("runner", ["threads", "processes"])
def test_flow_builds_lvd(runner: str, raw: Path, tmp_path: Path, harness: None) -> None:
    from flows.lvd_flow import run_build_lvd

    out = tmp_path / "lvd"
    overrides = [f"run.task_runner={runner}", "run.max_workers=2", "run.task_retries=0", *NO_LEARNED]
    summary = run_build_lvd(str(raw), str(out), None, overrides)
    assert (summary.videos, summary.clips, summary.quarantined) == (2, 5, 2)
    table = pd.read_parquet(out / "lvd.parquet")
    assert table.flow_score.notna().all() and table.camera_motion.notna().all()
    assert set(json.loads(table.scorer_versions[0])) >= {"cuts", "clips", "flow", "camera"}
    quarantine = pd.read_parquet(out / "quarantine.parquet")
    assert sorted(quarantine.stage) == ["probe", "probe"]
    again = run_build_lvd(str(raw), str(out), None, overrides)
    assert again.reused == 4 and again.clips == 5


def test_a_task_that_keeps_failing_is_quarantined(raw: Path, tmp_path: Path, harness: None) -> None:
    from flows.lvd_flow import run_build_lvd

    manifest = tmp_path / "videos.csv"
    manifest.write_text(f"uri\n{raw / 'v00_static_cuts.mp4'}\nnosuchscheme://bucket/lost.mp4\n")
    overrides = ["run.task_runner=threads", "run.task_retries=1", "run.retry_delay_s=0", *NO_LEARNED]
    summary = run_build_lvd(str(manifest), str(tmp_path / "lvd"), None, overrides)
    assert (summary.videos, summary.clips, summary.quarantined) == (1, 3, 1)
    quarantine = pd.read_parquet(tmp_path / "lvd" / "quarantine.parquet")
    assert quarantine.source_uri.tolist() == ["nosuchscheme://bucket/lost.mp4"]
    assert "task failed after retries" in quarantine.reason[0] and "nosuchscheme" in quarantine.reason[0]


def test_dask_workers_write_the_parts_and_the_flow_gets_counts(
    raw: Path, tmp_path: Path, harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A local 2-worker Dask cluster, one video per batch: every part is written in a worker process and
    what reaches the flow process per batch is a few hundred bytes of counts, never rows."""
    import pickle

    import flows.lvd_flow as lvd_flow
    from svd_core.curation.lvd import TABLE_PARTS_DIR, BatchResult
    from svd_core.curation.table import read_manifest

    received: list[object] = []
    original = lvd_flow._batch_or_quarantine

    def recording(future, batch):  # runs in the flow process
        result = original(future, batch)
        received.append(result)
        return result

    monkeypatch.setattr(lvd_flow, "_batch_or_quarantine", recording)
    out = tmp_path / "lvd"
    overrides = [
        "run.task_runner=processes",
        "run.max_workers=2",
        "run.batch_size=1",
        "run.single_file_max_rows=0",
        "run.task_retries=0",
        *NO_LEARNED,
    ]
    summary = lvd_flow.run_build_lvd(str(raw), str(out), None, overrides)
    assert len(received) == 4 and all(isinstance(r, BatchResult) for r in received)
    assert max(len(pickle.dumps(r)) for r in received) < 2000
    assert sum(r.rows for r in received) == summary.clips > 0
    parts = read_manifest(str(out / TABLE_PARTS_DIR))
    assert parts is not None and len(parts) == summary.videos == 2
    assert summary.lvd_uri == str(out / TABLE_PARTS_DIR) and not (out / "lvd.parquet").exists()
    assert sum(len(pd.read_parquet(out / TABLE_PARTS_DIR / p.path)) for p in parts) == summary.clips
