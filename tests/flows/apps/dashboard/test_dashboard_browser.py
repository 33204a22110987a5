"""The dashboard in Debian's headless chromium, as a team would run it: an MLflow tracking server on the
populated store (`mlflow server`), `svd dashboard --serve` reading from it (MLFLOW_TRACKING_URI), both on
free loopback ports. The page loads without console errors or failed requests, every visible plot is
decoded, every video loads and plays, hovering a training curve shows the point's value, runs link to
their MLflow pages (one is followed into MLflow's own UI), and a non-blank full-page screenshot is written
(to `SVD_DASHBOARD_SCREENSHOT` too when set, for a person to look at).

Skips when /usr/bin/chromium is absent (install it with `apt-get install -y chromium`; never
`playwright install`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.flows.apps.dashboard.test_dashboard_data import _curve, populate_store
from tests.helpers import CHROMIUM, CHROMIUM_ARGS, ROOT, browser_marks, free_port

pytestmark = browser_marks()

# Plots drawn where the page opens them (closed <details> hide older builds' funnels and run-logged plots).
VISIBLE_PLOTS_JS = """() => [...document.querySelectorAll('img.plot')]
  .filter(img => !img.closest('details:not([open])'))
  .map(img => ({src: img.getAttribute('src'), ok: img.complete && img.naturalWidth > 0,
                w: img.getBoundingClientRect().width}))"""


HEADING_ON_TOP_JS = """(selector) => { const h = document.querySelector(selector);
  const r = h.getBoundingClientRect(); return document.elementFromPoint(r.left + 5, r.top + r.height / 2) === h; }"""

VIDEOS_READY_JS = """() => [...document.querySelectorAll('video')].every(v => !v.error && v.readyState >= 1 && v.duration > 0)"""
VIDEO_STATE_JS = """() => [...document.querySelectorAll('video')].map(v => ({src: v.getAttribute('src'),
  ready: v.readyState, duration: v.duration, error: v.error ? v.error.code : null}))"""

# Where the server-rendered SVG drew point `index` of a chart's first line, in viewport pixels (the polyline's
# own coordinates through the SVG's screen transform: independent of dashboard.js).
POINT_JS = """([id, index]) => { const fig = document.getElementById(id); fig.scrollIntoView({block: 'center'});
  const svg = fig.querySelector('svg.chart'); const line = svg.querySelector('polyline.series');
  const [x, y] = line.getAttribute('points').trim().split(' ')[index].split(',').map(Number);
  const p = svg.createSVGPoint(); p.x = x; p.y = y; const q = p.matrixTransform(svg.getScreenCTM());
  return {x: q.x, y: q.y, run: line.getAttribute('data-run')}; }"""


def _wait_for(url: str, proc: subprocess.Popen, timeout: float = 120.0, what: str = "svd dashboard") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited early:\n{proc.communicate()[0]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {timeout:.0f} s")


def _stop(proc: subprocess.Popen, sig: int = signal.SIGINT) -> str:
    """Stop a process this module started (its whole session: `mlflow server` runs uvicorn as a child)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        output, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
    return output or ""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A populated store behind `mlflow server`, and `svd dashboard --serve` reading from that server;
    yields both URLs, stops the dashboard with Ctrl-C (SIGINT) and the MLflow server with SIGTERM."""
    root = tmp_path_factory.mktemp("dashboard_browser")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SVD_", "MLFLOW_", "PREFECT_API", "PREFECT_UI"))
    }
    env.update(SVD_HOME=str(root / "home"), MLFLOW_ENABLE_TELEMETRY="false")
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith(("SVD_", "MLFLOW_TRACKING", "MLFLOW_REGISTRY"))]:
            mp.delenv(key)
        mp.setenv("SVD_HOME", env["SVD_HOME"])
        info = populate_store(root)
    mlflow_port, port = free_port(), free_port()
    mlflow_url = f"http://127.0.0.1:{mlflow_port}"
    mlflow_cli = Path(sys.executable).parent / "mlflow"
    store = f"sqlite:///{root / 'home' / 'mlflow.db'}"
    server = [str(mlflow_cli), "server", "--backend-store-uri", store, "--host", "127.0.0.1"]
    tracking = subprocess.Popen(
        [*server, "--port", str(mlflow_port), "--workers", "1"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    proc = None
    try:
        _wait_for(f"{mlflow_url}/health", tracking, what="mlflow server")
        command = [
            sys.executable,
            "-m",
            "flows.cli.main",
            "dashboard",
            "--out",
            str(root / "site"),
            "--serve",
        ]
        proc = subprocess.Popen(
            [*command, "--port", str(port)],
            cwd=ROOT,
            env={**env, "MLFLOW_TRACKING_URI": mlflow_url},  # the team's server: the tool's own variable
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}/"
        _wait_for(url, proc)
        yield {**info, "url": url, "mlflow": mlflow_url, "site": root / "site"}
    finally:
        if proc is not None:
            output = _stop(proc)
            assert proc.returncode == 0, output
            assert "stopped" in output and f"http://127.0.0.1:{port}/" in output
        _stop(tracking, signal.SIGTERM)


def _not_blank(png: Path) -> tuple[int, int]:
    """(distinct colours, lightness range) of a screenshot: a blank or single-colour page has ~1 and ~0."""
    from PIL import Image

    with Image.open(png) as image:
        small = image.convert("RGB").resize((image.width // 4, image.height // 4))
        colours = len(set(small.getdata()))
        low, high = small.convert("L").getextrema()
    return colours, high - low


def test_page_renders_plots_videos_links_and_curves(served: dict[str, Any], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
            page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            page.goto(served["url"], wait_until="load")
            plots = page.evaluate(VISIBLE_PLOTS_JS)
            lineage = page.locator("svg.lineage")
            assert lineage.is_visible() and lineage.bounding_box()["width"] > 500
            assert page.locator(".badge.synthetic").first.is_visible()

            # Videos: every sample and pair video loads (metadata, a duration) and one plays.
            page.wait_for_function(VIDEOS_READY_JS, timeout=60_000)
            videos = page.evaluate(VIDEO_STATE_JS)
            assert len(videos) == 16, videos  # 2 versions x 4 samples + 4 pairs x 2 sides
            # 14 frames at 7 fps: 2 s each
            assert all(v["error"] is None and v["duration"] > 1.5 for v in videos), videos
            pair_video = page.locator(".pair video").first
            pair_video.scroll_into_view_if_needed()
            pair_video.evaluate("v => v.play()")
            page.wait_for_function("v => v.currentTime > 0.2 && !v.paused", arg=pair_video.element_handle())

            # Hovering a point of the stage-I loss curve shows its run, step and value.
            point = page.evaluate(POINT_JS, ["chart-image-loss", 10])
            page.mouse.move(point["x"], point["y"])
            tip = page.locator("#chart-image-loss .chart-tip")
            tip.wait_for(state="visible")
            assert f"{point['run'][:7]} · step 10 · loss = {_curve(25, 2.0)[10]:.4g}" in tip.text_content()
            dot = page.locator("#chart-image-loss circle.hover-dot")
            assert dot.get_attribute("visibility") == "visible"
            page.mouse.move(5, 5)
            tip.wait_for(state="hidden")
            # The stage legend hides a run in every chart of the stage.
            legend = page.locator("#stage-video button.legend-item").first
            run = legend.get_attribute("data-run")
            legend.click()
            hidden = page.locator(f'#stage-video polyline.series[data-run="{run}"]')
            assert hidden.count() == 4 and all(not hidden.nth(i).is_visible() for i in range(4))
            legend.click()  # and shows it again
            assert all(hidden.nth(i).is_visible() for i in range(4))

            # Links into the MLflow UI of the tracking server the dashboard read from.
            assert page.locator("a#mlflow-ui").get_attribute("href") == served["mlflow"]
            run_links = page.locator(f'a.ext[href^="{served["mlflow"]}/#/experiments/"][href*="/runs/"]')
            assert run_links.count() == 7  # 1 dataset build + 3 training runs + 2 studies + 1 ablation
            first_training = page.locator(
                f'#stage-image a.ext[href^="{served["mlflow"]}/#/experiments/"]'
            ).first
            href = first_training.get_attribute("href")

            shot = tmp_path / "dashboard.png"
            page.evaluate("window.scrollTo(0, 0)")  # a scrolled page pins the sticky header mid-screenshot
            page.wait_for_function("() => window.scrollY === 0")
            page.screenshot(path=str(shot), full_page=True)
            page.locator("a[href='#registry']").click()
            page.wait_for_function("() => window.scrollY > 0")
            assert page.evaluate(HEADING_ON_TOP_JS, "#registry h2")  # the sticky header does not cover it

            mlflow_page = browser.new_page(viewport={"width": 1300, "height": 900})
            mlflow_page.goto(href, wait_until="load")
            mlflow_page.get_by_text("stage-image").first.wait_for(timeout=90_000)  # MLflow's run page
        finally:
            browser.close()
    assert errors == []
    assert len(plots) == 10, plots  # every plot outside closed <details>
    assert all(p["ok"] and p["w"] > 200 for p in plots), plots
    assert shot.stat().st_size > 50_000
    colours, contrast = _not_blank(shot)
    assert colours > 200 and contrast > 150, (colours, contrast)
    if os.environ.get("SVD_DASHBOARD_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["SVD_DASHBOARD_SCREENSHOT"])
