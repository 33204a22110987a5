"""Configs: every shipped config loads with its schema; invalid ones fail naming the bad field."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field, model_validator

from svd_core.config import StageConfig, apply_overrides, load_any_config, load_config, schema_of_file
from svd_core.errors import ConfigError
from tests.helpers import ROOT

SHIPPED = sorted((ROOT / "configs").rglob("*.yaml"))
INVALID = sorted((ROOT / "tests" / "data" / "invalid_configs").glob("*.yaml"))


class Inner(StageConfig):
    lr: float = Field(1e-4, gt=0)
    """Learning rate."""


class Example(StageConfig):
    name: str = "x"
    """A name."""
    inner: Inner = Inner()
    """Nested section."""
    low: int = 0
    """Lower bound."""
    high: int = 10
    """Upper bound."""

    @model_validator(mode="after")
    def _ordered(self) -> Example:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        return self


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_config_loads_and_says_how_to_run(path: Path) -> None:
    header = path.read_text().splitlines()[:5]
    assert any(line.startswith("# How to run:") for line in header), f"{path} lacks a '# How to run:' line"
    cfg = load_any_config(path)
    assert cfg.model_config.get("frozen") and cfg.model_config.get("extra") == "forbid"


def test_there_are_shipped_and_invalid_configs() -> None:
    assert len(SHIPPED) >= 5, "configs/ should ship the stage configs"
    assert len(INVALID) >= 5, "tests/data/invalid_configs should hold the invalid cases"


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_config_fails_naming_the_field(path: Path) -> None:
    expected = next(
        line.split(":", 1)[1].strip()
        for line in path.read_text().splitlines()
        if line.startswith("# expect-error:")
    )
    schema_of_file(path)  # the schema itself resolves; the content is what is wrong
    with pytest.raises(ConfigError) as info:
        load_any_config(path)
    assert expected in str(info.value), f"error does not name {expected!r}: {info.value}"


def test_dotted_overrides_parse_yaml_values() -> None:
    with pytest.raises(ConfigError, match="'low' is a value, not a section"):
        apply_overrides({"low": 1}, ["low.x=2"])
    data = apply_overrides({"inner": {"lr": 1}}, ["inner.lr=3e-5", "name=abc", "low=2", "new.section=[1, 2]"])
    assert data == {"inner": {"lr": 3e-5}, "name": "abc", "low": 2, "new": {"section": [1, 2]}}


def test_config_is_frozen_and_rejects_unknown_keys(tmp_path: Path) -> None:
    cfg = load_config(Example, None, ["inner.lr=0.5"])
    assert cfg.inner.lr == 0.5
    with pytest.raises(Exception, match="frozen"):
        cfg.name = "y"  # type: ignore[misc]
    with pytest.raises(ConfigError, match=r"inner\.lrr: unknown field"):
        load_config(Example, None, ["inner.lrr=1"])


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["inner.lr=-1"], "inner.lr: Input should be greater than 0"),
        (["low=5", "high=1"], "low (5) must not exceed high (1)"),
        (["low=abc"], "low: Input should be a valid integer"),
        (["inner=3"], "inner: Input should be"),
        (["no_equals_sign"], "not of the form dotted.key=value"),
        (["low.x=1"], "low: Input should be a valid integer"),
    ],
)
def test_bad_overrides_name_the_field(overrides: list[str], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(Example, None, overrides)
    assert fragment in str(info.value)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Example, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Example, bad)
    no_schema = tmp_path / "no_schema.yaml"
    no_schema.write_text("name: x\n")
    with pytest.raises(ConfigError, match="no '# schema: module:Class' comment"):
        load_any_config(no_schema)
