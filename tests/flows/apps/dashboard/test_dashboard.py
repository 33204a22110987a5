"""`svd dashboard`: collect from a real embedded MLflow store, render the static site, check what it shows.

One populated store per module (creating the SQLite schema takes seconds); see test_dashboard_data.py
for what is logged. The module's site is built with `--mlflow-ui` (an MLflow UI said to serve the store),
so runs, models and charts link to it; an empty store gets its own home (no UI: the `mlflow ui` command
instead of links) to check the "nothing yet" sections. Prefect flow runs are read from Prefect's test
server in their own (integration) test.
"""

from __future__ import annotations

import html as html_lib
import json
import os
import re
import shlex
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import typer
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from flows import reporting
from flows.apps.dashboard import build_site, make_server
from flows.apps.dashboard.collect import collect
from flows.apps.dashboard.curves import BUCKETS, downsample
from flows.apps.dashboard.evaluation import leaderboard_rows, variant_leaderboards
from flows.apps.dashboard.hints import suggestions
from flows.apps.dashboard.links import ui_links
from flows.apps.dashboard.model import (
    Curve,
    Dashboard,
    DatasetBuild,
    DatasetVersion,
    TrainingRun,
)
from flows.apps.dashboard.render import fmt_number, render
from flows.cli import main as cli_main
from flows.cli.dashboard import register
from flows.integrations.tags import SYNTHETIC_LABEL
from flows.settings import Settings
from svd_core import storage as svd_io
from svd_core.errors import InputError
from svd_core.evaluation.evalsets import default_eval_set
from svd_core.video.writer import read_frames
from tests.flows.apps.dashboard.test_dashboard_data import (
    ABLATION_REPORT,
    LEADERBOARD,
    SAMPLE_FRAMES,
    _curve,
    populate_store,
)
from tests.helpers import ROOT

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MLFLOW_UI = "http://127.0.0.1:5000"


def _isolated_home(mp: pytest.MonkeyPatch, home: Path) -> None:
    mp.setenv("SVD_HOME", str(home))
    mp.setenv("MLFLOW_ENABLE_TELEMETRY", "false")
    for key in list(os.environ):
        if (key.startswith("SVD_") and key not in ("SVD_HOME", "SVD_EXPORTED_ENV")) or key in (
            "MLFLOW_TRACKING_URI",
            "MLFLOW_REGISTRY_URI",
        ):
            mp.delenv(key)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A populated store, and the dashboard built from it."""
    root = tmp_path_factory.mktemp("dashboard")
    with pytest.MonkeyPatch.context() as mp:
        _isolated_home(mp, root / "home")
        info = populate_store(root)
        summary = build_site(root / "site", mlflow_ui=MLFLOW_UI)
        html = summary.index.read_text()
        runs = {
            r.info.run_id: r for r in mlflow.search_runs(search_all_experiments=True, output_format="list")
        }
        yield {
            **info,
            "root": root,
            "summary": summary,
            "html": html,
            "dir": summary.index.parent,
            "runs": runs,
        }


def _images(html: str) -> list[str]:
    return re.findall(r'<img class="plot[^"]*" src="([^"]+)"', html)


def _section(html: str, anchor: str) -> str:
    start = html.index(f'<section id="{anchor}">')
    return html[start : html.index("</section>", start)]


def _chart_data(html: str, dom_id: str) -> dict[str, Any]:
    start = html.index(f'<figure class="curve" id="{dom_id}"')
    block = html[start : html.index("</figure>", start)]
    match = re.search(r'<script type="application/json" class="chart-data">(.*?)</script>', block, re.S)
    assert match, block[:500]
    return json.loads(match[1].replace("<\\/", "</"))


def test_every_plot_is_a_png_file_in_the_site(site: dict[str, Any]) -> None:
    images = _images(site["html"])
    # 2 funnels (lvd_f, lvd_10m_f) + 3 score histograms + the hand-written study's board and its win-rate
    # plot + the real study's 2 boards (pooled, overall) and its 3 own plots + 2 ablation boards
    assert len(images) == 14, images
    for rel in images:
        assert not rel.startswith(("http", "/")), rel  # self-contained: no network, no absolute paths
        data = (site["dir"] / rel).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 2000, rel
    # Scripts: the local dashboard.js and inline JSON data only (nothing fetched from anywhere).
    scripts = re.findall(r"<script([^>]*)>", site["html"])
    assert scripts and set(scripts) == {
        ' type="application/json" class="chart-data"',
        ' src="assets/dashboard.js"',
    }
    for src in re.findall(r'\bsrc="([^"]+)"', site["html"]):
        assert not src.startswith(("http", "/", "file:")), src
        assert (site["dir"] / src).is_file(), src
    assert (site["dir"] / "assets" / "dashboard.css").is_file()


def test_datasets_show_versions_funnels_gx_and_histograms(site: dict[str, Any]) -> None:
    html = _section(site["html"], "datasets")
    built = site["built"]["datasets"]
    lvd_f = built["lvd_f"]
    assert lvd_f["version"] in html and built["lvd_10m_f"]["version"] in html
    assert f">{lvd_f['rows']:,}<" in html
    assert f"{lvd_f['funnel']['kept_fraction'] * 100:.1f}%" in html
    assert html.count("GX passed") == 3 and "GX failed" not in html
    assert f"Funnel of lvd_f: 400 → {lvd_f['rows']} clips" in html
    for name, step in lvd_f["funnel"]["filters"].items():
        assert f'<td>{name}</td><td class="n">{step["removed_alone_rows"]:,}</td>' in html
    for column in ("flow_score", "text_area_ratio", "aesthetic_score"):
        assert f'src="plots/score-{column}.png"' in html
    assert "scorer not configured" in html and "<b>clip_score</b>" in html  # all-null column, no plot
    docs = re.search(r'GX Data Docs: <a href="([^"]+)"', html)
    assert docs and "GX data docs of lvd_f" in (site["dir"] / docs[1]).read_text()
    assert ">100<" in html and ">400<" in html  # LVD videos and clips metrics


def test_training_curves_are_interactive_and_keep_every_point(site: dict[str, Any]) -> None:
    html = _section(site["html"], "training")
    assert "<img" not in html  # inline SVG, not pictures
    assert html.index('id="stage-image"') < html.index('id="stage-video"')  # pipeline order
    runs = site["runs"]
    for stage, start in (("image", 2.0), ("video", 1.5)):
        stage_runs = [
            r
            for r in runs.values()
            if r.data.tags.get("svd.stage") == stage and r.data.tags.get("svd.kind") == "train"
        ]
        for key in ("loss", "lr", "grad_norm", "samples_per_s"):
            data = _chart_data(html, f"chart-{stage}-{key}")
            assert sorted(s["run"] for s in data["series"]) == sorted(r.info.run_id for r in stage_runs)
            for series in data["series"]:  # every logged step is drawn (25 points: far below the buckets)
                history = MlflowClient().get_metric_history(series["run"], key)
                assert series["steps"] == [m.step for m in history] == list(range(25))
                assert series["values"] == pytest.approx([m.value for m in history])
            assert data["log"] is False
        loss = _chart_data(html, f"chart-{stage}-loss")
        assert loss["series"][0]["values"] == pytest.approx(_curve(25, start))
        svg = html[html.index(f'id="chart-{stage}-loss"') :]
        svg = svg[: svg.index("</svg>")]
        assert svg.count('<polyline class="series"') == len(stage_runs)
        # MLflow's own chart of the metric over the stage's runs
        chart_link = re.search(rf'href="({re.escape(MLFLOW_UI)}/#/metric/\?[^"]+)"[^>]*>MLflow chart', svg)
        assert chart_link is not None
        query = html_lib.unescape(chart_link[1])
        assert all(r.info.run_id in query for r in stage_runs) and "metric=%22loss%22" in query
    final_loss = 2.0 / (1 + 0.2 * 24)
    assert f">{final_loss:.3g}<" in html
    assert site["models"]["video2"] in html  # svd.registered_model tag
    assert 'class="legend-item" data-run=' in html


def test_downsampling_keeps_extremes_first_and_last() -> None:
    rng = np.random.default_rng(0)
    steps = list(range(100_000))
    values = list(1.0 / (1 + np.arange(100_000) * 1e-3) + rng.normal(0, 1e-3, 100_000))
    values[31_337] = 50.0  # a one-step loss spike
    values[77_001] = -3.0
    values[5] = float("nan")  # not drawable: dropped, never plotted as 0
    x, y = downsample(steps, values)
    assert len(x) <= 2 * BUCKETS + 2 and x == sorted(x)
    assert (x[0], x[-1]) == (0, 99_999)
    assert 31_337 in x and 77_001 in x and max(y) == 50.0 and min(y) == -3.0
    assert 5 not in x
    finite = [v for v in values if np.isfinite(v)]
    assert max(y) == max(finite) and min(y) == min(finite)
    short = downsample([1, 2, 3], [0.5, 0.25, 0.125])
    assert short == ([1, 2, 3], [0.5, 0.25, 0.125])


def test_curves_are_not_capped_by_run_count(tmp_path: Path) -> None:
    runs = [
        TrainingRun(
            f"run{i:02d}",
            f"r{i}",
            "video",
            "FINISHED",
            "",
            "",
            {"loss": Curve(list(range(3000)), [1.0 / (1 + s + i) for s in range(3000)])},
            experiment_id="7",
        )
        for i in range(12)
    ]
    html = render(Dashboard("now", "sqlite:///x", [], runs, [], [], []), tmp_path).read_text()
    data = _chart_data(html, "chart-video-loss")
    assert len(data["series"]) == 12  # all runs of the stage, not the newest few
    assert all(s["steps"][0] == 0 and s["steps"][-1] == 2999 for s in data["series"])
    assert "36,000 points logged" in html and "drawn (each pixel column keeps its min and max)" in html
    assert data["log"] is True  # a loss spanning decades is drawn on a log axis


def test_registry_lineage_and_aliases(site: dict[str, Any]) -> None:
    html = _section(site["html"], "registry")
    svg = html[html.index("<svg") : html.index("</svg>")]
    for title in ("svd-image v1", "svd-video v1", "svd-video v2", "lvd_f"):
        assert f">{title}</text>" in svg
    assert svg.count("marker-end=") == 3  # lvd_f -> image -> video v1 / v2 (data unchanged: drawn once)
    assert "champion: v2" in html and "previous: v1" in html
    assert "win_rate_lower</span> 0.61" in html
    assert "models:/svd-image/1" in html


def test_study_leaderboard_is_marked_synthetic(site: dict[str, Any]) -> None:
    html = _section(site["html"], "preference")
    assert reporting.SYNTHETIC_LABEL is SYNTHETIC_LABEL  # the page says it in the reports' own words
    assert html.count(f"{SYNTHETIC_LABEL}</span>") == 2  # both studies were rated by the automatic rater
    for row in LEADERBOARD.itertuples():
        assert f'<td>{row.model}</td><td class="n">{row.rating:.0f}</td>' in html
        assert f"{row.lower:.0f} .. {row.upper:.0f}" in html
    assert "votes analysed: <b>360</b>" in html and "few votes" in html
    assert f"artifacts/{site['study_run']}/winrate_all.png" in html


def test_ablation_report_variants_and_leaderboards(site: dict[str, Any]) -> None:
    html = _section(site["html"], "ablations")
    assert "SYNTHETIC" not in html
    assert "<h4>axis_text/all questions</h4>" in html and "<h4>ablation_report.variants</h4>" in html
    for variant in ABLATION_REPORT["variants"]:
        assert f'<td>{variant["variant"]}</td><td class="n">{variant["rating"]:.0f}</td>' in html
    assert "&#34;axis&#34;: &#34;text filter&#34;" in html  # the raw report, escaped


def test_empty_store_says_nothing_yet(tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as mp:
        _isolated_home(mp, tmp_path / "home")
        summary = build_site(tmp_path / "site")
    html = summary.index.read_text()
    assert html.count('<div class="empty nothing-yet">') == 5
    assert "svd data sample --out data/raw\nsvd data build --config configs/data/build.yaml" in html
    assert "svd train all --data data/curated/lvd_f" in html and "<code>svd demo</code>" in html
    assert _images(html) == [] and "<svg" not in html
    # No MLflow server and no UI given: the command that serves one on this store, never a dead link.
    store = f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}"
    assert f"mlflow ui --backend-store-uri {store} --port 5000" in html
    assert f"PREFECT_HOME={tmp_path / 'home' / 'prefect'} prefect server start --port 4200" in html
    assert 'href="http' not in html


def test_out_must_be_empty_or_a_dashboard(site: dict[str, Any], tmp_path: Path) -> None:
    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="not made by `svd dashboard`"):
        build_site(precious)
    assert (precious / "keep.txt").read_text() == "mine"
    assert not list(tmp_path.glob(".notes.staging-*"))


def test_cli_builds_and_rebuilds_in_place(site: dict[str, Any], tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)

    @app.command("noop")  # a second command keeps `dashboard` a named subcommand, as in the real CLI
    def noop() -> None: ...

    runner = CliRunner()
    out = tmp_path / "dash"
    with pytest.MonkeyPatch.context() as mp:
        _isolated_home(mp, site["root"] / "home")
        first = runner.invoke(app, ["dashboard", "--out", str(out)])
        (out / "stale.txt").write_text("from the previous build")
        second = runner.invoke(app, ["dashboard", "--out", str(out)])
    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    assert (
        "1 dataset builds, 3 training runs, 2 registered models, 2 studies, 1 ablations, 8 videos"
        in second.output
    )
    store = f"sqlite:///{site['root'] / 'home' / 'mlflow.db'}"
    assert f"MLflow UI for this store: mlflow ui --backend-store-uri {store} --port 5000" in second.output
    assert (
        f"--out {out} --mlflow-ui http://127.0.0.1:5000 --prefect-ui http://127.0.0.1:4200" in second.output
    )
    assert (out / "index.html").is_file() and not (out / "stale.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["dash"]  # no staging or old folders left behind
    assert "--serve" in runner.invoke(app, ["dashboard", "--help"]).output


def test_variants_are_found_anywhere_in_a_report() -> None:
    report = {"runs": [{"name": "a", "rating": "1010", "upper": 1030}, {"name": "b", "rating": 990.0}]}
    (board,) = variant_leaderboards(report)
    assert [r["model"] for r in board.rows] == ["a", "b"]
    assert board.rows[0]["upper"] == 1030 and board.rows[0]["lower"] is None
    assert variant_leaderboards({"notes": ["no ratings here"], "score": 3}) == []


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "—"), (1234567, "1,234,567"), (1.2909, "1.29"), (0.04567, "0.0457"), (12.0, "12")],
)
def test_number_format(value: object, text: str) -> None:
    assert fmt_number(value) == text


def test_failed_gate_and_unreadable_table_are_shown(tmp_path: Path) -> None:
    failed = {
        "expectation": "expect_column_values_to_be_between",
        "column": "kept_fraction",
        "observed": 0.02,
    }
    build = DatasetBuild(
        run_id="r1",
        run_name="build_dataset",
        started="2024-05-01 12:00 UTC",
        data_dvc_md5="abc",
        lvd={"clips": 10.0},
        lvd_uri="/nowhere/lvd.parquet",
        datasets=[
            DatasetVersion(
                "lvd_f",
                "v1",
                "/nowhere/lvd_f.parquet",
                2,
                False,
                None,
                {"success": False, "evaluated": 3, "failed": [failed]},
            )
        ],
        scores_note="cannot read the LVD table /nowhere/lvd.parquet: missing",
    )
    run = TrainingRun("t1", "stage-image", "image", "RUNNING", "2024-05-01 12:00 UTC", "", {})
    dash = Dashboard(
        "now", "sqlite:///x", [build], [run], [], [], [], problems=["cannot read ablations: boom"]
    )
    html = render(dash, tmp_path).read_text()
    assert "GX failed" in html and "expect_column_values_to_be_between</code> on <code>kept_fraction" in html
    assert "cannot read the LVD table /nowhere/lvd.parquet" in html
    assert "These runs logged no step metrics yet." in html and "running" in html
    assert "cannot read ablations: boom" in html
    assert html.count('<div class="empty nothing-yet">') == 3  # registry, studies, ablations


def test_server_is_loopback_only_and_needs_a_built_site(site: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a loopback address"):
        make_server(site["dir"], host="0.0.0.0", port=0)
    with pytest.raises(InputError, match=r"holds no index\.html"):
        make_server(tmp_path, port=0)
    server = make_server(site["dir"], port=0)
    try:
        assert server.server_address[0] == "127.0.0.1" and server.server_address[1] > 0
    finally:
        server.server_close()


def test_leaderboards_accept_a_variant_column() -> None:
    import pandas as pd

    rows = leaderboard_rows(
        pd.DataFrame({"variant": ["x", "y"], "rating": [990.0, 1010.0], "lower": [None, 1000]})
    )
    assert [(r["model"], r["lower"]) for r in rows] == [("y", 1000.0), ("x", None)]


# --- videos: samples of registered versions, side-by-side pairs of studies ---------------------------------
def _sample_block(html: str, name: str, version: str) -> str:
    start = html.index(f'<div class="samples" id="samples-{name}-{version}">')
    return html[start : html.index("</div>\n</div>", start)]


def test_each_version_shows_its_sample_videos(site: dict[str, Any]) -> None:
    html = _section(site["html"], "registry")
    prompts = {item.prompt_id: item.prompt for item in default_eval_set("image-to-video").items}
    for version in ("1", "2"):
        block = _sample_block(html, "svd-video", version)
        videos = re.findall(
            r'<video src="([^"]+)"[^>]* title="([^"]+)"></video><figcaption>([^<]*)</figcaption>', block
        )
        assert len(videos) == len(prompts) and f"({len(prompts)} of {len(prompts)} in" in block
        for src, uri, caption in videos:
            assert src.startswith("media/") and f"/samples/svd-video/{version}/" in uri
            copy = site["dir"] / src
            assert copy.read_bytes() == svd_io.read_bytes(uri)  # the sample itself, copied into the site
            frames, fps = read_frames(copy)
            assert len(frames) == SAMPLE_FRAMES and fps == pytest.approx(7)
            prompt_id = uri.rsplit("/", 1)[-1].removesuffix(".mp4")
            assert caption == html_lib.escape(f"{prompt_id}: {prompts[prompt_id]}", quote=False)
    assert "samples-svd-image-1" not in html and "No sample videos shown for v1 (none written yet" in html


def test_study_shows_its_pairs_with_the_votes(site: dict[str, Any]) -> None:
    study = site["real_study"]
    html = _section(site["html"], "preference")
    card = html[html.index(f'id="study-{study["run_id"]}"') :]
    assert f"{SYNTHETIC_LABEL}: every count below is from the automatic rater" in card
    votes = pd.read_csv(MlflowClient().download_artifacts(study["run_id"], "votes.csv"))
    regular = [t for t in study["tasks"] if not t["is_gold"]]
    gold = len(study["tasks"]) - len(regular)
    assert (
        f"({len(regular)} of {len(regular)} pairs, most-voted first; {gold} attention checks not shown)"
        in card
    )
    blocks = re.findall(r'<div class="pair" data-task="([^"]+)">(.*?)</table>', card, re.S)
    assert sorted(t for t, _ in blocks) == sorted(t["task_id"] for t in regular)
    tasks = {t["task_id"]: t for t in regular}
    for task_id, block in blocks:
        task = tasks[task_id]
        counts = Counter(votes.loc[votes["task_id"] == task_id, "winner"])
        left, right = ("model_a", "model_b") if task["left"] == "model_a" else ("model_b", "model_a")
        shown = dict(re.findall(r'data-outcome="([a-z_]+)">(\d+)<', block))
        assert {k: int(v) for k, v in shown.items()} == {
            "left": counts[left], "right": counts[right], "tie": counts["tie"],
            "both_bad": counts["both_bad"], "broken": counts["broken"],
        }  # fmt: skip
        assert sum(int(v) for v in shown.values()) == len(votes[votes["task_id"] == task_id]) > 0
        assert html_lib.escape(task["prompt"], quote=False) in block
        (left_src, left_caption), (right_src, right_caption) = re.findall(
            r'<video src="([^"]+)".*?<figcaption>([^<]*)</figcaption>', block, re.S
        )
        assert left_caption == f"left: {task[left]}" and right_caption == f"right: {task[right]}"
        assert (site["dir"] / left_src).read_bytes() == svd_io.read_bytes(task[f"sample_{left[-1]}_uri"])
        assert (site["dir"] / right_src).read_bytes() == svd_io.read_bytes(task[f"sample_{right[-1]}_uri"])
    # the hand-written study logged no design: said so, nothing invented
    other = html[html.index(f'id="study-{site["study_run"]}"') :]
    assert (
        "no design.json artifact: the side-by-side pairs are unavailable"
        in other[: other.index("</article>")]
    )


# --- links to the MLflow and Prefect UIs ------------------------------------------------------------------
def test_runs_models_and_studies_link_to_the_mlflow_ui(site: dict[str, Any]) -> None:
    html = site["html"]
    assert f'id="mlflow-ui" href="{MLFLOW_UI}"' in html
    for run in site["runs"].values():
        if run.data.tags.get("svd.kind") in ("train", "dataset", "study", "ablation"):
            url = f"{MLFLOW_UI}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
            assert f'href="{url}"' in html, run.info.run_name
    for name, version in (("svd-image", "1"), ("svd-video", "1"), ("svd-video", "2")):
        assert f'href="{MLFLOW_UI}/#/models/{name}/versions/{version}"' in html
    assert f'href="{MLFLOW_UI}/#/models/svd-video"' in html
    # no Prefect server configured: the command that serves the embedded database's UI instead of links
    assert "prefect server start --port 4200" in html and "/runs/flow-run/" not in html
    assert "No Prefect server is configured" in _section(html, "flows")


def test_ui_links_come_from_the_tools_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_UI_URL", raising=False)
    team = Settings(
        home=tmp_path,
        tracking_uri="https://alice:s3cret@mlflow.team.example:8443/",
        prefect_api_url="https://api.prefect.cloud/api/accounts/acc-1/workspaces/ws-2",
    )
    links = ui_links(team)
    assert links.mlflow_ui == "https://mlflow.team.example:8443" and "s3cret" not in repr(links)
    assert links.prefect_ui == "https://app.prefect.cloud/account/acc-1/workspace/ws-2"
    assert not links.mlflow_command and not links.prefect_command and not links.rebuild_hint
    stack = ui_links(Settings(home=tmp_path, prefect_api_url="http://127.0.0.1:4400/api"))
    assert stack.prefect_ui == "http://127.0.0.1:4400"
    db = ui_links(Settings(home=tmp_path, tracking_uri="postgresql://mlflow:pw@db.internal/mlflow"))
    assert not db.mlflow_ui and db.mlflow_command == (
        "mlflow ui --backend-store-uri 'postgresql://mlflow:****@db.internal/mlflow' --port 5000"
    )
    monkeypatch.setenv("PREFECT_UI_URL", "http://prefect.team.example")  # Prefect's own setting wins
    assert ui_links(Settings(home=tmp_path)).prefect_ui == "http://prefect.team.example"
    given = ui_links(
        Settings(home=tmp_path), mlflow_ui="http://127.0.0.1:5001/", prefect_ui="http://127.0.0.1:4201"
    )
    assert (given.mlflow_ui, given.prefect_ui) == ("http://127.0.0.1:5001", "http://127.0.0.1:4201")


@pytest.mark.integration
def test_flow_runs_are_listed_with_links_to_the_prefect_ui(tmp_path: Path) -> None:
    """A flow run on Prefect's test server appears in "Flow runs", linked to its page in the Prefect UI."""
    from prefect import flow
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    @flow(name="dashboard-probe")
    def probe() -> int:
        return 1

    with pytest.MonkeyPatch.context() as mp:
        _isolated_home(mp, tmp_path / "home")
        mp.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        with prefect_test_harness(server_startup_timeout=180):
            api = str(PREFECT_API_URL.value())
            mp.setenv("SVD_PREFECT_API_URL", api)
            state = probe(return_state=True)
            summary = build_site(tmp_path / "site")
    flow_run_id = str(state.state_details.flow_run_id)
    html = _section(summary.index.read_text(), "flows")
    ui = api.removesuffix("/api")
    assert f'href="{ui}/runs/flow-run/{flow_run_id}"' in html
    assert re.search(rf'href="{re.escape(ui)}/flows/flow/[0-9a-f-]+"[^>]*>dashboard-probe</a>', html)
    assert '<span class="status completed">Completed</span>' in html
    assert summary.problems == []


# --- "nothing yet": commands that run ----------------------------------------------------------------------
def _parse_svd(command: str) -> tuple[list[str], dict[str, Any], list[str]]:
    """Parse `command` with the real `svd` CLI (options typed and checked, nothing run): the subcommand
    path, its parameters and the extra (dotted override) arguments."""
    args = shlex.split(command)
    assert args[0] == "svd", command
    cmd: Any = typer.main.get_command(cli_main.app)
    path, rest = [], args[1:]
    while hasattr(cmd, "commands"):
        name, rest = rest[0], rest[1:]
        assert name in cmd.commands, f"{command}: no command {name!r}"
        cmd, path = cmd.commands[name], [*path, name]
    ctx = cmd.make_context(" ".join(["svd", *path]), rest)
    return path, ctx.params, ctx.args


def _check_runnable(commands: list[str]) -> None:
    runner = CliRunner()
    for command in commands:
        path, params, extra = _parse_svd(command)
        assert all(re.fullmatch(r"[A-Za-z_][\w.]*=.+", e) for e in extra), (command, extra)
        for value in params.values():  # shipped configs the command names exist (repo root or package)
            if isinstance(value, str) and value.endswith(".yaml"):
                assert (ROOT / value).is_file(), (command, value)
        help_run = runner.invoke(cli_main.app, [*path, "--help"])
        assert help_run.exit_code == 0, (command, help_run.output)


def test_nothing_yet_commands_parse_with_the_real_cli(site: dict[str, Any], tmp_path: Path) -> None:
    empty = Dashboard("now", "sqlite:///x", [], [], [], [], [])
    commands = suggestions(empty)
    assert commands["studies"] == ["svd demo"] and commands["datasets"][0] == "svd data sample --out data/raw"
    with pytest.MonkeyPatch.context() as mp:
        _isolated_home(mp, site["root"] / "home")
        filled = suggestions(collect(tmp_path / "site", mlflow_ui=MLFLOW_UI))
    lvd_f = site["built"]["datasets"]["lvd_f"]
    assert filled["training"] == [f"svd train all --data {shlex.quote(lvd_f['files']['table'])}"]
    assert filled["studies"] == [
        "svd eval run --model models:/svd-video/2 --model models:/svd-video/1 synthetic.enabled=true"
    ]
    assert filled["ablations"][0].endswith("data=" + shlex.quote(f"{site['root']}/data/lvd/lvd.parquet"))
    for group in (commands, filled):
        _check_runnable([c for cs in group.values() for c in cs])
    with pytest.raises(Exception, match="models"):  # the check does catch a command that cannot parse
        _parse_svd("svd eval run synthetic.enabled=true")


def test_the_mlflow_ui_command_parses_with_mlflow_itself(tmp_path: Path) -> None:
    import click
    from mlflow.cli import cli as mlflow_cli

    command = shlex.split(ui_links(Settings(home=tmp_path)).mlflow_command)
    assert command[:2] == ["mlflow", "ui"]
    ui = mlflow_cli.get_command(click.Context(mlflow_cli), "ui")  # an alias of `mlflow server`
    assert ui is not None
    params = ui.make_context("mlflow ui", command[2:]).params
    assert params["backend_store_uri"] == f"sqlite:///{tmp_path / 'mlflow.db'}" and params["port"] == 5000
