"""Artifact I/O by URI, without cloud SDKs.

The library reads and writes through `store_for(uri)`. `file://` URIs and plain paths are served here;
other schemes (`s3://`) are registered by the integration layer (`flows.integrations.s3` registers an S3 store on
import), so `svd_core` never imports boto3 yet runs unchanged against S3 when the platform is installed.

Writes are atomic: data goes to a temporary name first and is renamed into place, so a reader never sees
a partial object and an interrupted write leaves nothing visible under the final name.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

from svd_core.errors import StorageError


class ObjectStore(Protocol):
    """What every storage backend offers; all methods take absolute URIs of the backend's scheme."""

    def read_bytes(self, uri: str) -> bytes: ...
    def write_bytes(self, uri: str, data: bytes) -> None: ...
    def put_file(self, local_path: str | Path, uri: str) -> None: ...
    def get_file(self, uri: str, local_path: str | Path) -> Path: ...
    def exists(self, uri: str) -> bool: ...
    def list(self, prefix_uri: str) -> list[str]: ...
    def delete(self, uri: str) -> None: ...


def scheme_of(uri: str) -> str:
    if "://" not in uri:
        return "file"
    scheme = urlparse(uri).scheme
    if not scheme:
        raise StorageError(f"URI {uri!r} has no scheme; use file:///path, s3://bucket/key or a plain path")
    return scheme


def join_uri(base: str, *parts: str) -> str:
    """Join path parts onto a URI or path with exactly one slash between them."""
    out = base.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


def local_path(uri: str | Path) -> Path:
    """`file:///a/b`, `file://a/b` (relative) or a plain path -> Path."""
    text = str(uri)
    if text.startswith("file://"):
        text = text[len("file://") :]
    elif "://" in text:
        raise StorageError(f"{uri!r} is not a local path or file:// URI")
    return Path(text)


def is_local(uri: str | Path) -> bool:
    return scheme_of(str(uri)) == "file"


class LocalStore:
    """Local filesystem backend. Atomic writes via a temp file in the same directory + os.replace."""

    def read_bytes(self, uri: str) -> bytes:
        path = local_path(uri)
        if not path.is_file():
            raise StorageError(f"{uri}: no such file; check the path (or run the step that produces it)")
        return path.read_bytes()

    def write_bytes(self, uri: str, data: bytes) -> None:
        with atomic_local_write(local_path(uri)) as tmp:
            tmp.write_bytes(data)

    def put_file(self, local_file: str | Path, uri: str) -> None:
        src = Path(local_file)
        if not src.is_file():
            raise StorageError(f"cannot upload {src}: no such file")
        with atomic_local_write(local_path(uri)) as tmp:
            shutil.copyfile(src, tmp)

    def get_file(self, uri: str, dest: str | Path) -> Path:
        src = local_path(uri)
        if not src.is_file():
            raise StorageError(f"{uri}: no such file")
        dest = Path(dest)
        if dest.resolve() != src.resolve():
            with atomic_local_write(dest) as tmp:
                shutil.copyfile(src, tmp)
        return dest

    def exists(self, uri: str) -> bool:
        return local_path(uri).exists()

    def list(self, prefix_uri: str) -> list[str]:
        root = local_path(prefix_uri)
        if root.is_file():
            return [str(prefix_uri)]
        if not root.is_dir():
            return []
        keep_scheme = str(prefix_uri).startswith("file://")
        out = []
        for path in sorted(p for p in root.rglob("*") if p.is_file() and not _is_temp(p)):
            out.append(f"file://{path}" if keep_scheme else str(path))
        return out

    def delete(self, uri: str) -> None:
        path = local_path(uri)
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


TEMP_MARK = ".svdtmp-"


def _is_temp(path: Path) -> bool:
    return path.name.startswith(TEMP_MARK)


@contextlib.contextmanager
def atomic_local_write(dest: Path) -> Iterator[Path]:
    """Yield a temp path next to `dest`; on success it replaces `dest` atomically, on error it is removed."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f"{TEMP_MARK}{uuid.uuid4().hex}-{dest.name}"
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


StoreFactory = Callable[[], ObjectStore]
_FACTORIES: dict[str, StoreFactory] = {"file": LocalStore}
_INSTANCES: dict[str, ObjectStore] = {}


def register_store(scheme: str, factory: StoreFactory) -> None:
    """Register a backend for a URI scheme (called by integration modules such as `flows.integrations.s3`)."""
    _FACTORIES[scheme] = factory
    _INSTANCES.pop(scheme, None)


PLUGINS_ENV = "SVD_IO_PLUGINS"
DEFAULT_PLUGINS = "flows.integrations.s3"
"""Modules that register extra schemes, imported on first use of an unknown scheme. Subprocesses (DeepSpeed
ranks, Dask workers) start with only svd_core imported; this is how they get s3:// without this library
ever importing a cloud SDK itself."""


def _load_plugins() -> None:
    for name in filter(None, os.environ.get(PLUGINS_ENV, DEFAULT_PLUGINS).split(",")):
        with contextlib.suppress(ImportError):
            importlib.import_module(name.strip())


def store_for(uri: str | Path) -> ObjectStore:
    scheme = scheme_of(str(uri))
    if scheme not in _FACTORIES:
        _load_plugins()
    if scheme not in _FACTORIES:
        hint = " (import flows.integrations.s3 to enable s3://)" if scheme == "s3" else ""
        raise StorageError(
            f"no storage backend for {scheme}:// in {uri!r}; supported: {sorted(_FACTORIES)}{hint}"
        )
    if scheme not in _INSTANCES:
        _INSTANCES[scheme] = _FACTORIES[scheme]()
    return _INSTANCES[scheme]


@contextlib.contextmanager
def local_copy(uri: str | Path, workdir: str | Path | None = None) -> Iterator[Path]:
    """Yield a local path holding the object at `uri` (the file itself when it is already local)."""
    if is_local(uri):
        path = local_path(uri)
        if not path.exists():
            raise StorageError(f"{uri}: no such file or folder")
        yield path
        return
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        name = str(uri).rstrip("/").rsplit("/", 1)[-1] or "object"
        yield store_for(uri).get_file(str(uri), Path(tmp) / name)


def read_bytes(uri: str | Path) -> bytes:
    return store_for(uri).read_bytes(str(uri))


def write_bytes(uri: str | Path, data: bytes) -> None:
    store_for(uri).write_bytes(str(uri), data)


def put_file(local_file: str | Path, uri: str | Path) -> None:
    store_for(uri).put_file(local_file, str(uri))


def exists(uri: str | Path) -> bool:
    return store_for(uri).exists(str(uri))


def list_uris(prefix_uri: str | Path) -> list[str]:
    return store_for(prefix_uri).list(str(prefix_uri))
