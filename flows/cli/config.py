"""`svd config show|validate|schema`: resolved settings, stage-config validation and config schemas."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:  # svd_core.config builds pydantic models: imported by the commands, not by `--help`
    from flows.settings import Settings
    from svd_core.config import StageConfig

WIDTH = 100


def resolve_schema_target(target: str) -> type[StageConfig]:
    """A config YAML (its `# schema:` line names the class) or a class path `module:Class` / `module.Class`."""
    from svd_core.config import resolve_config_class, schema_of_file
    from svd_core.errors import ConfigError

    path = Path(target)
    if path.suffix.lower() in (".yaml", ".yml") or path.exists() or "/" in target:
        try:
            return schema_of_file(path)
        except ConfigError as exc:
            raise ConfigError(f"{exc}; or name the class: svd config schema module:Class") from None
    return resolve_config_class(target)


def _wrap(text: str, indent: str) -> str:
    return textwrap.fill(
        text,
        WIDTH,
        initial_indent=indent,
        subsequent_indent=indent,
        break_long_words=False,  # URIs, dotted names and paths stay whole
        break_on_hyphens=False,
    )


def format_schema(cls: type[StageConfig]) -> str:
    """The schema as text: `name: type = default  (constraints)`, then the field's docstring, indented."""
    from svd_core.config import describe_schema

    lines = [f"{cls.__module__}:{cls.__qualname__}"]
    doc = " ".join((cls.__doc__ or "").split())
    if doc:
        lines.append(_wrap(doc, ""))
    for row in describe_schema(cls):
        head = f"{row.name}: {row.type}"
        if row.section and not row.default:
            head += "  (section)"
        else:
            head += f" = {row.default}"
        if row.constraints:
            head += f"  ({row.constraints})"
        lines.append("")
        lines.append(head)
        if row.description:
            lines.append(_wrap(row.description, "    "))
    return "\n".join(lines) + "\n"


def format_settings(s: Settings) -> str:
    """`name = value    [source]` per setting, secrets masked."""
    data = s.public_dict()
    sources = data.pop("sources")
    stack = data.pop("stack")
    data.update({f"stack_{k}": v for k, v in stack.items()})
    sources.update({f"stack_{k}": sources.get(f"stack_{k}", "default") for k in stack})
    sources.setdefault("aws_access_key_id", "env AWS_ACCESS_KEY_ID (boto3's chain)")
    sources.setdefault("aws_profile", "env AWS_PROFILE")
    width = max(len(k) for k in data)
    lines = [
        f"{k.ljust(width)} = {'' if v is None else v}    [{sources.get(k, 'default')}]"
        for k, v in data.items()
    ]
    return "\n".join(lines) + "\n"


def register(app: typer.Typer) -> None:
    @app.command("show")
    def config_show(as_json: bool = typer.Option(False, "--json", help="One JSON object.")) -> None:
        """Print the resolved settings (secrets masked) and where each came from: SVD_* override, the
        tools' own variables (MLFLOW_TRACKING_URI, PREFECT_API_URL, AWS_ENDPOINT_URL_S3), the stack or
        settings file, the active Prefect profile, or the embedded default."""
        from flows.settings import load_settings

        s = load_settings()
        if as_json:
            typer.echo(json.dumps(s.public_dict()))
            return
        typer.echo(format_settings(s), nl=False)

    @app.command("validate", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def config_validate(
        ctx: typer.Context, path: str = typer.Argument(..., help="A stage config YAML.")
    ) -> None:
        """Load a stage config with its `# schema:` class and overrides; print the resolved config."""
        from svd_core.config import dump_config, load_any_config

        cfg = load_any_config(path, ctx.args)
        typer.echo(dump_config(cfg), nl=False)

    @app.command("schema")
    def config_schema(
        target: str = typer.Argument(
            ...,
            help="A config class (svd_core.curation.config:LvdConfig or module.Class) or a config YAML"
            " whose '# schema:' line names its class (configs/data/lvd.yaml).",
        ),
        as_json: bool = typer.Option(False, "--json", help="The JSON schema (with field descriptions)."),
    ) -> None:
        """Print every field of a stage config (nested sections as dotted names): type, default, docstring."""
        cls = resolve_schema_target(target)
        if as_json:
            typer.echo(json.dumps(cls.model_json_schema(), indent=2))
            return
        typer.echo(format_schema(cls), nl=False)
