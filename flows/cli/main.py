"""`svd`: the platform's one command-line entry point.

Every subcommand has `--help`; errors the user can fix exit non-zero with one line `error: <reason>`.
Stage commands take `--config FILE` plus dotted overrides (`train.lr=1e-4`) as extra arguments.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

import typer

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # its torchvision-fallback notice on every run
from rich.console import Console

from flows.cli import (
    config,
    dashboard,
    data_build,
    data_lvd,
    data_orbits,
    data_tables,
    demo,
    eval_ablation,
    eval_rating,
    eval_run,
    eval_stats,
    interpolate,
    models,
    stack,
    train,
    train_interpolation,
    train_lora,
    train_multiview,
)
from svd_core.errors import SvdError

# `svd --help` imports only typer, rich and the command modules, which keep their heavy imports (torch,
# mlflow, prefect, pandas, the pydantic configs) inside the command bodies [tests/flows/cli/test_cli.py].
CREATE_NOTHING = {
    ("config", "show"),
    ("config", "schema"),
    ("config", "validate"),
    ("stack", "status"),
    ("stack", "down"),
}
"""Commands that resolve settings but never create the project folder."""
HELP = {"--help", "-h"}

console = Console(stderr=True)
app = typer.Typer(
    help="svd-mlops: curate video data, train Stable Video Diffusion in stages, evaluate with preference studies.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
stack_app = typer.Typer(
    help="Local stack on loopback: S3 (moto, persistent), MLflow server, Prefect server.",
    no_args_is_help=True,
)
config_app = typer.Typer(
    help="Show settings, validate stage configs and print their schemas.", no_args_is_help=True
)
data_app = typer.Typer(
    help="Dataset builds: sample videos, LVD, filters, subsets, validation.", no_args_is_help=True
)
train_app = typer.Typer(
    help="Training stages I (image), II (video), III (finetune) and downstream models.", no_args_is_help=True
)
models_app = typer.Typer(
    help="Registered models: export pipelines, set the candidate alias.", no_args_is_help=True
)
eval_app = typer.Typer(
    help="Evaluation: samples, preference studies, analysis, promotion.", no_args_is_help=True
)
app.add_typer(stack_app, name="stack")
app.add_typer(config_app, name="config")
app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")
app.add_typer(models_app, name="models")
app.add_typer(eval_app, name="eval")


# Every command module is imported here by name: a module that fails to import fails `svd` itself, so a
# broken command can never silently disappear from the CLI.
COMMANDS: dict[str, tuple[typer.Typer, tuple[Callable[[typer.Typer], None], ...]]] = {
    "stack": (stack_app, (stack.register,)),
    "config": (config_app, (config.register,)),
    "data": (data_app, (data_lvd.register, data_tables.register, data_build.register, data_orbits.register)),
    "train": (
        train_app,
        (train.register, train_lora.register, train_multiview.register, train_interpolation.register),
    ),
    "models": (models_app, (models.register,)),
    "eval": (
        eval_app,
        (eval_stats.register, eval_rating.register, eval_run.register, eval_ablation.register),
    ),
    "": (app, (demo.register, dashboard.register, interpolate.register)),
}
for _group, _registers in COMMANDS.values():
    for _register in _registers:
        _register(_group)


def _activate(args: list[str]) -> None:
    """Export the resolved settings to MLflow/Prefect/boto3; writing commands get the project folder."""
    from flows.settings import activate, ensure_home, load_settings

    settings = load_settings()
    activate(settings)
    if tuple(args[:2]) not in CREATE_NOTHING:
        ensure_home(settings)


def main(argv: list[str] | None = None) -> None:
    """Entry point: runs the app and turns SvdError into a one-line message and exit code 2."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = sys.argv[1:] if argv is None else argv
    try:
        if args and not HELP.intersection(args):  # --help needs no settings and creates nothing
            _activate(args)
        app(args=args, prog_name="svd", standalone_mode=True)
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
