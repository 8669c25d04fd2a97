"""Backward passes written out for training on a CPU in bf16: the same gradients as autograd's,
computed with operations that are fast in bf16 + channels_last.

On a CPU, torch's elementwise kernels for bf16 are fast only when every operand has the output's
memory layout; a broadcast or a mixed layout falls back to a path 10-20x slower (fp32 has no such
gap). Two of MIRNet's operations hand autograd exactly such gradients (a [B, C, 1, 1] gradient
broadcast over the image, a contiguous gradient added to a channels_last one), and PReLU's own
backward kernel is several times slower than the few elementwise operations it amounts to.
`mirnet.model` uses these functions only while training on a CPU in bf16; inference, export, fp32
and GPUs take the plain operations. `scripts/bench_train.py --against REV` times a training step
against the model code of an earlier commit, in one process.
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
        positive = torch.ops.aten.threshold_backward(grad, x, 0)  # grad where x > 0, else 0
        negative = grad - positive
        grad_x = positive + negative * weight if ctx.needs_input_grad[0] else None
        grad_weight = (negative * x).sum().reshape(weight.shape) if ctx.needs_input_grad[1] else None
        return grad_x, grad_weight


def prelu(x: Tensor, weight: Tensor) -> Tensor:
    """PReLU with one slope: max(x, 0) + weight * min(x, 0), with its backward in plain elementwise ops."""
    if torch.is_autocast_enabled("cpu"):  # as autocast runs torch.prelu: both in the autocast dtype
        dtype = torch.get_autocast_dtype("cpu")
        x, weight = x.to(dtype), weight.to(dtype)
    with torch.autocast("cpu", enabled=False):
        return _PReLU.apply(x, weight.reshape(1))


class _GlobalMean(Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.shape, ctx.layout = x.shape, _layout(x)
        # sum / count: on a CPU, mean of a bf16 tensor first copies it whole to fp32.
        return x.sum(dim=(2, 3), keepdim=True) / (x.shape[2] * x.shape[3])

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        # Autograd would pass on the broadcast view; adding that to the other gradients of x is the
        # slow path. A copy into x's layout is fast, and so is the addition that follows.
        spread = (grad / (ctx.shape[2] * ctx.shape[3])).expand(ctx.shape)
        return spread.contiguous(memory_format=ctx.layout)


def global_mean(x: Tensor) -> Tensor:
    """The mean over height and width, (B, C, H, W) -> (B, C, 1, 1); its gradient comes in x's layout."""
    return _GlobalMean.apply(x)


class _Contiguous(Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.layout = _layout(x)
        return x.contiguous()

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad.contiguous(memory_format=ctx.layout)


def contiguous(x: Tensor) -> Tensor:
    """x.contiguous() whose gradient comes back in x's own layout (autograd's comes back contiguous)."""
    return _Contiguous.apply(x) if not x.is_contiguous() else x
