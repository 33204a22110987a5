"""Rating page in Debian's headless chromium (playwright): videos play in sync, keys vote, votes count once.

Starts the app with uvicorn on a free loopback port in a thread. Skips when /usr/bin/chromium is absent
(install it with `apt-get install -y chromium`; `playwright install` is never used).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from flows.apps.rating import service
from flows.apps.rating.app import create_app
from tests.helpers import CHROMIUM, CHROMIUM_ARGS, browser_marks

pytestmark = browser_marks()


def write_video(
    path: Path, colour: tuple[int, int, int], codec: str, frames: int = 12, fps: int = 12
) -> None:
    """A 1 s clip: solid colour with a white bar sweeping right, so sync is visible in screenshots."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for i in range(frames):
            image = np.zeros((64, 96, 3), np.uint8)
            image[:] = colour
            image[:, i * 8 : i * 8 + 8] = 255
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def make_study(root: Path, url: str) -> dict[str, str]:
    tasks = []
    for i, (question, codec, suffix) in enumerate(
        [
            ("prompt_alignment", "libx264", "mp4"),
            ("visual_quality", "libx264", "mp4"),
            ("overall", "libvpx-vp9", "webm"),
        ]
    ):
        a, b = root / f"a{i}.{suffix}", root / f"b{i}.{suffix}"
        write_video(a, (200, 40, 40), codec)
        write_video(b, (40, 40, 200), codec)
        tasks.append(
            {
                "task_id": f"t{i}",
                "question": question,
                "prompt_id": f"p{i}",
                "prompt": f"a red panda climbing a tree, take {i}",
                "model_a": "svd-base",
                "model_b": "svd-tuned",
                "sample_a_uri": str(a),
                "sample_b_uri": str(b),
                "left": "model_b" if i == 0 else "model_a",
                "is_gold": False,
            }
        )
    # Image-to-video task: the conditioning frame is shown above the pair.
    cv2.imwrite(str(root / "cond.png"), np.full((64, 96, 3), (40, 160, 40), np.uint8))
    tasks[2]["image_uri"] = f"file://{root / 'cond.png'}"
    return service.create_study(url, "browser-study", tasks, raters=["ann", "bob"])


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[dict[str, Any]]:
    import uvicorn

    url = f"sqlite:///{tmp_path / 'votes.db'}"
    tokens = make_study(tmp_path, url)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = create_app(url, admin_token="admin")
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start within 20 s")
        time.sleep(0.05)
    try:
        yield {"base": f"http://127.0.0.1:{port}", "url": url, "tokens": tokens}
    finally:
        uv.should_exit = True
        thread.join(timeout=10)


VIDEO_STATE = """() => [...document.querySelectorAll('video')].map(v => ({
    ready: v.readyState, error: v.error ? v.error.code : null, time: v.currentTime, paused: v.paused}))"""


def wait_playing_in_sync(page: Any) -> list[dict[str, Any]]:
    """Both videos decoded and playing; after one loop (`starts` >= 2) they are still together."""
    page.wait_for_function("document.body.dataset.state === 'ready'")
    page.wait_for_function(
        "[...document.querySelectorAll('video')].every(v => v.readyState >= 2 && !v.paused)", timeout=15000
    )
    page.wait_for_function("Number(document.body.dataset.starts || 0) >= 2", timeout=15000)  # looped once
    videos = page.evaluate(VIDEO_STATE)
    assert all(v["error"] is None and v["ready"] >= 2 for v in videos), videos
    assert abs(videos[0]["time"] - videos[1]["time"]) < 0.25, videos
    return videos


def test_keys_vote_once_per_task_and_progress_updates(server: dict[str, Any], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    ann = server["tokens"]["ann"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{server['base']}/rate/{ann}")
            assert page.inner_text("#progress-text") == "Pair 1 of 3"
            assert page.inner_text("#question") == service.QUESTION_TEXT["prompt_alignment"]
            wait_playing_in_sync(page)
            page.screenshot(path=str(tmp_path / "rating-page.png"))

            page.keyboard.press("ArrowLeft")  # t0 shows model_b on the left
            page.wait_for_function("document.getElementById('progress-text').textContent === 'Pair 2 of 3'")
            assert page.inner_text("#question") == service.QUESTION_TEXT["visual_quality"]

            page.reload()  # the server, not the page, knows where the rater is
            assert page.inner_text("#progress-text") == "Pair 2 of 3"
            wait_playing_in_sync(page)
            page.keyboard.press("t")
            page.wait_for_function("document.getElementById('progress-text').textContent === 'Pair 3 of 3'")
            wait_playing_in_sync(page)  # the third pair is VP9 WebM: both codecs play

            # A vote for an answered task (say from a second tab) is refused and the page moves on.
            status = page.evaluate(
                """async (token) => (await fetch(`/api/rate/${token}/vote`, {method: 'POST',
                    headers: {'Content-Type': 'application/json'},
                    body: JSON.stringify({task_id: 't0', choice: 'right'})})).status""",
                ann,
            )
            assert status == 409
            page.wait_for_function("document.getElementById('cond-image').naturalWidth === 96")
            page.screenshot(path=str(tmp_path / "rating-page-3.png"))

            page.keyboard.press(" ")  # shared pause, then shared play
            page.wait_for_function("[...document.querySelectorAll('video')].every(v => v.paused)")
            page.keyboard.press(" ")
            page.wait_for_function("[...document.querySelectorAll('video')].every(v => !v.paused)")
            page.click("button[data-choice=right]")
            page.wait_for_function("document.body.dataset.state === 'done'")
            assert page.inner_text("#progress-text") == "All 3 done"
            assert page.is_visible("#done") and not page.is_visible("#task")

            page.goto(f"{server['base']}/admin?token=admin")
            page.screenshot(path=str(tmp_path / "rating-page-admin.png"), full_page=True)
            cells = page.locator("tr", has_text="ann").inner_text().split()
            assert cells[:3] == ["ann", "3", "3"]  # rater, done, assigned
        finally:
            browser.close()

    votes = service.export_votes(server["url"], "browser-study")
    assert votes[["task_id", "rater_id", "winner"]].values.tolist() == [
        ["t0", "ann", "model_b"],
        ["t1", "ann", "tie"],
        ["t2", "ann", "model_b"],  # t2 shows model_a on the left
    ]
    assert service.next_task(server["url"], server["tokens"]["bob"])["done"] == 0
    keep = os.environ.get("SVD_RATING_SCREENSHOT_DIR")
    if (
        keep
    ):  # copies for a human look: SVD_RATING_SCREENSHOT_DIR=/tmp/shots pytest tests/test_rating_browser.py
        Path(keep).mkdir(parents=True, exist_ok=True)
        for shot in tmp_path.glob("rating-page*.png"):
            (Path(keep) / shot.name).write_bytes(shot.read_bytes())
