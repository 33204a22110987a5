"""Rating app over HTTP (FastAPI TestClient): pages, vote API, media endpoint, admin, restart persistence."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
from fastapi.testclient import TestClient

from flows.apps.rating import service
from flows.apps.rating.app import create_app
from svd_core.evaluation.schema import VOTE_COLUMNS
from tests.flows.apps.rating.watching import backdate_issue, open_and_watch

ADMIN = "admin-secret"


def write_samples(root: Path) -> list[dict[str, Any]]:
    """Three tasks whose samples are distinct files (their bytes tell the test which one was served)."""
    tasks = []
    for i, question in enumerate(("visual_quality", "prompt_alignment", "overall")):
        a, b = root / f"m1-p{i}.mp4", root / f"m2-p{i}.mp4"
        a.write_bytes(f"sample-a-{i}".encode() * 10)
        b.write_bytes(f"sample-b-{i}".encode() * 10)
        tasks.append(
            {
                "task_id": f"t{i}",
                "question": question,
                "prompt_id": f"p{i}",
                "prompt": f"prompt {i}",
                "model_a": "m1",
                "model_b": "m2",
                "sample_a_uri": str(a) if i else f"file://{a}",
                "sample_b_uri": b.name,  # relative: resolved against media_root
                "left": "model_b" if i == 0 else "model_a",
                "is_gold": i == 2,
            }
        )
    return tasks


@pytest.fixture()
def study(tmp_path: Path) -> dict[str, Any]:
    media = tmp_path / "media"
    media.mkdir()
    url = f"sqlite:///{tmp_path / 'votes.db'}"
    tasks = write_samples(media)
    tokens = service.create_study(url, "s1", tasks, {"ann": ["t0", "t1", "t2"], "bob": ["t1"]})
    return {"url": url, "media": str(media), "tokens": tokens}


def client_for(study: dict[str, Any]) -> TestClient:
    return TestClient(create_app(study["url"], media_root=study["media"], admin_token=ADMIN))


def test_vote_once_then_duplicate_is_rejected(study: dict[str, Any]) -> None:
    ann = study["tokens"]["ann"]
    with client_for(study) as client:
        state = client.post(f"/api/rate/{ann}/acknowledge").json()
        assert (state["done"], state["total"], state["task"]["task_id"]) == (0, 3, "t0")
        open_and_watch(study["url"], ann, "t0")
        first = client.post(f"/api/rate/{ann}/vote", json={"task_id": "t0", "choice": "right"})
        assert first.status_code == 200 and first.json()["winner"] == "model_a"  # t0 shows model_b left
        again = client.post(f"/api/rate/{ann}/vote", json={"task_id": "t0", "choice": "left"})
        assert again.status_code == 409 and "counted once" in again.json()["detail"]
        assert client.get(f"/api/rate/{ann}/next").json()["task"]["task_id"] == "t1"
        bad = client.post(f"/api/rate/{ann}/vote", json={"task_id": "t1", "choice": "both"})
        assert bad.status_code == 422
    votes = service.export_votes(study["url"], "s1")
    assert list(votes["winner"]) == ["model_a"]


def test_bad_token_is_404_everywhere(study: dict[str, Any]) -> None:
    with client_for(study) as client:
        page = client.get("/rate/not-a-token")
        assert page.status_code == 404 and "not valid" in page.text
        assert client.get("/api/rate/not-a-token/next").status_code == 404
        vote = client.post("/api/rate/not-a-token/vote", json={"task_id": "t0", "choice": "left"})
        assert vote.status_code == 404
        assert client.get("/media/not-a-token/left?task=t0").status_code == 404


def test_rate_page_shows_progress_and_question(study: dict[str, Any]) -> None:
    ann = study["tokens"]["ann"]
    with client_for(study) as client:
        first = client.get(f"/rate/{ann}")  # instructions before the first task
        assert first.status_code == 200 and "Before you start" in first.text
        assert "3 pairs to rate" in first.text and 'id="instructions" hidden' not in first.text
        assert 'id="task" hidden' in first.text and '<span id="min-watch">2</span>' in first.text
        client.post(f"/api/rate/{ann}/acknowledge")
        page = client.get(f"/rate/{ann}")
        assert page.status_code == 200 and 'id="instructions" hidden' in page.text
        assert "Pair 1 of 3" in page.text and service.QUESTION_TEXT["visual_quality"] in page.text
        assert page.headers["referrer-policy"] == "no-referrer"
        assert client.get("/static/rate.js").status_code == 200


def test_media_serves_only_the_tasks_samples(study: dict[str, Any]) -> None:
    ann, bob = study["tokens"]["ann"], study["tokens"]["bob"]
    with client_for(study) as client:
        task = client.post(f"/api/rate/{ann}/acknowledge").json()["task"]
        left = client.get(task["left_url"])  # t0 shows model_b on the left: the relative URI
        assert left.status_code == 200 and left.content.startswith(b"sample-b-0")
        assert left.headers["content-type"] == "video/mp4"
        right = client.get(task["right_url"], headers={"Range": "bytes=0-7"})
        assert right.status_code == 206 and right.content == b"sample-a"  # range requests for seeking
        assert client.get(f"/media/{bob}/left?task=t0").status_code == 404  # t0 is not bob's
        assert client.get(f"/media/{ann}/left?task=../../etc/passwd").status_code == 404
        assert client.get(f"/media/{ann}/..%2F..%2Fetc%2Fpasswd?task=t0").status_code in (404, 422)
        assert client.get(f"/media/{ann}/image?task=t0").status_code == 404  # no conditioning image


def test_admin_requires_token_and_reports_progress(study: dict[str, Any]) -> None:
    ann, bob = study["tokens"]["ann"], study["tokens"]["bob"]
    with client_for(study) as client:
        open_and_watch(study["url"], ann, "t2")
        open_and_watch(study["url"], bob, "t1")
        client.post(f"/api/rate/{ann}/vote", json={"task_id": "t2", "choice": "left"})  # gold, correct
        client.post(f"/api/rate/{bob}/vote", json={"task_id": "t1", "choice": "tie"})
        assert client.get("/admin").status_code == 403
        assert client.get("/admin?token=wrong").status_code == 403
        assert client.get("/api/admin/studies", headers={"X-Admin-Token": "nope"}).status_code == 403
        report = client.get("/api/admin/studies", headers={"X-Admin-Token": ADMIN}).json()
        assert report[0]["votes"] == 2 and report[0]["assigned"] == 4
        raters = {r["rater_id"]: r for r in report[0]["raters"]}
        assert raters["ann"]["gold_accuracy"] == 1.0 and raters["bob"]["gold_accuracy"] is None
        page = client.get(f"/admin?token={ADMIN}")
        assert page.status_code == 200 and "ann" in page.text and "100%" in page.text
        csv = client.get(f"/api/admin/studies/s1/votes.csv?token={ADMIN}")
        assert csv.status_code == 200 and csv.text.splitlines()[0] == ",".join(VOTE_COLUMNS)
        assert len(csv.text.strip().splitlines()) == 3


def test_votes_survive_a_server_restart(study: dict[str, Any]) -> None:
    ann = study["tokens"]["ann"]
    open_and_watch(study["url"], ann, "t0")
    with client_for(study) as client:
        assert (
            client.post(f"/api/rate/{ann}/vote", json={"task_id": "t0", "choice": "tie"}).status_code == 200
        )
    with client_for(study) as restarted:  # a new app and engine on the same SQLite file
        state = restarted.get(f"/api/rate/{ann}/next").json()
        assert (state["done"], state["task"]["task_id"]) == (1, "t1")
        dup = restarted.post(f"/api/rate/{ann}/vote", json={"task_id": "t0", "choice": "left"})
        assert dup.status_code == 409


def test_admin_token_from_environment(study: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SVD_RATING_ADMIN_TOKEN", "from-env")
    with TestClient(create_app(study["url"])) as client:
        assert client.get("/api/admin/studies?token=from-env").status_code == 200
    monkeypatch.delenv("SVD_RATING_ADMIN_TOKEN")
    app = create_app(study["url"])
    assert len(app.state.admin_token) >= 22  # random per run when nothing is configured
    with TestClient(app) as client:
        assert client.get(f"/api/admin/studies?token={app.state.admin_token}").status_code == 200


class MemoryStore:
    """A non-local backend (like s3://) registered under its own scheme, counting downloads."""

    objects: ClassVar[dict[str, bytes]] = {}
    downloads: ClassVar[list[str]] = []

    def get_file(self, uri: str, local_path: str | Path) -> Path:
        self.downloads.append(uri)
        Path(local_path).write_bytes(self.objects[uri])
        return Path(local_path)

    def exists(self, uri: str) -> bool:
        return uri in self.objects


def test_remote_samples_are_fetched_once_through_svd_io(tmp_path: Path) -> None:
    from svd_core import storage as svd_io

    svd_io.register_store("memtest", MemoryStore)  # type: ignore[arg-type]  # duck-typed test double
    MemoryStore.objects = {"memtest://bucket/a.webm": b"remote-a", "memtest://bucket/b.webm": b"remote-b"}
    MemoryStore.downloads = []
    url = f"sqlite:///{tmp_path / 'votes.db'}"
    task = {
        "task_id": "r0",
        "question": "overall",
        "prompt_id": "p0",
        "prompt": "",
        "model_a": "m1",
        "model_b": "m2",
        "sample_a_uri": "a.webm",  # relative to an s3-like media_root
        "sample_b_uri": "memtest://bucket/b.webm",
        "left": "model_a",
    }
    token = service.create_study(url, "remote", [task], raters=1)["rater-1"]
    app = create_app(
        url, media_root="memtest://bucket", admin_token=ADMIN, media_cache_dir=tmp_path / "cache"
    )
    with TestClient(app) as client:
        for _ in range(2):
            left = client.get(f"/media/{token}/left?task=r0")
            assert left.content == b"remote-a" and left.headers["content-type"] == "video/webm"
        assert client.get(f"/media/{token}/right?task=r0").content == b"remote-b"
    assert sorted(MemoryStore.downloads) == ["memtest://bucket/a.webm", "memtest://bucket/b.webm"]
    assert not list((tmp_path / "cache").glob(".part-*"))  # no partial download left behind


def test_vote_before_the_minimum_watch_is_refused_over_http(study: dict[str, Any]) -> None:
    ann = study["tokens"]["ann"]
    body = {"task_id": "t0", "choice": "left"}
    with client_for(study) as client:
        early = client.post(f"/api/rate/{ann}/vote", json=body)
        assert early.status_code == 428 and "instructions" in early.json()["detail"]
        task = client.post(f"/api/rate/{ann}/acknowledge").json()["task"]
        assert task["watched"] == {"left": False, "right": False} and task["wait_seconds"] > 1.5
        refused = client.post(f"/api/rate/{ann}/vote", json=body)
        assert refused.status_code == 428 and "watch both videos to the end" in refused.json()["detail"]
        for side in ("left", "right"):
            reported = client.post(f"/api/rate/{ann}/watched", json={"task_id": "t0", "side": side})
            assert reported.status_code == 200
        assert reported.json()["watched"] == {"left": True, "right": True}
        too_soon = client.post(f"/api/rate/{ann}/vote", json=body)  # both ended, but within 2 s of issue
        assert too_soon.status_code == 428 and "at least 2 s" in too_soon.json()["detail"]
        assert (
            client.post(f"/api/rate/{ann}/watched", json={"task_id": "t0", "side": "top"}).status_code == 422
        )
        bob_reports = client.post(
            f"/api/rate/{study['tokens']['bob']}/watched", json={"task_id": "t0", "side": "left"}
        )
        assert bob_reports.status_code == 404  # t0 is not bob's
        backdate_issue(study["url"], ann, "t0", 2.5)
        assert client.post(f"/api/rate/{ann}/vote", json=body).status_code == 200
        # The next pair: "video broken" is accepted at once, nothing else is.
        assert client.get(f"/api/rate/{ann}/next").json()["task"]["task_id"] == "t1"
        assert (
            client.post(f"/api/rate/{ann}/vote", json={"task_id": "t1", "choice": "both_bad"}).status_code
            == 428
        )
        assert (
            client.post(f"/api/rate/{ann}/vote", json={"task_id": "t1", "choice": "broken"}).status_code
            == 200
        )
    assert service.export_votes(study["url"], "s1")["winner"].tolist() == ["model_b", "broken"]


class SlowStore:
    """A remote backend whose downloads take a while: each waits until `parallel` downloads run at once."""

    objects: ClassVar[dict[str, bytes]] = {}
    downloads: ClassVar[list[str]] = []
    barrier: ClassVar[Any] = None

    def get_file(self, uri: str, local_path: str | Path) -> Path:
        self.downloads.append(uri)
        self.barrier.wait()  # with one lock for the whole app the second download never starts: timeout
        Path(local_path).write_bytes(self.objects[uri])
        return Path(local_path)

    def exists(self, uri: str) -> bool:
        return uri in self.objects


def test_remote_videos_download_concurrently_and_each_only_once(tmp_path: Path) -> None:
    import threading

    from flows.apps.rating.media import MediaResolver
    from svd_core import storage as svd_io

    svd_io.register_store("slowtest", SlowStore)  # type: ignore[arg-type]  # duck-typed test double
    SlowStore.objects = {f"slowtest://b/{name}.mp4": name.encode() for name in ("left", "right")}
    SlowStore.downloads = []
    SlowStore.barrier = threading.Barrier(2, timeout=10)
    resolver = MediaResolver("slowtest://b", tmp_path / "cache")
    results: dict[int, bytes] = {}
    errors: list[BaseException] = []

    def fetch(k: int, name: str) -> None:
        try:
            results[k] = resolver.local_file(f"{name}.mp4").read_bytes()
        except BaseException as exc:
            errors.append(exc)

    # Two raters' pages ask for the same two videos at once: 3 requests for each.
    threads = [threading.Thread(target=fetch, args=(k, ("left", "right")[k % 2])) for k in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    assert {k: v for k, v in results.items()} == {k: (b"left", b"right")[k % 2] for k in range(6)}
    assert sorted(SlowStore.downloads) == ["slowtest://b/left.mp4", "slowtest://b/right.mp4"]
