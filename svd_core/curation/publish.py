"""Publish curated tables as immutable versions behind a CURRENT pointer, only after a validation gate.

Layout under OUT (any URI svd_core.storage serves):

    OUT/<name>/<version>/<name>.parquet          the table
    OUT/<name>/<version>/<name>_funnel.json|.csv filter statistics (filtered tables only)
    OUT/<name>/<version>/<name>_quantiles.csv
    OUT/<name>/<version>/<name>_validation.json  the gate's report
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
import hashlib
import json
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from svd_core import storage as svd_io
from svd_core.curation.config import FilterConfig, SubsetConfig
from svd_core.curation.filters import apply_filters
from svd_core.curation.funnel import Funnel, compute_funnel
from svd_core.curation.schema import LVD_COLUMNS, LVD_SCHEMA
from svd_core.curation.subsets import random_subset
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


ValidationFn = Callable[[pd.DataFrame, Mapping[str, Any] | None, str], ValidationReport]
"""(table, funnel metrics or None, dataset name) -> report; flows.integrations.validation.make_validation_fn builds one."""


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
    """Read a parquet table from any URI svd_core.storage serves."""
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
        yield path, hashlib.sha256(path.read_bytes()).hexdigest()


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


def _prune(out_uri: str, name: str, keep: int, current: str) -> list[str]:
    """Delete all but the newest `keep` versions (never the current one); return the deleted names."""
    versions = list_versions(out_uri, name)
    doomed = [v for v in versions[: max(0, len(versions) - keep)] if v != current]
    store = svd_io.store_for(out_uri)
    for version in doomed:
        folder = svd_io.join_uri(dataset_uri(out_uri, name), version)
        for uri in svd_io.list_uris(folder):
            store.delete(uri)
        if svd_io.is_local(folder):
            store.delete(folder)  # the emptied folder
    return doomed


def _metrics(table: pd.DataFrame, funnel: Funnel | None, version: str) -> dict[str, Any]:
    hours = float(table["duration_s"].sum()) / 3600.0 if "duration_s" in table else None
    base: dict[str, Any] = {"version": version, "rows": len(table), "hours": hours}
    return {**base, **(funnel.metrics if funnel is not None else {})}


def publish_dataset(
    out_uri: str,
    name: str,
    table: pd.DataFrame,
    funnel: Funnel | None = None,
    report: ValidationReport | None = None,
    keep_versions: int = 2,
) -> PublishedVersion:
    """Write a new version of `name` and make it current. Prefer `publish_if_valid`, which gates it."""
    if len(table) == 0:
        raise InputError(f"refusing to publish {name!r}: the table has no rows")
    if keep_versions < 1:
        raise InputError(f"keep_versions must be >= 1, got {keep_versions}")
    published_at = datetime.now(UTC)
    published_iso = published_at.isoformat()
    with _parquet_file(table) as (path, digest):
        unchanged = _current_if_same_table(out_uri, name, digest)
        if unchanged is not None:  # a rerun on the same inputs: nothing new to publish
            return unchanged
        version = f"{published_at:%Y%m%dT%H%M%S%fZ}-{digest[:8]}"
        base = svd_io.join_uri(dataset_uri(out_uri, name), version)
        svd_io.put_file(path, svd_io.join_uri(base, f"{name}.parquet"))
    files = {"table": f"{name}.parquet"}
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
        "rows": len(table),
        "table_sha256": digest,
        "files": files,
    }
    svd_io.write_bytes(svd_io.join_uri(base, "manifest.json"), _json_bytes(pointer))
    # The flip: until this write lands, readers see the previous version.
    svd_io.write_bytes(svd_io.join_uri(dataset_uri(out_uri, name), CURRENT_FILE), _json_bytes(pointer))
    svd_io.write_bytes(
        svd_io.join_uri(str(out_uri), f"{name}_metrics.json"), _json_bytes(_metrics(table, funnel, version))
    )
    _prune(out_uri, name, keep_versions, current=version)
    return PublishedVersion(
        name,
        version,
        base,
        {k: svd_io.join_uri(base, v) for k, v in files.items()},
        len(table),
        published_iso,
    )


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
    table: pd.DataFrame
    funnel: Funnel | None


def _stage_tables(
    lvd: pd.DataFrame,
    lvd_uri: str,
    filter_cfg: FilterConfig,
    subset_cfg: SubsetConfig | None,
    include_lvd_f: bool,
) -> tuple[list[_Staged], dict[str, Any]]:
    # LVD-F's thresholds are resolved even when only subsets are built: LVD-10M-F uses them by default.
    result = apply_filters(lvd, filter_cfg, source=lvd_uri)
    staged = (
        [_Staged(filter_cfg.name, result.kept, compute_funnel(lvd, result, filter_cfg))]
        if include_lvd_f
        else []
    )
    if subset_cfg is not None:
        subset = random_subset(lvd, subset_cfg, source=lvd_uri)
        thresholds = result.thresholds if subset_cfg.thresholds_from == "lvd" else None
        source = f"{subset_cfg.name} (subset of {lvd_uri})"
        sub_result = apply_filters(subset, filter_cfg, thresholds, source=source)
        sub_funnel = compute_funnel(subset, sub_result, filter_cfg, name=subset_cfg.filtered_name)
        staged += [
            _Staged(subset_cfg.name, subset, None),
            _Staged(subset_cfg.filtered_name, sub_result.kept, sub_funnel),
        ]
    return staged, {name: t.to_dict() for name, t in result.thresholds.items()}


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
) -> dict[str, Any]:
    """LVD -> LVD-F, plus LVD-10M and LVD-10M-F when `subset_cfg` is given; gated, then published.

    Every table is validated before any is published, so the published set never mixes a new LVD-F with
    an old LVD-10M-F; a failed gate raises PublishBlockedError and leaves every previous version current.
    `include_lvd_f=False` builds only the subsets. Returns a JSON-ready summary (per dataset: version,
    rows, files, kept fraction, validation report) plus the resolved thresholds.
    """
    if not include_lvd_f and subset_cfg is None:
        raise InputError("nothing to build: pass a subset config or include LVD-F")
    step = on_step or (lambda _msg: None)
    step(f"reading {lvd_uri}")
    lvd = read_table(lvd_uri)
    step("filtering")
    staged, thresholds = _stage_tables(lvd, lvd_uri, filter_cfg, subset_cfg, include_lvd_f)
    reports: dict[str, ValidationReport] = {}
    for item in staged:
        step(f"validating {item.name}")
        reports[item.name] = validation_fn(
            item.table, item.funnel.metrics if item.funnel else None, item.name
        )
    failures = {name: r for name, r in reports.items() if not r.success}
    if failures:
        raise PublishBlockedError(_blocked_message(failures, out_uri))
    datasets: dict[str, Any] = {}
    for item in staged:
        step(f"publishing {item.name}")
        published = publish_dataset(
            out_uri, item.name, item.table, item.funnel, reports[item.name], keep_versions
        )
        datasets[item.name] = {
            "version": published.version,
            "rows": published.rows,
            "files": published.files,
            "kept_fraction": item.funnel.metrics["kept_fraction"] if item.funnel else None,
            "funnel": item.funnel.metrics if item.funnel else None,
            "validation": reports[item.name].to_dict(),
        }
    return {"lvd_uri": lvd_uri, "lvd_rows": len(lvd), "thresholds": thresholds, "datasets": datasets}
