"""The multi-step learning rate as a pure function of tokens seen."""

from __future__ import annotations

import pytest

from dsllm.trainer.schedule import ScheduleConfig, multistep_lr


def lr(tokens, **kw):
    cfg = ScheduleConfig(**kw)
    return multistep_lr(tokens, peak_lr=1e-3, tokens_per_step=100, total_tokens=1_000_000, cfg=cfg)


def test_warmup_is_linear_over_steps():
    assert lr(100, warmup_steps=10) == pytest.approx(1e-4)  # first step
    assert lr(500, warmup_steps=10) == pytest.approx(5e-4)
    assert lr(1000, warmup_steps=10) == pytest.approx(1e-3)
    assert lr(5000, warmup_steps=10) == pytest.approx(1e-3)
    assert lr(0, warmup_steps=0) == pytest.approx(1e-3)


def test_steps_at_80_and_90_percent_of_tokens():
    assert lr(800_000) == pytest.approx(1e-3)
    assert lr(800_001) == pytest.approx(3.16e-4)
    assert lr(900_000) == pytest.approx(3.16e-4)
    assert lr(900_001) == pytest.approx(1e-4)
    assert lr(2_000_000) == pytest.approx(1e-4)  # extended runs stay at the last stage


def test_configurable_and_monotone_after_warmup():
    vals = [lr(t, milestones=(0.5,), factors=(0.25,)) for t in range(200_000, 1_000_001, 50_000)]
    assert vals == sorted(vals, reverse=True) and vals[-1] == pytest.approx(2.5e-4)


def test_batch_size_change_keeps_token_position():
    # the same tokens seen give the same lr after warmup whatever the batch (pure function of tokens)
    a = multistep_lr(850_000, 1e-3, 100, 1_000_000, ScheduleConfig(warmup_steps=10))
    b = multistep_lr(850_000, 1e-3, 400, 1_000_000, ScheduleConfig(warmup_steps=10))
    assert a == b == pytest.approx(3.16e-4)


def test_rewarmup_after_weights_only_resume():
    cfg = ScheduleConfig(warmup_steps=10, rewarmup_steps=4)
    f = lambda t: multistep_lr(t, 1e-3, 100, 1_000_000, cfg, resume_tokens=850_000)  # noqa: E731
    assert f(850_100) == pytest.approx(3.16e-4 / 4)
    assert f(850_400) == pytest.approx(3.16e-4)
    assert f(860_000) == pytest.approx(3.16e-4)


def test_bad_schedule_rejected():
    with pytest.raises(ValueError):
        ScheduleConfig(milestones=(0.9, 0.8))
    with pytest.raises(ValueError):
        ScheduleConfig(milestones=(0.8,), factors=(0.3, 0.1))
