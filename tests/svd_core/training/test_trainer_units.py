"""Fast checks of the trainer's parts: config, DeepSpeed config, lr schedule, EMA, metrics, task loading."""

from __future__ import annotations

import json
import math

import pytest
import torch

from svd_core.config import validate_config
from svd_core.errors import ConfigError, InputError
from svd_core.training.config import TrainerConfig
from svd_core.training.ds_config import build_ds_config, lr_factor, make_lr_scheduler, resolve_precision
from svd_core.training.ema import ShardedEma
from svd_core.training.metrics import MetricsTail, MetricsWriter, read_metrics, truncate_after
from svd_core.training.testing import TASK_FACTORY, TinyUnetTask
from svd_core.training.trainer import load_task, train

CPU = torch.device("cpu")


def test_every_field_is_documented():
    undocumented = [name for name, f in TrainerConfig.model_fields.items() if not f.description]
    assert undocumented == []


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"offload_param": "cpu", "zero_stage": 2}, "offload_param"),
        ({"offload_optimizer": "cpu", "zero_stage": 0}, "offload_optimizer"),
        ({"ema": False, "export_weights": "ema"}, "export_weights=ema"),
        ({"max_steps": 10, "warmup_steps": 20}, "warmup_steps"),
        ({"zero_stage": 4}, "zero_stage"),
        ({"precision": "fp16"}, "precision"),
        ({"learning_rate": 1e-4}, "unknown field"),
    ],
)
def test_bad_configs_are_rejected_with_the_field_named(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        validate_config(TrainerConfig, overrides)


def test_defaults_follow_the_paper():
    cfg = TrainerConfig()
    assert (cfg.lr, cfg.ema_decay, cfg.exports_ema) == (3e-5, 0.9999, True)
    assert TrainerConfig(ema=False).exports_ema is False
    assert TrainerConfig(micro_batch_size=2, gradient_accumulation_steps=3, ranks=4).total_batch_size == 24


def test_global_batch_is_the_unit_and_accumulation_is_derived():
    cfg = TrainerConfig(global_batch_size=1536, micro_batch_size=8, ranks=192)
    assert (cfg.accumulation_steps, cfg.total_batch_size) == (1, 1536)
    eight = TrainerConfig(global_batch_size=1536, micro_batch_size=8, ranks=8)
    assert (eight.accumulation_steps, eight.total_batch_size) == (24, 1536)
    assert build_ds_config(eight, 8, CPU)["gradient_accumulation_steps"] == 24
    assert build_ds_config(eight, 8, CPU)["train_batch_size"] == 1536
    same = TrainerConfig(global_batch_size=64, micro_batch_size=4, ranks=2, gradient_accumulation_steps=8)
    assert same.accumulation_steps == 8
    assert TrainerConfig(micro_batch_size=2, ranks=3).total_batch_size == 6  # no global batch: accumulation 1
    with pytest.raises(
        ConfigError,
        match=r"global_batch_size=1000 is not a multiple of micro_batch_size=8 x "
        r"ranks=3 = 24; use global_batch_size=984 or 1008",
    ):
        validate_config(TrainerConfig, {"global_batch_size": 1000, "micro_batch_size": 8, "ranks": 3})
    with pytest.raises(
        ConfigError,
        match=r"gradient_accumulation_steps=2 but global_batch_size=64 / "
        r"\(micro_batch_size=4 x ranks=2\) = 8",
    ):
        validate_config(
            TrainerConfig,
            {"global_batch_size": 64, "micro_batch_size": 4, "ranks": 2, "gradient_accumulation_steps": 2},
        )


def test_precision_auto_is_bf16_on_gpu_and_fp32_on_cpu():
    cfg = TrainerConfig()
    assert resolve_precision(cfg, torch.device("cuda")) == "bf16"
    assert resolve_precision(cfg, CPU) == "fp32"
    assert resolve_precision(TrainerConfig(precision="bf16"), CPU) == "bf16"


def test_ds_config_stage3_has_explicit_numbers_and_batch_arithmetic():
    cfg = TrainerConfig(
        zero_stage=3, micro_batch_size=2, gradient_accumulation_steps=4, ranks=2, grad_clip=0.5
    )
    ds = build_ds_config(cfg, world_size=2, device=CPU)
    assert ds["train_batch_size"] == 2 * 4 * 2
    assert ds["gradient_clipping"] == 0.5
    zero = ds["zero_optimization"]
    assert zero["stage"] == 3
    numbers = {k: v for k, v in zero.items() if "bucket" in k or "threshold" in k or "stage3_max" in k}
    assert numbers and all(isinstance(v, int) for v in numbers.values())  # never accelerate's "auto"
    assert ds["optimizer"]["params"]["torch_adam"] is True
    assert ds["bf16"]["enabled"] is False
    json.dumps(ds)  # DeepSpeed takes it as JSON


def test_stage0_fp32_clips_in_the_trainer_not_twice():
    plain = build_ds_config(TrainerConfig(zero_stage=0, grad_clip=1.0), 2, CPU)
    assert plain["gradient_clipping"] == 0.0  # the trainer clips and keeps the norm for metrics
    mixed = build_ds_config(TrainerConfig(zero_stage=0, grad_clip=1.0, precision="bf16"), 2, CPU)
    assert mixed["gradient_clipping"] == 1.0  # DeepSpeed's bf16 optimizer clips its fp32 master grads


def test_ds_config_offload_and_bf16_sections():
    cfg = TrainerConfig(zero_stage=3, offload_optimizer="cpu", offload_param="cpu", precision="bf16")
    ds = build_ds_config(cfg, world_size=8, device=CPU)
    assert ds["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert ds["zero_optimization"]["offload_param"]["device"] == "cpu"
    assert ds["optimizer"]["params"]["torch_adam"] is False  # ZeRO-Offload needs DeepSpeed's CPU Adam
    assert ds["bf16"]["enabled"] is True
    assert build_ds_config(TrainerConfig(zero_stage=0), 1, CPU)["zero_optimization"] == {"stage": 0}


def test_lr_warmup_then_schedules():
    cfg = TrainerConfig(max_steps=110, warmup_steps=10, lr_schedule="cosine", min_lr_ratio=0.1)
    assert lr_factor(0, cfg) == pytest.approx(0.1)  # the first step already learns
    assert lr_factor(9, cfg) == pytest.approx(1.0)
    assert lr_factor(109, cfg) == pytest.approx(0.1)
    assert 0.1 < lr_factor(60, cfg) < 1.0
    linear = cfg.model_copy(update={"lr_schedule": "linear"})
    assert lr_factor(59, linear) == pytest.approx(0.1 + 0.9 * 0.5)
    constant = cfg.model_copy(update={"lr_schedule": "constant"})
    assert lr_factor(100, constant) == 1.0


def test_lr_scheduler_drives_a_torch_optimizer():
    cfg = TrainerConfig(max_steps=4, warmup_steps=2, lr=1e-3)
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = make_lr_scheduler(cfg)(opt)
    seen = []
    for _ in range(4):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([5e-4, 1e-3, 1e-3, 1e-3])


def test_sharded_ema_math_swap_and_state():
    masters = [torch.zeros(4), torch.ones(2, 3)]
    ema = ShardedEma(masters, decay=0.75)
    masters[0].add_(4.0)
    masters[1].mul_(3.0)
    ema.update()
    assert torch.allclose(ema.shadow[0], torch.full((4,), 1.0))  # 0.75*0 + 0.25*4
    assert torch.allclose(ema.shadow[1], torch.full((2, 3), 1.5))  # 0.75*1 + 0.25*3
    with ema.swapped_in():
        assert torch.allclose(masters[0], torch.full((4,), 1.0))
    assert torch.allclose(masters[0], torch.full((4,), 4.0))  # restored
    state = ema.state_dict()
    other = ShardedEma([torch.zeros(4), torch.zeros(2, 3)], decay=0.75)
    other.load_state_dict(state)
    assert other.num_updates == 1 and torch.equal(other.shadow[1], ema.shadow[1])
    with pytest.raises(InputError, match="same model, ranks and zero_stage"):
        ShardedEma([torch.zeros(5)], 0.75).load_state_dict(state)


def test_ema_warmup_follows_litema_and_survives_a_resume():
    assert TrainerConfig().ema_warmup is True
    master = [torch.zeros(3)]
    ema = ShardedEma(master, decay=0.9999, warmup=True)
    decays = []
    for step in range(1, 2001):
        decays.append(ema.current_decay())
        master[0].fill_(float(step))
        ema.update()
    assert decays[:3] == pytest.approx([2 / 11, 3 / 12, 4 / 13])  # min(0.9999, (1 + t) / (10 + t))
    assert decays[-1] == pytest.approx(2001 / 2010) and max(decays) < 0.9999
    # warmed up, the average tracks the recent weights; without warm-up it is still near the start (0)
    plain = ShardedEma([torch.zeros(3)], decay=0.9999)
    for step in range(1, 2001):
        plain.masters[0].fill_(float(step))
        plain.update()
    assert ema.shadow[0][0] > 1500 and plain.shadow[0][0] < 250
    resumed = ShardedEma([torch.zeros(3)], decay=0.9999, warmup=True)
    resumed.load_state_dict(ema.state_dict())
    assert resumed.current_decay() == ema.current_decay()  # the warm-up continues where it stopped


def test_metrics_rows_truncate_and_torn_lines(tmp_path):
    writer = MetricsWriter(tmp_path, enabled=True)
    for step in range(1, 5):
        writer.add(loss=float(step), step_time_s=0.5, samples=8)
        row = writer.flush_row(step, epoch=0, lr=1e-4, grad_norm=float("nan") if step == 2 else 1.0)
        assert row["samples_per_s"] == pytest.approx(16.0)
    with writer.path.open("a") as fh:
        fh.write('{"step": 5, "loss"')  # a crash mid-write
    rows = read_metrics(writer.path)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert rows[1]["grad_norm"] is None  # JSON has no NaN
    assert truncate_after(writer.path, 2) == 2
    assert [r["step"] for r in read_metrics(writer.path)] == [1, 2]
    silent = MetricsWriter(tmp_path / "other", enabled=False)
    silent.add(1.0, 1.0, 1)
    silent.flush_row(1, 0, 1e-4, None)
    assert not silent.path.exists()


def test_metrics_tail_delivers_each_step_once_across_a_resume_rewrite(tmp_path):
    writer = MetricsWriter(tmp_path, enabled=True)
    tail = MetricsTail(writer.path)
    assert tail.new_rows() == []  # no file yet

    def log(step, loss):
        writer.add(loss, 1.0, 1)
        writer.flush_row(step, 0, 1e-4, None)

    log(1, 1.0)
    log(2, 2.0)
    assert [r["step"] for r in tail.new_rows()] == [1, 2]
    with writer.path.open("a") as fh:
        fh.write('{"step": 3, "lo')  # torn: not delivered yet
    assert tail.new_rows() == []
    truncate_after(writer.path, 1)  # resumed from step 1: file rewritten
    log(2, 2.0)
    log(3, 3.0)
    assert [(r["step"], r["loss"]) for r in tail.new_rows()] == [(3, 3.0)]


def test_window_loss_is_the_mean_since_the_last_row(tmp_path):
    writer = MetricsWriter(tmp_path, enabled=True)
    writer.add(1.0, 1.0, 4)
    writer.add(3.0, 3.0, 4)
    row = writer.flush_row(2, 0, 1e-4, None)
    assert row["loss"] == 2.0 and row["step_time_s"] == 2.0 and row["samples_per_s"] == 2.0


def test_load_task_reports_bad_factories():
    assert isinstance(load_task(TASK_FACTORY, {}), TinyUnetTask)
    with pytest.raises(ConfigError, match=r"package\.module:function"):
        load_task("no_colon", {})
    with pytest.raises(ConfigError, match="cannot be imported"):
        load_task("svd_core.training.nope:x", {})
    with pytest.raises(ConfigError, match="lacking"):
        load_task("json:dumps", {})  # returns a str, not a task
    with pytest.raises(ConfigError, match="unknown config keys"):
        load_task(TASK_FACTORY, {"bogus": 1})
    with pytest.raises(ConfigError, match="rejected its config: KeyError"):
        load_task(f"{__name__}:_strict_factory", {})


def _strict_factory(config: dict):
    return config["required"]  # a factory that validates with plain exceptions


def test_train_refuses_several_ranks_without_a_launcher(tmp_path, monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(ConfigError, match="launch"):
        train(TASK_FACTORY, {}, TrainerConfig(ranks=2, device="cpu"), tmp_path)


def test_tiny_task_loss_is_a_finite_scalar_and_depends_on_the_generator():
    task = load_task(TASK_FACTORY, {})
    torch.manual_seed(0)
    model = task.build_model()
    batch = torch.utils.data.default_collate([task.build_dataset()[i] for i in range(2)])
    losses = []
    for seed in (1, 1, 2):
        gen = torch.Generator().manual_seed(seed)
        losses.append(float(task.compute_loss(model, batch, gen).detach()))
    assert all(math.isfinite(v) for v in losses)
    assert losses[0] == losses[1] != losses[2]
