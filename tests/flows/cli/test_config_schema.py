"""`svd config schema CLASS|FILE`: every field with type, default and docstring; `--json`; one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import pytest
from pydantic import Field
from typer.testing import CliRunner

from flows.cli import main as cli_main
from svd_core.config import StageConfig, describe_schema, resolve_config_class
from svd_core.curation.config import LvdConfig
from svd_core.errors import ConfigError
from tests.helpers import ROOT

runner = CliRunner()
SHIPPED = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "configs").rglob("*.yaml"))


def schema(*args: str):
    return runner.invoke(cli_main.app, ["config", "schema", *args])


def test_class_path_prints_nested_fields_with_type_default_and_docstring() -> None:
    result = schema("svd_core.curation.config:LvdConfig")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("svd_core.curation.config:LvdConfig\n")
    assert "\ndecode: DecodeConfig  (section)\n    Decoder limits and the per-video timeout.\n" in out
    assert "\ndecode.timeout_s: float = 900.0  (> 0)\n    Wall-clock limit for one source video" in out
    assert "\nmodels.craft_long_side: int = 512  (>= 64, <= 4096)\n" in out
    assert "\nrun.task_runner: Literal['threads', 'processes', 'dask'] = \"threads\"\n" in out
    assert "\ncuts.gradual_levels[].fps: float = required  (> 0)\n" in out  # items of a tuple of sections
    # every field of every section is listed
    assert all(f"\n{row.name}: " in out for row in describe_schema(LvdConfig))


def test_dotted_class_path_and_shipped_file_give_the_same_schema() -> None:
    by_colon = schema("svd_core.curation.config:LvdConfig")
    by_dot = schema("svd_core.curation.config.LvdConfig")
    by_file = schema("configs/data/lvd.yaml")
    assert by_colon.exit_code == by_dot.exit_code == by_file.exit_code == 0, by_file.output
    assert by_colon.stdout == by_dot.stdout == by_file.stdout


def test_json_prints_the_pydantic_json_schema_with_descriptions() -> None:
    result = schema("configs/data/lvd.yaml", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data == LvdConfig.model_json_schema()
    timeout = data["$defs"]["DecodeConfig"]["properties"]["timeout_s"]
    assert timeout["default"] == 900.0 and timeout["description"].startswith("Wall-clock limit")


@pytest.mark.parametrize("config", SHIPPED)
def test_every_shipped_config_has_a_schema(config: str) -> None:
    """Each file's `# schema:` class resolves and describes (text and JSON), and the dotted names of the
    top-level keys the file sets are all fields of it."""
    import yaml

    text = schema(config)
    assert text.exit_code == 0, text.output
    assert json.loads(schema(config, "--json").stdout)["type"] == "object"
    keys = yaml.safe_load((ROOT / config).read_text()) or {}
    assert all(f"\n{key}: " in text.stdout for key in keys), sorted(keys)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("svd_core.curation.config:NoSuchConfig", "cannot be imported"),
        ("svd_core.no_such_module:LvdConfig", "cannot be imported"),
        ("svd_core.errors:ConfigError", "is not a StageConfig subclass"),
        ("LvdConfig", "is not of the form module:Class"),
    ],
)
def test_unknown_class_is_a_config_error_naming_the_input_and_the_fix(target: str, expected: str) -> None:
    result = schema(target)
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError)
    message = str(result.exception)
    assert "\n" not in message
    assert target in message and expected in message
    assert "module:Class (e.g. svd_core.curation.config:LvdConfig)" in message


def test_file_without_schema_header_names_the_file_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "plain.yaml"
    path.write_text("# just a comment\nsource: data/raw\n")
    result = schema(str(path))
    assert isinstance(result.exception, ConfigError)
    message = str(result.exception)
    assert "\n" not in message and str(path) in message
    assert "no '# schema: module:Class' comment line" in message
    assert "svd config schema module:Class" in message


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    result = schema(str(tmp_path / "missing.yaml"))
    assert isinstance(result.exception, ConfigError)
    assert "missing.yaml does not exist" in str(result.exception)


def test_entry_point_prints_one_error_line_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli_main, "_activate", lambda args: None)  # no process-wide env changes
    with pytest.raises(SystemExit) as exit_info:
        cli_main.main(["config", "schema", "svd_core.curation.config:Nope"])
    assert exit_info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: config class 'svd_core.curation.config:Nope'")


# --- describe_schema on a synthetic config -----------------------------------------------------------------
class Leaf(StageConfig):
    """A leaf section."""

    size: int = Field(4, ge=1, le=8)
    """How many."""
    label: str | None = None


class Tree(StageConfig):
    """A tree of sections."""

    name: str
    """Required: no default."""
    mode: Literal["a", "b"] = "a"
    """The mode."""
    leaf: Leaf = Leaf(size=2)
    """A section whose default differs from the class defaults."""
    maybe: Leaf | None = None
    """An optional section, off by default."""
    by_key: dict[str, Leaf] = Field(default_factory=dict)
    """Sections by name."""
    items: tuple[Leaf, ...] = ()
    """A list of sections."""
    tags: tuple[str, ...] = ("x",)


def test_describe_schema_rows() -> None:
    rows = {row.name: row for row in describe_schema(Tree)}
    assert list(rows) == [
        "name",
        "mode",
        "leaf",
        "leaf.size",
        "leaf.label",
        "maybe",
        "maybe.size",
        "maybe.label",
        "by_key",
        "by_key.<key>.size",
        "by_key.<key>.label",
        "items",
        "items[].size",
        "items[].label",
        "tags",
    ]
    assert (rows["name"].type, rows["name"].default, rows["name"].description) == (
        "str",
        "required",
        "Required: no default.",
    )
    assert rows["mode"].type == "Literal['a', 'b']" and rows["mode"].default == '"a"'
    assert rows["leaf"].section and rows["leaf"].default == "" and rows["leaf"].type == "Leaf"
    assert rows["leaf.size"].default == "2"  # the parent's default section, not Leaf's own 4
    assert rows["leaf.size"].constraints == ">= 1, <= 8" and rows["leaf.size"].description == "How many."
    assert rows["maybe"].section and rows["maybe"].default == "null" and rows["maybe"].type == "Leaf | None"
    assert rows["maybe.size"].default == "4"  # no parent instance: the class default
    assert rows["by_key"].default == "{}" and rows["by_key"].type == "dict[str, Leaf]"
    assert rows["items"].type == "tuple[Leaf, ...]" and rows["tags"].default == '["x"]'
    assert rows["leaf.label"].description == "" and not rows["tags"].section


def test_resolve_config_class_accepts_both_spellings() -> None:
    assert resolve_config_class("svd_core.curation.config:LvdConfig") is LvdConfig
    assert resolve_config_class(" svd_core.curation.config.LvdConfig ") is LvdConfig
    with pytest.raises(ConfigError, match="is not of the form module:Class"):
        resolve_config_class("svd_core.curation.config:")
