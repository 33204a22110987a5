"""`svd data sample | build-lvd`: a generated sample set of long videos, and the LVD build over any source.

`build-lvd` runs `svd_core.curation.lvd.build_lvd` in this process with a progress bar, or with `--flow`
the Prefect flow (`flows.lvd_flow`) on the task runner the config names (threads, local Dask processes, or
a Dask cluster), in batches of `run.batch_size` videos. Both write the same table, as Parquet parts
`OUT/lvd_parts/` (+ `_manifest.json`; one merged `OUT/lvd.parquet` too while the table has at most
`run.single_file_max_rows` rows), `OUT/quarantine.parquet` and `OUT/shards/`; every table command takes the
file or the parts folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

if TYPE_CHECKING:  # the LVD build imports numpy, pyarrow and the scorers: loaded by the commands only
    from svd_core.curation.config import LvdConfig
    from svd_core.curation.lvd import LvdSummary, VideoResult

console = Console(stderr=True)
EXTRA_ARGS = {"allow_extra_args": True, "ignore_unknown_options": True}
OVERRIDES_HELP = (
    "Extra arguments are dotted overrides of the config, e.g. cuts.min_clip_s=3 run.max_workers=4."
)


def print_summary(summary: LvdSummary) -> None:
    typer.echo(
        f"videos {summary.videos}, clips {summary.clips}, hours {summary.hours:.3f}, "
        f"quarantined {summary.quarantined}, clips/s {summary.clips_per_s:.2f}"
        + (f" ({summary.reused} videos reused from a previous run)" if summary.reused else "")
    )
    typer.echo(f"  table: {summary.lvd_uri}")
    typer.echo(f"  quarantine: {summary.quarantine_uri}")


def _build_with_progress(source: str, out: str, cfg: LvdConfig) -> LvdSummary:
    from svd_core.curation.lvd import build_lvd

    columns = (
        TextColumn("[bold]LVD[/bold] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task("videos", total=None)

        def on_video(result: VideoResult, done: int, total: int) -> None:
            name = result.source_uri.rsplit("/", 1)[-1]
            state = "quarantined" if result.quarantine else f"{len(result.rows)} clips"
            progress.update(bar, completed=done, total=total, description=f"{name}: {state}")

        return build_lvd(source, out, cfg, progress=on_video)


def register(app: typer.Typer) -> None:
    """Add `sample`, `build-lvd` and `score` to the given group (mounted under `svd data`)."""

    @app.command("sample")
    def sample_cmd(
        out: Path = typer.Option(..., "--out", help="Folder for the generated videos and ground_truth.json."),
        seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same videos)."),
    ) -> None:
        """Write the sample set: long videos with planted cuts, fades, flashes, pans, zooms, text, plus bad files."""
        from svd_core.video.sample import GROUND_TRUTH, write_sample_set

        with console.status("rendering sample videos"):
            paths = write_sample_set(out, seed=seed)
        truth = json.loads((out / GROUND_TRUTH).read_text())
        typer.echo(
            f"wrote {len(truth['videos'])} videos and {len(truth['bad'])} bad files ({len(paths)} in all) to "
            f"{out}; ground truth: {out / GROUND_TRUTH}"
        )

    @app.command("build-lvd", context_settings=EXTRA_ARGS, epilog=OVERRIDES_HELP)
    def build_lvd_cmd(
        ctx: typer.Context,
        source: str = typer.Option(
            ...,
            "--source",
            help="Folder, s3:// prefix, single video, or a .csv/.parquet manifest (column uri).",
        ),
        out: str = typer.Option(
            ...,
            "--out",
            help="Output: OUT/lvd_parts/ (+ OUT/lvd.parquet when small), OUT/quarantine.parquet, OUT/shards/.",
        ),
        config: str = typer.Option(
            None, "--config", help="LVD config YAML (configs/data/lvd.yaml); default: built-in defaults."
        ),
        use_flow: bool = typer.Option(
            False, "--flow", help="Run the Prefect flow on the task runner in run.task_runner (threads/dask)."
        ),
    ) -> None:
        """Cut long videos into clips, score every clip in one decode pass, write the LVD table."""
        import flows.integrations.s3  # noqa: F401  (sources and outputs may live on s3://)

        if use_flow:
            from flows.lvd_flow import run_build_lvd

            summary = run_build_lvd(source, out, config, ctx.args)
        else:
            from svd_core.config import load_config
            from svd_core.curation.config import LvdConfig

            summary = _build_with_progress(source, out, load_config(LvdConfig, config, ctx.args))
        print_summary(summary)

    @app.command("score", context_settings=EXTRA_ARGS, epilog=OVERRIDES_HELP)
    def score_cmd(
        ctx: typer.Context,
        lvd: str = typer.Option(
            ..., "--lvd", help="LVD table: a .parquet file or a parts folder (any scheme)."
        ),
        out: str = typer.Option(..., "--out", help="Folder for the scored table (parts + _manifest.json)."),
        scorer: list[str] = typer.Option(
            ...,
            "--scorer",
            help="Scorer to run (repeatable): flow, camera, craft, aesthetic, clip_score, caption.",
        ),
        config: str = typer.Option(
            None,
            "--config",
            help="LVD config YAML (scoring frames, model weights); default: built-in defaults.",
        ),
        dask_address: str = typer.Option(
            None,
            "--dask",
            help="Score on this Dask cluster (tcp://HOST:8786): decode tasks on any worker, scoring tasks on "
            "workers started with --resources GPU=1 (one model copy each). Default: in this process, or "
            "run.dask_address when run.task_runner=dask.",
        ),
    ) -> None:
        """Run scorers over the clips already in the shards and join their columns by clip_id (no source
        video is decoded, no clip re-encoded). Learned scorers run batched (models.batch_clips clips per
        forward, models.decode_workers decode threads ahead of them)."""
        import flows.integrations.s3  # noqa: F401  (tables and shards may live on s3://)
        from svd_core.config import load_config
        from svd_core.curation.config import LvdConfig
        from svd_core.curation.score_stage import (
            score_stored_clips,
            score_stored_clips_dask,
            stage_scorers,
        )

        cfg = load_config(LvdConfig, config, ctx.args)
        address = dask_address or (cfg.run.dask_address if cfg.run.task_runner == "dask" else None)
        with console.status("scoring stored clips") as status:

            def progress(done: int, total: int) -> None:
                status.update(f"scoring stored clips: {done}/{total}")

            if address:
                summary = score_stored_clips_dask(lvd, out, cfg, scorer, address, progress=progress)
            else:
                summary = score_stored_clips(
                    lvd,
                    out,
                    stage_scorers(cfg, scorer),  # only the chosen scorers' models are loaded
                    cfg.scoring,
                    progress=progress,
                    batch_clips=cfg.models.batch_clips,
                    decode_workers=cfg.models.decode_workers,
                )
        typer.echo(
            f"scored {summary.clips} clips with {', '.join(summary.scorer_versions)} "
            f"({', '.join(summary.columns)}) in {summary.seconds:.1f} s\n  table: {summary.table_uri}"
        )
