"""`svd demo` as a user runs it: from a directory outside the repository, on the embedded default."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import svd_cli


@pytest.mark.slow
def test_demo_runs_from_another_directory(tmp_path: Path) -> None:
    """The shipped configs are package data and relative paths resolve against the working directory, so the
    whole loop (data -> LVD -> LVD-F -> stages -> study -> dashboard) runs from outside the checkout and
    keeps everything in that directory's .svd/."""
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    proc = svd_cli("demo", cwd=workdir, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    home = workdir / ".svd"
    assert (home / "mlflow.db").is_file()
    assert list(home.rglob("index.html")), "the demo ends by building the dashboard site"
