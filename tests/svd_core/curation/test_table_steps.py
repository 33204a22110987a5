"""The out-of-core table steps (DuckDB) agree with the pandas path, and the table reads as file or parts."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from svd_core import storage as svd_io
from svd_core.config import load_config
from svd_core.curation import filters, funnel, subsets, table_steps
from svd_core.curation.config import FilterConfig, SubsetConfig, TableEngineConfig
from svd_core.curation.filters import EmptyResultError
from svd_core.curation.publish import write_table
from svd_core.curation.subsets import synthetic_lvd_table
from svd_core.curation.table import MANIFEST, Part, TableSession, table_session, write_manifest
from svd_core.errors import ConfigError, InputError
from tests.helpers import assert_close


@pytest.fixture(scope="module")
def lvd() -> pd.DataFrame:
    table = synthetic_lvd_table(3000, seed=5)
    table.loc[[3, 50, 700], "clip_score"] = None
    table.loc[[9, 10], "caption"] = ["", None]
    table.loc[11, "caption_source"] = "metadata"
    return table


@pytest.fixture(scope="module")
def parts(lvd: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The same table as three parts with a manifest."""
    folder = tmp_path_factory.mktemp("parts") / "lvd_parts"
    spans = list(itertools.pairwise([0, 1000, 2200, 3000]))
    for k, (lo, hi) in enumerate(spans):
        write_table(lvd.iloc[lo:hi], str(folder / f"part-{k}.parquet"))
    write_manifest(str(folder), [Part(f"part-{k}.parquet", hi - lo) for k, (lo, hi) in enumerate(spans)])
    return str(folder)


def cfg(*overrides: str) -> FilterConfig:
    return load_config(FilterConfig, None, overrides)


def test_a_part_folder_reads_like_the_file(lvd: pd.DataFrame, parts: str, tmp_path: Path) -> None:
    single = str(tmp_path / "lvd.parquet")
    write_table(lvd, single)
    with table_session() as session:
        a, b = session.open(single, "a"), session.open(f"file://{parts}", "b")
        assert a.rows == b.rows == len(lvd) and a.columns == b.columns
        ordered = session.run("SELECT clip_id FROM b")
        assert [r[0] for r in ordered] == lvd.clip_id.tolist()  # parts in manifest order, rows in order


def test_manifest_skips_duplicate_videos_and_ignores_leftover_parts(
    lvd: pd.DataFrame, tmp_path: Path
) -> None:
    folder = tmp_path / "parts"
    write_table(lvd.iloc[:100], str(folder / "part-a.parquet"))
    write_table(lvd.iloc[96:200], str(folder / "part-b.parquet"))  # video of rows 96-99 again
    write_table(lvd.iloc[500:600], str(folder / "part-killed-run.parquet"))
    video = str(lvd.video_id.iloc[96])
    assert set(lvd.video_id.iloc[96:100]) == {video}
    with table_session() as session:
        assert session.open(str(folder)).rows == 304  # no manifest: every part
        write_manifest(str(folder), [Part("part-a.parquet", 100), Part("part-b.parquet", 100, (video,))])
        view = session.open(str(folder))
        assert view.rows == 200
        ids = [r[0] for r in session.run(f"SELECT clip_id FROM {view.ident}")]
        assert ids == lvd.clip_id.iloc[:200].tolist()


def test_missing_table_names_the_input(tmp_path: Path) -> None:
    with table_session() as session:
        with pytest.raises(InputError, match=r"nothing\.parquet: no such file"):
            session.open(str(tmp_path / "nothing.parquet"))
        with pytest.raises(InputError, match="no Parquet file or part folder"):
            session.open(str(tmp_path))
    (tmp_path / MANIFEST).write_text("{not json")
    with table_session() as session, pytest.raises(InputError, match="is not a table manifest"):
        session.open(str(tmp_path))


@pytest.mark.parametrize(
    "overrides",
    [
        (),
        ("min_duration_s=3", "max_duration_s=40", "caption.min_words=4"),
        ("drop_missing_scores=false", "scores.flow_score.max.pct=90"),
        ("caption.allowed_sources=[image+video+llm]", "scores.text_area_ratio.max.abs=0.07"),
    ],
)
def test_filters_and_funnel_match_pandas(lvd: pd.DataFrame, parts: str, overrides: tuple[str, ...]) -> None:
    c = cfg(*overrides)
    expected = filters.apply_filters(lvd, c)
    expected_funnel = funnel.compute_funnel(lvd, expected, c)
    with table_session() as session:
        view = session.open(parts)
        result = table_steps.apply_filters(session, view, c)
        for name, threshold in expected.thresholds.items():
            got = result.thresholds[name]
            for side in ("min", "max"):
                want = getattr(threshold, side)
                assert getattr(got, side) == (None if want is None else pytest.approx(want, rel=1e-12, abs=0))
        kept_path = table_steps.write_kept(session, result, session.scratch("kept.parquet"))
        kept = pd.read_parquet(kept_path)
        assert kept.clip_id.tolist() == expected.kept.clip_id.tolist()  # same rows, same order
        got_funnel = table_steps.compute_funnel(session, result, c)
    assert_close(expected_funnel.metrics, got_funnel.metrics)
    assert list(got_funnel.steps.columns) == list(expected_funnel.steps.columns)


def test_approximate_percentiles_stay_close(lvd: pd.DataFrame, parts: str) -> None:
    with table_session() as session:
        view = session.open(parts)
        approx = table_steps.resolve_thresholds(session, view, cfg("percentile_method=approx"))
    exact = filters.resolve_thresholds(lvd, FilterConfig())
    for name, threshold in exact.items():
        values = lvd[name].dropna()
        rank = (values < (approx[name].min if threshold.min is not None else approx[name].max)).mean()
        rule = getattr(FilterConfig().scores, name)
        pct = rule.min or rule.max
        assert pct is not None and pct.pct is not None
        assert abs(rank * 100 - pct.pct) < 1.0, name  # within one percentile rank


def test_filter_errors_match_the_pandas_path(lvd: pd.DataFrame, tmp_path: Path) -> None:
    nulls = str(tmp_path / "nulls.parquet")
    write_table(synthetic_lvd_table(50, null_columns=("aesthetic_score",)), nulls)
    with table_session() as session:
        view = session.open(nulls)
        with pytest.raises(ConfigError, match=r"scores\.aesthetic_score\.enabled=false"):
            table_steps.apply_filters(session, view, FilterConfig())
        with pytest.raises(EmptyResultError, match=r"clip_score drops \d+/50"):
            table_steps.apply_filters(
                session, view, cfg("scores.aesthetic_score.enabled=false", "scores.clip_score.min.abs=0.99")
            )


@pytest.mark.parametrize("overrides", [("size=700", "seed=4"), ("fraction=0.25", "seed=9"), ("size=3000",)])
def test_subset_has_the_rows_and_order_of_random_subset(
    lvd: pd.DataFrame, parts: str, overrides: tuple[str, ...]
) -> None:
    sub_cfg = load_config(SubsetConfig, None, overrides)
    expected = subsets.random_subset(lvd, sub_cfg)
    with table_session() as session:
        view = session.open(parts)
        path = session.scratch("subset.parquet")
        assert table_steps.write_subset(session, view, sub_cfg, path) == len(expected)
        got = pd.read_parquet(path)
    assert got.clip_id.tolist() == expected.clip_id.tolist()
    pd.testing.assert_frame_equal(
        got.reset_index(drop=True), expected.reset_index(drop=True), check_dtype=False
    )


def test_subset_refuses_duplicate_clip_ids(lvd: pd.DataFrame, tmp_path: Path) -> None:
    dup = pd.concat([lvd.iloc[:20], lvd.iloc[:3]])
    uri = str(tmp_path / "dup.parquet")
    write_table(dup, uri)
    with table_session() as session, pytest.raises(InputError, match="3 duplicate clip_id"):
        table_steps.write_subset(session, session.open(uri), SubsetConfig(), tmp_path / "s.parquet")


def test_engine_limits_are_applied(tmp_path: Path) -> None:
    engine = TableEngineConfig(memory_limit_mb=300, threads=1, temp_dir=str(tmp_path))
    with TableSession(engine) as session:
        limit = session.scalar("SELECT current_setting('memory_limit')")
        assert limit.replace(" ", "").upper().startswith(("286.1MIB", "300.0MB", "300MB"))
        assert session.scalar("SELECT current_setting('threads')") == 1
        assert session.workdir.parent == tmp_path
    assert not list(tmp_path.iterdir())  # spill and staging folders go away with the session


class _Store:
    """A remote-looking store (any scheme but file://), to check that parts are staged through it."""

    def __init__(self, root: Path) -> None:
        self.root, self.gets = root, 0

    def _path(self, uri: str) -> Path:
        return self.root / uri.split("://", 1)[1]

    def read_bytes(self, uri: str) -> bytes:
        return self._path(uri).read_bytes()

    def write_bytes(self, uri: str, data: bytes) -> None:
        self._path(uri).parent.mkdir(parents=True, exist_ok=True)
        self._path(uri).write_bytes(data)

    def put_file(self, local: str | Path, uri: str) -> None:
        self.write_bytes(uri, Path(local).read_bytes())

    def get_file(self, uri: str, local: str | Path) -> Path:
        self.gets += 1
        Path(local).write_bytes(self.read_bytes(uri))
        return Path(local)

    def exists(self, uri: str) -> bool:
        return self._path(uri).exists()

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        scheme = prefix.split("://", 1)[0]
        return sorted(f"{scheme}://{p.relative_to(self.root)}" for p in base.rglob("*") if p.is_file())

    def delete(self, uri: str) -> None:
        self._path(uri).unlink()


def test_remote_parts_are_staged_through_the_registered_store(
    lvd: pd.DataFrame, parts: str, tmp_path: Path
) -> None:
    store = _Store(tmp_path)
    svd_io.register_store("tabletest", lambda: store)
    for path in sorted(Path(parts).iterdir()):
        store.write_bytes(f"tabletest://bucket/lvd_parts/{path.name}", path.read_bytes())
    with table_session() as session:
        view = session.open("tabletest://bucket/lvd_parts")
        assert view.rows == len(lvd) and store.gets == 3
        mean = session.scalar(f"SELECT avg(flow_score) FROM {view.ident}")
    assert mean == pytest.approx(float(np.mean(lvd.flow_score)))
