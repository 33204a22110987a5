"""Load scorer weights from a local path or an object-store prefix, offline, with errors a user can act on.

Every model location in `LearnedScorersConfig` is either a local folder/file (plain path or `file://`) or a
URI of a registered store (`s3://bucket/prefix`). Remote locations are copied once into a local cache
folder (atomically: a half-copied folder is never visible under its final name) and loaded from there.
`from_pretrained` always gets `local_files_only=True`, so nothing is ever downloaded from a model hub.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from svd_core import storage as svd_io
from svd_core.errors import InputError, StorageError

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".ckpt")
"""Files whose bytes make up a model's weights (hashed into scorer versions)."""

_FINGERPRINTS: dict[tuple[str, int, int], str] = {}


def _off_hint(config_key: str) -> str:
    return f"or set {config_key}: null to turn this scorer off"


def _cache_slot(cache_dir: str | Path, location: str) -> Path:
    """Folder in the cache that holds the local copy of `location` (one per remote URI)."""
    key = hashlib.sha256(location.rstrip("/").encode()).hexdigest()[:16]
    return Path(cache_dir) / key


def _copy_prefix(prefix: str, dest: Path, config_key: str) -> Path:
    """Copy every object under `prefix` into `dest`, keeping relative paths; all or nothing."""
    base = prefix.rstrip("/")
    try:
        uris = [u for u in svd_io.list_uris(base + "/") if u.startswith(base + "/")]
    except StorageError as exc:
        raise InputError(f"{config_key}: cannot list {prefix}: {exc}") from exc
    if not uris:
        raise InputError(
            f"{config_key}: no objects under {prefix}; upload a save_pretrained folder there "
            f"(config.json + weights) {_off_hint(config_key)}"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{svd_io.TEMP_MARK}{dest.name}-", dir=dest.parent))
    try:
        store = svd_io.store_for(base)
        for uri in uris:
            try:
                store.get_file(uri, tmp / uri[len(base) + 1 :])
            except StorageError as exc:
                raise InputError(f"{config_key}: cannot copy {uri} from {prefix}: {exc}") from exc
        try:
            os.replace(tmp, dest)
        except OSError:
            if not dest.is_dir():  # another process finished the same copy first: use theirs
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def local_model_dir(location: str, config_key: str, cache_dir: str | Path) -> Path:
    """Local folder holding a `save_pretrained` model: `location` itself, or its cached copy when remote."""
    if svd_io.is_local(location):
        path = svd_io.local_path(location)
    else:
        path = _cache_slot(cache_dir, location)
        if not path.is_dir():
            _copy_prefix(location, path, config_key)
    if not path.exists():
        raise InputError(
            f"{config_key}: {location} does not exist; point it at a folder written by save_pretrained "
            f"(config.json + weights) or at an s3:// prefix holding one, {_off_hint(config_key)}"
        )
    if not (path / "config.json").is_file():
        raise InputError(
            f"{config_key}: {location} is not a model folder (no config.json in it); point it at the folder "
            f"written by save_pretrained, {_off_hint(config_key)}"
        )
    return path


def local_weights_file(location: str, config_key: str, cache_dir: str | Path) -> Path:
    """Local path of a single weights file (`.pth`/`.safetensors`), copied from the store when remote."""
    if svd_io.is_local(location):
        path = svd_io.local_path(location)
        if not path.is_file():
            raise InputError(
                f"{config_key}: {location} is not a file; point it at a .pth or .safetensors weights file "
                f"(local path or s3:// URI), {_off_hint(config_key)}"
            )
        return path
    path = _cache_slot(cache_dir, location) / location.rstrip("/").rsplit("/", 1)[-1]
    if not path.is_file():
        try:
            with svd_io.atomic_local_write(path) as tmp:  # a cut-off download never looks like a cached file
                svd_io.store_for(location).get_file(location, tmp)
        except StorageError as exc:
            raise InputError(
                f"{config_key}: cannot fetch {location}: {exc}; {_off_hint(config_key)}"
            ) from exc
    return path


def weights_fingerprint(path: str | Path) -> str:
    """Short sha256 over the weight files of a model folder (or one weights file), for scorer versions.

    Cached per (path, size, mtime) so a multi-GB model is hashed once per process.
    """
    path = Path(path)
    files = (
        [path]
        if path.is_file()
        else sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    )
    digest = hashlib.sha256()
    for file in files:
        stat = file.stat()
        key = (str(file.resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in _FINGERPRINTS:
            file_digest = hashlib.sha256()
            with file.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    file_digest.update(chunk)
            _FINGERPRINTS[key] = file_digest.hexdigest()
        rel = file.name if path.is_file() else str(file.relative_to(path))
        digest.update(rel.encode() + b"\0" + _FINGERPRINTS[key].encode())
    return digest.hexdigest()[:12]


def from_pretrained(cls: Any, folder: Path, config_key: str, **kwargs: Any) -> Any:
    """`cls.from_pretrained(folder, local_files_only=True)`, with load failures turned into InputError."""
    try:
        return cls.from_pretrained(folder, local_files_only=True, **kwargs)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        name = getattr(cls, "__name__", str(cls))
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"{config_key}: cannot load {name} from {folder}: {first_line}; the folder must hold a complete "
            f"save_pretrained output for this kind of model, {_off_hint(config_key)}"
        ) from exc


def load_image_processor(folder: Path, config_key: str) -> Any:
    """The folder's image processor, PIL backend on every machine so CPU and GPU preprocess identically."""
    from transformers import AutoImageProcessor

    return from_pretrained(AutoImageProcessor, folder, config_key, backend="pil")


def load_tokenizer(folder: Path, config_key: str) -> Any:
    from transformers import AutoTokenizer

    return from_pretrained(AutoTokenizer, folder, config_key)


def read_state_dict(path: Path, config_key: str) -> dict[str, Any]:
    """Tensors of a .safetensors or torch (.pth/.pt/.bin) file, read without executing pickled code.

    A `module.` prefix (checkpoints saved from DataParallel) is dropped from every key.
    """
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            import torch

            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch's unpickler and safetensors raise many unrelated types on a bad file
        raise InputError(
            f"{config_key}: cannot read {path} as a weights file ({type(exc).__name__}: {exc}); "
            "point it at a .pth or .safetensors state dict"
        ) from exc
    if not isinstance(state, dict):
        raise InputError(f"{config_key}: {path} holds a {type(state).__name__}, not a state dict")
    return {str(key).removeprefix("module."): value for key, value in state.items()}


def short_hash(*parts: object) -> str:
    """Short stable hash of settings that change a scorer's output (part of its version string)."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:8]
