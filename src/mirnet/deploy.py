"""The same MIRNet, rewritten in operations that int8 converters and microcontroller kernels support.

Every rewrite computes exactly the function of the module it replaces, with the same weights:

- PReLU (one slope a) as max(x, a*x) or min(x, a*x): the int8 quantizer has no PReLU.
- The channel-wise max of spatial attention as a tree of elementwise maxima: REDUCE_MAX stays float.
- SKFF's softmax across streams on a 4-D (B, C, 1, streams) tensor instead of 5-D stacks: TFLite
  Micro broadcasts 4-D tensors at most.
- The transposed 3x3 convolution (stride 2) of residual upsampling as a 2x2 convolution to four
  phases and a pixel shuffle: the TFLite converter cannot lower that transposed convolution.
- A clamp to [0, 1] at the end, which the enhancer applies anyway, so int8 output spans the image.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .model import SKFF, MIRNet, SpatialAttention


class SlopePReLU(nn.Module):
    """PReLU with a single slope a as max(x, a*x) (0 <= a <= 1), min(x, a*x) (a > 1), or relu(x) + a*min(x, 0)."""

    def __init__(self, prelu: nn.PReLU):
        super().__init__()
        if prelu.weight.numel() != 1:
            raise ValueError("only single-slope PReLU can be rewritten")
        self.register_buffer("slope", prelu.weight.detach().clone().reshape(()))

    def forward(self, x: Tensor) -> Tensor:
        a = float(self.slope)
        if 0.0 <= a <= 1.0:
            return torch.maximum(x, x * a)
        if a > 1.0:
            return torch.minimum(x, x * a)
        return F.relu(x) + torch.clamp(x, max=0.0) * a


def channel_max(x: Tensor) -> Tensor:
    """max over dim 1 (keepdim) as a tree of elementwise maxima of channel slices."""
    while x.shape[1] > 1:
        half = x.shape[1] // 2
        paired = torch.maximum(x[:, :half], x[:, half : 2 * half])
        x = paired if x.shape[1] % 2 == 0 else torch.cat([paired, x[:, 2 * half :]], dim=1)
    return x


class DeploySpatialAttention(nn.Module):
    """Spatial attention with the channel max as elementwise maxima."""

    def __init__(self, attention: SpatialAttention):
        super().__init__()
        self.conv = attention.conv

    def forward(self, x: Tensor) -> Tensor:
        pooled = torch.cat([channel_max(x), x.mean(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(pooled))


class DeploySKFF(nn.Module):
    """SKFF on 4-D tensors: stream logits side by side in the last axis, softmax there, weighted sum."""

    def __init__(self, skff: SKFF):
        super().__init__()
        self.squeeze, self.select, self.pool = skff.squeeze, skff.select, skff.pool

    def forward(self, inputs: list[Tensor]) -> Tensor:
        total = inputs[0]
        for x in inputs[1:]:
            total = total + x
        descriptor = self.squeeze(self.pool(total))
        logits = torch.cat([select(descriptor) for select in self.select], dim=3)  # (B, C, 1, streams)
        weights = torch.softmax(logits, dim=3)
        fused = inputs[0] * weights[..., 0:1]
        for i, x in enumerate(inputs[1:], start=1):
            fused = fused + x * weights[..., i : i + 1]
        return fused


class PhaseUpsample(nn.Module):
    """ConvTranspose2d(k=3, s=2, p=1, output_padding=1) as a 2x2 convolution to 4 phases + pixel shuffle.

    Output pixel (2m+a, 2n+b) sees input rows m (tap 1 if a = 0, tap 2 if a = 1) and m+1 (tap 0 if
    a = 1), and the same for columns; the 2x2 kernel at (m, n) holds exactly those taps.
    """

    def __init__(self, transposed: nn.ConvTranspose2d):
        super().__init__()
        if (transposed.kernel_size, transposed.stride, transposed.padding, transposed.output_padding) != (
            (3, 3), (2, 2), (1, 1), (1, 1),
        ) or transposed.bias is not None or transposed.groups != 1:  # fmt: skip
            raise ValueError("PhaseUpsample rewrites ConvTranspose2d(3, stride=2, padding=1, output_padding=1)")
        w = transposed.weight.detach()  # (in, out, 3, 3)
        cin, cout = w.shape[:2]
        taps = {(0, 0): 1, (1, 0): 2, (1, 1): 0}  # (phase, offset) -> kernel tap; (0, 1) has none
        kernel = torch.zeros(cout, 2, 2, cin, 2, 2, dtype=w.dtype)  # (out, a, b, in, dr, dc)
        for (a, dr), tr in taps.items():
            for (b, dc), tc in taps.items():
                kernel[:, a, b, :, dr, dc] = w[:, :, tr, tc].t()
        self.conv = nn.Conv2d(cin, 4 * cout, 2, bias=False)
        self.conv.weight.data = kernel.reshape(4 * cout, cin, 2, 2)

    def forward(self, x: Tensor) -> Tensor:
        return F.pixel_shuffle(self.conv(F.pad(x, (0, 1, 0, 1))), 2)


class Clamped(nn.Module):
    """The network with its output clamped to [0, 1]."""

    def __init__(self, net: MIRNet):
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).clamp(0.0, 1.0)


def _rewrite(module: nn.Module) -> nn.Module | None:
    if isinstance(module, nn.PReLU):
        return SlopePReLU(module)
    if isinstance(module, SpatialAttention):
        return DeploySpatialAttention(module)
    if isinstance(module, SKFF):
        return DeploySKFF(module)
    if isinstance(module, nn.ConvTranspose2d):
        return PhaseUpsample(module)
    return None


def deployable(model: MIRNet) -> nn.Module:
    """A copy of `model` in converter-friendly operations, output clamped to [0, 1]; eval mode, CPU, fp32."""
    net = copy.deepcopy(model).float().cpu().eval()
    # One replacement per module object, so modules the model shares stay shared.
    replaced: dict[int, nn.Module] = {}
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            key = id(child)
            if key not in replaced:
                new = _rewrite(child)
                if new is None:
                    continue
                replaced[key] = new
            setattr(parent, name, replaced[key])  # containers register children by name too
    return Clamped(net).eval()
