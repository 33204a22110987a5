"""The LVD table as a dataset (one Parquet file, or a folder of Parquet parts) and the engine that reads it.

A table URI is either one `.parquet` file or a folder of parts, local, `file://` or any scheme
`svd_core.storage` serves (`s3://`). A folder written by the LVD build holds `part-*.parquet` files and
`_manifest.json` (`write_manifest`): the manifest lists the finished parts, their row counts, and the
video ids a part must skip because an earlier part already holds the same video (the same bytes under
two URIs). Parts the manifest does not list (left by a killed run) are ignored. A folder without a
manifest is read as all its `*.parquet` files.

Why DuckDB on one machine: the table steps (filter, funnel, subsets, validation, publishing) need
column-pruned Parquet scans, exact and approximate quantiles (`quantile_cont` interpolates linearly, as
`numpy.percentile` does, so thresholds match the pandas path), and sorts, joins and group-bys that spill
to disk under a memory limit (the subset's ranking and the uniqueness checks over every clip id), and it
writes Parquet straight from a query. pyarrow datasets scan as well but have no spilling sort, group-by or
quantile; pandas holds the whole table (a 50M-row LVD is ~30 GB of Python objects). DuckDB is one
dependency-free wheel and keeps peak memory near `TableEngineConfig.memory_limit_mb`.

Why Dask across machines (not Ray): the LVD build already fans out on Dask (`prefect-dask`), its workers
write the parts this module reads, and `dask.dataframe.read_parquet` reads the same part folders; Ray Data
would add a second cluster runtime for the same job. Remote parts are staged to local disk one by one
before DuckDB scans them: DuckDB's S3 reader is an extension downloaded at run time, which air-gapped
workers cannot fetch, and the storage layer already knows how to reach every registered store.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from svd_core import storage as svd_io
from svd_core.curation.config import TableEngineConfig
from svd_core.errors import InputError, StorageError

MANIFEST = "_manifest.json"
MANIFEST_FORMAT = "svd.table/1"
PART_SUFFIX = ".parquet"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def sql_float(value: float) -> str:
    """A double literal that round-trips exactly (repr is the shortest exact decimal)."""
    return f"CAST({float(value)!r} AS DOUBLE)"


def sha256_file(path: Path) -> str:
    """Streamed sha256 of a file (constant memory, whatever its size)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Part:
    """One Parquet part of a table folder."""

    path: str
    """File name relative to the folder."""
    rows: int
    """Rows a reader sees (after the skipped videos); -1 when unknown (a folder without a manifest)."""
    skip_video_ids: tuple[str, ...] = ()
    """Videos whose rows this part holds but an earlier part already has (read past them)."""


def write_manifest(folder_uri: str, parts: Sequence[Part], extra: dict[str, Any] | None = None) -> str:
    """Publish `folder/_manifest.json` listing `parts` (atomic; readers see the old or the new list)."""
    data = {
        "format": MANIFEST_FORMAT,
        "parts": [{"path": p.path, "rows": p.rows, "skip_video_ids": list(p.skip_video_ids)} for p in parts],
        "rows": sum(p.rows for p in parts),
        **(extra or {}),
    }
    uri = svd_io.join_uri(folder_uri, MANIFEST)
    svd_io.write_bytes(uri, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())
    return uri


def read_manifest(folder_uri: str) -> list[Part] | None:
    uri = svd_io.join_uri(folder_uri, MANIFEST)
    if not svd_io.exists(uri):
        return None
    try:
        data = json.loads(svd_io.read_bytes(uri))
        return [Part(p["path"], int(p["rows"]), tuple(p.get("skip_video_ids") or ())) for p in data["parts"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(
            f"{uri} is not a table manifest ({exc}); rerun the step that wrote the folder, or delete the "
            "manifest to read every *.parquet file in it"
        ) from exc


def table_parts(uri: str) -> tuple[list[str], list[Part]]:
    """(URIs of the Parquet files behind `uri`, their manifest entries); one file gives one entry."""
    text = str(uri).rstrip("/")
    if text.endswith(PART_SUFFIX):
        if not svd_io.exists(text):
            raise InputError(
                f"table {uri}: no such file; check the path or build it first (svd data build-lvd)"
            )
        return [text], [Part(text.rsplit("/", 1)[-1], -1)]
    try:
        parts = read_manifest(text)
        if parts is None:
            listed = sorted(u for u in svd_io.list_uris(text) if u.endswith(PART_SUFFIX))
            prefix = text + "/"
            parts = [
                Part(u[len(prefix) :] if u.startswith(prefix) else u.rsplit("/", 1)[-1], -1) for u in listed
            ]
    except StorageError as exc:
        raise InputError(f"cannot read table {uri}: {exc}") from exc
    if not parts:
        raise InputError(
            f"table {uri}: no Parquet file or part folder there; pass OUT/lvd.parquet or the parts folder "
            "OUT/lvd_parts written by `svd data build-lvd`"
        )
    return [svd_io.join_uri(text, p.path) for p in parts], parts


@dataclass(frozen=True)
class TableView:
    """A table registered in a session: query it as `name`."""

    name: str
    uri: str
    """Where it came from (for messages)."""
    columns: tuple[str, ...]
    rows: int

    @property
    def ident(self) -> str:
        return quote_ident(self.name)


class TableSession:
    """One DuckDB connection with a memory limit, spill folder and staged copies of remote parts."""

    def __init__(self, cfg: TableEngineConfig | None = None) -> None:
        cfg = cfg or TableEngineConfig()
        self._tmp = tempfile.TemporaryDirectory(prefix="svd-table-", dir=cfg.temp_dir)
        self.workdir = Path(self._tmp.name)
        self.con = duckdb.connect(":memory:")
        spill = self.workdir / "spill"
        spill.mkdir()
        self.run(f"SET memory_limit = '{int(cfg.memory_limit_mb)}MB'")
        self.run(f"SET threads = {int(cfg.threads)}")
        self.run(f"SET temp_directory = {quote_str(str(spill))}")
        self.run("SET preserve_insertion_order = true")  # outputs keep the input's row order
        self._count = 0

    def close(self) -> None:
        self.con.close()
        self._tmp.cleanup()

    def __enter__(self) -> TableSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def scratch(self, name: str) -> Path:
        """A fresh local path in this session's work folder."""
        self._count += 1
        return self.workdir / f"{self._count:03d}-{name}"

    def _local_files(self, uris: Sequence[str]) -> list[str]:
        if all(svd_io.is_local(u) for u in uris):
            return [str(svd_io.local_path(u)) for u in uris]
        staged = self.scratch("staged")
        staged.mkdir()
        out = []
        for k, uri in enumerate(uris):
            if svd_io.is_local(uri):
                out.append(str(svd_io.local_path(uri)))
                continue
            try:
                out.append(str(svd_io.store_for(uri).get_file(uri, staged / f"{k:06d}{PART_SUFFIX}")))
            except StorageError as exc:
                raise InputError(f"cannot read table part {uri}: {exc}") from exc
        return out

    def open(self, uri: str, name: str | None = None) -> TableView:
        """Register the table at `uri` (file or part folder, any scheme) as a view."""
        uris, parts = table_parts(uri)
        files = self._local_files(uris)
        name = name or f"t{self._count}_{len(files)}"
        self._count += 1
        listing = "[" + ", ".join(quote_str(f) for f in files) + "]"
        skips = [(f, p.skip_video_ids) for f, p in zip(files, parts, strict=True) if p.skip_video_ids]
        source = f"read_parquet({listing}, union_by_name = true)"
        if skips:
            cond = " OR ".join(
                f"(filename = {quote_str(f)} AND video_id IN ({', '.join(quote_str(v) for v in ids)}))"
                for f, ids in skips
            )
            source = (
                f"(SELECT * EXCLUDE (filename) FROM read_parquet({listing}, union_by_name = true, "
                f"filename = true) WHERE NOT ({cond}))"
            )
        try:
            self.run(f"CREATE OR REPLACE VIEW {quote_ident(name)} AS SELECT * FROM {source}")
        except duckdb.Error as exc:
            raise InputError(f"table {uri} is not readable Parquet ({exc}); rebuild it") from exc
        return self._view(name, uri)

    def open_frame(self, frame: pd.DataFrame, name: str, uri: str = "the table") -> TableView:
        """Register an in-memory frame (small tables, tests) as a view."""
        self.con.register(f"{name}__frame", frame)
        self.run(f"CREATE OR REPLACE VIEW {quote_ident(name)} AS SELECT * FROM {name}__frame")
        return self._view(name, uri)

    def _view(self, name: str, uri: str) -> TableView:
        columns = tuple(r[0] for r in self.run(f"DESCRIBE {quote_ident(name)}"))
        rows = self.scalar(f"SELECT count(*) FROM {quote_ident(name)}")
        return TableView(name, uri, columns, int(rows))

    def run(self, sql: str) -> list[tuple[Any, ...]]:
        """Run `sql` to completion (DuckDB 2 refuses new work while a result is only partly fetched)."""
        return self.con.execute(sql).fetchall()

    def scalar(self, sql: str) -> Any:
        rows = self.run(sql)
        return rows[0][0] if rows else None

    def row(self, sql: str) -> tuple[Any, ...]:
        rows = self.run(sql)
        assert rows, sql  # aggregate queries always return one row
        return tuple(rows[0])

    def copy_to_parquet(self, sql: str, path: Path) -> Path:
        """Stream the query's rows into one local Parquet file (row order kept; bounded memory)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.run(
            f"COPY ({sql}) TO {quote_str(str(path))} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880)"
        )
        return path


@contextlib.contextmanager
def table_session(cfg: TableEngineConfig | None = None) -> Iterator[TableSession]:
    session = TableSession(cfg)
    try:
        yield session
    finally:
        session.close()
