"""MIRNet (Zamir et al., ECCV 2020), one class per concept of the paper's section 3.

Tensors are (batch, channels, height, width) images in [0, 1]. Stream j of a multi-scale residual
block runs at 1/2**j of the input resolution with channels * 2**j channels.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import cpu_backward
from .config import MIRNetConfig


def conv(in_channels: int, out_channels: int, kernel_size: int) -> nn.Conv2d:
    """A 'same'-padded convolution without bias, as every convolution of the released MIRNet."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)


def _training_on_cpu_in_bf16(module: nn.Module, x: Tensor) -> bool:
    """Whether to take mirnet.cpu_backward's faster gradients (in fp32 they gain nothing: torch's own
    kernels are fast there; under torch.compile, the compiler fuses the plain operations)."""
    on_cpu_in_bf16 = x.device.type == "cpu" and x.dtype == torch.bfloat16
    return module.training and torch.is_grad_enabled() and on_cpu_in_bf16 and not torch.compiler.is_compiling()


class PReLU(nn.PReLU):
    """torch's PReLU with one slope, as all of MIRNet's; training on a CPU in bf16, its backward is faster."""

    def __init__(self):
        super().__init__(num_parameters=1)

    def forward(self, x: Tensor) -> Tensor:
        return cpu_backward.prelu(x, self.weight) if _training_on_cpu_in_bf16(self, x) else super().forward(x)


class GlobalPool(nn.Module):
    """Global average pooling to one value per channel: MIRNet's only view of the whole image.

    Its own module so that tiled inference can hand every tile the whole image's pooled values
    (mirnet.enhance records them on a context pass and replays them).
    """

    def forward(self, x: Tensor) -> Tensor:
        if _training_on_cpu_in_bf16(self, x):
            x = cpu_backward.gradient_in_layout(x)  # else the sum's broadcast gradient is slow to add
        # sum / count rather than mean: on a CPU, mean of a bf16 tensor first copies it whole to fp32;
        # sum accumulates in fp32 without the copy (several times faster) and rounds once more.
        return x.sum(dim=(2, 3), keepdim=True) / (x.shape[2] * x.shape[3])


class SpatialAttention(nn.Module):
    """Spatial gate: a 5x5 conv over the channel-wise max and mean, squashed by a sigmoid."""

    def __init__(self, kernel_size: int = 5):
        super().__init__()
        self.conv = conv(2, 1, kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        # On a CPU, reductions over the channels of a channels_last bf16 tensor are slow; on a
        # contiguous copy (free when x is contiguous already) they take a fraction of the time. In
        # training, the copy's contiguous gradient would be slow to add to x's channels_last ones.
        c = (cpu_backward.gradient_in_layout(x) if _training_on_cpu_in_bf16(self, x) else x).contiguous()
        pooled = torch.cat([c.amax(dim=1, keepdim=True), c.mean(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(pooled))


class ChannelAttention(nn.Module):
    """Channel gate (squeeze and excitation): global average pool, 1x1 down, ReLU, 1x1 up, sigmoid."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        hidden = max(channels // reduction, 1)  # max(): tiny test widths below `reduction` channels
        self.squeeze = conv(channels, hidden, 1)
        self.excite = conv(hidden, channels, 1)
        self.pool = GlobalPool()

    def forward(self, x: Tensor) -> Tensor:
        descriptor = self.pool(x)
        return x * torch.sigmoid(self.excite(F.relu(self.squeeze(descriptor))))


class DAU(nn.Module):
    """Dual attention unit: conv-PReLU-conv, spatial and channel attention side by side, 1x1 fusion, residual."""

    def __init__(self, channels: int, reduction: int, prelu: PReLU | None = None):
        super().__init__()
        self.conv1 = conv(channels, channels, 3)
        # The official model passes one PReLU to every DAU (a default argument evaluated once);
        # MIRNet hands that shared module in here when the configuration asks for sharing.
        self.act = prelu if prelu is not None else PReLU()
        self.conv2 = conv(channels, channels, 3)
        self.spatial = SpatialAttention()
        self.channel = ChannelAttention(channels, reduction)
        self.fuse = conv(2 * channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        features = self.conv2(self.act(self.conv1(x)))
        attended = torch.cat([self.spatial(features), self.channel(features)], dim=1)
        return x + self.fuse(attended)


class SKFF(nn.Module):
    """Selective kernel feature fusion: attention from the summed streams, softmax across streams, weighted sum."""

    def __init__(self, channels: int, num_inputs: int, reduction: int):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.squeeze = nn.Sequential(conv(channels, hidden, 1), PReLU())
        self.select = nn.ModuleList(conv(hidden, channels, 1) for _ in range(num_inputs))
        self.pool = GlobalPool()

    def forward(self, inputs: list[Tensor]) -> Tensor:
        # Sums of the list rather than sum(dim=1) of a stacked 5-D tensor: the stack loses the
        # channels_last layout and made SKFF a third of the compact model's CPU time.
        descriptor = self.squeeze(self.pool(_total(inputs)))
        logits = torch.stack([select(descriptor) for select in self.select], dim=1)  # (B, streams, C, 1, 1)
        weights = torch.softmax(logits, dim=1).unbind(dim=1)
        return _total([x * w for x, w in zip(inputs, weights)])


def _total(tensors: list[Tensor]) -> Tensor:
    total = tensors[0]
    for tensor in tensors[1:]:
        total = total + tensor
    return total


class BlurPool(nn.Module):
    """Antialiased stride-2 subsampling (Zhang, ICML 2019): reflect pad, [1 2 1]x[1 2 1]/16 blur, every other pixel."""

    def __init__(self, channels: int):
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0])
        kernel = torch.outer(taps, taps) / 16.0
        # A constant, so not saved with the weights (the official checkpoints store it as `filt`).
        self.register_buffer("kernel", kernel.expand(channels, 1, 3, 3).clone(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if _training_on_cpu_in_bf16(self, x):
            # On a CPU this depthwise convolution's forward and backward run 1.6-3.7x faster in fp32
            # than in bf16 (scripts/bench_cpu_backward.py), so training computes it in fp32 and rounds.
            with torch.autocast("cpu", enabled=False):
                padded = F.pad(x.float(), (1, 1, 1, 1), mode="reflect")
                return F.conv2d(padded, self.kernel.float(), stride=2, groups=x.shape[1]).to(x.dtype)
        # Padding only copies values, so its output is exact in any dtype; CPU autocast would run it
        # in fp32 and cast the padded tensor back to bf16 for the convolution.
        with torch.autocast("cpu", enabled=False):
            padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
        return F.conv2d(padded, self.kernel.to(x.dtype), stride=2, groups=x.shape[1])


class ResidualDownsample(nn.Module):
    """Residual downsampling by 2: (1x1, PReLU, 3x3, PReLU, blur-pool, 1x1) + (blur-pool, 1x1); channels x2."""

    def __init__(self, channels: int):
        super().__init__()
        self.top = nn.Sequential(
            conv(channels, channels, 1), PReLU(),
            conv(channels, channels, 3), PReLU(),
            BlurPool(channels),
            conv(channels, 2 * channels, 1),
        )  # fmt: skip
        self.bottom = nn.Sequential(BlurPool(channels), conv(channels, 2 * channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.top(x) + self.bottom(x)


class ResidualUpsample(nn.Module):
    """Residual upsampling by 2: (1x1, PReLU, transposed 3x3, PReLU, 1x1) + (bilinear, 1x1); channels /2."""

    def __init__(self, channels: int):
        super().__init__()
        self.top = nn.Sequential(
            conv(channels, channels, 1), PReLU(),
            nn.ConvTranspose2d(channels, channels, 3, stride=2, padding=1, output_padding=1, bias=False),
            PReLU(),
            conv(channels, channels // 2, 1),
        )  # fmt: skip
        self.bottom = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            conv(channels, channels // 2, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.top(x) + self.bottom(x)


def resampler(channels: int, source: int, target: int) -> nn.Sequential:
    """Residual resizing from stream `source` (with `channels` channels) to stream `target`, 2x per step."""
    if target > source:
        return nn.Sequential(*(ResidualDownsample(channels * 2**i) for i in range(target - source)))
    return nn.Sequential(*(ResidualUpsample(channels // 2**i) for i in range(source - target)))


class MRB(nn.Module):
    """Multi-scale residual block: parallel streams of DAUs that exchange information through SKFF, residual."""

    def __init__(self, config: MIRNetConfig, shared_prelu: PReLU | None = None):
        super().__init__()
        n, width, share = config.num_streams, config.daus_per_stream, config.share_weights
        widths = [config.channels * 2**j for j in range(n)]

        def dau(j: int) -> DAU:
            return DAU(widths[j], config.reduction, shared_prelu)

        def exchange() -> nn.ModuleDict:  # "{k}to{j}": stream k resized to stream j
            return nn.ModuleDict(
                {f"{k}to{j}": resampler(widths[k], k, j) for j in range(n) for k in range(n) if k != j}
            )

        def fusions() -> nn.ModuleList:  # one SKFF per stream, over all streams resized to it
            return nn.ModuleList(SKFF(widths[j], n, config.reduction) for j in range(n))

        # daus[j][i] is the i-th DAU of stream j. Sharing: one DAU object at every position of a
        # stream, as the official `[DAU(...)] * width`.
        if share:
            self.daus = nn.ModuleList(nn.ModuleList([d] * width) for d in (dau(j) for j in range(n)))
        else:
            self.daus = nn.ModuleList(nn.ModuleList(dau(j) for _ in range(width)) for j in range(n))

        # exchange[c] and fusions[c] serve the c-th exchange between DAU columns. Sharing: the
        # official code has one set for all columns (the paper's width 2 has only one column anyway).
        columns = width - 1
        if share and columns:
            one_exchange, one_fusion = exchange(), fusions()
            self.exchange = nn.ModuleList([one_exchange] * columns)
            self.fusions = nn.ModuleList([one_fusion] * columns)
        else:
            self.exchange = nn.ModuleList(exchange() for _ in range(columns))
            self.fusions = nn.ModuleList(fusions() for _ in range(columns))

        # stem[j - 1] brings stream j - 1 down to stream j before the first DAU column. Sharing: the
        # official code looks it up in the same table as the exchange, so both use one module.
        if share and columns:
            self.stem = nn.ModuleList(self.exchange[0][f"{j - 1}to{j}"] for j in range(1, n))
        else:
            self.stem = nn.ModuleList(resampler(widths[j - 1], j - 1, j) for j in range(1, n))

        # to_full[k - 1] brings stream k up to full resolution for the final fusion (never shared).
        self.to_full = nn.ModuleList(resampler(widths[k], k, 0) for k in range(1, n))
        # Sharing: the official final fusion reuses the first stream's exchange SKFF.
        if share and columns:
            self.fuse_out = self.fusions[0][0]
        else:
            self.fuse_out = SKFF(widths[0], n, config.reduction)
        self.conv_out = conv(widths[0], widths[0], 3)

    def forward(self, x: Tensor) -> Tensor:
        streams = []
        h = x
        for j, column in enumerate(self.daus):
            h = column[0](h if j == 0 else self.stem[j - 1](h))
            streams.append(h)
        for i, (exchange, fusions) in enumerate(zip(self.exchange, self.fusions), start=1):
            fused = [
                fusion([s if k == j else exchange[f"{k}to{j}"](s) for k, s in enumerate(streams)])
                for j, fusion in enumerate(fusions)
            ]
            streams = [column[i](f) for column, f in zip(self.daus, fused)]
        full = [streams[0]] + [up(s) for up, s in zip(self.to_full, streams[1:])]
        return x + self.conv_out(self.fuse_out(full))


class RRG(nn.Module):
    """Recursive residual group: MRBs then a 3x3 conv, residual."""

    def __init__(self, config: MIRNetConfig, shared_prelu: PReLU | None = None):
        super().__init__()
        self.mrbs = nn.Sequential(*(MRB(config, shared_prelu) for _ in range(config.num_mrb)))
        self.conv = conv(config.channels, config.channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(self.mrbs(x))


class MIRNet(nn.Module):
    """MIRNet: 3x3 conv in, recursive residual groups, 3x3 conv out to a residual image added to the input."""

    def __init__(self, config: MIRNetConfig | None = None):
        super().__init__()
        self.config = config = config or MIRNetConfig()
        shared_prelu = PReLU() if config.share_weights else None
        self.conv_in = conv(3, config.channels, 3)
        self.rrgs = nn.Sequential(*(RRG(config, shared_prelu) for _ in range(config.num_rrg)))
        self.conv_out = conv(config.channels, 3, 3)

    @property
    def size_multiple(self) -> int:
        """Height and width must be multiples of this inside the network (forward pads to it)."""
        return 2 ** (self.config.num_streams - 1)

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        m = self.size_multiple
        pad_h, pad_w = -height % m, -width % m
        if pad_h or pad_w:
            # Reflection needs the pad to be smaller than the side; tiny inputs fall back to edge copies.
            mode = "reflect" if pad_h < height and pad_w < width else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        return self.forward_padded(x)[..., :height, :width]

    def forward_padded(self, x: Tensor) -> Tensor:
        """The network on an input whose sides are multiples of size_multiple: the input plus its residual."""
        return x + self.conv_out(self.rrgs(self.conv_in(x)))


def create_model(config: MIRNetConfig | str = "paper", **overrides) -> MIRNet:
    """A freshly initialised MIRNet from a config or a preset name, with fields overridden."""
    from .config import preset

    if isinstance(config, str):
        config = preset(config, **overrides)
    elif overrides:
        config = config.replace(**overrides)
    return MIRNet(config)


def untie_weights(model: MIRNet) -> MIRNet:
    """A copy of a weight-sharing MIRNet in which every use of a shared module has its own weights.

    The same function (each copy starts from the shared values), with more parameters to fine-tune
    at the same cost per pixel. The shared and unshared layouts name their tensors alike (a module
    used twice appears under both names in the state dict), so the copy is a plain state-dict load.
    """
    untied = MIRNet(model.config.replace(share_weights=False))
    untied.load_state_dict(model.state_dict())
    return untied.to(next(model.parameters()).device)


def count_parameters(model: nn.Module) -> int:
    """Unique trainable parameters (a shared module counts once, as in the official code)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, height: int = 256, width: int = 256) -> int:
    """Multiply-accumulates of one forward pass on a 1x3xHxW image, counted by torch's FLOP counter."""
    from torch.utils.flop_counter import FlopCounterMode

    # On a twin on the meta device: shapes only, so the paper preset counts in seconds, not minutes.
    # A MIRNet is rebuilt there from its config, so its weights are never copied.
    if isinstance(model, MIRNet):
        with torch.device("meta"):
            shadow = MIRNet(model.config)
    else:
        shadow = copy.deepcopy(model).to("meta")
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        shadow(torch.zeros(1, 3, height, width, device="meta"))
    return counter.get_total_flops() // 2
