"""Pairwise study design as in the SVD paper (appendix E): round-robin pairs, randomised sides, gold checks.

For every question, eval-set prompt and pair of models within an ablation axis there is one task, judged by
`raters_per_pair` raters. Which model is shown on the left is drawn per task and recorded (`left`), so
position bias can be measured and removed. Attention checks ("gold" tasks, `model_a` the right answer) fit
the question: for prompt following a sample against the same model's video of a *different* prompt (a
degraded copy would follow the prompt just as well, making the honest answer a tie); for visual quality
and overall preference a sample against a visibly degraded copy of itself. They make up about `gold_rate`
of the tasks, and every rater gets at least `gold_per_rater` of them (a quota, so the binomial exclusion
test in `rater_quality` has the checks it needs). The design is a pure function of (eval set, samples,
config): the same seed gives the same tasks and the same queues.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from svd_core import storage as svd_io
from svd_core.errors import InputError
from svd_core.evaluation.config import StudyConfig
from svd_core.evaluation.evalsets import EvalItem, EvalSet
from svd_core.evaluation.imports import derive_task_id

GOLD_SUFFIX = "~degraded"
OFF_PROMPT_SUFFIX = "~offprompt"
RESERVED_SUFFIXES = (GOLD_SUFFIX, OFF_PROMPT_SUFFIX)
VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".gif")
SIDES = ("model_a", "model_b")


@dataclass
class StudyDesign:
    """Tasks (dicts the rating app takes), the rater assignment and the degraded copies gold tasks need."""

    study_id: str
    tasks: list[dict[str, Any]]
    assignment: dict[str, list[str]]
    gold_copies: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "study_id": self.study_id,
            "tasks": self.tasks,
            "assignment": self.assignment,
            "gold_copies": self.gold_copies,
            "meta": self.meta,
        }

    def write(self, uri: str) -> None:
        svd_io.write_bytes(uri, json.dumps(self.to_dict(), indent=1).encode())


def load_study_design(uri: str) -> StudyDesign:
    try:
        data = json.loads(svd_io.read_bytes(uri))
        return StudyDesign(**data)
    except (json.JSONDecodeError, TypeError) as exc:
        raise InputError(f"{uri} is not a study design written by `svd eval design-study` ({exc})") from exc


# --- gold pairs --------------------------------------------------------------------------------------
def degrade_video_frames(frames: np.ndarray, seed: int, noise_std: float = 30.0) -> np.ndarray:
    """A visibly worse copy for attention checks: heavy Gaussian blur plus blotchy flickering noise.

    `frames` is uint8 (T, H, W, C). The blur (sigma 4% of the long side, at least 2 px) removes detail;
    the noise is drawn per frame on a coarse grid (1/16 of the long side) and upsampled, so it shows as
    flickering blotches: clearly worse to any attentive rater, and unlike fine pixel noise it does not
    add high-frequency energy that a sharpness proxy would mistake for detail.
    """
    if frames.ndim != 4 or frames.dtype != np.uint8 or frames.shape[0] == 0:
        raise InputError(
            f"frames must be a non-empty uint8 (T, H, W, C) array, got {frames.dtype} {frames.shape}"
        )
    height, width = frames.shape[1:3]
    sigma = max(2.0, 0.04 * max(height, width))
    cell = max(4, max(height, width) // 16)
    rng = np.random.default_rng(seed)
    out = np.empty_like(frames)
    for t, frame in enumerate(frames):
        blurred = cv2.GaussianBlur(frame, (0, 0), sigmaX=sigma).astype(np.float32).reshape(frame.shape)
        coarse = rng.normal(0.0, noise_std, size=(height // cell + 2, width // cell + 2)).astype(np.float32)
        noise = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR)
        out[t] = np.clip(blurred + noise[..., None], 0, 255).round().astype(np.uint8)
    return out


def degraded_uri(sample_uri: str, gold_dir: str | None) -> str:
    """Where the degraded copy of `sample_uri` goes: `gold_dir/<hash>-<name>` or beside it as `.degraded.mp4`."""
    stem = sample_uri.rstrip("/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    if gold_dir is None:
        return sample_uri.rsplit(".", 1)[0] + ".degraded.mp4"
    tag = hashlib.sha256(sample_uri.encode()).hexdigest()[:8]
    return svd_io.join_uri(gold_dir, f"{tag}-{stem}.degraded.mp4")


def render_gold_copy(src_uri: str, dst_uri: str, seed: int) -> None:
    """Decode `src_uri`, degrade its frames and write an H.264 MP4 to `dst_uri` (atomically, any store)."""
    import tempfile
    from pathlib import Path

    import av

    with svd_io.local_copy(src_uri) as src:
        try:
            with av.open(str(src)) as container:
                stream = container.streams.video[0]
                rate = stream.average_rate or 8
                frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
        except (av.error.FFmpegError, ValueError) as exc:
            raise InputError(f"sample {src_uri} cannot be decoded as a video ({exc}); re-render it") from exc
    bad = degrade_video_frames(frames, seed)
    height, width = (bad.shape[1] // 2) * 2, (bad.shape[2] // 2) * 2  # yuv420p needs even sides
    with tempfile.TemporaryDirectory() as tmp:
        out_path = Path(tmp) / "gold.mp4"
        with av.open(str(out_path), mode="w") as out:
            stream = out.add_stream("libx264", rate=rate)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for frame in bad:
                out.mux(stream.encode(av.VideoFrame.from_ndarray(frame[:height, :width], format="rgb24")))
            out.mux(stream.encode())
        svd_io.put_file(out_path, dst_uri)


def render_gold_copies(design: StudyDesign, overwrite: bool = False) -> list[str]:
    """Write every degraded copy the design's gold tasks show; returns the URIs written."""
    written = []
    for copy in design.gold_copies:
        if overwrite or not svd_io.exists(copy["degraded_uri"]):
            render_gold_copy(copy["source_uri"], copy["degraded_uri"], int(copy["seed"]))
            written.append(copy["degraded_uri"])
    return written


# --- samples -----------------------------------------------------------------------------------------
def _relative_parts(uri: str, root: str) -> list[str]:
    if svd_io.is_local(root) and svd_io.is_local(uri):
        return list(svd_io.local_path(uri).resolve().relative_to(svd_io.local_path(root).resolve()).parts)
    return uri[len(root) :].lstrip("/").split("/")


def samples_from_folder(root_uri: str) -> dict[str, dict[str, str]]:
    """`root/<model>/<prompt_id>.mp4` -> {model: {prompt_id: uri}} (degraded copies are skipped)."""
    root = root_uri.rstrip("/")
    samples: dict[str, dict[str, str]] = {}
    for uri in svd_io.list_uris(root):
        parts = _relative_parts(uri, root)
        name = parts[-1]
        if len(parts) != 2 or not name.lower().endswith(VIDEO_SUFFIXES) or ".degraded." in name:
            continue
        samples.setdefault(parts[0], {})[name.rsplit(".", 1)[0]] = uri
    if not samples:
        raise InputError(f"no samples under {root_uri}; expected <model>/<prompt_id>.mp4 files")
    return samples


def _check_samples(eval_set: EvalSet, samples: Mapping[str, Mapping[str, str]], models: list[str]) -> None:
    for model in models:
        if model not in samples:
            raise InputError(
                f"model {model!r} (from the study axes) has no samples; known: {sorted(samples)}"
            )
        missing = [pid for pid in eval_set.prompt_ids if pid not in samples[model]]
        if missing:
            raise InputError(
                f"model {model!r} lacks samples for {len(missing)} prompt(s) of eval set "
                f"{eval_set.name}@{eval_set.version}, e.g. {missing[:3]}; generate them first"
            )
        reserved = [suffix for suffix in RESERVED_SUFFIXES if suffix in model]
        if reserved:
            raise InputError(
                f"model name {model!r} contains {reserved[0]!r}, reserved for attention checks; rename it"
            )


def study_pairs(cfg: StudyConfig, models: list[str]) -> list[tuple[str, str]]:
    """Unordered pairs of a full round-robin within each axis (a pair in two axes is asked once)."""
    axes = cfg.axes or {"all": sorted(models)}
    pairs = {tuple(sorted(p)) for axis in axes.values() for p in itertools.combinations(axis, 2)}
    return sorted(pairs)  # type: ignore[arg-type]


# --- tasks -------------------------------------------------------------------------------------------
def _task(
    cfg: StudyConfig, question: str, item: EvalItem, pair: tuple[str, str], uris: tuple[str, str], left: str
) -> dict[str, Any]:
    return {
        "task_id": derive_task_id(cfg.study_id, question, item.prompt_id, *pair),
        "study_id": cfg.study_id,
        "question": question,
        "prompt_id": item.prompt_id,
        "prompt": item.prompt,
        "image_uri": item.image_uri,
        "model_a": pair[0],
        "model_b": pair[1],
        "sample_a_uri": uris[0],
        "sample_b_uri": uris[1],
        "left": left,
        "is_gold": False,
    }


def _gold_count(n_regular: int, gold_rate: float) -> int:
    return round(n_regular * gold_rate / (1.0 - gold_rate))


def _gold_task(
    cfg: StudyConfig,
    eval_set: EvalSet,
    samples: Mapping[str, Mapping[str, str]],
    combo: tuple[str, int, str],
    rng: np.random.Generator,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """One attention check fitting its question, and the degraded copy it needs (None for off-prompt)."""
    question, item_index, model = combo
    item = eval_set.items[item_index]
    source = samples[model][item.prompt_id]
    left = str(rng.choice(SIDES))
    if question == "prompt_alignment" and len(eval_set.items) > 1:
        other = eval_set.items[
            (item_index + 1 + int(rng.integers(len(eval_set.items) - 1))) % len(eval_set.items)
        ]
        pair = (model, model + OFF_PROMPT_SUFFIX)
        task = _task(cfg, question, item, pair, (source, samples[model][other.prompt_id]), left)
        task["is_gold"] = True
        return task, None
    bad = degraded_uri(source, cfg.gold_dir)
    task = _task(cfg, question, item, (model, model + GOLD_SUFFIX), (source, bad), left)
    task["is_gold"] = True
    return task, {"source_uri": source, "degraded_uri": bad, "seed": int(rng.integers(2**31))}


def _gold_tasks(
    cfg: StudyConfig,
    eval_set: EvalSet,
    samples: Mapping[str, Mapping[str, str]],
    models: list[str],
    questions: list[str],
    n_regular: int,
    rng: np.random.Generator,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[tuple[str, int, str]]]:
    """The gold pool (`gold_rate` of the tasks), its degraded copies, and the unused combos in random order
    (what quota top-ups draw from)."""
    combos = list(itertools.product(questions, range(len(eval_set.items)), models))
    order = [combos[k] for k in rng.permutation(len(combos))]
    n_gold = min(_gold_count(n_regular, cfg.gold_rate), len(combos))
    tasks, copies = [], []
    for combo in sorted(order[:n_gold], key=combos.index):
        task, copy = _gold_task(cfg, eval_set, samples, combo, rng)
        tasks.append(task)
        copies.extend([copy] if copy else [])
    return tasks, copies, order[n_gold:]


def _top_up_gold(
    assignment: dict[str, list[str]],
    gold: list[dict[str, Any]],
    spare: list[tuple[str, int, str]],
    make: Any,
    quota: int,
    rng: np.random.Generator,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Give every rater at least `quota` distinct checks: existing gold tasks first, new ones from `spare`.

    Returns the new gold tasks and copies; queues are reshuffled so the checks do not cluster at the end.
    """
    new_tasks: list[dict[str, Any]] = []
    new_copies: list[dict[str, Any]] = []
    for rater, queue in assignment.items():
        have = {t["task_id"] for t in gold if t["task_id"] in set(queue)}
        candidates = [t["task_id"] for t in [*gold, *new_tasks] if t["task_id"] not in have]
        while len(have) < quota:
            if not candidates:
                if not spare:
                    break  # the eval set allows no more distinct checks
                task, copy = make(spare.pop(0))
                new_tasks.append(task)
                new_copies.extend([copy] if copy else [])
                candidates.append(task["task_id"])
            pick = candidates.pop(int(rng.integers(len(candidates))))
            queue.append(pick)
            have.add(pick)
        assignment[rater] = [queue[i] for i in rng.permutation(len(queue))]
    return new_tasks, new_copies


def assign_raters(task_ids: list[str], cfg: StudyConfig, rng: np.random.Generator) -> dict[str, list[str]]:
    """Each task to `raters_per_pair` distinct raters, least-loaded first; each queue in random order."""
    raters = [f"rater_{i}" for i in range(cfg.num_raters)]
    load = np.zeros(len(raters))
    queues: dict[str, list[str]] = {r: [] for r in raters}
    for task_id in task_ids:
        # random tie-break, then the least loaded: loads stay within one task of each other
        order = np.lexsort((rng.random(len(raters)), load))[: cfg.raters_per_pair]
        for r in order:
            queues[raters[r]].append(task_id)
            load[r] += 1
    return {r: [q[i] for i in rng.permutation(len(q))] for r, q in queues.items()}


def design_study(
    eval_set: EvalSet, samples: Mapping[str, Mapping[str, str]], cfg: StudyConfig
) -> StudyDesign:
    """Tasks for every question x prompt x pair, gold checks mixed in, and each rater's queue."""
    models = sorted({m for axis in cfg.axes.values() for m in axis}) if cfg.axes else sorted(samples)
    if len(models) < 2:
        raise InputError(f"a study needs at least two models with samples, got {models}")
    _check_samples(eval_set, samples, models)
    rng = np.random.default_rng(cfg.seed)
    questions = cfg.resolved_questions()
    tasks = []
    for question in questions:
        for item in eval_set.items:
            for pair in study_pairs(cfg, models):
                uris = (samples[pair[0]][item.prompt_id], samples[pair[1]][item.prompt_id])
                tasks.append(_task(cfg, question, item, pair, uris, str(rng.choice(SIDES))))
    gold, copies, spare = _gold_tasks(cfg, eval_set, samples, models, questions, len(tasks), rng)
    tasks.extend(gold)
    assignment = assign_raters([t["task_id"] for t in tasks], cfg, rng)
    if cfg.gold_per_rater:
        extra, extra_copies = _top_up_gold(
            assignment,
            gold,
            spare,
            lambda combo: _gold_task(cfg, eval_set, samples, combo, rng),
            cfg.gold_per_rater,
            rng,
        )
        tasks.extend(extra)
        copies.extend(extra_copies)
    copies = list({c["degraded_uri"]: c for c in copies}.values())
    meta = {
        "eval_set": {"name": eval_set.name, "version": eval_set.version},
        "models": models,
        "questions": questions,
        "config": cfg.to_dict(),
        "config_hash": cfg.config_hash(),
    }
    return StudyDesign(cfg.study_id, tasks, assignment, copies, meta)
