"""The dashboard in Debian's headless chromium: `svd dashboard --serve` in a subprocess on a free loopback
port, the page loads without console errors or failed requests, every visible plot is decoded, and a
full-page screenshot is written (to `SVD_DASHBOARD_SCREENSHOT` when set, for a person to look at).

Skips when /usr/bin/chromium is absent (install it with `apt-get install -y chromium`; never
`playwright install`).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.flows.apps.dashboard.test_dashboard_data import populate_store
from tests.helpers import CHROMIUM, CHROMIUM_ARGS, ROOT, browser_marks, free_port

pytestmark = browser_marks()

# Plots drawn where the page opens them (closed <details> hide older builds' funnels and run-logged plots).
VISIBLE_PLOTS_JS = """() => [...document.querySelectorAll('img.plot')]
  .filter(img => !img.closest('details:not([open])'))
  .map(img => ({src: img.getAttribute('src'), ok: img.complete && img.naturalWidth > 0,
                w: img.getBoundingClientRect().width}))"""


HEADING_ON_TOP_JS = """(selector) => { const h = document.querySelector(selector);
  const r = h.getBoundingClientRect(); return document.elementFromPoint(r.left + 5, r.top + r.height / 2) === h; }"""


def _wait_for(url: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"svd dashboard exited early:\n{proc.communicate()[0]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {timeout:.0f} s")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A populated store and `svd dashboard --serve` on it; yields the URL, stops it with Ctrl-C (SIGINT)."""
    root = tmp_path_factory.mktemp("dashboard_browser")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SVD_", "MLFLOW_"))}
    env.update(SVD_HOME=str(root / "home"), MLFLOW_ENABLE_TELEMETRY="false")
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith(("SVD_", "MLFLOW_TRACKING", "MLFLOW_REGISTRY"))]:
            mp.delenv(key)
        mp.setenv("SVD_HOME", env["SVD_HOME"])
        populate_store(root)
    port = free_port()
    command = [sys.executable, "-m", "flows.cli.main", "dashboard", "--out", str(root / "site"), "--serve"]
    proc = subprocess.Popen(
        [*command, "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_for(url, proc)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            output, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
    assert proc.returncode == 0, output
    assert "stopped" in output and f"http://127.0.0.1:{port}/" in output


def test_page_renders_plots_without_errors(served: str, tmp_path: Path) -> None:
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
            page.goto(served, wait_until="load")
            plots = page.evaluate(VISIBLE_PLOTS_JS)
            lineage = page.locator("svg.lineage")
            assert lineage.is_visible() and lineage.bounding_box()["width"] > 500
            assert page.locator(".badge.synthetic").first.is_visible()
            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            page.locator("a[href='#registry']").click()
            page.wait_for_function("() => window.scrollY > 0")
            assert page.evaluate(HEADING_ON_TOP_JS, "#registry h2")  # the sticky header does not cover it
        finally:
            browser.close()
    assert errors == []
    assert len(plots) == 10, plots  # every plot outside closed <details>
    assert all(p["ok"] and p["w"] > 200 for p in plots), plots
    assert shot.stat().st_size > 50_000
    if os.environ.get("SVD_DASHBOARD_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["SVD_DASHBOARD_SCREENSHOT"])
