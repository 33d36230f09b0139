import math

import pytest
import torch

from losses.depth import log_l1_loss, silog_loss
from losses.weighting import DynamicWeightAverage, FixedWeighting, UncertaintyWeighting


def test_silog_by_hand_and_scale_invariance():
    target = torch.tensor([[[[1.0, 2.0]]]])
    prediction = torch.tensor([[[[2.0, 2.0]]]])
    valid = torch.ones_like(target, dtype=torch.bool)
    d = torch.tensor([math.log(2), 0.0])
    expected = math.sqrt((d**2).mean() - 0.85 * d.mean() ** 2)
    assert silog_loss(prediction, target, valid).item() == pytest.approx(expected)
    # λ = 1 is fully scale invariant
    assert silog_loss(target * 3, target, valid, lam=1.0).item() == pytest.approx(0, abs=1e-3)


def test_depth_losses_ignore_invalid_pixels():
    target = torch.tensor([[[[1.0, 5.0]]]])
    valid = torch.tensor([[[[True, False]]]])
    prediction = torch.tensor([[[[1.0, 100.0]]]])
    assert log_l1_loss(prediction, target, valid).item() == pytest.approx(0)
    assert silog_loss(prediction, target, valid).item() < 1e-3
    nothing = torch.zeros_like(valid)
    assert log_l1_loss(prediction, target, nothing).item() == 0


def test_fixed_and_uncertainty_weighting():
    losses = {"a": torch.tensor(2.0), "b": torch.tensor(3.0)}
    total, _ = FixedWeighting({"a": 0.5, "b": 2.0})(losses)
    assert total.item() == pytest.approx(7.0)
    weighting = UncertaintyWeighting(["a", "b"])
    with torch.no_grad():
        weighting.log_vars.copy_(torch.tensor([0.0, math.log(2.0)]))
    total, weights = weighting(losses)
    assert total.item() == pytest.approx(2.0 + 1.5 + math.log(2.0))
    assert weights == pytest.approx({"a": 1.0, "b": 0.5})
    total.backward()  # d/ds (e^-s L + s) = 1 − e^-s L
    assert weighting.log_vars.grad.tolist() == pytest.approx([1 - 2.0, 1 - 1.5])


def test_dwa_weights_follow_the_loss_ratios():
    dwa = DynamicWeightAverage(["a", "b"], temperature=2.0, window=2)
    for a, b in [(4, 4), (4, 4), (2, 4), (2, 4)]:  # window 1: a=4, b=4; window 2: a=2, b=4
        _, weights = dwa({"a": torch.tensor(float(a)), "b": torch.tensor(float(b))})
        assert weights == {"a": 1.0, "b": 1.0}  # first two windows
    _, weights = dwa({"a": torch.tensor(1.0), "b": torch.tensor(1.0)})
    ea, eb = math.exp(0.5 / 2), math.exp(1.0 / 2)
    assert weights["a"] == pytest.approx(2 * ea / (ea + eb))
    assert weights["b"] == pytest.approx(2 * eb / (ea + eb))
    restored = DynamicWeightAverage(["a", "b"], window=2)
    restored.load_state_dict(dwa.state_dict())
    assert restored.current_weights().tolist() == pytest.approx(dwa.current_weights().tolist())
