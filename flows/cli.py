"""`svd`: the platform's one command-line entry point.

Every subcommand has `--help`; errors the user can fix exit non-zero with one line `error: <reason>`.
Stage commands take `--config FILE` plus dotted overrides (`train.lr=1e-4`) as extra arguments.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys

import typer

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # its torchvision-fallback notice on every run
from rich.console import Console
from rich.table import Table

from flows.settings import activate, load_settings, settings_json
from svd_core.config import dump_config, load_any_config
from svd_core.errors import SvdError

console = Console(stderr=True)
app = typer.Typer(
    help="svd-mlops: curate video data, train Stable Video Diffusion in stages, evaluate with preference studies.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
stack_app = typer.Typer(
    help="Local stack on loopback: S3 (moto), MLflow server, Prefect server.", no_args_is_help=True
)
config_app = typer.Typer(help="Show settings and validate stage configs.", no_args_is_help=True)
data_app = typer.Typer(
    help="Dataset builds: sample videos, LVD, filters, subsets, validation.", no_args_is_help=True
)
train_app = typer.Typer(
    help="Training stages I (image), II (video), III (finetune) and downstream models.", no_args_is_help=True
)
models_app = typer.Typer(help="Registered models: export pipelines.", no_args_is_help=True)
eval_app = typer.Typer(
    help="Evaluation: samples, preference studies, analysis, promotion.", no_args_is_help=True
)
app.add_typer(stack_app, name="stack")
app.add_typer(config_app, name="config")
app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")
app.add_typer(models_app, name="models")
app.add_typer(eval_app, name="eval")

# Feature modules add their commands to a group through `register(group)`; a module that is not part of
# this installation is skipped, so the CLI always starts.
COMMAND_MODULES: dict[str, list[str]] = {
    "data": ["flows.cli_lvd", "flows.cli_dataset", "flows.cli_build", "flows.cli_orbits"],
    "train": ["flows.cli_train", "flows.cli_lora", "flows.cli_multiview", "flows.cli_interpolation"],
    "models": ["flows.cli_models"],
    "eval": ["flows.cli_eval_stats", "flows.cli_rating", "flows.cli_eval", "flows.cli_ablation"],
    "": ["flows.cli_demo", "flows.cli_dashboard", "flows.cli_interpolate"],
}
GROUPS = {"data": data_app, "train": train_app, "models": models_app, "eval": eval_app, "": app}


def _register_feature_commands() -> None:
    for group, modules in COMMAND_MODULES.items():
        for name in modules:
            try:
                module = importlib.import_module(name)
            except ModuleNotFoundError as exc:
                if exc.name == name:
                    continue
                raise
            module.register(GROUPS[group])


# --- stack ------------------------------------------------------------------------------------------
def _port_env(s3_port: int | None, mlflow_port: int | None, prefect_port: int | None) -> None:
    for key, value in (
        ("SVD_STACK_S3_PORT", s3_port),
        ("SVD_STACK_MLFLOW_PORT", mlflow_port),
        ("SVD_STACK_PREFECT_PORT", prefect_port),
    ):
        if value is not None:
            os.environ[key] = str(value)


@stack_app.command("up")
def stack_up(
    s3_port: int = typer.Option(None, help="S3 (moto) port [SVD_STACK_S3_PORT, default 9100]."),
    mlflow_port: int = typer.Option(None, help="MLflow port [SVD_STACK_MLFLOW_PORT, default 5500]."),
    prefect_port: int = typer.Option(None, help="Prefect port [SVD_STACK_PREFECT_PORT, default 4400]."),
    mlflow_db: str = typer.Option(None, help="MLflow backend DB URL (postgresql://...); default SQLite."),
    prefect_db: str = typer.Option(None, help="Prefect DB URL (postgresql+asyncpg://...); default SQLite."),
) -> None:
    """Start the local stack (what is not running yet) and write its URLs to .svd/stack.env."""
    from flows import stack

    _port_env(s3_port, mlflow_port, prefect_port)
    if mlflow_db:
        os.environ["SVD_MLFLOW_DB_URL"] = mlflow_db
    if prefect_db:
        os.environ["SVD_PREFECT_DB_URL"] = prefect_db
    s = load_settings()
    with console.status("starting the local stack...") as status:
        urls = stack.up(s, progress=lambda msg: status.update(msg))
    for key, value in urls.items():
        typer.echo(f"{key}={value}")
    typer.echo(f"stack is up; URLs written to {s.home / 'stack.env'} (used by every svd command)")


@stack_app.command("down")
def stack_down() -> None:
    """Stop exactly the processes `svd stack up` started."""
    from flows import stack

    stopped = stack.down(load_settings())
    typer.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@stack_app.command("status")
def stack_status(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Report each stack service: running, stopped, unhealthy or stale."""
    from flows import stack

    rows = stack.status(load_settings())
    if as_json:
        typer.echo(json.dumps([r.__dict__ for r in rows], indent=2))
        return
    table = Table("service", "state", "pid", "url", "detail")
    for r in rows:
        table.add_row(r.name, r.state, str(r.pid or ""), r.url, r.detail)
    Console().print(table)


# --- config -----------------------------------------------------------------------------------------
@config_app.command("show")
def config_show(as_json: bool = typer.Option(False, "--json", help="One JSON object.")) -> None:
    """Print the resolved settings (secrets masked)."""
    s = load_settings()
    if as_json:
        typer.echo(json.dumps(s.public_dict()))
        return
    typer.echo(settings_json(s))


@config_app.command("validate", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def config_validate(ctx: typer.Context, path: str = typer.Argument(..., help="A stage config YAML.")) -> None:
    """Load a stage config with its `# schema:` class and overrides; print the resolved config."""
    cfg = load_any_config(path, ctx.args)
    typer.echo(dump_config(cfg), nl=False)


def main(argv: list[str] | None = None) -> None:
    """Entry point: runs the app and turns SvdError into a one-line message and exit code 2."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        activate(load_settings())
        _register_feature_commands()
        app(args=argv, prog_name="svd", standalone_mode=True)
    except SvdError as exc:
        message = str(exc).strip()
        first, _, rest = message.partition("\n")
        console.print(f"[red]error:[/red] {first}", highlight=False, soft_wrap=True)
        if rest:
            console.print(rest, highlight=False, markup=False)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
