"""Build the dashboard into a folder atomically, and serve a built folder on loopback.

The site is written into a staging folder beside DIR and swapped in only when complete, so a failed
build leaves the previous dashboard whole. DIR is replaced only when it is empty or was made by this
command (it holds the marker file), so pointing `--out` at the wrong folder never deletes anything.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flows.apps.dashboard.collect import collect
from flows.apps.dashboard.model import UiLinks
from flows.apps.dashboard.render import render
from flows.settings import Settings
from svd_core.errors import InputError

MARKER = ".svd-dashboard"
LOOPBACK = ("127.", "localhost", "::1")


@dataclass(frozen=True)
class SiteSummary:
    index: Path
    builds: int
    training_runs: int
    models: int
    studies: int
    ablations: int
    problems: list[str]
    videos: int = 0
    """Video files copied into the site (evaluation samples and study pairs)."""
    links: UiLinks | None = None


def _check_replaceable(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; pass a folder for the dashboard")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise InputError(
            f"--out {out} is a non-empty folder not made by `svd dashboard`; "
            "choose an empty or new folder (it is replaced on every build)"
        )


def _swap_in(staging: Path, out: Path) -> None:
    """Replace `out` by `staging` with renames (the old site is removed only after the new one is in)."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{staging.name}")
        out.rename(old)
    try:
        staging.rename(out)
    except OSError:
        if old is not None:
            old.rename(out)  # put the previous site back before reporting
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def build_site(
    out: Path,
    settings: Settings | None = None,
    on_step: Callable[[str], None] | None = None,
    mlflow_ui: str | None = None,
    prefect_ui: str | None = None,
) -> SiteSummary:
    """Collect from MLflow, Prefect and the dataset tables, render, and publish the site at `out`;
    `mlflow_ui` / `prefect_ui` are where those UIs are served when the settings cannot tell (links)."""
    step = on_step or (lambda _msg: None)
    out = out.absolute()
    _check_replaceable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    try:
        step("reading MLflow, Prefect and dataset tables, copying videos")
        dash = collect(staging, settings, mlflow_ui, prefect_ui)
        step("drawing plots")
        render(dash, staging)
        (staging / MARKER).write_text("made by `svd dashboard`; this folder is replaced on every build\n")
        staging.chmod(0o755)  # mkdtemp makes it private; a served site should be readable like any folder
        _swap_in(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return SiteSummary(
        out / "index.html",
        len(dash.builds),
        len(dash.training),
        len(dash.models),
        len(dash.studies),
        len(dash.ablations),
        dash.problems,
        videos=len(list((out / "media").glob("*"))) if (out / "media").is_dir() else 0,
        links=dash.links,
    )


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per request would bury the CLI's own output


def make_server(
    directory: Path, host: str = "127.0.0.1", port: int = 8765
) -> http.server.ThreadingHTTPServer:
    """An HTTP server for `directory` bound to a loopback address (port 0 picks a free one)."""
    if not host.startswith(LOOPBACK):
        raise InputError(
            f"--host {host!r} is not a loopback address; the dashboard server binds to 127.x only "
            "(copy the built folder to a web server to share it)"
        )
    if not (directory / "index.html").is_file():
        raise InputError(
            f"{directory} holds no index.html; build the dashboard first (svd dashboard --out DIR)"
        )
    handler = functools.partial(_QuietHandler, directory=str(directory))
    try:
        return http.server.ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        raise InputError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port") from exc
