"""`svd data filter | subset | validate`: LVD -> LVD-F, the LVD-10M subsets, and the validation gate.

`filter` and `subset` run svd_core.curation.publish.build_filtered (the same call `svd data build` and the
Prefect flow make), so every published table has passed the Great Expectations gate first.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import PurePosixPath
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from svd_core import storage as svd_io
from svd_core.errors import InputError, SvdError

console = Console(stderr=True)
EXTRA_ARGS = {"allow_extra_args": True, "ignore_unknown_options": True}
OVERRIDES_HELP = "Extra arguments are dotted overrides of the config, e.g. scores.clip_score.min.pct=40."


class ValidationFailedError(SvdError):
    """`svd data validate` found failed expectations."""


@contextmanager
def _progress(title: str) -> Iterator[Callable[[str], None]]:
    with console.status(title) as status:
        yield lambda message: status.update(f"{title}: {message}")


def _docs_uri(out: str, docs: str | None) -> str:
    return docs or svd_io.join_uri(out, "validation")


def _print_build(summary: dict[str, Any]) -> None:
    for name, entry in summary["datasets"].items():
        funnel = entry.get("funnel")
        if funnel:
            table = Table(
                "filter", "removed alone", "removed in order", "remaining", "hours left", title=name
            )
            for filter_name, numbers in funnel["filters"].items():
                table.add_row(
                    filter_name,
                    str(numbers["removed_alone_rows"]),
                    str(numbers["removed_in_order_rows"]),
                    str(numbers["remaining_rows"]),
                    f"{numbers['remaining_hours']:.2f}",
                )
            console.print(table)
        kept = f", kept fraction {entry['kept_fraction']:.3f}" if entry["kept_fraction"] is not None else ""
        typer.echo(f"published {name} version {entry['version']}: {entry['rows']} rows{kept}")
        typer.echo(f"  table: {entry['files']['table']}")


def _validation_fn(config: str | None, docs: str) -> Any:
    from flows.integrations.validation import make_validation_fn
    from svd_core.config import load_config
    from svd_core.curation.config import ValidationConfig

    return make_validation_fn(load_config(ValidationConfig, config), docs)


def _read_funnel(uri: str | None) -> dict[str, Any] | None:
    if uri is None:
        return None
    try:
        data = json.loads(svd_io.read_bytes(uri))
    except json.JSONDecodeError as exc:
        raise InputError(f"--funnel {uri}: not valid JSON ({exc}); pass a <name>_funnel.json") from exc
    if not isinstance(data, dict):
        raise InputError(f"--funnel {uri}: expected a JSON object (a <name>_funnel.json)")
    return data


def register(app: typer.Typer) -> None:
    """Add `filter`, `subset` and `validate` to the given group (the lead mounts them under `svd data`)."""

    @app.command("filter", context_settings=EXTRA_ARGS, epilog=OVERRIDES_HELP)
    def filter_cmd(
        ctx: typer.Context,
        lvd: str = typer.Option(
            ..., "--lvd", help="LVD table: a .parquet file or a folder of parts (path, file:// or s3://)."
        ),
        out: str = typer.Option(
            ..., "--out", help="Output folder: OUT/<name>/<version>/, OUT/<name>/CURRENT."
        ),
        config: str = typer.Option(
            None, "--config", help="Filter config YAML (configs/data/filter.yaml); default: the paper's."
        ),
        validation_config: str = typer.Option(
            None, "--validation-config", help="Gate config YAML (configs/data/validation.yaml)."
        ),
        docs: str = typer.Option(None, "--docs", help="Data Docs folder; default OUT/validation."),
        keep_versions: int = typer.Option(2, min=1, help="Published versions to keep per dataset."),
    ) -> None:
        """Filter LVD into LVD-F, validate it, and publish it (nothing is published if the gate fails)."""
        import flows.integrations.s3  # noqa: F401  (inputs and outputs may live on s3://)
        from svd_core.config import load_config
        from svd_core.curation.config import FilterConfig
        from svd_core.curation.publish import build_filtered

        filter_cfg = load_config(FilterConfig, config, ctx.args)
        validate = _validation_fn(validation_config, _docs_uri(out, docs))
        with _progress("filter") as step:
            summary = build_filtered(
                lvd, out, filter_cfg, None, validate, keep_versions=keep_versions, on_step=step
            )
        _print_build(summary)

    @app.command("subset", context_settings=EXTRA_ARGS, epilog=OVERRIDES_HELP)
    def subset_cmd(
        ctx: typer.Context,
        lvd: str = typer.Option(
            ..., "--lvd", help="LVD table: a .parquet file or a folder of parts (path, file:// or s3://)."
        ),
        out: str = typer.Option(..., "--out", help="Output folder (as for `filter`)."),
        config: str = typer.Option(
            None, "--config", help="Subset config YAML (configs/data/subset.yaml); overrides apply to it."
        ),
        filter_config: str = typer.Option(None, "--filter-config", help="Filter config YAML for LVD-10M-F."),
        validation_config: str = typer.Option(None, "--validation-config", help="Gate config YAML."),
        docs: str = typer.Option(None, "--docs", help="Data Docs folder; default OUT/validation."),
        keep_versions: int = typer.Option(2, min=1, help="Published versions to keep per dataset."),
    ) -> None:
        """Draw the seeded LVD-10M subset and filter it into LVD-10M-F; validate both, then publish."""
        import flows.integrations.s3  # noqa: F401
        from svd_core.config import load_config
        from svd_core.curation.config import FilterConfig, SubsetConfig
        from svd_core.curation.publish import build_filtered

        subset_cfg = load_config(SubsetConfig, config, ctx.args)
        filter_cfg = load_config(FilterConfig, filter_config)
        validate = _validation_fn(validation_config, _docs_uri(out, docs))
        with _progress("subset") as step:
            summary = build_filtered(
                lvd,
                out,
                filter_cfg,
                subset_cfg,
                validate,
                include_lvd_f=False,
                keep_versions=keep_versions,
                on_step=step,
                # its own name, so its report and Data Docs do not overwrite those of `svd data filter`'s
                # LVD gate (two DVC stages cannot share an output folder)
                source_gate="lvd_for_subsets",
            )
        _print_build(summary)

    @app.command("validate", context_settings=EXTRA_ARGS, epilog=OVERRIDES_HELP)
    def validate_cmd(
        ctx: typer.Context,
        table: str = typer.Option(
            ...,
            "--table",
            help="Table to check: a .parquet file or a folder of parts (path, file://, s3://).",
        ),
        funnel: str = typer.Option(
            None, "--funnel", help="Its <name>_funnel.json (checks the kept fraction)."
        ),
        out: str = typer.Option(..., "--out", help="Folder for the report JSON and the Data Docs site."),
        config: str = typer.Option(None, "--config", help="Gate config YAML (configs/data/validation.yaml)."),
        name: str = typer.Option(None, "--name", help="Suite name prefix; default: the table's file name."),
    ) -> None:
        """Run the Great Expectations gate on a table; exit non-zero listing every failed expectation."""
        import flows.integrations.s3  # noqa: F401
        from flows.integrations.validation import validate_dataset
        from svd_core.config import load_config
        from svd_core.curation.config import ValidationConfig

        cfg = load_config(ValidationConfig, config, ctx.args)
        label = name or PurePosixPath(table.split("://", 1)[-1]).stem
        with _progress("validate") as step:
            step(f"running expectations over {table} (out of core)")
            report = validate_dataset(
                table, _read_funnel(funnel), cfg, svd_io.join_uri(out, "docs"), name=label
            )
        report_uri = svd_io.join_uri(out, f"{label}_validation.json")
        svd_io.write_bytes(report_uri, (json.dumps(report.to_dict(), indent=2, default=str) + "\n").encode())
        typer.echo(f"report: {report_uri}\nData Docs: {report.docs_index}")
        if not report.success:
            lines = "\n".join(f"  - {line}" for line in report.failure_lines())
            raise ValidationFailedError(
                f"{label}: {len(report.failed)} of {report.evaluated} expectations failed (see {report.docs_index}):\n"
                f"{lines}"
            )
        typer.echo(f"{label}: all {report.evaluated} expectations passed")
