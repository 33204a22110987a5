"""Videos on the page: each registered version's evaluation samples and each study's side-by-side pairs.

Samples live where `svd eval run` / `promote` write them (`flows.eval_flow.step_sample`):
`<artifact root>/samples/<model>/<version>/<eval set>-<version>/<settings key>/<prompt_id>.mp4`, each with a
`<prompt_id>.json` written last (its presence marks the sample finished). A study run logs the tasks it
asked (`design.json`: the two sample URIs, which side each was shown on, the prompt) and its `votes.csv`.

Videos are copied into the site (`media/<hash>.<ext>`, one copy per source URI) so the page plays them from
the same folder whatever the store (a browser cannot read s3:// or a path on the build machine).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
from mlflow.tracking import MlflowClient

from flows.apps.dashboard.mlflow_read import READ_ERRORS, download, load_json, log
from flows.apps.dashboard.model import Pair, Sample, Video
from svd_core import storage as svd_io
from svd_core.errors import SvdError

MEDIA_DIR = "media"
VIDEO_SUFFIXES = (".mp4", ".webm")
MAX_SAMPLES_PER_VERSION = 8
MAX_PAIRS_PER_STUDY = 24
OUTCOMES = ("left", "right", "tie", "both_bad", "broken")
"""Vote outcomes as raters saw the pair (the vote table stores model_a / model_b and the side shown)."""
MEDIA_ERRORS = (SvdError, *READ_ERRORS)


class MediaCopier:
    """Copies videos into `<site>/media/` once per source URI; returns site-relative paths."""

    def __init__(self, site: Path):
        self.site = site
        self.copied: dict[str, str] = {}
        self.failed: dict[str, str] = {}

    def video(self, uri: str, caption: str = "") -> Video | None:
        """The site copy of `uri`, or None (with the reason kept in `failed`) when it cannot be read."""
        if uri in self.failed:
            return None
        if uri not in self.copied:
            suffix = PurePosixPath(uri.split("?", 1)[0]).suffix.lower() or ".mp4"
            rel = f"{MEDIA_DIR}/{hashlib.sha256(uri.encode()).hexdigest()[:20]}{suffix}"
            try:
                (self.site / MEDIA_DIR).mkdir(parents=True, exist_ok=True)
                with svd_io.local_copy(uri) as path:
                    shutil.copyfile(path, self.site / rel)
            except MEDIA_ERRORS as exc:
                log.warning("dashboard: cannot copy video %s: %s", uri, exc)
                self.failed[uri] = str(exc)
                return None
            self.copied[uri] = rel
        return Video(self.copied[uri], uri, caption)


# --- samples of a registered version ------------------------------------------------------------------
def samples_folder(artifact_root: str, name: str, version: str) -> str:
    return svd_io.join_uri(artifact_root, "samples", name, version)


def _sample_meta(json_uri: str) -> dict[str, Any]:
    try:
        meta = json.loads(svd_io.read_bytes(json_uri))
    except (ValueError, *MEDIA_ERRORS):
        return {}
    return meta if isinstance(meta, dict) else {}


def version_samples(
    artifact_root: str, name: str, version: str, media: MediaCopier, limit: int = MAX_SAMPLES_PER_VERSION
) -> tuple[list[Sample], int, str]:
    """Finished samples of `name` v`version` (at most `limit` copied into the site), how many exist, and
    the folder they were found in."""
    where = samples_folder(artifact_root, name, version)
    try:
        uris = svd_io.list_uris(where)
    except MEDIA_ERRORS as exc:
        log.warning("dashboard: cannot list samples under %s: %s", where, exc)
        return [], 0, where
    listed = set(uris)
    finished = sorted(
        u
        for u in uris
        if u.endswith(VIDEO_SUFFIXES) and ".degraded." not in u and u.rsplit(".", 1)[0] + ".json" in listed
    )
    samples: list[Sample] = []
    for uri in finished:
        if len(samples) >= limit:
            break
        meta = _sample_meta(uri.rsplit(".", 1)[0] + ".json")
        prompt_id = str(meta.get("prompt_id") or PurePosixPath(uri).stem)
        prompt = str(meta.get("prompt") or "")
        video = media.video(uri, prompt or prompt_id)
        if video is not None:
            samples.append(Sample(prompt_id, prompt, video, str(meta.get("eval_set") or "")))
    return samples, len(finished), where


# --- side-by-side pairs of a study -------------------------------------------------------------------
def _vote_counts(client: MlflowClient, run_id: str) -> dict[str, Counter[str]]:
    """task_id -> Counter of the stored winner (model_a, model_b, tie, both_bad, broken)."""
    with tempfile.TemporaryDirectory(prefix="svd-dashboard-") as tmp:
        votes = pd.read_csv(download(client, run_id, "votes.csv", Path(tmp)), usecols=["task_id", "winner"])
    counts: dict[str, Counter[str]] = {}
    for task_id, winner in zip(votes["task_id"].astype(str), votes["winner"].astype(str), strict=True):
        counts.setdefault(task_id, Counter())[winner] += 1
    return counts


def _shown(task: dict[str, Any], counts: Counter[str]) -> dict[str, int]:
    """Votes as the rater saw the pair: the model shown on the left, on the right, and the rest."""
    left_is_a = task.get("left", "model_a") != "model_b"
    a, b = counts.get("model_a", 0), counts.get("model_b", 0)
    return {
        "left": a if left_is_a else b,
        "right": b if left_is_a else a,
        "tie": counts.get("tie", 0),
        "both_bad": counts.get("both_bad", 0),
        "broken": counts.get("broken", 0),
    }


def _task_order(task: dict[str, Any], voted: dict[str, Counter[str]]) -> tuple[Any, ...]:
    return (-sum(voted.get(str(task.get("task_id")), Counter()).values()), str(task.get("question")),
            str(task.get("prompt_id")), str(task.get("model_a")), str(task.get("model_b")))  # fmt: skip


def study_pairs(
    client: MlflowClient, run_id: str, paths: list[str], media: MediaCopier, limit: int = MAX_PAIRS_PER_STUDY
) -> tuple[list[Pair], int, int, list[str]]:
    """The study's non-gold pairs with their votes (the most-voted first, at most `limit`), how many there
    are, how many attention checks, and notes about what could not be read."""
    if "design.json" not in paths:
        return [], 0, 0, ["no design.json artifact: the side-by-side pairs are unavailable"]
    notes: list[str] = []
    design = load_json(client, run_id, "design.json")
    if not isinstance(design, dict):
        return [], 0, 0, ["design.json is not a study design (no tasks)"]
    tasks = [t for t in (design.get("tasks") or []) if isinstance(t, dict)]
    regular = [t for t in tasks if not t.get("is_gold")]
    voted: dict[str, Counter[str]] = {}
    if "votes.csv" in paths:
        try:
            voted = _vote_counts(client, run_id)
        except (*READ_ERRORS, pd.errors.ParserError) as exc:
            notes.append(f"cannot read votes.csv: {exc}")
    else:
        notes.append("no votes.csv artifact: vote counts are unavailable")
    pairs = []
    for task in sorted(regular, key=lambda t: _task_order(t, voted))[:limit]:
        left_is_a = task.get("left", "model_a") != "model_b"
        uris = (str(task.get("sample_a_uri", "")), str(task.get("sample_b_uri", "")))
        models = (str(task.get("model_a", "")), str(task.get("model_b", "")))
        left, right = (0, 1) if left_is_a else (1, 0)
        pairs.append(
            Pair(
                task_id=str(task.get("task_id", "")),
                question=str(task.get("question", "")),
                prompt_id=str(task.get("prompt_id", "")),
                prompt=str(task.get("prompt", "")),
                left_model=models[left],
                right_model=models[right],
                left=media.video(uris[left], models[left]) if uris[left] else None,
                right=media.video(uris[right], models[right]) if uris[right] else None,
                votes=_shown(task, voted.get(str(task.get("task_id")), Counter())),
            )
        )
    missing = sum(1 for p in pairs for v in (p.left, p.right) if v is None)
    if missing:
        notes.append(f"{missing} video(s) of the pairs below could not be read (moved or pruned samples)")
    return pairs, len(regular), len(tasks) - len(regular), notes
