"""EMA of the weights: the warm-up decay, the averaging rule, buffers, state round trip."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustresnet.errors import ConfigError
from robustresnet.train.ema import ModelEMA, ema_decay


def small_model() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def test_decay_warms_up_then_saturates_at_tau():
    """The authors' formula: update k (from 1), d = k - warmup, min(tau, (1 + d) / (10 + d))."""
    assert ema_decay(1, 0.995) == pytest.approx(2 / 11)
    assert ema_decay(100, 0.995) == pytest.approx(101 / 110)
    assert ema_decay(10_000, 0.995) == 0.995
    assert ema_decay(5, 0.3) == 0.3


def test_decay_is_a_plain_copy_before_the_warm_up_ends():
    assert [ema_decay(k, 0.995, warmup=3) for k in (1, 2)] == [0.0, 0.0]
    assert ema_decay(3, 0.995, warmup=3) == pytest.approx(0.1)
    assert ema_decay(4, 0.995, warmup=3) == pytest.approx(2 / 11)


def test_ema_of_a_constant_model_is_that_model():
    model = small_model()
    ema = ModelEMA(model, 0.9)
    for _ in range(5):
        ema.update(model)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(ema.module.state_dict()[key], value)


def test_update_averages_parameters_and_copies_buffers():
    model = small_model()
    ema = ModelEMA(model, 0.995)
    old = [p.clone() for p in ema.module.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model.train()(torch.randn(8, 4))  # moves the BatchNorm statistics
    ema.update(model)  # update 1: decay 2/11
    for avg, before, live in zip(ema.module.parameters(), old, model.parameters(), strict=True):
        torch.testing.assert_close(avg, 2 / 11 * before + 9 / 11 * live)
    for avg, live in zip(ema.module.buffers(), model.buffers(), strict=True):
        assert torch.equal(avg, live)
    assert ema.step == 1
    assert not ema.module.training
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_average_buffers_option_averages_floating_buffers_only():
    model = small_model()
    ema = ModelEMA(model, 0.995, average_buffers=True)
    model.train()(torch.randn(8, 4))
    ema.update(model)
    bn_avg, bn_live = ema.module[1], model[1]
    torch.testing.assert_close(bn_avg.running_mean, 9 / 11 * bn_live.running_mean)
    assert torch.equal(bn_avg.num_batches_tracked, bn_live.num_batches_tracked)


def test_state_dict_round_trip_keeps_the_step_count():
    model = small_model()
    ema = ModelEMA(model, 0.99)
    for _ in range(3):
        ema.update(model)
    fresh = ModelEMA(small_model(), 0.5)
    fresh.load_state_dict(ema.state_dict())
    assert (fresh.step, fresh.tau) == (3, 0.99)
    for key, value in ema.module.state_dict().items():
        assert torch.equal(fresh.module.state_dict()[key], value)


def test_bad_tau_is_a_config_error():
    with pytest.raises(ConfigError, match="ema.tau"):
        ModelEMA(small_model(), 1.5)
