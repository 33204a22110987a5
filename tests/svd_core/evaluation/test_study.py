"""Study design: round-robin pairs, recorded random sides, gold checks, rater queues, determinism."""

from __future__ import annotations

import itertools
from collections import Counter
from math import comb

import av
import numpy as np
import pytest

from svd_core.config import load_config
from svd_core.errors import ConfigError, InputError
from svd_core.evaluation.config import StudyConfig
from svd_core.evaluation.evalsets import default_eval_set
from svd_core.evaluation.study import (
    GOLD_SUFFIX,
    OFF_PROMPT_SUFFIX,
    degrade_video_frames,
    degraded_uri,
    design_study,
    load_study_design,
    render_gold_copies,
    samples_from_folder,
)
from svd_core.evaluation.synthetic import sharpness_score, temporal_consistency_score

EVAL_SET = default_eval_set("text-to-video")
MODELS = ["base", "motion25", "aes25", "clip50"]
TASK_KEYS = {"task_id", "study_id", "question", "prompt_id", "prompt", "model_a", "model_b", "sample_a_uri"}
TASK_KEYS |= {"sample_b_uri", "left", "is_gold"}


def samples_for(models, eval_set=EVAL_SET, root="s3://bucket/samples"):
    return {m: {pid: f"{root}/{m}/{pid}.mp4" for pid in eval_set.prompt_ids} for m in models}


def config(**overrides) -> StudyConfig:
    return load_config(StudyConfig, None, [f"{k}={v}" for k, v in overrides.items()])


def test_full_round_robin_per_question_and_prompt():
    design = design_study(EVAL_SET, samples_for(MODELS), config(gold_rate=0))
    regular = [t for t in design.tasks if not t["is_gold"]]
    assert len(regular) == 2 * 16 * comb(4, 2)
    assert all(set(t) >= TASK_KEYS for t in design.tasks)
    assert Counter(t["question"] for t in regular) == {"prompt_alignment": 96, "visual_quality": 96}
    pairs = Counter((t["model_a"], t["model_b"]) for t in regular)
    assert set(pairs) == {tuple(sorted(p)) for p in itertools.combinations(MODELS, 2)}
    assert set(pairs.values()) == {32}
    assert len({t["task_id"] for t in design.tasks}) == len(design.tasks)
    t = regular[0]
    assert t["sample_a_uri"] == f"s3://bucket/samples/{t['model_a']}/{t['prompt_id']}.mp4"
    assert t["prompt"] == EVAL_SET.item(t["prompt_id"]).prompt


def test_sides_are_random_recorded_and_balanced():
    tasks = design_study(EVAL_SET, samples_for(MODELS), config()).tasks
    lefts = Counter(t["left"] for t in tasks)
    assert set(lefts) == {"model_a", "model_b"}
    assert abs(lefts["model_a"] - lefts["model_b"]) < 0.2 * len(tasks)


def test_axes_give_round_robins_within_each_axis_only():
    cfg = StudyConfig(
        axes={"motion": ["base", "motion25"], "filters": ["base", "aes25", "clip50"]},
        gold_rate=0,
        gold_per_rater=0,
    )
    design = design_study(EVAL_SET, samples_for([*MODELS, "unused"]), cfg)
    pairs = {(t["model_a"], t["model_b"]) for t in design.tasks}
    assert pairs == {("base", "motion25"), ("aes25", "base"), ("base", "clip50"), ("aes25", "clip50")}
    assert design.meta["models"] == sorted(["base", "motion25", "aes25", "clip50"])


def test_image_to_video_asks_overall():
    i2v = default_eval_set("image-to-video")
    no_checks = config(task="image-to-video", gold_rate=0, gold_per_rater=0)
    design = design_study(i2v, samples_for(["a", "b"], i2v), no_checks)
    assert {t["question"] for t in design.tasks} == {"overall"} and len(design.tasks) == 4
    assert all(t["image_uri"] == i2v.item(t["prompt_id"]).image_uri for t in design.tasks)


def test_each_task_goes_to_r_distinct_raters_with_balanced_queues():
    cfg = config(raters_per_pair=3, num_raters=7)
    design = design_study(EVAL_SET, samples_for(MODELS), cfg)
    seen = Counter(task for queue in design.assignment.values() for task in queue)
    assert set(seen) == {t["task_id"] for t in design.tasks} and set(seen.values()) == {3}
    for queue in design.assignment.values():
        assert len(queue) == len(set(queue))  # nobody sees a task twice
    loads = [len(q) for q in design.assignment.values()]
    assert max(loads) - min(loads) <= 1 and len(loads) == 7


def test_gold_tasks_mix_in_at_the_configured_rate_and_fit_their_question():
    design = design_study(EVAL_SET, samples_for(MODELS), config(gold_rate=0.2, gold_dir="s3://b/gold"))
    gold = [t for t in design.tasks if t["is_gold"]]
    assert len(gold) / len(design.tasks) == pytest.approx(0.2, abs=0.01)
    assert {t["question"] for t in gold} == {"prompt_alignment", "visual_quality"}
    for t in gold:
        if t["question"] == "prompt_alignment":  # the same model's video of another prompt
            assert t["model_b"] == t["model_a"] + OFF_PROMPT_SUFFIX
            other = t["sample_b_uri"].rsplit("/", 1)[-1].removesuffix(".mp4")
            assert other != t["prompt_id"] and other in EVAL_SET.prompt_ids
            assert t["sample_b_uri"].startswith(f"s3://bucket/samples/{t['model_a']}/")
        else:  # a visibly degraded copy
            assert t["model_b"] == t["model_a"] + GOLD_SUFFIX
            assert t["sample_b_uri"] == degraded_uri(t["sample_a_uri"], "s3://b/gold")
            assert t["sample_b_uri"].startswith("s3://b/gold/")
    degraded = {t["sample_b_uri"] for t in gold if t["question"] != "prompt_alignment"}
    assert {c["degraded_uri"] for c in design.gold_copies} == degraded
    for queue in design.assignment.values():
        share = sum(t in {g["task_id"] for g in gold} for t in queue) / len(queue)
        assert 0.1 < share < 0.3


def test_every_rater_gets_the_attention_check_quota():
    i2v = default_eval_set("image-to-video")  # 4 images x 2 models: 8 distinct checks at most
    cfg = config(task="image-to-video", raters_per_pair=2, num_raters=6, gold_rate=0.1, gold_per_rater=5)
    design = design_study(i2v, samples_for(["a", "b"], i2v), cfg)
    gold = {t["task_id"] for t in design.tasks if t["is_gold"]}
    for queue in design.assignment.values():
        assert len(queue) == len(set(queue)) and len(gold & set(queue)) >= 5
    assert len({t["task_id"] for t in design.tasks}) == len(design.tasks)
    assert {c["degraded_uri"] for c in design.gold_copies} == {
        t["sample_b_uri"] for t in design.tasks if t["is_gold"]
    }
    capped = design_study(i2v, samples_for(["a", "b"], i2v), cfg.model_copy(update={"gold_per_rater": 50}))
    gold = {t["task_id"] for t in capped.tasks if t["is_gold"]}
    assert len(gold) == 8 and all(gold <= set(q) for q in capped.assignment.values())


def test_same_seed_same_design_other_seed_other_design():
    first = design_study(EVAL_SET, samples_for(MODELS), config(seed=7))
    again = design_study(EVAL_SET, samples_for(MODELS), config(seed=7))
    other = design_study(EVAL_SET, samples_for(MODELS), config(seed=8))
    assert first.to_dict() == again.to_dict()
    assert [t["left"] for t in first.tasks] != [t["left"] for t in other.tasks]


def test_design_file_round_trip(tmp_path):
    design = design_study(EVAL_SET, samples_for(MODELS[:2]), config())
    design.write(str(tmp_path / "design.json"))
    assert load_study_design(str(tmp_path / "design.json")).to_dict() == design.to_dict()


def test_design_tasks_pass_the_rating_app_checks():
    rating = pytest.importorskip("flows.apps.rating.validation")
    design = design_study(EVAL_SET, samples_for(MODELS[:3]), config())
    clean = rating.validate_tasks(design.study_id, design.tasks)
    plan = rating.resolve_assignment(clean, design.assignment, None)
    assert plan == design.assignment


def test_bad_inputs_are_named():
    with pytest.raises(InputError, match="lacks samples for 16"):
        design_study(EVAL_SET, {"a": samples_for(["a"])["a"], "b": {}}, config())
    with pytest.raises(InputError, match="at least two models"):
        design_study(EVAL_SET, samples_for(["a"]), config())
    with pytest.raises(InputError, match="has no samples"):
        design_study(EVAL_SET, samples_for(["a", "b"]), StudyConfig(axes={"x": ["a", "zzz"]}))
    with pytest.raises(ConfigError, match="num_raters=2 < raters_per_pair=3"):
        config(num_raters=2)
    with pytest.raises(ConfigError, match="unknown question"):
        config(questions="[motion]")


# --- gold copies -------------------------------------------------------------------------------------
def moving_frames(t=6, h=48, w=64) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    frames = [(((x + 3 * k) // 8 + y // 8) % 2 * 200 + 30).astype(np.uint8) for k in range(t)]
    return np.repeat(np.stack(frames)[..., None], 3, axis=-1)


def test_degraded_copies_are_visibly_worse_and_deterministic():
    frames = moving_frames()
    bad = degrade_video_frames(frames, seed=1)
    assert bad.shape == frames.shape and bad.dtype == np.uint8
    assert sharpness_score(bad) < 0.5 * sharpness_score(frames)
    assert np.array_equal(bad, degrade_video_frames(frames, seed=1))
    assert not np.array_equal(bad, degrade_video_frames(frames, seed=2))
    static = np.repeat(frames[:1], 6, axis=0)
    assert temporal_consistency_score(degrade_video_frames(static, 0)) < temporal_consistency_score(static)
    with pytest.raises(InputError, match="uint8"):
        degrade_video_frames(frames.astype(np.float32), 0)


def write_video(path, frames) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())


def test_samples_folder_and_rendered_gold_copies(tmp_path):
    i2v = default_eval_set("image-to-video")
    for model in ("a", "b"):
        for pid in i2v.prompt_ids:
            write_video(tmp_path / model / f"{pid}.mp4", moving_frames())
    samples = samples_from_folder(str(tmp_path))
    assert sorted(samples) == ["a", "b"] and sorted(samples["a"]) == sorted(i2v.prompt_ids)
    design = design_study(i2v, samples, config(task="image-to-video", gold_rate=0.4))
    assert design.gold_copies
    written = render_gold_copies(design)
    assert sorted(written) == sorted(c["degraded_uri"] for c in design.gold_copies)
    assert render_gold_copies(design) == []  # already there: nothing redone
    with av.open(written[0]) as container:
        decoded = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    assert decoded.shape == (6, 48, 64, 3)
    assert sharpness_score(decoded) < 0.5 * sharpness_score(moving_frames())
    assert samples_from_folder(str(tmp_path)) == samples  # degraded copies are not samples
    with pytest.raises(InputError, match="no samples under"):
        samples_from_folder(str(tmp_path / "nothing"))
