"""Rating page in Debian's headless chromium (playwright): instructions first, videos play in sync, answers
unlock only after both videos played through and the minimum watch time, keys vote, votes count once, and two
raters vote at the same time.

Starts the app with uvicorn on a free loopback port in a thread. Skips when /usr/bin/chromium is absent
(install it with `apt-get install -y chromium`; `playwright install` is never used).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
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


def make_study(
    root: Path, url: str, min_watch_seconds: float = service.DEFAULT_MIN_WATCH_SECONDS
) -> dict[str, str]:
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
    return service.create_study(
        url, "browser-study", tasks, raters=["ann", "bob"], min_watch_seconds=min_watch_seconds,
        instructions="Judge motion first.\nIgnore the colours.",
    )  # fmt: skip


@contextmanager
def serving(tmp_path: Path, min_watch_seconds: float) -> Iterator[dict[str, Any]]:
    import uvicorn

    url = f"sqlite:///{tmp_path / 'votes.db'}"
    tokens = make_study(tmp_path, url, min_watch_seconds)
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


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The study with the default minimum watch (2 s, the 1 s clips play twice)."""
    with serving(tmp_path, service.DEFAULT_MIN_WATCH_SECONDS) as running:
        yield running


@pytest.fixture()
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def start(page: Any) -> None:
    """Read the instructions page, then confirm them: the first pair appears."""
    page.wait_for_function("document.body.dataset.state === 'instructions'")
    assert "Judge motion first." in page.inner_text("#study-instructions")
    page.click("#start")
    page.wait_for_function("document.body.dataset.state === 'ready'")


def wait_unlocked(page: Any) -> None:
    page.wait_for_function("document.body.dataset.watch === 'ok'", timeout=20000)


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


def test_keys_vote_once_per_task_and_progress_updates(
    server: dict[str, Any], browser: Any, tmp_path: Path
) -> None:
    ann = server["tokens"]["ann"]
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(f"{server['base']}/rate/{ann}")
    assert page.inner_text("#progress-text") == "3 pairs to rate" and page.is_visible("#instructions")
    page.screenshot(path=str(tmp_path / "rating-page-instructions.png"))
    start(page)
    assert page.inner_text("#progress-text") == "Pair 1 of 3"
    assert page.inner_text("#question") == service.QUESTION_TEXT["prompt_alignment"]
    wait_playing_in_sync(page)
    wait_unlocked(page)
    page.screenshot(path=str(tmp_path / "rating-page.png"))

    page.keyboard.press("ArrowLeft")  # t0 shows model_b on the left
    page.wait_for_function("document.getElementById('progress-text').textContent === 'Pair 2 of 3'")
    assert page.inner_text("#question") == service.QUESTION_TEXT["visual_quality"]

    page.reload()  # the server, not the page, knows where the rater is
    assert page.inner_text("#progress-text") == "Pair 2 of 3" and not page.is_visible("#instructions")
    wait_playing_in_sync(page)
    wait_unlocked(page)
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
    wait_unlocked(page)
    page.click("button[data-choice=right]")
    page.wait_for_function("document.body.dataset.state === 'done'")
    assert page.inner_text("#progress-text") == "All 3 done"
    assert page.is_visible("#done") and not page.is_visible("#task")

    page.goto(f"{server['base']}/admin?token=admin")
    page.screenshot(path=str(tmp_path / "rating-page-admin.png"), full_page=True)
    cells = page.locator("tr", has_text="ann").inner_text().split()
    assert cells[:4] == ["ann", "3", "3", "0"]  # rater, done, assigned, open

    votes = service.export_votes(server["url"], "browser-study")
    assert votes[["task_id", "rater_id", "winner"]].values.tolist() == [
        ["t0", "ann", "model_b"],
        ["t1", "ann", "tie"],
        ["t2", "ann", "model_b"],  # t2 shows model_a on the left
    ]
    assert service.next_task(server["url"], server["tokens"]["bob"])["done"] == 0
    keep_screenshots(tmp_path)


def keep_screenshots(tmp_path: Path) -> None:
    """Copies for a human look: SVD_RATING_SCREENSHOT_DIR=/tmp/shots pytest tests/flows/apps/rating/test_browser.py"""
    keep = os.environ.get("SVD_RATING_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for shot in tmp_path.glob("rating-page*.png"):
            (Path(keep) / shot.name).write_bytes(shot.read_bytes())


POST_VOTE = """async ([token, task, choice]) => {
    const r = await fetch(`/api/rate/${token}/vote`, {method: 'POST',
        headers: {'Content-Type': 'application/json'}, body: JSON.stringify({task_id: task, choice})});
    return [r.status, (await r.json()).detail || ''];
}"""


def test_a_vote_before_the_minimum_watch_is_refused(tmp_path: Path, browser: Any) -> None:
    """Buttons stay locked until both videos ended and 4 s passed; the server refuses a vote sent anyway."""
    with serving(tmp_path, min_watch_seconds=4.0) as running:
        ann = running["tokens"]["ann"]
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{running['base']}/rate/{ann}")
        start(page)
        assert page.is_disabled("button[data-choice=left]") and page.is_enabled("button[data-choice=broken]")
        page.keyboard.press("ArrowLeft")  # locked: the key does nothing
        status, detail = page.evaluate(POST_VOTE, [ann, "t0", "left"])  # a script bypassing the buttons
        assert status == 428 and "watch both videos to the end" in detail
        wait_playing_in_sync(page)  # both 1 s clips ended once: the page reported it
        page.wait_for_function("document.getElementById('watch-status').textContent.includes('unlock in')")
        assert (
            page.is_disabled("button[data-choice=left]")
            and page.get_attribute("body", "data-watch") == "pending"
        )
        status, detail = page.evaluate(POST_VOTE, [ann, "t0", "left"])
        assert status == 428 and "at least 4 s" in detail
        page.screenshot(path=str(tmp_path / "rating-page-locked.png"))
        assert page.inner_text("#progress-text") == "Pair 1 of 3"
        wait_unlocked(page)
        page.keyboard.press("ArrowLeft")
        page.wait_for_function("document.getElementById('progress-text').textContent === 'Pair 2 of 3'")
        page.click("button[data-choice=broken]")  # always open: a broken video never ends
        page.wait_for_function("document.getElementById('progress-text').textContent === 'Pair 3 of 3'")
        votes = service.export_votes(running["url"], "browser-study", with_timing=True)
    assert votes[["task_id", "winner"]].values.tolist() == [["t0", "model_b"], ["t1", "broken"]]
    assert votes["seconds_on_task"].iloc[0] >= 4.0 and votes["seconds_on_task"].iloc[1] < 4.0
    keep_screenshots(tmp_path)


def test_two_raters_vote_at_the_same_time(server: dict[str, Any], browser: Any, tmp_path: Path) -> None:
    """Two raters in separate browser contexts watch and answer their pairs at once; each vote lands on its
    own rater, every pair is watched before it counts."""
    pages = {}
    for rater in ("ann", "bob"):
        context = browser.new_context(viewport={"width": 1100, "height": 760})  # own cookies and cache
        pages[rater] = context.new_page()
        pages[rater].goto(f"{server['base']}/rate/{server['tokens'][rater]}")
    for page in pages.values():
        start(page)
    answers = {"ann": ["ArrowLeft", "b", "ArrowRight"], "bob": ["ArrowRight", "t", "ArrowLeft"]}
    for step in range(3):
        for page in pages.values():  # both pairs load and play meanwhile
            page.wait_for_function(
                f"document.getElementById('progress-text').textContent === 'Pair {step + 1} of 3'"
            )
        for page in pages.values():
            wait_unlocked(page)
            page.wait_for_function(
                "[...document.querySelectorAll('video')].every(v => !v.error && v.readyState >= 2)"
            )
        for rater, page in pages.items():  # both votes in flight together
            page.keyboard.press(answers[rater][step])
    for page in pages.values():
        page.wait_for_function("document.body.dataset.state === 'done'")
    pages["ann"].screenshot(path=str(tmp_path / "rating-page-two-raters.png"))
    votes = service.export_votes(server["url"], "browser-study", with_timing=True)
    by_rater = {r: votes[votes["rater_id"] == r] for r in ("ann", "bob")}
    # t0 shows model_b on the left, t1 and t2 model_a.
    assert by_rater["ann"][["task_id", "winner"]].values.tolist() == [
        ["t0", "model_b"], ["t1", "both_bad"], ["t2", "model_b"],
    ]  # fmt: skip
    assert by_rater["bob"][["task_id", "winner"]].values.tolist() == [
        ["t0", "model_a"], ["t1", "tie"], ["t2", "model_a"],
    ]  # fmt: skip
    assert (votes["seconds_on_task"] >= service.DEFAULT_MIN_WATCH_SECONDS).all()
    report = service.progress(server["url"], "browser-study")
    assert report["votes"] == 6 and all(r["open"] == 0 for r in report["raters"])
    keep_screenshots(tmp_path)
