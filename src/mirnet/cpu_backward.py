"""Backward passes written out for training on a CPU in bf16: autograd's gradients, computed with
operations that are fast in bf16 + channels_last.

On a CPU, torch's elementwise kernels for bf16 are fast only when every operand has the output's
memory layout; adding a broadcast gradient, or one of another layout, falls back to a slower path
(up to 8x at 16 channels; fp32 has no such gap). Two places in MIRNet hand autograd such gradients:
the global average pool (a [B, C, 1, 1] gradient broadcast over the image) and the spatial
attention's contiguous copy (a contiguous gradient for a channels_last input). And PReLU's own
kernels take 2.5-3x as long as the few elementwise operations they amount to.
`scripts/bench_cpu_backward.py` times each of these; `scripts/bench_train.py --against REV` times a
whole training step against the model code of an earlier commit. `mirnet.model` uses these
functions only while training on a CPU in bf16 (eagerly, with gradients on); inference, export,
fp32, torch.compile and GPUs take the plain operations.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd import Function


def _layout(x: Tensor) -> torch.memory_format:
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


class _PReLU(Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor) -> Tensor:
        ctx.save_for_backward(x, weight)
        return torch.prelu(x, weight)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        # torch's rule: grad where x > 0, weight * grad elsewhere (x == 0 included). The split
        # below is that for finite gradients (an infinite one gives NaN, where torch gives inf).
        positive = torch.ops.aten.threshold_backward(grad, x, 0)  # grad where x > 0, else 0
        negative = grad - positive
        grad_x = positive + negative * weight if ctx.needs_input_grad[0] else None
        grad_weight = (negative * x).sum().reshape(weight.shape) if ctx.needs_input_grad[1] else None
        return grad_x, grad_weight


def prelu(x: Tensor, weight: Tensor) -> Tensor:
    """PReLU with one slope, max(x, 0) + weight * min(x, 0), with its backward in plain elementwise ops."""
    if torch.is_autocast_enabled("cpu"):  # as CPU autocast runs torch.prelu: both in its dtype
        dtype = torch.get_autocast_dtype("cpu")
        x, weight = x.to(dtype), weight.to(dtype)
    return _PReLU.apply(x, weight)


class _GradientInLayout(Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.layout = _layout(x)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad.contiguous(memory_format=ctx.layout)


def gradient_in_layout(x: Tensor) -> Tensor:
    """x itself, whose gradient is copied into x's memory layout on the way back (a copy is fast; adding
    a broadcast or differently laid out gradient to x's other gradients is not)."""
    return _GradientInLayout.apply(x)
