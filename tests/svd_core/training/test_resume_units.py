"""Checkpoint bookkeeping without DeepSpeed: completeness, pruning, RNG states, resumable data order."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from svd_core.errors import InputError
from svd_core.training import checkpoint as ckpt
from svd_core.training.config import TrainerConfig


def _fake_checkpoint(root, step, complete=True):
    step_dir = root / ckpt.step_tag(step)
    (step_dir / "trainer").mkdir(parents=True)
    (step_dir / "mp_rank_00_model_states.pt").write_bytes(b"x")
    if complete:
        ckpt.publish(root, ckpt.make_info(step, 2, 3, ckpt.DataPosition(0, step)), keep_last=100)
    return step_dir


def test_resume_point_is_the_newest_complete_checkpoint(tmp_path):
    root = ckpt.checkpoint_root(tmp_path)
    assert ckpt.find_resume_point(tmp_path) is None
    _fake_checkpoint(root, 2)
    _fake_checkpoint(root, 10)
    _fake_checkpoint(root, 12, complete=False)  # crashed while saving
    assert ckpt.find_resume_point(tmp_path) == root / "step-10"
    assert (root / "latest").read_text() == "step-10"
    info = ckpt.read_info(root / "step-10")
    assert (info.step, info.world_size, info.zero_stage, info.batch) == (10, 2, 3, 10)


def test_a_restart_drops_the_metrics_rows_after_its_resume_point(tmp_path):
    from svd_core.training.metrics import read_metrics

    metrics = tmp_path / "metrics.jsonl"
    crashed = "".join(f'{{"step": {s}, "loss": {s / 10}}}\n' for s in range(1, 8)) + '{"step": 8, "lo'
    assert ckpt.discard_unresumable_metrics(tmp_path) == 0  # no file yet
    metrics.write_text(crashed)  # a killed attempt: steps 1-7 and a torn line, last checkpoint at step 4
    assert ckpt.discard_unresumable_metrics(tmp_path) == 7  # no checkpoint: the run restarts at step 0
    metrics.write_text(crashed)
    _fake_checkpoint(ckpt.checkpoint_root(tmp_path), 4)
    _fake_checkpoint(ckpt.checkpoint_root(tmp_path), 6, complete=False)
    assert ckpt.discard_unresumable_metrics(tmp_path) == 3
    assert [r["step"] for r in read_metrics(metrics)] == [1, 2, 3, 4]
    assert ckpt.discard_unresumable_metrics(tmp_path) == 0  # idempotent (the trainer repeats it)
    assert ckpt.discard_unresumable_metrics(tmp_path, resume=False) == 4  # resume=false starts over


def test_publish_prunes_old_and_stale_partial_checkpoints(tmp_path):
    root = ckpt.checkpoint_root(tmp_path)
    for step in (2, 4):
        _fake_checkpoint(root, step)
    _fake_checkpoint(root, 5, complete=False)  # stale partial, older than the next complete one
    _fake_checkpoint(root, 8, complete=False)
    _fake_checkpoint(root, 6, complete=False)
    ckpt.publish(root, ckpt.make_info(6, 2, 3, ckpt.DataPosition()), keep_last=2)
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["step-4", "step-6", "step-8"]
    assert not ckpt.is_complete(root / "step-8")  # newer partial: left for its own save to replace


def test_prepare_step_dir_replaces_only_partial_folders(tmp_path):
    root = ckpt.checkpoint_root(tmp_path)
    partial = _fake_checkpoint(root, 4, complete=False)
    ckpt.prepare_step_dir(root, 4)
    assert not partial.exists()
    done = _fake_checkpoint(root, 6)
    ckpt.prepare_step_dir(root, 6)
    assert ckpt.is_complete(done)


def test_resume_needs_the_same_stage_and_other_ranks_only_where_they_reshard(tmp_path):
    info = ckpt.make_info(4, world_size=2, zero_stage=3, position=ckpt.DataPosition())
    ckpt.check_compatible(info, tmp_path, world_size=2, zero_stage=3)
    ckpt.check_compatible(info, tmp_path, world_size=4, zero_stage=3)  # through a universal checkpoint
    with pytest.raises(InputError, match="resume with zero_stage=3"):
        ckpt.check_compatible(info, tmp_path, world_size=2, zero_stage=2)
    stage2 = ckpt.make_info(4, world_size=2, zero_stage=2, position=ckpt.DataPosition())
    ckpt.check_compatible(stage2, tmp_path, world_size=2, zero_stage=2)
    with pytest.raises(InputError, match="ranks=2 unless the stage is 0 or 3"):
        ckpt.check_compatible(stage2, tmp_path, world_size=1, zero_stage=2)
    stage0 = ckpt.make_info(4, world_size=2, zero_stage=0, position=ckpt.DataPosition())
    ckpt.check_compatible(stage0, tmp_path, world_size=1, zero_stage=0)  # every rank holds the full state


def test_the_data_position_maps_to_another_number_of_ranks() -> None:
    from svd_core.training.universal import position_for_world

    assert position_for_world(6, old_world=2, new_world=1) == 12
    assert position_for_world(6, old_world=2, new_world=4) == 3
    with pytest.raises(InputError, match="cannot split evenly"):
        position_for_world(3, old_world=2, new_world=4)


def test_rank_state_round_trips_through_the_safe_loader(tmp_path):
    gen = torch.Generator().manual_seed(7)
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.normal()  # leaves a cached gaussian in numpy's state
    ckpt.write_rank_state(tmp_path, 1, {"rng": ckpt.capture_rng_state(gen), "ema": None})
    expected = (
        random.random(),
        np.random.rand(),
        np.random.normal(),
        torch.rand(2),
        torch.rand(2, generator=gen),
    )
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    gen.manual_seed(99)
    state = ckpt.read_rank_state(tmp_path, 1)  # weights_only=True: no pickled objects in there
    ckpt.restore_rng_state(state["rng"], gen)
    again = (
        random.random(),
        np.random.rand(),
        np.random.normal(),
        torch.rand(2),
        torch.rand(2, generator=gen),
    )
    assert expected[:3] == again[:3]
    assert torch.equal(expected[3], again[3]) and torch.equal(expected[4], again[4])
    with pytest.raises(InputError, match="damaged"):
        ckpt.read_rank_state(tmp_path, 0)


class _Indexed(torch.utils.data.Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"index": torch.tensor(i)}


def _take(stream, count):
    return [stream.next_batch()["index"].tolist() for _ in range(count)]


def test_batch_stream_resumes_mid_epoch_and_reshuffles_per_epoch():
    cfg = TrainerConfig(micro_batch_size=2, num_workers=0, seed=5)
    data = _Indexed(10)  # 5 per rank -> 2 batches per epoch (drop_last)
    full = ckpt.BatchStream(data, cfg, rank=1, world=2, device=torch.device("cpu"))
    batches = _take(full, 6)
    assert full.position == ckpt.DataPosition(2, 2)
    assert batches[0:2] != batches[2:4]  # epoch 1 is reshuffled
    resumed = ckpt.BatchStream(data, cfg, rank=1, world=2, device=torch.device("cpu"))
    resumed.seek(ckpt.DataPosition(1, 1))
    assert _take(resumed, 3) == batches[3:6]
    other_rank = ckpt.BatchStream(data, cfg, rank=0, world=2, device=torch.device("cpu"))
    mine = {i for batch in _take(other_rank, 2) for i in batch}
    assert not mine & {i for batch in batches[0:2] for i in batch}  # disjoint shards


def test_batch_stream_never_draws_from_the_global_rng():
    cfg = TrainerConfig(micro_batch_size=1, num_workers=0)
    torch.manual_seed(0)
    expected = torch.rand(1)
    torch.manual_seed(0)
    stream = ckpt.BatchStream(_Indexed(4), cfg, rank=0, world=1, device=torch.device("cpu"))
    _take(stream, 5)
    assert torch.equal(torch.rand(1), expected)


def test_batch_stream_rejects_a_dataset_smaller_than_one_global_micro_batch():
    with pytest.raises(InputError, match="ranks\\*micro_batch_size = 8"):
        ckpt.BatchStream(_Indexed(7), TrainerConfig(micro_batch_size=4), 0, 2, torch.device("cpu"))
