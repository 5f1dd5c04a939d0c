"""Evaluation with BatchNorm folded: the same function as the eval-mode model, and the model untouched.

Every top-1 kdpipe reports goes through :func:`kdpipe.evaluation.metrics.predict_logits`, which folds. A fold
with the wrong eps or the wrong running statistic would shift every reported accuracy without an
error, so the folded logits are checked against the eager eval-mode model after the BatchNorms have
learnt non-trivial statistics, and against a fold written out here for one layer.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kdpipe.data.loader import InMemoryLoader
from kdpipe.evaluation.metrics import predict_logits
from kdpipe.models import create_model
from kdpipe.models.folding import inference_copy


def _with_learnt_statistics(arch: str, in_channels: int = 1) -> nn.Module:
    """A model whose BatchNorms have moved off their initial mean 0, variance 1 and affine 1, 0."""
    torch.manual_seed(0)
    model = create_model(arch, 10, in_channels)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
        model.train()
        for _ in range(3):
            model(torch.randn(32, in_channels, 28, 28) * 2 + 0.5)
    return model


def _batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@pytest.mark.parametrize("arch", ["cnn16", "cnn32_fc512", "resnet8", "wrn_16_2", "mobilenetv2_w0.5"])
def test_the_folded_copy_computes_the_eval_mode_model_up_to_rounding(arch: str) -> None:
    model = _with_learnt_statistics(arch)
    x = torch.randn(64, 1, 28, 28)
    folded = inference_copy(model)
    with torch.no_grad():
        expected = model.eval()(x)
        got = folded(x)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-5), (got - expected).abs().max()
    assert _batchnorms(folded) < _batchnorms(model)


def test_a_folded_convolution_is_the_written_out_formula() -> None:
    torch.manual_seed(1)
    conv, bn = nn.Conv2d(2, 3, 3, bias=False), nn.BatchNorm2d(3)
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    bn.weight.data.uniform_(0.5, 1.5)
    bn.bias.data.uniform_(-1, 1)
    folded = inference_copy(nn.Sequential(conv, bn))
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    (layer,) = [m for m in folded.modules() if isinstance(m, nn.Conv2d)]
    assert torch.allclose(layer.weight, conv.weight * scale[:, None, None, None])
    assert torch.allclose(layer.bias, bn.bias - bn.running_mean * scale)


def test_folding_leaves_the_model_in_train_mode_with_its_statistics() -> None:
    model = _with_learnt_statistics("cnn16").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    predict_logits(
        model,
        InMemoryLoader(
            torch.randint(0, 255, (20, 1, 28, 28), dtype=torch.uint8),
            torch.zeros(20, dtype=torch.long),
            8,
            [0.3],
            [0.3],
        ),
    )
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_the_copy_keeps_a_channels_last_model_channels_last() -> None:
    model = _with_learnt_statistics("cnn16").to(memory_format=torch.channels_last)
    convs = [m for m in inference_copy(model).modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs[1:])


class _DataDependent(nn.Module):
    """Branches on a tensor's value, which torch.fx cannot trace."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x))
        return y if y.sum() > 0 else -y


def test_a_model_torch_fx_cannot_trace_is_evaluated_unfolded() -> None:
    model = _DataDependent()
    model.bn.running_mean.fill_(0.3)
    copy = inference_copy(model)
    x = torch.randn(5, 1, 8, 8)
    assert _batchnorms(copy) == 1 and not copy.training and model.training
    with torch.no_grad():
        assert torch.equal(copy(x), model.eval()(x))
