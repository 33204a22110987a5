"""Filter, funnel and seeded subsets on a Dask DataFrame: the table steps across machines.

`TableEngineConfig.engine: dask` runs the steps of `table_steps` (DuckDB, one machine) on a Dask cluster
(`engine.dask_address`, or a LocalCluster). The rules are the same, so the outputs are the same: equal
thresholds, the same kept rows, the same funnel numbers and the same subset rows in the same order.

Why Dask, not Ray Data: the LVD build already fans out on Dask (`prefect-dask`), so the cluster that
wrote the parts is the one that filters them and no second cluster runtime is deployed or tuned; Dask
DataFrame reads the same part folders one task per part (`dd.from_map`), ships plain pandas partitions
to functions the pandas path already has (`filters._score_mask`, `subsets.subset_rank`), and its shuffle
(`set_index` with known divisions) gives the globally ordered subset. Ray Data would bring its own object
store, scheduler and autoscaler for the same job and no step here needs actors.

The driver never holds rows; every step sends it aggregates only:

- open: one task per Parquet part, in manifest order; the manifest's skipped videos are dropped on the
  worker; remote parts are staged to the worker's disk through `svd_core.storage`; the driver reads
  only the manifest and the parts' schemas and row counts (read by the workers).
- thresholds and funnel quantiles are exact, as on DuckDB: Dask's own `quantile` merges per-partition
  estimates and has no error bound, so it is not used. Instead each score becomes an order-preserving
  64-bit key and an exact radix selection finds the order statistics: a pass returns, per wanted
  statistic, a histogram of the next 16 key bits among the values sharing the prefix found so far
  (summed on the workers; 65,536 counters reach the driver), until at most `GATHER_LIMIT` candidates
  remain, which are gathered and sorted. Two or three passes over one column. The two order statistics
  around numpy's linear-interpolation position are interpolated as numpy does, so the thresholds equal
  the pandas path's. `percentile_method: approx` is served by the same exact selection, which already
  runs in bounded memory (recorded in the thresholds exactly as on DuckDB).
- keep-masks: the pandas path's mask functions, per partition.
- kept rows: each worker writes its partition's kept rows as one part into the output folder; the
  driver writes the manifest from the returned row counts.
- funnel: per-partition count and duration-sum vectors, summed; quantiles by the selection above.
- subsets: each worker ranks its clip ids with `subset_rank` (BLAKE2b keyed with the seed, as
  `subsets.random_subset`); the selection finds the k-th smallest (rank, clip_id); the rows at or
  below it are shuffled into rank ranges (`set_index` with known divisions), each range sorted by
  (rank, clip_id) and written as one part, so the parts in manifest order hold the rows of
  `random_subset` in its order. Duplicate clip ids are refused through a distributed `value_counts`
  (only their number and three examples reach the driver).
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from svd_core import storage as svd_io
from svd_core.curation.config import FilterConfig, SubsetConfig, TableEngineConfig, ThresholdConfig
from svd_core.curation.filters import (
    ResolvedThreshold,
    _duration_mask,
    _score_mask,
    caption_rules_mask,
    nothing_kept,
    require_resolved,
    require_rows,
)
from svd_core.curation.funnel import QUANTILE_COLUMNS, Funnel, _number, assemble_funnel, percentile_key
from svd_core.curation.schema import SCORE_COLUMNS
from svd_core.curation.subsets import check_subset_input, duplicate_ids_error, subset_rank, subset_size
from svd_core.curation.table import MANIFEST, Part, TableSession, table_parts, write_manifest
from svd_core.errors import ConfigError, InputError, StorageError

DIGIT_BITS = 16
"""Key bits resolved per selection pass (a histogram of 65,536 counters per wanted order statistic)."""
GATHER_LIMIT = 1 << 16
"""Once at most this many candidates remain for an order statistic, they are gathered and sorted."""
SUBSET_PART_ROWS = 1_000_000
"""Rows per written subset part (the subset is shuffled into this many rank ranges)."""
_SIGN = np.uint64(1 << 63)
_RANK = "__svd_rank"
_BUCKET = "__svd_bucket"


# --- the cluster -------------------------------------------------------------------------------------
@contextlib.contextmanager
def dask_client(cfg: TableEngineConfig) -> Iterator[Any]:
    """A `distributed.Client` on `cfg.dask_address`, or on a LocalCluster when it is null."""
    from distributed import Client, LocalCluster

    if cfg.dask_address is None:
        with (
            LocalCluster(
                n_workers=cfg.threads,
                threads_per_worker=1,
                memory_limit=f"{cfg.memory_limit_mb}MB",
                dashboard_address=None,
                local_directory=cfg.temp_dir,
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client
        return
    try:
        client = Client(cfg.dask_address, timeout=cfg.dask_connect_timeout_s)
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"engine.dask_address={cfg.dask_address!r}: no Dask scheduler answered within "
            f"{cfg.dask_connect_timeout_s:g}s ({type(exc).__name__}: {exc}); start one (`dask scheduler`) "
            "and check the address, or set engine.dask_address=null to run on a local cluster"
        ) from exc
    try:
        yield client
    finally:
        client.close()


def _gather(client: Any, tasks: Sequence[Any]) -> list[Any]:
    """Run `tasks` (dask collections or delayed values) on the cluster and bring back their results."""
    if not tasks:
        return []
    return list(client.gather(client.compute(list(tasks))))


def _tree(tasks: list[Any], combine: Callable[[Any, Any], Any]) -> Any:
    """Reduce delayed partition results pairwise on the workers (log-depth, one result comes back)."""
    import dask

    merge = dask.delayed(combine, pure=True)
    while len(tasks) > 1:
        tasks = [merge(a, b) if b is not None else a for a, b in _pairs(tasks)]
    return tasks[0]


def _pairs(items: list[Any]) -> Iterator[tuple[Any, Any]]:
    for k in range(0, len(items), 2):
        yield items[k], items[k + 1] if k + 1 < len(items) else None


# --- the table ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PartSource:
    """One Parquet part as a worker reads it."""

    uri: str
    skip_video_ids: tuple[str, ...] = ()


def _read_arrow(source: PartSource, schema: pa.Schema) -> pa.Table:
    """The part's rows (skipped videos dropped) with `schema`'s columns (absent ones as nulls)."""
    try:
        with svd_io.local_copy(source.uri) as path:
            present = set(pq.read_schema(path).names)
            wanted = [c for c in schema.names if c in present]
            skip = bool(source.skip_video_ids) and "video_id" in present
            read = wanted + (["video_id"] if skip and "video_id" not in wanted else [])
            table = pq.read_table(path, columns=read)
    except (StorageError, OSError, pa.ArrowException) as exc:
        raise InputError(f"cannot read table part {source.uri}: {exc}; rebuild the table") from exc
    if skip:
        table = table.filter(pc.invert(pc.is_in(table["video_id"], pa.array(list(source.skip_video_ids)))))
    columns = [
        table[f.name].cast(f.type) if f.name in present else pa.nulls(len(table), f.type) for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _read_part(source: PartSource, schema: pa.Schema, arrow_dtypes: bool = False) -> pd.DataFrame:
    table = _read_arrow(source, schema)
    return table.to_pandas(types_mapper=pd.ArrowDtype) if arrow_dtypes else table.to_pandas()


def _part_info(source: PartSource) -> tuple[pa.Schema, int]:
    with svd_io.local_copy(source.uri) as path:
        schema = pq.read_schema(path)
        rows = pq.ParquetFile(path).metadata.num_rows
    if source.skip_video_ids and "video_id" in schema.names:
        rows = len(_read_arrow(source, pa.schema([schema.field("video_id")])))
    return schema, rows


@dataclass(frozen=True)
class DaskTable:
    """A table (file or part folder, any scheme) as Dask partitions: one per part, in manifest order."""

    uri: str
    parts: tuple[PartSource, ...]
    schema: pa.Schema
    rows: int
    part_rows: tuple[int, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.schema.names)

    def frame(self, columns: Sequence[str] | None = None, arrow_dtypes: bool = False) -> Any:
        """A `dask.dataframe.DataFrame` of `columns` (column-pruned reads, one task per part)."""
        import dask.dataframe as dd

        schema = pa.schema([self.schema.field(c) for c in (columns or self.columns)])
        meta = _read_meta(schema, arrow_dtypes)
        reader = partial(_read_part, schema=schema, arrow_dtypes=arrow_dtypes)
        return dd.from_map(reader, list(self.parts), meta=meta, enforce_metadata=False)

    def partitions(self, columns: Sequence[str]) -> list[Any]:
        """Delayed pandas partitions of `columns`."""
        return list(self.frame(columns).to_delayed())


def _read_meta(schema: pa.Schema, arrow_dtypes: bool) -> pd.DataFrame:
    empty = schema.empty_table()
    return empty.to_pandas(types_mapper=pd.ArrowDtype) if arrow_dtypes else empty.to_pandas()


def open_table(client: Any, uri: str) -> DaskTable:
    """The table at `uri` (a Parquet file or a part folder with or without a manifest)."""
    import dask

    uris, parts = table_parts(uri)
    sources = tuple(PartSource(u, p.skip_video_ids) for u, p in zip(uris, parts, strict=True))
    infos = _gather(client, [dask.delayed(_part_info, pure=True)(s) for s in sources])
    try:
        schema = pa.unify_schemas([info[0] for info in infos])
    except pa.ArrowException as exc:
        raise InputError(f"table {uri}: its parts have conflicting column types ({exc}); rebuild it") from exc
    part_rows = tuple(int(info[1]) for info in infos)
    return DaskTable(str(uri), sources, schema, sum(part_rows), part_rows)


@dataclass(frozen=True)
class WrittenTable:
    """A table the workers wrote: where, and how many rows (the driver never saw them)."""

    uri: str
    """The part folder (read it with `open_table` or `TableSession.open`)."""
    rows: int
    parts: tuple[Part, ...]


def _write_part(table: pa.Table, folder: str, name: str) -> Part:
    uri = svd_io.join_uri(folder, name)
    if svd_io.is_local(uri):
        with svd_io.atomic_local_write(svd_io.local_path(uri)) as tmp:
            pq.write_table(table, tmp, compression="zstd")
    else:
        with tempfile.TemporaryDirectory(prefix="svd-part-") as tmp_dir:
            local = Path(tmp_dir) / name
            pq.write_table(table, local, compression="zstd")
            svd_io.put_file(local, uri)
    return Part(name, len(table))


def _finish(folder: str, written: Sequence[Part | None], extra: dict[str, Any]) -> WrittenTable:
    parts = tuple(p for p in written if p is not None)
    write_manifest(folder, parts, extra)
    return WrittenTable(folder, sum(p.rows for p in parts), parts)


# --- exact order statistics --------------------------------------------------------------------------
def _float_keys(values: np.ndarray) -> np.ndarray:
    """Order-preserving uint64 keys of float64 values (NaN excluded beforehand; -0.0 counts as 0.0)."""
    bits = (values.astype(np.float64) + 0.0).view(np.uint64)
    return np.where(bits >= _SIGN, ~bits, bits | _SIGN)


def _key_float(key: int) -> float:
    k = np.uint64(key)
    bits = k & ~_SIGN if k >= _SIGN else ~k
    return float(np.array([bits], dtype=np.uint64).view(np.float64)[0])


def _present(values: pd.Series) -> np.ndarray:
    arr = values.to_numpy(dtype=np.float64, na_value=np.nan)
    return arr[~np.isnan(arr)]


KeysFn = Callable[[pd.DataFrame], dict[str, np.ndarray]]
"""Partition -> group name -> the uint64 keys whose order statistics are wanted."""


@dataclass(frozen=True)
class _Probe:
    """What one partition reports for one open search: a digit histogram, or the candidates."""

    group: str
    prefix: int
    bits: int
    gather: bool


def _probe_partition(frame: pd.DataFrame, keys_fn: KeysFn, probes: tuple[_Probe, ...]) -> list[np.ndarray]:
    keys = keys_fn(frame)
    out = []
    for probe in probes:
        k = keys[probe.group]
        if probe.bits:
            k = k[(k >> np.uint64(64 - probe.bits)) == np.uint64(probe.prefix)]
        if probe.gather:
            out.append(np.sort(k))
        else:
            digits = (k >> np.uint64(64 - probe.bits - DIGIT_BITS)) & np.uint64((1 << DIGIT_BITS) - 1)
            out.append(np.bincount(digits.astype(np.int64), minlength=1 << DIGIT_BITS))
    return out


def _merge_probes(probes: tuple[_Probe, ...], a: list[np.ndarray], b: list[np.ndarray]) -> list[np.ndarray]:
    return [
        np.sort(np.concatenate([x, y])) if p.gather else x + y for p, x, y in zip(probes, a, b, strict=True)
    ]


@dataclass
class _Search:
    group: str
    rank: int
    """0-based rank still wanted among the keys sharing `prefix`."""
    prefix: int = 0
    bits: int = 0
    gather: bool = False
    key: int | None = None


def select_keys(
    client: Any, partitions: list[Any], keys_fn: KeysFn, wanted: Mapping[str, Sequence[int]]
) -> dict[str, dict[int, int]]:
    """Exact order statistics: group -> 0-based rank -> key, by radix selection over the partitions."""
    import dask

    searches = {(g, r): _Search(g, r) for g, ranks in wanted.items() for r in set(ranks)}
    while open_ := [s for s in searches.values() if s.key is None]:
        probes = tuple(dict.fromkeys(_Probe(s.group, s.prefix, s.bits, s.gather) for s in open_))
        tasks = [dask.delayed(_probe_partition, pure=True)(p, keys_fn, probes) for p in partitions]
        (merged,) = _gather(client, [_tree(tasks, partial(_merge_probes, probes))])
        result = dict(zip(probes, merged, strict=True))
        for s in open_:
            found = result[_Probe(s.group, s.prefix, s.bits, s.gather)]
            if s.gather:
                s.key = int(found[s.rank])
                continue
            cumulative = np.cumsum(found)
            digit = int(np.searchsorted(cumulative, s.rank, side="right"))
            s.rank -= int(cumulative[digit - 1]) if digit else 0
            s.prefix, s.bits = (s.prefix << DIGIT_BITS) | digit, s.bits + DIGIT_BITS
            if s.bits == 64:
                s.key = s.prefix
            else:
                s.gather = int(found[digit]) <= GATHER_LIMIT
    out: dict[str, dict[int, int]] = {}
    for (group, rank), s in searches.items():
        assert s.key is not None
        out.setdefault(group, {})[rank] = s.key
    return out


def _percentile_ranks(n: int, pct: float) -> tuple[int, int, float]:
    """numpy's 'linear' percentile position on n sorted values: (lower rank, upper rank, weight)."""
    virtual = (n - 1) * (pct / 100.0)
    if virtual >= n - 1:
        return n - 1, n - 1, 0.0
    lower = math.floor(virtual)
    return lower, lower + 1, virtual - lower


def _lerp(a: float, b: float, t: float) -> float:
    """numpy's `_lerp` (the interpolation np.percentile uses), bit for bit."""
    diff = b - a
    return b - diff * (1 - t) if t >= 0.5 else a + diff * t


def exact_percentiles(
    client: Any, partitions: list[Any], keys_fn: KeysFn, requests: Mapping[str, tuple[int, Sequence[float]]]
) -> dict[str, list[float | None]]:
    """group -> (present-value count, percents) => the percentiles np.percentile gives on those values."""
    wanted: dict[str, list[int]] = {}
    for group, (n, percents) in requests.items():
        for pct in percents if n else ():
            lo, hi, t = _percentile_ranks(n, pct)
            wanted.setdefault(group, []).extend([lo, hi] if t else [lo])
    keys = select_keys(client, partitions, keys_fn, wanted) if wanted else {}
    out: dict[str, list[float | None]] = {}
    for group, (n, percents) in requests.items():
        values: list[float | None] = []
        for pct in percents:
            if not n:
                values.append(None)
                continue
            lo, hi, t = _percentile_ranks(n, pct)
            a = _key_float(keys[group][lo])
            values.append(_lerp(a, _key_float(keys[group][hi]), t) if t else a)
        out[group] = values
    return out


# --- per-partition functions -------------------------------------------------------------------------
def _masks(
    frame: pd.DataFrame, cfg: FilterConfig, thresholds: dict[str, ResolvedThreshold]
) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name in cfg.order:
        if not cfg.is_active(name):
            continue
        if name == "duration":
            mask = _duration_mask(frame, cfg)
        elif name == "caption":
            mask = caption_rules_mask(frame, cfg)  # the null check ran once, across partitions
        else:
            mask = _score_mask(frame, thresholds[name], cfg.drop_missing_scores)
        out[name] = mask.to_numpy(dtype=bool, na_value=False)
    return out


def _keep(frame: pd.DataFrame, cfg: FilterConfig, thresholds: dict[str, ResolvedThreshold]) -> np.ndarray:
    keep = np.ones(len(frame), dtype=bool)
    for mask in _masks(frame, cfg, thresholds).values():
        keep &= mask
    return keep


def _notna_counts(frame: pd.DataFrame, columns: tuple[str, ...]) -> np.ndarray:
    return np.array([int(frame[c].notna().sum()) for c in columns], dtype=np.int64)


@dataclass(frozen=True)
class _ScoreKeys:
    """Keys of the present values of `columns`, over all rows and (with a filter) over the kept rows."""

    columns: tuple[str, ...]
    cfg: FilterConfig | None = None
    thresholds: tuple[tuple[str, ResolvedThreshold], ...] = ()

    def __call__(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        out = {f"all:{c}": _float_keys(_present(frame[c])) for c in self.columns}
        if self.cfg is not None:
            kept = frame.loc[_keep(frame, self.cfg, dict(self.thresholds))]
            out.update({f"kept:{c}": _float_keys(_present(kept[c])) for c in self.columns})
        return out

    def sums(self, frame: pd.DataFrame) -> np.ndarray:
        """Per group (all columns, then kept columns): [count, sum] of the present values."""
        values = [frame[c] for c in self.columns]
        if self.cfg is not None:
            kept = frame.loc[_keep(frame, self.cfg, dict(self.thresholds))]
            values += [kept[c] for c in self.columns]
        out = np.zeros((len(values), 2), dtype=np.float64)
        for k, series in enumerate(values):
            present = _present(series)
            out[k] = (len(present), float(present.sum()))
        return out


def _step_vector(
    frame: pd.DataFrame, cfg: FilterConfig, thresholds: dict[str, ResolvedThreshold]
) -> np.ndarray:
    """[rows, duration sum, duration count, kept rows, kept duration sum, kept duration count] then per
    filter [removed alone rows, hours sum, removed in order rows, sum, remaining rows, sum]."""
    duration = frame["duration_s"].to_numpy(dtype=np.float64, na_value=np.nan)
    has = ~np.isnan(duration)
    d = np.where(has, duration, 0.0)
    masks = list(_masks(frame, cfg, thresholds).values())
    keep = np.ones(len(frame), dtype=bool)
    for mask in masks:
        keep &= mask
    out = [len(frame), d.sum(), has.sum(), keep.sum(), d[keep].sum(), has[keep].sum()]
    remaining = np.ones(len(frame), dtype=bool)
    for mask in masks:
        step = remaining & ~mask
        remaining = remaining & mask
        out += [(~mask).sum(), d[~mask].sum(), step.sum(), d[step].sum(), remaining.sum(), d[remaining].sum()]
    return np.array(out, dtype=np.float64)


def _sum_arrays(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a + b


def _aggregate(client: Any, partitions: list[Any], fn: Callable[[pd.DataFrame], np.ndarray]) -> np.ndarray:
    """Sum `fn` over the partitions (on the workers; one small array reaches the driver)."""
    import dask

    tasks = [dask.delayed(fn, pure=True)(p) for p in partitions]
    (total,) = _gather(client, [_tree(tasks, _sum_arrays)])
    return np.asarray(total)


# --- filter ------------------------------------------------------------------------------------------
def _require_columns(table: DaskTable, columns: list[str], source: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InputError(
            f"{source} lacks column(s) {missing} needed by the filters; it must follow the LVD schema "
            "(svd_core.curation.schema.LVD_SCHEMA); re-run the LVD build or disable those filters"
        )


def _checked_columns(table: DaskTable, cfg: FilterConfig, source: str) -> dict[str, str]:
    """Column -> config key of every column a filter needs values in (checked in the DuckDB order)."""
    enabled = [name for name, rule in cfg.scores.items() if rule.enabled]
    _require_columns(table, enabled, source)
    out = {name: f"scores.{name}.enabled" for name in enabled}
    rules = cfg.caption
    if cfg.is_active("caption"):
        if rules.non_empty or rules.min_words > 0:
            _require_columns(table, ["caption"], source)
            out["caption"] = "caption.enabled"
        if rules.allowed_sources is not None:
            _require_columns(table, ["caption_source"], source)
            out["caption_source"] = "caption.enabled"
    if cfg.is_active("duration"):
        _require_columns(table, ["duration_s"], source)
    return out


def _require_values(table: DaskTable, counts: dict[str, int], column: str, key: str, source: str) -> None:
    if not counts.get(column):
        raise ConfigError(
            f"filter on {column!r}: the column is null in every row of {source} (its scorer was not "
            f"configured in the LVD build); set {key}=false to skip this filter"
        )


def _value_counts(client: Any, table: DaskTable, columns: tuple[str, ...]) -> dict[str, int]:
    if not columns:
        return {}
    totals = _aggregate(client, table.partitions(columns), partial(_notna_counts, columns=columns))
    return {c: int(v) for c, v in zip(columns, totals, strict=True)}


def resolve_thresholds(
    client: Any,
    table: DaskTable,
    cfg: FilterConfig,
    source: str | None = None,
    counts: dict[str, int] | None = None,
) -> dict[str, ResolvedThreshold]:
    """Absolute bounds for every enabled score filter (exact percentiles, as np.percentile gives)."""
    source = source or table.uri
    enabled = [(name, rule) for name, rule in cfg.scores.items() if rule.enabled]
    _require_columns(table, [name for name, _ in enabled], source)
    names = tuple(name for name, _ in enabled)
    if counts is None:
        counts = _value_counts(client, table, names)
    for name in names:
        _require_values(table, counts, name, f"scores.{name}.enabled", source)
    requests: dict[str, tuple[int, list[float]]] = {}
    for name, rule in enabled:
        bounds: list[ThresholdConfig | None] = [rule.min, rule.max]
        percents = [b.pct for b in bounds if b is not None and b.abs is None and b.pct is not None]
        requests[f"all:{name}"] = (counts[name], percents)
    pending = {g: r for g, r in requests.items() if r[1]}
    resolved_all = (
        exact_percentiles(client, table.partitions(names), _ScoreKeys(names), pending) if pending else {}
    )
    out: dict[str, ResolvedThreshold] = {}
    for name, rule in enabled:
        resolved = iter(resolved_all.get(f"all:{name}", []))
        lo, hi = (
            None if b is None else float(b.abs) if b.abs is not None else next(resolved)
            for b in (rule.min, rule.max)
        )
        min_spec = rule.min.describe() if rule.min else None
        max_spec = rule.max.describe() if rule.max else None
        if lo is not None and hi is not None and lo > hi:
            raise ConfigError(
                f"scores.{name}: min ({min_spec} -> {lo:g}) is above max ({max_spec} -> {hi:g}) on "
                f"{source}; lower min or raise max"
            )
        out[name] = ResolvedThreshold(column=name, min=lo, max=hi, min_spec=min_spec, max_spec=max_spec)
    return out


@dataclass(frozen=True)
class DaskFilter:
    """What the filters keep (counts only; the rows stay on the workers until `write_kept`)."""

    table: DaskTable
    cfg: FilterConfig
    names: tuple[str, ...]
    """Active filter names, in funnel order."""
    thresholds: dict[str, ResolvedThreshold]
    kept_rows: int
    steps: tuple[float, ...]
    """The summed `_step_vector` (funnel counts and duration sums)."""

    @property
    def filter_columns(self) -> tuple[str, ...]:
        return _filter_columns(self.table, self.cfg)


def _filter_columns(table: DaskTable, cfg: FilterConfig) -> tuple[str, ...]:
    wanted = ["duration_s", *(n for n in SCORE_COLUMNS if cfg.is_active(n)), "caption", "caption_source"]
    return tuple(c for c in dict.fromkeys(wanted) if c in table.columns)


def apply_filters(
    client: Any,
    table: DaskTable,
    cfg: FilterConfig,
    thresholds: dict[str, ResolvedThreshold] | None = None,
    source: str | None = None,
) -> DaskFilter:
    """Filter `table` by `cfg`: the Dask twin of `table_steps.apply_filters` (same checks and errors)."""
    source = source or table.uri
    require_rows(table.rows, source)
    _require_columns(table, ["clip_id", "duration_s"], source)
    checked = _checked_columns(table, cfg, source)
    counts = _value_counts(client, table, tuple(checked))
    if thresholds is None:
        thresholds = resolve_thresholds(client, table, cfg, source, counts)
    require_resolved(cfg, thresholds)
    for column, key in checked.items():
        _require_values(table, counts, column, key, source)
    names = tuple(n for n in cfg.order if cfg.is_active(n))
    used = {name: thresholds[name] for name in SCORE_COLUMNS if name in names}
    step_fn = partial(_step_vector, cfg=cfg, thresholds=used)
    steps = _aggregate(client, table.partitions(_filter_columns(table, cfg)), step_fn)
    kept = int(steps[3])
    if kept == 0:
        removed = ", ".join(
            f"{name} drops {int(steps[6 + 6 * k])}/{table.rows}" for k, name in enumerate(names)
        )
        raise nothing_kept(table.rows, source, removed)
    return DaskFilter(table, cfg, names, used, kept, tuple(float(v) for v in steps))


def _write_kept_part(
    source: PartSource,
    index: int,
    schema: pa.Schema,
    columns: tuple[str, ...],
    cfg: FilterConfig,
    thresholds: dict[str, ResolvedThreshold],
    folder: str,
) -> pd.DataFrame:
    table = _read_arrow(source, schema)
    keep = _keep(table.select(list(columns)).to_pandas(), cfg, thresholds)
    kept = table.filter(pa.array(keep))
    part = _write_part(kept, folder, f"part-{index:05d}.parquet") if len(kept) else None
    return pd.DataFrame({"path": [part.path if part else ""], "rows": [len(kept)]})


def write_kept(client: Any, result: DaskFilter, folder_uri: str) -> WrittenTable:
    """The workers write the kept rows (input order) as one part per input part, into `folder_uri`."""
    import dask.dataframe as dd

    writer = partial(
        _write_kept_part,
        schema=result.table.schema,
        columns=result.filter_columns,
        cfg=result.cfg,
        thresholds=result.thresholds,
        folder=folder_uri,
    )
    meta = pd.DataFrame({"path": pd.Series(dtype=object), "rows": pd.Series(dtype=np.int64)})
    summary = dd.from_map(writer, list(result.table.parts), list(range(len(result.table.parts))), meta=meta)
    (written,) = _gather(client, [summary])  # one (path, rows) row per part
    rows = written["rows"].tolist()
    parts = [Part(str(p), int(n)) if n else None for p, n in zip(written["path"].tolist(), rows, strict=True)]
    return _finish(folder_uri, parts, {"written_by": "svd_core.curation.table_dask.write_kept"})


# --- funnel ------------------------------------------------------------------------------------------
def compute_funnel(client: Any, result: DaskFilter, cfg: FilterConfig, name: str | None = None) -> Funnel:
    """Funnel statistics of `result`: the Dask twin of `table_steps.compute_funnel` (same metrics)."""
    values = result.steps
    total_rows, total_sum, total_count = values[0], values[1], values[2]
    kept_sum, kept_count = values[4], values[5]
    total_hours = total_sum / 3600.0
    steps: list[dict[str, Any]] = []
    for k, filter_name in enumerate(result.names):
        alone, alone_s, step, step_s, remain, remain_s = values[6 + 6 * k : 12 + 6 * k]
        threshold = result.thresholds.get(filter_name)
        steps.append(
            {
                "filter": filter_name,
                "min": threshold.min if threshold else None,
                "max": threshold.max if threshold else None,
                "min_spec": threshold.min_spec if threshold else None,
                "max_spec": threshold.max_spec if threshold else None,
                "removed_alone_rows": int(alone),
                "removed_alone_hours": alone_s / 3600.0,
                "removed_alone_fraction": alone / total_rows,
                "removed_in_order_rows": int(step),
                "removed_in_order_hours": step_s / 3600.0,
                "remaining_rows": int(remain),
                "remaining_hours": remain_s / 3600.0,
                "remaining_fraction": remain / total_rows,
                "remaining_hours_fraction": (remain_s / 3600.0) / total_hours if total_hours else None,
            }
        )
    columns = tuple(c for c in QUANTILE_COLUMNS if c in result.table.columns)
    keys = _ScoreKeys(columns, result.cfg, tuple(result.thresholds.items()))
    read = tuple(dict.fromkeys((*result.filter_columns, *columns)))
    partitions = result.table.partitions(read)
    sums = _aggregate(client, partitions, keys.sums)
    groups = [f"{stage}:{c}" for stage in ("all", "kept") for c in columns]
    requests = {g: (int(sums[k][0]), list(cfg.quantiles)) for k, g in enumerate(groups)}
    quantiles = exact_percentiles(client, partitions, keys, requests) if cfg.quantiles else {}
    rows: list[dict[str, Any]] = []
    for k, group in enumerate(groups):
        stage, column = group.split(":", 1)
        count, total = int(sums[k][0]), float(sums[k][1])
        row: dict[str, Any] = {
            "stage": "before" if stage == "all" else "after",
            "column": column,
            "count": count,
        }
        got = quantiles.get(group, [None] * len(cfg.quantiles))
        row.update({percentile_key(q): _number(v) for q, v in zip(cfg.quantiles, got, strict=True)})
        row["mean"] = _number(total / count) if count else None
        rows.append(row)
    totals = {
        "input_rows": int(total_rows),
        "input_hours": total_hours,
        "input_mean_duration_s": total_sum / total_count if total_count else None,
        "kept_mean_duration_s": kept_sum / kept_count if kept_count else None,
        "kept_rows": result.kept_rows,
        "kept_hours": kept_sum / 3600.0,
    }
    return assemble_funnel(
        steps,
        rows,
        cfg,
        name,
        totals=totals,
        thresholds={n: t.to_dict() for n, t in result.thresholds.items()},
    )


# --- seeded subsets ----------------------------------------------------------------------------------
def _ranks(frame: pd.DataFrame, seed: int) -> np.ndarray:
    return subset_rank((str(c) for c in frame["clip_id"].tolist()), seed)


@dataclass(frozen=True)
class _RankKeys:
    seed: int

    def __call__(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        return {"rank": _ranks(frame, self.seed)}


def _at_rank(frame: pd.DataFrame, seed: int, rank: int) -> tuple[int, list[str]]:
    """(rows ranked below `rank`, clip ids ranked exactly `rank`) of a partition."""
    ranks = _ranks(frame, seed)
    below = int((ranks < np.uint64(rank)).sum())
    return below, [str(c) for c in frame["clip_id"][ranks == np.uint64(rank)].tolist()]


def _merge_at_rank(a: tuple[int, list[str]], b: tuple[int, list[str]]) -> tuple[int, list[str]]:
    return a[0] + b[0], a[1] + b[1]


def _duplicates(counts: pd.Series) -> tuple[int, list[str]]:
    dup = counts[counts > 1]
    return int((dup - 1).sum()), sorted(str(c) for c in dup.index)[:3]


def _merge_duplicates(a: tuple[int, list[str]], b: tuple[int, list[str]]) -> tuple[int, list[str]]:
    return a[0] + b[0], sorted(a[1] + b[1])[:3]


def _select_subset(frame: pd.DataFrame, seed: int, rank: int, last_clip: str) -> pd.DataFrame:
    ranks = _ranks(frame, seed)
    clip = frame["clip_id"].astype(str).to_numpy()
    r = np.uint64(rank)
    keep = (ranks < r) | ((ranks == r) & (clip <= last_clip))
    out = frame.loc[keep].copy()
    out[_RANK] = ranks[keep]
    out[_BUCKET] = (ranks[keep] >> np.uint64(1)).astype(np.int64)  # monotone in rank, fits int64
    return out


def _write_subset_part(frame: pd.DataFrame, index: int, schema: pa.Schema, folder: str) -> Part | None:
    if not len(frame):
        return None
    ordered = frame.reset_index(drop=True).sort_values([_RANK, "clip_id"], kind="stable")
    table = pa.Table.from_pandas(ordered.drop(columns=[_RANK]), schema=schema, preserve_index=False)
    return _write_part(table, folder, f"part-{index:05d}.parquet")


def write_subset(
    client: Any, table: DaskTable, cfg: SubsetConfig, folder_uri: str, source: str | None = None
) -> WrittenTable:
    """The workers write the seeded subset (the rows and order of `subsets.random_subset`) as parts."""
    import dask

    source = source or table.uri
    check_subset_input(source, table.rows, table.columns)
    k = subset_size(table.rows, cfg)
    ids = table.frame(["clip_id"])
    counts = ids["clip_id"].astype(str).value_counts(split_out=max(1, len(table.parts)))
    dup_tasks = [dask.delayed(_duplicates, pure=True)(p) for p in counts.to_delayed()]
    ((dup_count, examples),) = _gather(client, [_tree(dup_tasks, _merge_duplicates)])
    if dup_count:
        raise duplicate_ids_error(source, dup_count, examples)
    partitions = list(ids.to_delayed())
    rank = select_keys(client, partitions, _RankKeys(cfg.seed), {"rank": [k - 1]})["rank"][k - 1]
    tie_tasks = [dask.delayed(_at_rank, pure=True)(p, cfg.seed, rank) for p in partitions]
    ((below, tied),) = _gather(client, [_tree(tie_tasks, _merge_at_rank)])
    last_clip = sorted(tied)[k - below - 1]  # the k-th (rank, clip_id) of the whole table
    frame = table.frame(arrow_dtypes=True)
    selected = frame.map_partitions(
        _select_subset,
        cfg.seed,
        rank,
        last_clip,
        meta=frame._meta.assign(**{_RANK: np.array([], np.uint64), _BUCKET: np.array([], np.int64)}),
    )
    n_out = max(1, min(len(table.parts), math.ceil(k / SUBSET_PART_ROWS), k))
    top = rank >> 1
    divisions = sorted({top * j // n_out for j in range(n_out + 1)})
    if len(divisions) < 2:
        divisions = [0, top]
    ranged = selected.set_index(_BUCKET, divisions=divisions)
    writes = [
        dask.delayed(_write_subset_part, pure=True)(p, j, table.schema, folder_uri)
        for j, p in enumerate(ranged.to_delayed())
    ]
    written = _gather(client, writes)
    result = _finish(folder_uri, written, {"written_by": "svd_core.curation.table_dask.write_subset"})
    if result.rows != k:
        raise InputError(f"subset of {source}: wrote {result.rows} rows, expected {k}; rerun the step")
    return result


# --- the build's staging (svd_core.curation.publish.build_filtered with engine: dask) -----------------
def _merge(session: TableSession, written: WrittenTable, name: str) -> Path:
    """One local Parquet file of a written part folder (DuckDB streams it; publishing hashes one file)."""
    view = session.open(written.uri)
    return session.copy_to_parquet(f"SELECT * FROM {view.ident}", session.scratch(f"{name}.parquet"))


def _remove(written: WrittenTable) -> None:
    """Best-effort removal of staged parts once merged (a remote staging folder would keep them)."""
    with contextlib.suppress(StorageError, OSError):
        store = svd_io.store_for(written.uri)
        for part in written.parts:
            store.delete(svd_io.join_uri(written.uri, part.path))
        store.delete(svd_io.join_uri(written.uri, MANIFEST))


def stage_tables(
    session: TableSession,
    engine: TableEngineConfig,
    lvd_uri: str,
    filter_cfg: FilterConfig,
    subset_cfg: SubsetConfig | None,
    include_lvd_f: bool,
) -> tuple[int, list[tuple[str, Path, Funnel | None]], dict[str, Any]]:
    """`publish._stage_tables` on Dask: (LVD rows, [(name, local Parquet file, funnel)], thresholds).

    The workers write every table as parts under `engine.dask_staging_uri` (default: the session's work
    folder, which only a LocalCluster's workers share); each is then merged into one local file in
    `session` for validation and publishing."""
    if engine.dask_address is not None and engine.dask_staging_uri is None:
        raise ConfigError(
            "engine.dask_staging_uri is required with engine.dask_address: the Dask workers write the "
            "staged tables there and this process reads them back (an s3:// prefix both can reach)"
        )
    root = svd_io.join_uri(engine.dask_staging_uri or str(session.scratch("dask")), uuid.uuid4().hex)
    written: list[WrittenTable] = []
    staged: list[tuple[str, Path, Funnel | None]] = []
    try:
        with dask_client(engine) as client:
            lvd = open_table(client, lvd_uri)
            # LVD-F's thresholds are resolved even when only subsets are built (LVD-10M-F may use them).
            result = apply_filters(client, lvd, filter_cfg, source=lvd_uri)
            if include_lvd_f:
                written.append(write_kept(client, result, svd_io.join_uri(root, filter_cfg.name)))
                funnel = compute_funnel(client, result, filter_cfg)
                staged.append((filter_cfg.name, _merge(session, written[-1], filter_cfg.name), funnel))
            if subset_cfg is not None:
                subset_uri = svd_io.join_uri(root, subset_cfg.name)
                written.append(write_subset(client, lvd, subset_cfg, subset_uri, source=lvd_uri))
                source = f"{subset_cfg.name} (subset of {lvd_uri})"
                subset = open_table(client, subset_uri)
                thresholds = result.thresholds if subset_cfg.thresholds_from == "lvd" else None
                sub_result = apply_filters(client, subset, filter_cfg, thresholds, source=source)
                filtered = subset_cfg.filtered_name
                written.append(write_kept(client, sub_result, svd_io.join_uri(root, filtered)))
                sub_funnel = compute_funnel(client, sub_result, filter_cfg, name=filtered)
                staged += [
                    (subset_cfg.name, _merge(session, written[-2], subset_cfg.name), None),
                    (filtered, _merge(session, written[-1], filtered), sub_funnel),
                ]
    finally:
        for item in written:
            _remove(item)
    return lvd.rows, staged, {name: t.to_dict() for name, t in result.thresholds.items()}
