"""The Dask engine (svd_core.curation.table_dask) gives the DuckDB engine's results without gathering rows."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from svd_core.config import load_config
from svd_core.curation import table_dask, table_steps
from svd_core.curation.config import FilterConfig, SubsetConfig, TableEngineConfig
from svd_core.curation.filters import EmptyResultError
from svd_core.curation.publish import write_table
from svd_core.curation.subsets import synthetic_lvd_table
from svd_core.curation.table import Part, table_session, write_manifest
from svd_core.errors import ConfigError, InputError
from tests.helpers import assert_close

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def lvd() -> pd.DataFrame:
    table = synthetic_lvd_table(3000, seed=7)
    table.loc[[3, 50, 700, 2900], "clip_score"] = None
    table.loc[[9, 10], "caption"] = ["", None]
    table.loc[11, "caption_source"] = "metadata"
    table.loc[[20, 21], "aesthetic_score"] = [-0.0, 0.0]
    return table


@pytest.fixture(scope="module")
def parts(lvd: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The table as four parts with a manifest; the last part repeats a video the manifest skips."""
    folder = tmp_path_factory.mktemp("dask-parts") / "lvd_parts"
    spans = list(itertools.pairwise([0, 700, 1500, 2300, 3000]))
    for k, (lo, hi) in enumerate(spans):
        write_table(lvd.iloc[lo:hi], str(folder / f"part-{k}.parquet"))
    write_table(lvd.iloc[96:100], str(folder / "part-9.parquet"))  # rows 96-99: one video, again
    entries = [Part(f"part-{k}.parquet", hi - lo) for k, (lo, hi) in enumerate(spans)]
    entries.append(Part("part-9.parquet", 0, (str(lvd.video_id.iloc[96]),)))
    write_manifest(str(folder), entries)
    return str(folder)


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


def cfg(*overrides: str) -> FilterConfig:
    return load_config(FilterConfig, None, overrides)


def test_open_reads_parts_in_manifest_order(client: Any, parts: str, lvd: pd.DataFrame) -> None:
    table = table_dask.open_table(client, parts)
    assert table.rows == len(lvd) and len(table.parts) == 5 and table.part_rows[-1] == 0
    assert table.columns == tuple(lvd.columns)


@pytest.mark.parametrize(
    "overrides",
    [
        (),
        ("min_duration_s=3", "max_duration_s=40", "caption.min_words=4"),
        ("drop_missing_scores=false", "scores.flow_score.max.pct=90", "quantiles=[0,12.5,50,99.9,100]"),
        ("caption.allowed_sources=[image+video+llm]", "scores.text_area_ratio.max.abs=0.07"),
        ("percentile_method=approx",),
    ],
)
def test_filter_and_funnel_equal_the_duckdb_engine(
    client: Any, parts: str, tmp_path: Path, overrides: tuple[str, ...]
) -> None:
    c = cfg(*overrides)
    table = table_dask.open_table(client, parts)
    got = table_dask.apply_filters(client, table, c)
    written = table_dask.write_kept(client, got, str(tmp_path / "kept"))
    got_funnel = table_dask.compute_funnel(client, got, c)
    with table_session() as session:
        view = session.open(parts)
        want = table_steps.apply_filters(session, view, c)
        want_ids = [r[0] for r in session.run(f"SELECT clip_id FROM {view.ident} WHERE {want.keep}")]
        want_funnel = table_steps.compute_funnel(session, want, c)
        kept = session.open(written.uri)
        got_ids = [r[0] for r in session.run(f"SELECT clip_id FROM {kept.ident}")]
    if c.percentile_method == "exact":  # DuckDB's approx is a t-digest; Dask's is exact either way
        assert set(got.thresholds) == set(want.thresholds)
        for name, threshold in want.thresholds.items():
            for side in ("min", "max"):
                w = getattr(threshold, side)
                assert getattr(got.thresholds[name], side) == (
                    None if w is None else pytest.approx(w, rel=1e-12)
                )
        assert got_ids == want_ids  # the same rows, in input order
        assert_close(want_funnel.metrics, got_funnel.metrics)
    assert written.rows == got.kept_rows == len(got_ids)
    assert len(got_ids) == len(set(got_ids))


def test_thresholds_equal_numpy_percentile_exactly(client: Any, parts: str, lvd: pd.DataFrame) -> None:
    table = table_dask.open_table(client, parts)
    partitions = table.partitions(["aesthetic_score", "text_area_ratio"])
    keys = table_dask._ScoreKeys(("aesthetic_score", "text_area_ratio"))
    percents = [0.0, 0.1, 2.5, 33.3, 50.0, 77.7, 99.99, 100.0]
    got = table_dask.exact_percentiles(
        client,
        partitions,
        keys,
        {f"all:{c}": (int(lvd[c].notna().sum()), percents) for c in ("aesthetic_score", "text_area_ratio")},
    )
    for column in ("aesthetic_score", "text_area_ratio"):  # text_area_ratio: half the values are 0.0
        want = np.percentile(lvd[column].dropna().to_numpy(np.float64), percents)
        assert got[f"all:{column}"] == [float(v) for v in want]


def test_a_small_gather_limit_needs_more_passes_and_gives_the_same_keys(
    client: Any, parts: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = table_dask.open_table(client, parts)
    partitions = table.partitions(["flow_score"])
    keys = table_dask._ScoreKeys(("flow_score",))
    ranks = {"all:flow_score": [0, 1, 1499, 2999]}
    wide = table_dask.select_keys(client, partitions, keys, ranks)
    monkeypatch.setattr(table_dask, "GATHER_LIMIT", 0)  # histogram passes down to the last 16 bits
    assert table_dask.select_keys(client, partitions, keys, ranks) == wide


@pytest.mark.parametrize("overrides", [("size=700", "seed=4"), ("fraction=0.25", "seed=9"), ("size=3000",)])
def test_subset_equals_the_duckdb_engine(
    client: Any, parts: str, tmp_path: Path, overrides: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(table_dask, "SUBSET_PART_ROWS", 200)  # several rank ranges, shuffled on workers
    sub_cfg = load_config(SubsetConfig, None, overrides)
    table = table_dask.open_table(client, parts)
    written = table_dask.write_subset(client, table, sub_cfg, str(tmp_path / "subset"))
    with table_session() as session:
        view = session.open(parts)
        path = session.scratch("subset.parquet")
        k = table_steps.write_subset(session, view, sub_cfg, path)
        want = pd.read_parquet(path)
        got = session.run(f"SELECT clip_id FROM {session.open(written.uri).ident}")
    assert written.rows == k
    assert [r[0] for r in got] == want.clip_id.tolist()  # the same rows in the same (rank) order
    assert len(written.parts) > 1


def test_subset_refuses_duplicate_clip_ids(client: Any, lvd: pd.DataFrame, tmp_path: Path) -> None:
    write_table(lvd.iloc[:40], str(tmp_path / "in" / "part-0.parquet"))
    write_table(pd.concat([lvd.iloc[40:60], lvd.iloc[:3]]), str(tmp_path / "in" / "part-1.parquet"))
    table = table_dask.open_table(client, str(tmp_path / "in"))
    with pytest.raises(InputError, match="3 duplicate clip_id"):
        table_dask.write_subset(client, table, SubsetConfig(size=10), str(tmp_path / "out"))


def test_filter_errors_match_the_duckdb_engine(client: Any, tmp_path: Path) -> None:
    nulls = str(tmp_path / "nulls.parquet")
    write_table(synthetic_lvd_table(50, null_columns=("aesthetic_score",)), nulls)
    table = table_dask.open_table(client, nulls)
    with pytest.raises(ConfigError, match=r"scores\.aesthetic_score\.enabled=false"):
        table_dask.apply_filters(client, table, FilterConfig())
    c = cfg("scores.aesthetic_score.enabled=false", "scores.clip_score.min.abs=0.99")
    with pytest.raises(EmptyResultError, match=r"clip_score drops \d+/50"):
        table_dask.apply_filters(client, table, c)


def test_the_driver_receives_aggregates_never_rows(
    client: Any, parts: str, lvd: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every result that reaches the driver passes through Client.gather: record each one."""
    received: list[Any] = []
    original = distributed.Client.gather

    def recording(self: Any, *args: Any, **kwargs: Any) -> Any:
        out = original(self, *args, **kwargs)
        received.append(out)
        return out

    monkeypatch.setattr(distributed.Client, "gather", recording)
    monkeypatch.setattr(table_dask, "GATHER_LIMIT", 8)
    c = FilterConfig()
    table = table_dask.open_table(client, parts)
    result = table_dask.apply_filters(client, table, c)
    table_dask.write_kept(client, result, str(tmp_path / "kept"))
    table_dask.compute_funnel(client, result, c)
    table_dask.write_subset(client, table, SubsetConfig(size=900, seed=3), str(tmp_path / "subset"))
    assert received
    clip_ids = set(lvd.clip_id)
    seen_ids = 0
    for item in _flatten(received):
        if isinstance(item, pd.DataFrame):  # the writers' one-row-per-part (path, rows) summaries
            assert list(item.columns) == ["path", "rows"] and len(item) <= len(table.parts)
        elif isinstance(item, np.ndarray):  # digit histograms, count vectors, <= GATHER_LIMIT candidates
            assert item.dtype.kind in "iuf" and (len(item) == 1 << 16 or item.size <= 64), item.shape
        elif isinstance(item, str):
            seen_ids += item in clip_ids
    assert seen_ids <= 2  # the subset's cut-off clip (a rank tie, practically never more)


def _flatten(items: Any) -> Iterator[Any]:
    if isinstance(items, (list, tuple)):
        for item in items:
            yield from _flatten(item)
    else:
        yield items


def test_a_bad_scheduler_address_names_the_setting() -> None:
    engine = TableEngineConfig(engine="dask", dask_address="tcp://127.0.0.1:9", dask_connect_timeout_s=0.5)
    with (
        pytest.raises(ConfigError, match=r"engine\.dask_address='tcp://127\.0\.0\.1:9'"),
        table_dask.dask_client(engine),
    ):
        pass


def test_build_filtered_on_dask_publishes_what_duckdb_publishes(
    client: Any, parts: str, tmp_path: Path
) -> None:
    from svd_core.curation.publish import ValidationReport, build_filtered, read_current_table

    seen: list[str] = []

    def passed(table: Any, funnel: Any, name: str) -> ValidationReport:
        seen.append(name)
        return ValidationReport(success=True, evaluated=1, suites=(f"{name}.table",))

    subset = SubsetConfig(size=800, seed=2)
    staging = tmp_path / "staging"
    engine = TableEngineConfig(
        engine="dask", dask_address=client.scheduler.address, dask_staging_uri=str(staging)
    )
    on_dask = build_filtered(parts, str(tmp_path / "dask"), FilterConfig(), subset, passed, engine=engine)
    on_duckdb = build_filtered(parts, str(tmp_path / "duckdb"), FilterConfig(), subset, passed)
    assert_close(on_duckdb["thresholds"], on_dask["thresholds"])
    assert on_dask["lvd_rows"] == on_duckdb["lvd_rows"]
    for name, dataset in on_duckdb["datasets"].items():
        assert on_dask["datasets"][name]["rows"] == dataset["rows"], name
        got = read_current_table(str(tmp_path / "dask"), name)
        want = read_current_table(str(tmp_path / "duckdb"), name)
        assert got.clip_id.tolist() == want.clip_id.tolist(), name
        if dataset["funnel"]:
            assert_close(dataset["funnel"], on_dask["datasets"][name]["funnel"])
    assert not [p for p in staging.rglob("*") if p.is_file()]  # staged parts removed once merged
    with pytest.raises(ConfigError, match=r"engine\.dask_staging_uri is required"):
        build_filtered(
            parts,
            str(tmp_path / "x"),
            FilterConfig(),
            None,
            passed,
            engine=TableEngineConfig(engine="dask", dask_address=client.scheduler.address),
            source_gate=None,
        )
