"""Publish curated tables as immutable versions behind a CURRENT pointer, only after a validation gate.

Layout under OUT (any URI svd_core.storage serves):

    OUT/<name>/<version>/<name>.parquet          the table
    OUT/<name>/<version>/<name>_funnel.json|.csv filter statistics (filtered tables only)
    OUT/<name>/<version>/<name>_quantiles.csv
    OUT/<name>/<version>/<name>_validation.json  the gate's report
    OUT/<name>/<version>/<name>_clips.parquet    clip index: each clip's shard and byte range (clip tables)
    OUT/<name>/CURRENT                           JSON naming the current version (written last)
    OUT/<name>_metrics.json                      current rows/hours/funnel numbers at a stable path

Every object is written atomically and the pointer flips only after all of a version's files exist, so a
crash or a failed gate leaves the previous version current and complete. `<name>_metrics.json` sits beside
(not inside) the dataset folder so a DVC stage can declare `OUT/<name>` as an output and the metrics file
as a metric without the two overlapping. The validation itself (Great Expectations) lives in
`flows.integrations.validation`; this module only consumes its `ValidationReport`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from svd_core import storage as svd_io
from svd_core.curation import table_steps
from svd_core.curation.clip_index import CLIP_INDEX_KIND, write_clip_index
from svd_core.curation.config import FilterConfig, SubsetConfig, TableEngineConfig
from svd_core.curation.funnel import Funnel
from svd_core.curation.schema import LVD_COLUMNS, LVD_SCHEMA
from svd_core.curation.table import TableSession, sha256_file, table_session
from svd_core.errors import InputError, StorageError, SvdError

CURRENT_FILE = "CURRENT"
VERSION_PATTERN = re.compile(r"^\d{8}T\d{12}Z-[0-9a-f]{8}$")
"""Version folder names: UTC publish time (so names sort in time order), then the table's sha256 prefix."""


@dataclass(frozen=True)
class FailedExpectation:
    suite: str
    expectation: str
    """Expectation type, e.g. "expect_column_values_to_be_between"."""
    column: str | None
    observed: Any
    """Observed value (or a short summary such as unexpected counts)."""
    details: str = ""

    def describe(self) -> str:
        target = f"({self.column})" if self.column else ""
        extra = f"; {self.details}" if self.details else ""
        return f"{self.suite}: {self.expectation}{target} observed {self.observed!r}{extra}"


@dataclass(frozen=True)
class ValidationReport:
    """Outcome of a validation gate over one table (filled by flows.integrations.validation)."""

    success: bool
    evaluated: int
    """Number of expectations evaluated."""
    failed: tuple[FailedExpectation, ...] = ()
    docs_index: str | None = None
    """URI of the Data Docs index page built for this run, if any."""
    suites: tuple[str, ...] = field(default_factory=tuple)

    def failure_lines(self) -> list[str]:
        return [f.describe() for f in self.failed]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["failed"] = [{**asdict(f), "observed": _jsonable(f.observed)} for f in self.failed]
        return data


ValidationFn = Callable[[pd.DataFrame | str, Mapping[str, Any] | None, str], ValidationReport]
"""(table: a frame, or the path/URI of a Parquet file or part folder; funnel metrics or None; dataset
name) -> report; flows.integrations.validation.make_validation_fn builds one."""
SOURCE_GATE = "lvd"
"""Name under which `build_filtered` validates the LVD table itself, before any filter runs."""


class PublishBlockedError(SvdError):
    """A validation gate failed; nothing was published and the previous version stays current."""


@dataclass(frozen=True)
class PublishedVersion:
    name: str
    version: str
    uri: str
    """Folder of this version."""
    files: dict[str, str]
    """Kind ("table", "funnel_json", ...) -> URI."""
    rows: int
    published_at: str


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _json_bytes(data: Mapping[str, Any]) -> bytes:
    return (json.dumps(_jsonable(data), indent=2) + "\n").encode()


def read_table(uri: str) -> pd.DataFrame:
    """Read a Parquet table (a file, or a folder of parts) from any URI svd_core.storage serves into
    memory; for small tables only: the table steps read through the out-of-core engine instead."""
    if not str(uri).rstrip("/").endswith(".parquet"):
        with table_session() as session:
            view = session.open(str(uri))
            return session.con.sql(f"SELECT * FROM {view.ident}").df()
    try:
        with svd_io.local_copy(uri) as path:
            return pd.read_parquet(path)
    except StorageError as exc:
        raise InputError(f"cannot read table {uri}: {exc}") from exc


def _arrow_table(table: pd.DataFrame) -> pa.Table:
    # LVD-shaped tables keep the contract's exact types and column order.
    if set(table.columns) == set(LVD_COLUMNS):
        return pa.Table.from_pandas(table[LVD_COLUMNS], schema=LVD_SCHEMA, preserve_index=False)
    return pa.Table.from_pandas(table, preserve_index=False)


@contextlib.contextmanager
def _parquet_file(table: pd.DataFrame) -> Iterator[tuple[Path, str]]:
    """Yield a local parquet file of `table` and its sha256 (the version id needs it before upload)."""
    with tempfile.TemporaryDirectory(prefix="svd-publish-") as tmp:
        path = Path(tmp) / "table.parquet"
        pq.write_table(_arrow_table(table), path)
        yield path, sha256_file(path)


def write_table(table: pd.DataFrame, uri: str) -> str:
    """Write `table` as parquet to `uri` atomically; return the file's sha256."""
    with _parquet_file(table) as (path, digest):
        svd_io.put_file(path, uri)
    return digest


def dataset_uri(out_uri: str, name: str) -> str:
    return svd_io.join_uri(str(out_uri), name)


def current_version(out_uri: str, name: str) -> PublishedVersion | None:
    """The version `OUT/<name>/CURRENT` names, or None if nothing was published yet."""
    pointer = svd_io.join_uri(dataset_uri(out_uri, name), CURRENT_FILE)
    if not svd_io.exists(pointer):
        return None
    data = json.loads(svd_io.read_bytes(pointer))
    base = svd_io.join_uri(dataset_uri(out_uri, name), data["version"])
    files = {kind: svd_io.join_uri(base, rel) for kind, rel in data["files"].items()}
    return PublishedVersion(name, data["version"], base, files, data["rows"], data["published_at"])


def _current_if_same_table(out_uri: str, name: str, digest: str) -> PublishedVersion | None:
    current = current_version(out_uri, name)
    if current is None:
        return None
    pointer = json.loads(svd_io.read_bytes(svd_io.join_uri(dataset_uri(out_uri, name), CURRENT_FILE)))
    return current if pointer.get("table_sha256") == digest else None


def read_current_table(out_uri: str, name: str) -> pd.DataFrame:
    current = current_version(out_uri, name)
    if current is None:
        raise InputError(f"no published version of {name!r} under {out_uri}; run `svd data filter` first")
    return read_table(current.files["table"])


def list_versions(out_uri: str, name: str) -> list[str]:
    """Version folder names under OUT/<name>, oldest first (names start with a UTC timestamp)."""
    base = dataset_uri(out_uri, name)
    if svd_io.is_local(base):
        root = svd_io.local_path(base)
        names = [p.name for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
    else:
        prefix = base.rstrip("/") + "/"
        names = [
            uri[len(prefix) :].split("/", 1)[0] for uri in svd_io.list_uris(prefix) if uri.startswith(prefix)
        ]
    return sorted({n for n in names if VERSION_PATTERN.match(n)})


def content_version(table_sha256: str) -> str:
    """The content version a training run records for a table (flows.integrations.lineage.dataset_version)."""
    return f"sha256:{table_sha256[:16]}"


def _in_use(folder: str, version: str, in_use: Collection[str]) -> bool:
    """Whether anything in `in_use` (content versions `sha256:...`, version names or URIs inside the
    version folder, as a registered model's lineage tags hold them) points at this version."""
    if not in_use:
        return False
    if version in in_use or any(ref.startswith(folder.rstrip("/") + "/") for ref in in_use):
        return True
    manifest = svd_io.join_uri(folder, "manifest.json")
    if not svd_io.exists(manifest):
        return False
    digest = str(json.loads(svd_io.read_bytes(manifest)).get("table_sha256", ""))
    return bool(digest) and content_version(digest) in in_use


def _prune(out_uri: str, name: str, keep: int, current: str, in_use: Collection[str] = ()) -> list[str]:
    """Delete all but the newest `keep` versions, never the current one nor one still in use (a registered
    model trained on it, see `_in_use`); return the deleted names."""
    versions = list_versions(out_uri, name)
    store = svd_io.store_for(out_uri)
    doomed = []
    for version in versions[: max(0, len(versions) - keep)]:
        folder = svd_io.join_uri(dataset_uri(out_uri, name), version)
        if version == current or _in_use(folder, version, in_use):
            continue
        doomed.append(version)
        for uri in svd_io.list_uris(folder):
            store.delete(uri)
        if svd_io.is_local(folder):
            store.delete(folder)  # the emptied folder
    return doomed


LOCK_FILE = "_publish.lock"
LOCK_STALE_S = 3600.0
"""A lock older than this is taken to belong to a publisher that died, and is broken."""


def _try_create(uri: str, body: bytes) -> bool:
    """Create `uri` only if it does not exist (O_EXCL locally, a conditional PUT where the store has
    `create`, e.g. S3's If-None-Match); False when it exists."""
    if svd_io.is_local(uri):
        path = svd_io.local_path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as handle:
            handle.write(body)
        return True
    store = svd_io.store_for(uri)
    create = getattr(store, "create", None)
    if create is None:  # a store without conditional writes: best effort
        if svd_io.exists(uri):
            return False
        svd_io.write_bytes(uri, body)
        return True
    try:
        create(uri, body)
        return True
    except StorageError:
        if svd_io.exists(uri):
            return False
        raise


@contextlib.contextmanager
def publish_lock(out_uri: str, name: str, wait_s: float = 120.0) -> Iterator[None]:
    """Hold `OUT/<name>/_publish.lock` while a version is written and CURRENT flips, so two publishers
    cannot interleave (each CURRENT write names a complete version, and retention never races a flip)."""
    uri = svd_io.join_uri(dataset_uri(out_uri, name), LOCK_FILE)
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + wait_s
    while not _try_create(uri, json.dumps({"owner": owner, "at": time.time()}).encode()):
        try:
            held = json.loads(svd_io.read_bytes(uri))
        except (StorageError, ValueError):
            held = {}
        if time.time() - float(held.get("at", 0.0)) > LOCK_STALE_S:
            svd_io.store_for(uri).delete(uri)  # its publisher died
            continue
        if time.monotonic() > deadline:
            raise StorageError(
                f"{uri}: another publisher ({held.get('owner', 'unknown')}) is publishing {name!r}; wait for "
                f"it to finish, or delete the lock if that process died (stale after {LOCK_STALE_S:.0f} s)"
            )
        time.sleep(0.2)
    try:
        yield
    finally:
        with contextlib.suppress(StorageError, ValueError):
            if json.loads(svd_io.read_bytes(uri)).get("owner") == owner:
                svd_io.store_for(uri).delete(uri)


def _file_rows_hours(path: Path) -> tuple[int, float | None]:
    """Rows and total hours of a local Parquet file, streamed one row group at a time."""
    handle = pq.ParquetFile(path)
    if "duration_s" not in handle.schema_arrow.names:
        return handle.metadata.num_rows, None
    total = 0.0
    for batch in handle.iter_batches(columns=["duration_s"], batch_size=1 << 20):
        total += float(pc.sum(batch.column(0)).as_py() or 0.0)
    return handle.metadata.num_rows, total / 3600.0


def _metrics(rows: int, hours: float | None, funnel: Funnel | None, version: str) -> dict[str, Any]:
    base: dict[str, Any] = {"version": version, "rows": rows, "hours": hours}
    return {**base, **(funnel.metrics if funnel is not None else {})}


def publish_dataset(
    out_uri: str,
    name: str,
    table: pd.DataFrame | Path,
    funnel: Funnel | None = None,
    report: ValidationReport | None = None,
    keep_versions: int = 2,
    in_use: Collection[str] = (),
) -> PublishedVersion:
    """Write a new version of `name` and make it current. Prefer `publish_if_valid`, which gates it.

    Retention keeps the newest `keep_versions` plus every version `in_use` names (see `_prune`).

    `table` is a frame or a local Parquet file (what the out-of-core steps write); the file is hashed and
    uploaded as a stream, so its size is bounded by disk, not memory.
    """
    if keep_versions < 1:
        raise InputError(f"keep_versions must be >= 1, got {keep_versions}")
    if isinstance(table, pd.DataFrame):
        if len(table) == 0:
            raise InputError(f"refusing to publish {name!r}: the table has no rows")
        with _parquet_file(table) as (path, _digest):
            return _publish_file(out_uri, name, path, funnel, report, keep_versions, in_use)
    return _publish_file(out_uri, name, Path(table), funnel, report, keep_versions, in_use)


def _publish_file(
    out_uri: str,
    name: str,
    path: Path,
    funnel: Funnel | None,
    report: ValidationReport | None,
    keep_versions: int,
    in_use: Collection[str] = (),
) -> PublishedVersion:
    rows, hours = _file_rows_hours(path)
    if rows == 0:
        raise InputError(f"refusing to publish {name!r}: the table has no rows")
    with publish_lock(out_uri, name):
        return _publish_locked(out_uri, name, path, rows, hours, funnel, report, keep_versions, in_use)


def _publish_locked(
    out_uri: str,
    name: str,
    path: Path,
    rows: int,
    hours: float | None,
    funnel: Funnel | None,
    report: ValidationReport | None,
    keep_versions: int,
    in_use: Collection[str],
) -> PublishedVersion:
    published_at = datetime.now(UTC)
    published_iso = published_at.isoformat()
    digest = sha256_file(path)
    unchanged = _current_if_same_table(out_uri, name, digest)
    if unchanged is not None:  # a rerun on the same inputs: nothing new to publish
        return unchanged
    version = f"{published_at:%Y%m%dT%H%M%S%fZ}-{digest[:8]}"
    base = svd_io.join_uri(dataset_uri(out_uri, name), version)
    svd_io.put_file(path, svd_io.join_uri(base, f"{name}.parquet"))
    files = {"table": f"{name}.parquet"}
    clip_index = _publish_clip_index(path, base, name, files)
    blobs: dict[str, tuple[str, bytes]] = {}
    if funnel is not None:
        blobs["funnel_json"] = (f"{name}_funnel.json", funnel.metrics_json())
        blobs["funnel_csv"] = (f"{name}_funnel.csv", funnel.steps_csv())
        blobs["quantiles_csv"] = (f"{name}_quantiles.csv", funnel.quantiles_csv())
    if report is not None:
        blobs["validation"] = (f"{name}_validation.json", _json_bytes(report.to_dict()))
    for kind, (rel, data) in blobs.items():
        svd_io.write_bytes(svd_io.join_uri(base, rel), data)
        files[kind] = rel
    pointer = {
        "name": name,
        "version": version,
        "published_at": published_iso,
        "rows": rows,
        "table_sha256": digest,
        "files": files,
        "clip_index": clip_index,
    }
    svd_io.write_bytes(svd_io.join_uri(base, "manifest.json"), _json_bytes(pointer))
    # The flip: until this write lands, readers see the previous version.
    svd_io.write_bytes(svd_io.join_uri(dataset_uri(out_uri, name), CURRENT_FILE), _json_bytes(pointer))
    svd_io.write_bytes(
        svd_io.join_uri(str(out_uri), f"{name}_metrics.json"),
        _json_bytes(_metrics(rows, hours, funnel, version)),
    )
    _prune(out_uri, name, keep_versions, current=version, in_use=in_use)
    return PublishedVersion(
        name,
        version,
        base,
        {k: svd_io.join_uri(base, v) for k, v in files.items()},
        rows,
        published_iso,
    )


def _publish_clip_index(path: Path, base: str, name: str, files: dict[str, str]) -> dict[str, Any]:
    """Write the version's clip index (`<name>_clips.parquet`: each clip's shard and byte range, see
    svd_core.curation.clip_index) and add it to `files`; returns what the manifest records about it."""
    with tempfile.TemporaryDirectory(prefix="svd-clip-index-") as tmp:
        result = write_clip_index(path, Path(tmp) / "clips.parquet")
        if result.path is not None:
            rel = f"{name}_clips.parquet"
            svd_io.put_file(result.path, svd_io.join_uri(base, rel))
            files[CLIP_INDEX_KIND] = rel
    return result.summary()


def _blocked_message(failures: Mapping[str, ValidationReport], out_uri: str) -> str:
    lines = []
    for name, report in failures.items():
        current = current_version(out_uri, name)
        kept = f"version {current.version} stays current" if current else "nothing was published before"
        docs = f"; Data Docs: {report.docs_index}" if report.docs_index else ""
        lines.append(f"{name}: {len(report.failed)} failed expectation(s) ({kept}{docs}):")
        lines.extend(f"  - {line}" for line in report.failure_lines())
    return "validation gate failed, nothing published; fix the data or the validation config\n" + "\n".join(
        lines
    )


def _source_blocked_message(lvd_uri: str, name: str, report: ValidationReport) -> str:
    docs = f"; Data Docs: {report.docs_index}" if report.docs_index else ""
    lines = [f"  - {line}" for line in report.failure_lines()]
    return (
        f"validation gate failed on the LVD table {lvd_uri} itself ({name}: {len(report.failed)} of "
        f"{report.evaluated} expectations failed{docs}); no filter ran and nothing was published (every "
        "published version stays current); fix the scorer or the data named below and rebuild LVD, or "
        "adjust the validation config\n" + "\n".join(lines)
    )


def publish_if_valid(
    out_uri: str,
    name: str,
    table: pd.DataFrame,
    funnel: Funnel | None,
    report: ValidationReport,
    keep_versions: int = 2,
) -> PublishedVersion:
    """Publish only when `report.success`; otherwise raise PublishBlockedError listing the failures."""
    if not report.success:
        raise PublishBlockedError(_blocked_message({name: report}, out_uri))
    return publish_dataset(out_uri, name, table, funnel, report, keep_versions)


@dataclass(frozen=True)
class _Staged:
    name: str
    path: Path
    """Local Parquet file of the table (in the engine's work folder until published)."""
    funnel: Funnel | None


def _stage_tables(
    session: TableSession,
    lvd_uri: str,
    filter_cfg: FilterConfig,
    subset_cfg: SubsetConfig | None,
    include_lvd_f: bool,
) -> tuple[int, list[_Staged], dict[str, Any]]:
    lvd = session.open(lvd_uri, "lvd")
    # LVD-F's thresholds are resolved even when only subsets are built: LVD-10M-F uses them by default.
    result = table_steps.apply_filters(session, lvd, filter_cfg, source=lvd_uri)
    staged = []
    if include_lvd_f:
        path = table_steps.write_kept(session, result, session.scratch(f"{filter_cfg.name}.parquet"))
        staged.append(_Staged(filter_cfg.name, path, table_steps.compute_funnel(session, result, filter_cfg)))
    if subset_cfg is not None:
        subset_path = session.scratch(f"{subset_cfg.name}.parquet")
        table_steps.write_subset(session, lvd, subset_cfg, subset_path, source=lvd_uri)
        source = f"{subset_cfg.name} (subset of {lvd_uri})"
        subset = session.open(str(subset_path), "subset")
        thresholds = result.thresholds if subset_cfg.thresholds_from == "lvd" else None
        sub_result = table_steps.apply_filters(session, subset, filter_cfg, thresholds, source=source)
        sub_path = table_steps.write_kept(
            session, sub_result, session.scratch(f"{subset_cfg.filtered_name}.parquet")
        )
        sub_funnel = table_steps.compute_funnel(
            session, sub_result, filter_cfg, name=subset_cfg.filtered_name
        )
        staged += [
            _Staged(subset_cfg.name, subset_path, None),
            _Staged(subset_cfg.filtered_name, sub_path, sub_funnel),
        ]
    return lvd.rows, staged, {name: t.to_dict() for name, t in result.thresholds.items()}


def build_filtered(
    lvd_uri: str,
    out_uri: str,
    filter_cfg: FilterConfig,
    subset_cfg: SubsetConfig | None,
    validation_fn: ValidationFn,
    *,
    include_lvd_f: bool = True,
    keep_versions: int = 2,
    on_step: Callable[[str], None] | None = None,
    engine: TableEngineConfig | None = None,
    in_use: Collection[str] = (),
    source_gate: str | None = SOURCE_GATE,
) -> dict[str, Any]:
    """LVD -> LVD-F, plus LVD-10M and LVD-10M-F when `subset_cfg` is given; gated, then published.

    `lvd_uri` is a Parquet file or a folder of parts (any scheme). First the LVD table itself is validated
    under the name `source_gate` (None: not), before any filter runs: a broken scorer (a constant or mostly
    null score column) fails it, and then nothing is filtered or published. Every step runs out of core
    on DuckDB (svd_core.curation.table_steps) within `engine.memory_limit_mb`, or with `engine.engine:
    dask` filter, funnel and subsets run on a Dask cluster (svd_core.curation.table_dask); each table is
    staged as a local Parquet file, validated from that file, then uploaded. Every table is validated
    before any is published, so the published set never mixes a new LVD-F with an old LVD-10M-F; a failed gate raises
    PublishBlockedError and leaves every previous version current. `include_lvd_f=False` builds only the
    subsets. Versions `in_use` (what registered models were trained on) survive retention. Returns a
    JSON-ready summary (per dataset: version, rows, files, kept fraction, validation
    report) plus the resolved thresholds and the LVD table's own report (`lvd_validation`).
    """
    if not include_lvd_f and subset_cfg is None:
        raise InputError("nothing to build: pass a subset config or include LVD-F")
    step = on_step or (lambda _msg: None)
    source_report = None
    if source_gate is not None:
        step(f"validating {lvd_uri} (the LVD table, before any filter)")
        source_report = validation_fn(lvd_uri, None, source_gate)
        if not source_report.success:
            raise PublishBlockedError(_source_blocked_message(lvd_uri, source_gate, source_report))
    with table_session(engine) as session:
        step(f"reading and filtering {lvd_uri}")
        if engine is not None and engine.engine == "dask":  # filter, funnel and subsets on the cluster
            from svd_core.curation import table_dask

            lvd_rows, on_dask, thresholds = table_dask.stage_tables(
                session, engine, lvd_uri, filter_cfg, subset_cfg, include_lvd_f
            )
            staged = [_Staged(name, path, funnel) for name, path, funnel in on_dask]
        else:
            lvd_rows, staged, thresholds = _stage_tables(
                session, lvd_uri, filter_cfg, subset_cfg, include_lvd_f
            )
        reports: dict[str, ValidationReport] = {}
        for item in staged:
            step(f"validating {item.name}")
            reports[item.name] = validation_fn(
                str(item.path), item.funnel.metrics if item.funnel else None, item.name
            )
        failures = {name: r for name, r in reports.items() if not r.success}
        if failures:
            raise PublishBlockedError(_blocked_message(failures, out_uri))
        datasets: dict[str, Any] = {}
        for item in staged:
            step(f"publishing {item.name}")
            published = publish_dataset(
                out_uri, item.name, item.path, item.funnel, reports[item.name], keep_versions, in_use
            )
            datasets[item.name] = {
                "version": published.version,
                "rows": published.rows,
                "files": published.files,
                "kept_fraction": item.funnel.metrics["kept_fraction"] if item.funnel else None,
                "funnel": item.funnel.metrics if item.funnel else None,
                "validation": reports[item.name].to_dict(),
            }
    return {
        "lvd_uri": lvd_uri,
        "lvd_rows": lvd_rows,
        "lvd_validation": source_report.to_dict() if source_report is not None else None,
        "thresholds": thresholds,
        "datasets": datasets,
    }
