"""`create-study` and `export-votes` through typer's CliRunner on a throwaway group."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from flows.apps.rating import service
from flows.cli import eval_rating as cli_rating
from svd_core.errors import InputError
from svd_core.evaluation.schema import VOTE_COLUMNS
from tests.flows.apps.rating.watching import open_and_watch, vote


@pytest.fixture()
def group() -> typer.Typer:
    app = typer.Typer()
    cli_rating.register(app)
    return app


def design_file(path: Path) -> Path:
    """The shape `svd eval design-study` writes: study_id, tasks, assignment with rater_N slots, extras."""
    tasks = [
        {
            "task_id": f"d-{i}",
            "study_id": "design-1",
            "question": "overall",
            "prompt_id": f"p{i}",
            "prompt": "",
            "image_uri": f"/cond/p{i}.png",
            "model_a": "base",
            "model_b": "tuned",
            "sample_a_uri": f"/s/base/p{i}.mp4",
            "sample_b_uri": f"/s/tuned/p{i}.mp4",
            "left": "model_b",
            "is_gold": False,
        }
        for i in range(3)
    ]
    design = {
        "study_id": "design-1",
        "tasks": tasks,
        "assignment": {"rater_0": ["d-0", "d-1"], "rater_1": ["d-2", "d-0"]},
        "gold_copies": [],
        "meta": {},
    }
    path.write_text(json.dumps(design))
    return path


def test_create_study_prints_links_and_export_writes_votes(group: typer.Typer, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'r.db'}"
    runner = CliRunner()
    result = runner.invoke(
        group,
        [
            "create-study",
            "--tasks",
            str(design_file(tmp_path / "design.json")),
            "--raters",
            "ann,bob",
            "--db",
            db,
            "--base-url",
            "http://rate.example:9000/",
            "--links-out",
            str(tmp_path / "links.csv"),
        ],
    )
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0] == "study design-1: 3 tasks, 2 raters"
    links = dict(line.split("\t") for line in lines[1:])
    assert set(links) == {"ann", "bob"}
    assert all(url.startswith("http://rate.example:9000/rate/") for url in links.values())
    assert pd.read_csv(tmp_path / "links.csv").set_index("rater_id")["url"].to_dict() == links

    bob = links["bob"].rsplit("/", 1)[1]
    state = service.acknowledge_instructions(db, bob)
    assert state["task"]["task_id"] == "d-2" and state["task"]["has_image"]  # bob took slot rater_1
    vote(db, bob, "d-2", "left")

    for name in ("votes.csv", "votes.parquet"):
        out = tmp_path / name
        result = runner.invoke(group, ["export-votes", "--study", "design-1", "--db", db, "--out", str(out)])
        assert result.exit_code == 0, result.output
        votes = pd.read_csv(out) if name.endswith(".csv") else pd.read_parquet(out)
        assert list(votes.columns) == VOTE_COLUMNS
        assert votes[["rater_id", "winner"]].values.tolist() == [["bob", "model_b"]]


def test_task_list_needs_raters_and_study(group: typer.Typer, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'r.db'}"
    tasks = json.loads(design_file(tmp_path / "design.json").read_text())["tasks"]
    for task in tasks:
        task.pop("study_id")
    (tmp_path / "tasks.json").write_text(json.dumps(tasks))
    runner = CliRunner()
    args = ["create-study", "--tasks", str(tmp_path / "tasks.json"), "--db", db]
    result = runner.invoke(group, args)
    assert isinstance(result.exception, InputError) and "--study" in str(result.exception)
    result = runner.invoke(group, [*args, "--study", "plain"])
    assert isinstance(result.exception, InputError) and "--raters" in str(result.exception)
    result = runner.invoke(group, [*args, "--study", "plain", "--raters", "2"])
    assert result.exit_code == 0, result.output
    assert "rater-1\thttp://127.0.0.1:8000/rate/" in result.output
    assert service.progress(db, "plain")["assigned"] == 6  # every rater sees every task


def test_bad_inputs_are_input_errors(group: typer.Typer, tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("{not json")
    runner = CliRunner()
    db = f"sqlite:///{tmp_path / 'r.db'}"
    result = runner.invoke(group, ["create-study", "--tasks", str(tmp_path / "broken.json"), "--db", db])
    assert isinstance(result.exception, InputError) and "not valid JSON" in str(result.exception)
    result = runner.invoke(
        group, ["export-votes", "--study", "none", "--db", db, "--out", str(tmp_path / "v.txt")]
    )
    assert isinstance(result.exception, InputError)
    assert not (tmp_path / "v.txt").exists()


def test_serve_help_lists_options(group: typer.Typer) -> None:
    result = CliRunner().invoke(group, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--db", "--host", "--port", "--media-root", "--admin-token"):
        assert option in result.output


@pytest.mark.integration
def test_serve_answers_on_loopback(tmp_path: Path) -> None:
    """`serve` in a subprocess: the link printed by create-study opens, votes persist in the --db file."""
    db = f"sqlite:///{tmp_path / 'r.db'}"
    tokens = service.create_study(
        db, "design-1", json.loads(design_file(tmp_path / "d.json").read_text())["tasks"], raters=1
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = "import typer; from flows.cli import eval_rating; app = typer.Typer(); eval_rating.register(app); app()"
    env = {**os.environ, "SVD_RATING_ADMIN_TOKEN": "adm", "SVD_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "serve", "--db", db, "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise AssertionError(
                    "serve did not come up: "
                    + (
                        proc.stdout.read().decode(errors="replace")
                        if proc.stdout and proc.poll() is not None
                        else ""
                    )
                )
            time.sleep(0.2)
        token = tokens["rater-1"]
        assert "Before you start" in httpx.get(f"{base}/rate/{token}").text
        open_and_watch(db, token, "d-1")
        assert "Pair 1 of 3" in httpx.get(f"{base}/rate/{token}").text
        vote = httpx.post(f"{base}/api/rate/{token}/vote", json={"task_id": "d-1", "choice": "right"})
        assert vote.status_code == 200
        assert httpx.get(f"{base}/api/admin/studies?token=adm").json()[0]["votes"] == 1
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert list(service.export_votes(db, "design-1")["winner"]) == ["model_a"]


def test_links_are_revoked_reissued_and_a_dropouts_tasks_reassigned(
    group: typer.Typer, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'r.db'}"
    (tmp_path / "howto.txt").write_text("Judge motion first.")
    runner = CliRunner()
    created = runner.invoke(
        group,
        ["create-study", "--tasks", str(design_file(tmp_path / "design.json")), "--raters", "ann,bob",
         "--db", db, "--min-watch-seconds", "5", "--instructions", str(tmp_path / "howto.txt")],
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    links = dict(line.split("\t") for line in created.output.strip().splitlines()[1:])
    ann = links["ann"].rsplit("/", 1)[1]
    state = service.next_task(db, ann)
    assert (state["min_watch_seconds"], state["instructions"]) == (5.0, "Judge motion first.")
    assert cli_rating.DEFAULT_MIN_WATCH_SECONDS == service.DEFAULT_MIN_WATCH_SECONDS

    reissued = runner.invoke(
        group,
        [
            "reissue-link",
            "--study",
            "design-1",
            "--rater",
            "ann",
            "--db",
            db,
            "--base-url",
            "https://r.example",
        ],
    )
    assert reissued.exit_code == 0, reissued.output
    rater, url = reissued.output.strip().split("\t")
    assert rater == "ann" and url.startswith("https://r.example/rate/") and url != links["ann"]
    with pytest.raises(service.UnknownTokenError):
        service.next_task(db, ann)
    vote(db, url.rsplit("/", 1)[1], "d-0", "left")  # ann's queue: d-0, d-1

    moved = runner.invoke(
        group, ["reassign-tasks", "--study", "design-1", "--from", "ann", "--revoke", "--db", db]
    )
    assert moved.exit_code == 0, moved.output
    assert moved.output.splitlines()[:2] == ["moved 1 open task(s) of ann and revoked the link", "bob\t+1"]
    with pytest.raises(service.UnknownTokenError):
        service.next_task(db, url.rsplit("/", 1)[1])
    report = {r["rater_id"]: r for r in service.progress(db, "design-1")["raters"]}
    assert (report["ann"]["total"], report["bob"]["total"], report["ann"]["revoked"]) == (1, 3, True)

    revoked = runner.invoke(group, ["revoke-link", "--study", "design-1", "--rater", "bob", "--db", db])
    assert revoked.exit_code == 0 and "revoked the link of bob" in revoked.output
    with pytest.raises(service.UnknownTokenError):
        service.next_task(db, links["bob"].rsplit("/", 1)[1])
    unknown = runner.invoke(group, ["revoke-link", "--study", "design-1", "--rater", "zed", "--db", db])
    assert isinstance(unknown.exception, InputError) and "'zed' is not in study" in str(unknown.exception)

    out = tmp_path / "timed.csv"
    exported = runner.invoke(
        group, ["export-votes", "--study", "design-1", "--db", db, "--out", str(out), "--with-timing"]
    )
    assert exported.exit_code == 0, exported.output
    assert list(pd.read_csv(out).columns) == [*VOTE_COLUMNS, "seconds_on_task"]
