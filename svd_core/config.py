"""Stage configs: frozen pydantic models loaded from YAML with dotted CLI overrides.

Every stage has one `StageConfig` subclass. Fields carry a docstring (pydantic turns it into the field
description, which `svd config schema` and the docs show), unknown keys are rejected, and cross-field checks
live in validators so a bad config fails before any work starts.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import json
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import annotated_types
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined, to_jsonable_python

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


SHIPPED_PREFIX = "configs"
"""Shipped configs are package data (`svd_core/configs`, the repository's `configs/`), so `configs/...`
paths work from any directory."""


def shipped_configs() -> Path:
    """The folder of the shipped configs inside the installed package."""
    return Path(__file__).parent / SHIPPED_PREFIX


def resolve_config_path(path: str | Path) -> Path:
    """A relative config path resolves against the working directory first, then the shipped configs
    (`configs/train/image.yaml` or `train/image.yaml`); absolute paths and missing files are returned as
    given, so the error names what the user typed."""
    path = Path(path)
    if path.is_absolute() or path.is_file():
        return path
    parts = path.parts[1:] if path.parts[:1] == (SHIPPED_PREFIX,) else path.parts
    shipped = shipped_configs().joinpath(*parts) if parts else None
    return shipped if shipped is not None and shipped.is_file() else path


def _missing(path: Path) -> ConfigError:
    return ConfigError(
        f"config file {path} does not exist (looked in {Path.cwd()} and the shipped configs "
        f"{shipped_configs()}); pass a path to a YAML file, e.g. configs/demo.yaml"
    )


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = resolve_config_path(path)
    if not path.is_file():
        raise _missing(path)
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

    path = resolve_config_path(path)
    if not path.is_file():
        raise _missing(path)
    for line in path.read_text().splitlines():
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


# --- schema description (`svd config schema`) -------------------------------------------------------------
def resolve_config_class(target: str) -> type[StageConfig]:
    """The StageConfig class named `module:Class` or `module.Class` (e.g. svd_core.curation.config:LvdConfig)."""
    text = target.strip()
    module_name, sep, class_name = text.partition(":")
    if not sep:
        module_name, _, class_name = text.rpartition(".")
    hint = (
        "pass module:Class (e.g. svd_core.curation.config:LvdConfig) or a config YAML whose first lines "
        "hold '# schema: module:Class'"
    )
    if not module_name or not class_name.isidentifier():
        raise ConfigError(f"config class {target!r} is not of the form module:Class; {hint}")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"config class {target!r} cannot be imported ({exc}); {hint}") from None
    if not (isinstance(cls, type) and issubclass(cls, StageConfig)):
        raise ConfigError(f"{target!r} is not a StageConfig subclass; {hint}")
    return cls


@dataclass(frozen=True)
class SchemaRow:
    """One field of a config schema, as `svd config schema` prints it."""

    name: str
    """Dotted path as written in YAML and overrides (`cuts.min_clip_s`); `<key>` stands for any mapping key
    and `[]` for every item of a list."""
    type: str
    """The annotation, readable (`int`, `str | None`, `Literal['key', 'middle']`)."""
    default: str
    """The default as JSON (`null`, `"auto"`, `0.5`), `required` when there is none, `""` for a section whose
    fields follow."""
    description: str
    """The field's docstring on one line ("" when it has none)."""
    constraints: str = ""
    """Bounds and lengths from the field (`>= 1, <= 4096`)."""
    section: bool = False
    """A nested config: its fields follow as `name.field` rows."""


_CONSTRAINTS = (
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Ge, "ge", ">="),
    (annotated_types.Lt, "lt", "<"),
    (annotated_types.Le, "le", "<="),
    (annotated_types.MultipleOf, "multiple_of", "multiple of"),
    (annotated_types.MinLen, "min_length", "min length"),
    (annotated_types.MaxLen, "max_length", "max length"),
)


def _type_name(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is type(None):
        return "None"
    if origin is typing.Literal:
        return "Literal[" + ", ".join(repr(arg) for arg in args) + "]"
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(arg) for arg in args)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        inner = ", ".join("..." if arg is Ellipsis else _type_name(arg) for arg in args)
        return f"{name}[{inner}]" if args else name
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")


def _constraints(info: FieldInfo) -> str:
    parts = []
    for item in info.metadata:
        for kind, attr, word in _CONSTRAINTS:
            if isinstance(item, kind):
                parts.append(f"{word} {getattr(item, attr)}")
    return ", ".join(parts)


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def _json_text(value: Any) -> str:
    try:
        return json.dumps(to_jsonable_python(value))
    except (TypeError, ValueError):
        return repr(value)


def _nested_model(tp: Any) -> tuple[type[BaseModel], str] | None:
    """(model, name suffix) when `tp` holds a config section: `Model`, `Model | None`, `dict[str, Model]`
    (suffix `.<key>`), `list/tuple[Model, ...]` (suffix `[]`)."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp, ""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        models = [found for arg in args if arg is not type(None) and (found := _nested_model(arg))]
        return models[0] if len(models) == 1 and len(args) == 2 else None
    if origin in (dict, Mapping) and len(args) == 2:
        inner = _nested_model(args[1])
        return (inner[0], ".<key>" + inner[1]) if inner else None
    if origin in (list, tuple, set, frozenset) and args:
        inner = _nested_model(args[0])
        return (inner[0], "[]" + inner[1]) if inner else None
    return None


def describe_schema(cls: type[BaseModel]) -> list[SchemaRow]:
    """One row per field of `cls`, nested sections recursively (section row first, then `section.field`).

    Defaults of a section's fields are those of the section's own default (a parent may ship different
    values than the section class, e.g. the paper's score filters), else of the section class.
    """
    rows: list[SchemaRow] = []
    _describe(cls, "", None, rows, (cls,))
    return rows


def _describe(
    cls: type[BaseModel],
    prefix: str,
    instance: BaseModel | None,
    rows: list[SchemaRow],
    seen: tuple[type, ...],
) -> None:
    for name, info in cls.model_fields.items():
        dotted = f"{prefix}{name}"
        if instance is not None:
            default: Any = getattr(instance, name)
            has_default = True
        elif info.default is not PydanticUndefined:
            default, has_default = info.default, True
        elif info.default_factory is not None:
            try:
                default, has_default = info.get_default(call_default_factory=True, validated_data={}), True
            except Exception:  # a factory that needs other fields: show its name
                default = f"{getattr(info.default_factory, '__name__', 'factory')}()"
                has_default = False
        else:
            default, has_default = None, False
        nested = _nested_model(info.annotation)
        section = nested is not None and nested[0] not in seen
        if not has_default:
            default_text = default if isinstance(default, str) else "required"
        elif section and isinstance(default, BaseModel):
            default_text = ""
        else:
            default_text = _json_text(default)
        rows.append(
            SchemaRow(
                name=dotted,
                type=_type_name(info.annotation),
                default=default_text,
                description=_one_line(info.description),
                constraints=_constraints(info),
                section=section,
            )
        )
        if nested is not None and section:
            model, suffix = nested
            child = default if suffix == "" and isinstance(default, model) else None
            _describe(model, f"{dotted}{suffix}.", child, rows, (*seen, model))
