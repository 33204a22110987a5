"""Rating app over HTTP (FastAPI TestClient): pages, vote API, media endpoint, admin, restart persistence."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
from fastapi.testclient import TestClient

from flows.apps.rating import service
from flows.apps.rating.app import create_app
from svd_core.evaluation.schema import VOTE_COLUMNS

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
        state = client.get(f"/api/rate/{ann}/next").json()
        assert (state["done"], state["total"], state["task"]["task_id"]) == (0, 3, "t0")
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
        page = client.get(f"/rate/{ann}")
        assert page.status_code == 200
        assert "Pair 1 of 3" in page.text and service.QUESTION_TEXT["visual_quality"] in page.text
        assert page.headers["referrer-policy"] == "no-referrer"
        assert client.get("/static/rate.js").status_code == 200


def test_media_serves_only_the_tasks_samples(study: dict[str, Any]) -> None:
    ann, bob = study["tokens"]["ann"], study["tokens"]["bob"]
    with client_for(study) as client:
        task = client.get(f"/api/rate/{ann}/next").json()["task"]
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
