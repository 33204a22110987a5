"""`svd dashboard`: collect from a real embedded MLflow store, render the static site, check what it shows.

One populated store per module (creating the SQLite schema takes seconds); see test_dashboard_data.py
for what is logged. An empty store gets its own home to check the "nothing yet" sections.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from flows.apps.dashboard import build_site, make_server
from flows.apps.dashboard.evaluation import leaderboard_rows, variant_leaderboards
from flows.apps.dashboard.model import Dashboard, DatasetBuild, DatasetVersion, TrainingRun
from flows.apps.dashboard.render import fmt_number, render
from flows.cli.dashboard import register
from svd_core.errors import InputError
from tests.flows.apps.dashboard.test_dashboard_data import ABLATION_REPORT, LEADERBOARD, populate_store

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


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
        summary = build_site(root / "site")
        html = summary.index.read_text()
        yield {**info, "root": root, "summary": summary, "html": html, "dir": summary.index.parent}


def _images(html: str) -> list[str]:
    return re.findall(r'<img class="plot[^"]*" src="([^"]+)"', html)


def _section(html: str, anchor: str) -> str:
    start = html.index(f'<section id="{anchor}">')
    return html[start : html.index("</section>", start)]


def test_every_plot_is_a_png_file_in_the_site(site: dict[str, Any]) -> None:
    images = _images(site["html"])
    # 2 funnels (lvd_f, lvd_10m_f) + 3 score histograms + 2 training stages + 1 study + 2 ablation boards
    # + the study's own win-rate plot
    assert len(images) == 11, images
    for rel in images:
        assert not rel.startswith(("http", "/")), rel  # self-contained: no network, no absolute paths
        data = (site["dir"] / rel).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 2000, rel
    assert "<script" not in site["html"]
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


def test_training_curves_per_stage(site: dict[str, Any]) -> None:
    html = _section(site["html"], "training")
    assert 'src="plots/train-image.png"' in html and 'src="plots/train-video.png"' in html
    assert html.index("Stage image") < html.index("Stage video")  # pipeline order
    final_loss = 2.0 / (1 + 0.2 * 24)
    assert f">{final_loss:.3g}<" in html
    assert site["models"]["video2"] in html  # svd.registered_model tag


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
    assert "SYNTHETIC</span>" in html
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
    assert html.count('<p class="empty">Nothing yet') == 5
    assert "svd data build" in html and "svd train" in html
    assert _images(html) == [] and "<svg" not in html


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
    assert "1 dataset builds, 3 training runs, 2 registered models, 1 studies, 1 ablations" in second.output
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
    assert html.count('<p class="empty">Nothing yet') == 3  # registry, studies, ablations


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
