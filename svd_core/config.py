"""Stage configs: frozen pydantic models loaded from YAML with dotted CLI overrides.

Every stage has one `StageConfig` subclass. Fields carry a docstring (pydantic turns it into the field
description, which `svd config schema` and the docs show), unknown keys are rejected, and cross-field checks
live in validators so a bad config fails before any work starts.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from svd_core.errors import ConfigError

C = TypeVar("C", bound="StageConfig")


class StageConfig(BaseModel):
    """Base for every stage config: immutable, no unknown keys, field docstrings as descriptions."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def config_hash(self) -> str:
        """Stable short hash of the resolved config (for lineage tags and cache keys)."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


_SCIENTIFIC = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b.c=value` -> (["a", "b", "c"], value); the value is parsed as YAML (numbers, lists, null)."""
    key, sep, raw = text.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} is not of the form dotted.key=value (e.g. train.lr=1e-4)")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
        if isinstance(value, str) and _SCIENTIFIC.match(value):  # YAML 1.1 reads `3e-5` as a string
            value = float(value)
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc.__class__.__name__})") from exc
    return key.split("."), value


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of `data` with each dotted override set (nested dicts are created as needed)."""
    result = copy.deepcopy(dict(data))
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {part!r} is a value, not a section")
            node = child
        node[path[-1]] = value
    return result


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass a path to a YAML file under configs/")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping at the top level, not {type(data).__name__}"
        )
    return data


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line per problem, each naming the dotted field, e.g. `model.num_frames: must be >= 1`."""
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "<root>"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; see the config's schema)"
        lines.append(f"{field}: {msg}")
    return f"invalid config {source}: " + "; ".join(lines)


def validate_config(cls: type[C], data: Mapping[str, Any], source: str = "<dict>") -> C:
    try:
        return cls.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def load_config(cls: type[C], path: str | Path | None = None, overrides: Iterable[str] = ()) -> C:
    """Load `cls` from a YAML file (or its defaults when `path` is None) and apply dotted overrides."""
    data = read_yaml(path) if path is not None else {}
    data = apply_overrides(data, overrides)
    return validate_config(cls, data, str(path) if path is not None else "<defaults>")


def dump_config(config: StageConfig) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)


def schema_of_file(path: str | Path) -> type[StageConfig]:
    """The config class named on a shipped config's `# schema: module:Class` comment line."""
    import importlib

    if not Path(path).is_file():
        raise ConfigError(f"config file {path} does not exist; pass a path to a YAML file under configs/")
    for line in Path(path).read_text().splitlines():
        if not line.startswith("#"):
            break
        if line.lower().startswith("# schema:"):
            target = line.split(":", 1)[1].strip()
            module_name, _, class_name = target.partition(":")
            try:
                cls = getattr(importlib.import_module(module_name), class_name)
            except (ImportError, AttributeError) as exc:
                raise ConfigError(f"{path}: schema {target!r} cannot be imported ({exc})") from exc
            if not (isinstance(cls, type) and issubclass(cls, StageConfig)):
                raise ConfigError(f"{path}: schema {target!r} is not a StageConfig")
            return cls
    raise ConfigError(f"{path}: no '# schema: module:Class' comment line at the top of the file")


def load_any_config(path: str | Path, overrides: Iterable[str] = ()) -> StageConfig:
    """Load a config file with the class its `# schema:` line names."""
    return load_config(schema_of_file(path), path, overrides)
