"""`svd eval` commands for preference studies: design-study, import-votes, analyze."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import track
from rich.table import Table

from svd_core.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

console = Console()
EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}
MAX_REJECTS_SHOWN = 50
MAX_REJECTED_SHARE = 0.05  # = svd_core.evaluation.imports.DEFAULT_MAX_REJECTED_SHARE (kept light to import)


def print_rejected(rejected: pd.DataFrame, source: str, out: Console | None = None) -> None:
    """List the rejected rows of `source` with their reasons (or say that none was rejected)."""
    out = out or console
    if rejected.empty:
        out.print(f"{source}: no row rejected")
        return
    table = Table("row", "reason", title=f"{len(rejected)} rejected row(s) of {source}")
    for row in rejected.head(MAX_REJECTS_SHOWN).itertuples(index=False):
        table.add_row(str(row.row_number), row.reason)
    out.print(table)
    if len(rejected) > MAX_REJECTS_SHOWN:
        out.print(f"... and {len(rejected) - MAX_REJECTS_SHOWN} more rejected rows")


def import_votes_command(
    file: str = typer.Argument(
        ..., help="Vote file to import (arena battles: CSV/JSON/JSONL/Parquet; Label Studio JSON export)."
    ),
    source_format: str = typer.Option(
        ...,
        "--from",
        help="Format of FILE: arena (the arena battle export; csv is the same reader) or labelstudio.",
    ),
    out: str = typer.Option(..., "--out", help="Where to write the vote table (.parquet, or .csv)."),
    study_id: str = typer.Option("imported", help="study_id for rows that do not name one."),
    question: str = typer.Option("overall", help="Question of arena rows without a `question` column."),
    question_map: list[str] = typer.Option(
        [],
        "--question-map",
        help="Label Studio: CHOICES_NAME=QUESTION for a <Choices name=...> that does not name its question "
        "(repeatable), e.g. --question-map which_is_sharper=visual_quality.",
    ),
    max_rejected_share: float = typer.Option(
        MAX_REJECTED_SHARE, help="Fail (write nothing) when more than this share of rows is rejected."
    ),
    strict: bool = typer.Option(False, help="Fail (write nothing) if any row is rejected."),
) -> None:
    """Import votes into the platform's vote table; bad rows are listed with their reasons and skipped
    (the import fails, writing nothing, when more than --max-rejected-share of the rows are rejected)."""
    from svd_core.evaluation.imports import check_rejected, import_arena, import_label_studio, write_votes

    if question_map and source_format != "labelstudio":
        raise InputError("--question-map applies to --from labelstudio only")
    if source_format in ("csv", "arena"):
        result = import_arena(file, study_id, question=question)
    elif source_format == "labelstudio":
        bad = [item for item in question_map if "=" not in item]
        if bad:
            raise InputError(f"--question-map {bad[0]!r}: write it as CHOICES_NAME=QUESTION")
        mapping = dict(item.split("=", 1) for item in question_map)
        result = import_label_studio(file, study_id, question_map=mapping or None)
    else:
        raise InputError(f"--from {source_format!r} is not supported; use arena, csv or labelstudio")
    print_rejected(result.rejected, file)
    if result.votes.empty:
        raise InputError(f"no valid vote in {file} ({len(result.rejected)} row(s) rejected); nothing written")
    if strict and not result.rejected.empty:
        raise InputError(
            f"{len(result.rejected)} row(s) of {file} rejected and --strict is set; nothing written"
        )
    check_rejected(result, file, 0.0 if strict else max_rejected_share)
    write_votes(result.votes, out)
    console.print(f"{result.summary()}; wrote {out}")


def analyze_command(
    ctx: typer.Context,
    votes: str = typer.Option(
        ...,
        "--votes",
        help="Vote table: .parquet/.csv, or an arena battle export (.json/.jsonl), path or URI.",
    ),
    out: str = typer.Option(
        ..., "--out", help="Report folder (leaderboard.csv, pairwise.csv, plots, summary)."
    ),
    config: str = typer.Option(
        None, "--config", help="Analysis config YAML (e.g. configs/eval/analyze.yaml)."
    ),
) -> None:
    """Rank models from votes (Bradley-Terry + bootstrap), test pairs, check raters; write a report.

    Extra arguments are dotted config overrides, e.g. bootstrap_rounds=200 allow_synthetic_mix=true.
    """
    from svd_core.config import load_config
    from svd_core.evaluation.analyze import analyze
    from svd_core.evaluation.config import AnalysisConfig
    from svd_core.evaluation.imports import check_rejected, load_votes
    from svd_core.evaluation.report import write_report

    cfg = load_config(AnalysisConfig, config, ctx.args)
    loaded = load_votes(votes)
    print_rejected(loaded.rejected, votes)
    check_rejected(loaded, votes, cfg.max_rejected_share)
    with console.status(f"analysing {len(loaded.votes)} votes ({cfg.bootstrap_rounds} bootstrap rounds)..."):
        result = analyze(loaded.votes, cfg)
        files = write_report(result, out)
    table = Table("model", "rating", "95% interval" if cfg.confidence == 0.95 else "interval", "votes")
    for row in result.leaderboard.itertuples(index=False):
        table.add_row(row.model, f"{row.rating:.0f}", f"{row.lower:.0f} .. {row.upper:.0f}", str(row.n_votes))
    table.title = "leaderboard (all questions)" + (" - SYNTHETIC votes" if result.synthetic else "")
    console.print(table)
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    console.print(f"wrote {len(files)} files to {out}")


def design_study_command(
    ctx: typer.Context,
    samples: str = typer.Option(
        ..., "--samples", help="Folder of samples laid out as <model>/<prompt_id>.mp4."
    ),
    out: str = typer.Option(..., "--out", help="Where to write the study design JSON (tasks + assignment)."),
    config: str = typer.Option(None, "--config", help="Study config YAML (e.g. configs/eval/study.yaml)."),
    render_gold: bool = typer.Option(True, help="Render the degraded copies the gold tasks show."),
) -> None:
    """Design a pairwise study (round-robin pairs, random sides, gold checks, rater queues).

    Extra arguments are dotted config overrides, e.g. raters_per_pair=5 gold_rate=0.15.
    """
    from svd_core.config import load_config
    from svd_core.evaluation.config import StudyConfig
    from svd_core.evaluation.evalsets import resolve_eval_set
    from svd_core.evaluation.study import design_study, render_gold_copy, samples_from_folder

    cfg = load_config(StudyConfig, config, ctx.args)
    eval_set = resolve_eval_set(cfg.eval_set, cfg.task)
    design = design_study(eval_set, samples_from_folder(samples), cfg)
    if render_gold:
        for copy in track(design.gold_copies, description="rendering gold copies", console=console):
            render_gold_copy(copy["source_uri"], copy["degraded_uri"], int(copy["seed"]))
    design.write(out)
    gold = sum(t["is_gold"] for t in design.tasks)
    console.print(
        f"{len(design.tasks)} tasks ({gold} gold) over {len(design.meta['models'])} models and "
        f"{len(eval_set.items)} prompts of {eval_set.name}@{eval_set.version}, "
        f"{len(design.assignment)} rater queues; wrote {out}"
    )


def register(app: typer.Typer) -> None:
    """Add design-study, import-votes and analyze to the `svd eval` group."""
    app.command("design-study", context_settings=EXTRA)(design_study_command)
    app.command("import-votes")(import_votes_command)
    app.command("analyze", context_settings=EXTRA)(analyze_command)
