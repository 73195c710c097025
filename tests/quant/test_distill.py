"""Knowledge distillation in the training loop (QAT uses the FP32 checkpoint as its teacher)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hashiflex.train.loop import TrainSettings, distill_loss, train


def test_distill_loss_is_t2_kl_and_zero_only_for_equal_logits():
    torch.manual_seed(0)
    s, t = torch.randn(5, 10, requires_grad=True), torch.randn(5, 10)
    assert float(distill_loss(t, t, 3.0)) == 0.0
    p_t = torch.softmax(t / 3.0, 1)
    manual = (p_t * (torch.log(p_t) - torch.log_softmax(s / 3.0, 1))).sum(1).mean() * 9.0
    got = distill_loss(s, t, 3.0)
    assert torch.allclose(got, manual, rtol=1e-6) and float(got.detach()) > 0
    got.backward()
    assert s.grad.abs().sum() > 0


def _data(n=96):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 1, 28, 28)).astype(np.uint8), rng.integers(0, 10, n).astype(np.int64)


def _train(y, distill, teacher=None):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    x, _ = _data()
    s = TrainSettings(epochs=1, batch_size=32, lr=0.05, label_smoothing=0.0, seed=2, distill=distill)
    train(model, x, torch.from_numpy(y).numpy(), s, teacher=teacher)
    return model[1].weight.detach().clone()


def test_distill_weight_one_ignores_labels_and_zero_ignores_teacher():
    torch.manual_seed(5)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    _, y = _data()
    y_other = (y + 3) % 10
    # distill = 1: only the teacher matters, so the labels cannot change the result
    assert torch.equal(_train(y, 1.0, teacher), _train(y_other, 1.0, teacher))
    # distill = 0: the teacher is not used
    assert torch.equal(_train(y, 0.0, teacher), _train(y, 0.0, None))
    # in between, both matter
    mixed = _train(y, 0.5, teacher)
    assert not torch.equal(mixed, _train(y, 0.0, None)) and not torch.equal(mixed, _train(y_other, 0.5, teacher))
