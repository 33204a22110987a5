"""`svd config show|validate`: resolved settings and stage-config validation."""

from __future__ import annotations

import json

import typer

from flows.settings import load_settings, settings_json
from svd_core.config import dump_config, load_any_config


def register(app: typer.Typer) -> None:
    @app.command("show")
    def config_show(as_json: bool = typer.Option(False, "--json", help="One JSON object.")) -> None:
        """Print the resolved settings (secrets masked)."""
        s = load_settings()
        if as_json:
            typer.echo(json.dumps(s.public_dict()))
            return
        typer.echo(settings_json(s))

    @app.command("validate", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def config_validate(
        ctx: typer.Context, path: str = typer.Argument(..., help="A stage config YAML.")
    ) -> None:
        """Load a stage config with its `# schema:` class and overrides; print the resolved config."""
        cfg = load_any_config(path, ctx.args)
        typer.echo(dump_config(cfg), nl=False)
