"""`svd eval ablate`: train the variants of an ablation spec and rank them in one preference study."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

console = Console(stderr=True)
EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}


def _number(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _leaderboard_lines(outcome: dict) -> list[str]:
    rated = [v for v in outcome["variants"] if v["rating"] is not None]
    lines = [f"{'variant':<24} {'rating':>8} {'lower':>8} {'upper':>8}  model"]
    for v in sorted(rated, key=lambda v: v["rating"], reverse=True):
        numbers = " ".join(f"{_number(v[k]):>8.1f}" for k in ("rating", "lower", "upper"))
        lines.append(f"{v['variant']:<24} {numbers}  {v['model_uri']}")
    correction = outcome.get("correction", {})
    for question, report in (outcome.get("questions") or {}).items():
        pairs = report["pairs"]
        if len(pairs) == 0:
            continue
        lines.append(
            f"{question}: pairs, p-values adjusted by {correction.get('method', '?')} across this question's "
            f"{len(pairs)} pairs (significant at alpha {correction.get('alpha', '?')})"
        )
        for pair in pairs.to_dict("records"):
            mark = "*" if pair["significant_adjusted"] else ("(raw only)" if pair["significant"] else "")
            lines.append(
                f"  {pair['variant_x']} vs {pair['variant_y']}: {pair['wins_x']}-{pair['wins_y']}, p={pair['p_value']:.3g} "
                f"adjusted={pair['p_adjusted']:.3g} {mark}".rstrip()
            )
    if outcome.get("synthetic"):
        lines.append("(SYNTHETIC votes: a smoke test of the pipeline, not a human preference)")
    return lines


def register(app: typer.Typer) -> None:
    @app.command("ablate", context_settings=EXTRA)
    def ablate_cmd(
        ctx: typer.Context,
        spec_path: str = typer.Option(
            ..., "--spec", help="Ablation spec YAML, e.g. configs/eval/ablations/image_pretraining.yaml."
        ),
        votes: str = typer.Option(
            None,
            "--votes",
            help="Human votes (Parquet/CSV in the vote schema) for the study a run without "
            "the synthetic rater designed; the variants are reused, not retrained.",
        ),
        prefect: bool = typer.Option(False, "--prefect", help="Run as the Prefect flow `ablation`."),
    ) -> None:
        """Train each variant (dataset x init x stage-II config), sample it, rank all variants in one
        preference study and log the report (MLflow run tagged svd.kind=ablation). Extra arguments are
        dotted overrides of the spec, e.g. data=data/lvd/lvd.parquet evaluation.synthetic.enabled=false."""
        from flows import ablation_flow
        from svd_core.config import load_config
        from svd_core.evaluation.ablation import plan_ablation
        from svd_core.evaluation.config import AblationConfig

        spec = load_config(AblationConfig, spec_path, ctx.args)
        if prefect:
            outcome = ablation_flow.ablation(spec, votes)
        else:
            table = (
                ablation_flow.load_human_votes(votes, spec.evaluation.analysis.max_rejected_share)
                if votes
                else None
            )
            columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
            with Progress(*columns, console=console, transient=True) as progress:
                bar = progress.add_task("planning", total=ablation_flow.progress_steps(plan_ablation(spec)))
                started = [0]

                def say(message: str) -> None:  # one call per step: the bar shows the steps finished
                    progress.update(bar, description=message, completed=started[0])
                    started[0] += 1

                outcome = ablation_flow.run_ablation(spec, table, say)
        if outcome["status"] == ablation_flow.WAITING:
            typer.echo(
                f"study {outcome['study_id']}: {ablation_flow.WAITING}. Create it for raters with "
                f"`svd eval create-study --tasks {outcome['design_uri']}`, export their votes with "
                f"`svd eval export-votes --study {outcome['study_id']} --out votes.parquet`, then rerun "
                "this command with --votes votes.parquet (the variants and samples are reused)"
            )
            return
        typer.echo("\n".join(_leaderboard_lines(outcome)))
        typer.echo(json.dumps({"report": outcome["report_uri"], "mlflow_run": outcome["run_id"]}))
