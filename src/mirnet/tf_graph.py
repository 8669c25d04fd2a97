"""The deployable MIRNet (mirnet.deploy) written again in TensorFlow ops, NHWC, for the TFLite converter.

TensorFlow's converter is the one that TensorFlow Lite Micro is built and tested against, and its
int8 path (a representative dataset, int8 input and output) quantizes every op used here. The
torch modules are walked as they are; each class below has its torch twin, and the tests check that
both give the same numbers. Weights become constants once per torch tensor, so weights the model
shares stay shared in the .tflite file.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .deploy import Clamped, DeploySKFF, DeploySpatialAttention, PhaseUpsample, SlopePReLU
from .model import DAU, MRB, RRG, BlurPool, ChannelAttention, GlobalPool, MIRNet, ResidualDownsample, ResidualUpsample


class TFMirror:
    """Call with an NHWC tf.Tensor to run the torch module tree `net` (from deploy.deployable) in TF ops."""

    def __init__(self, net: nn.Module):
        import tensorflow as tf

        self.tf, self.net = tf, net
        self._constants: dict[tuple[int, str], object] = {}

    def __call__(self, x):
        self._constants.clear()  # constants belong to one trace
        return self.run(self.net, x)

    def _const(self, tensor: torch.Tensor, layout: str):
        key = (id(tensor), layout)
        if key not in self._constants:
            w = tensor.detach().float().cpu().numpy()
            if layout == "conv":  # torch (out, in, kh, kw) -> TF (kh, kw, in, out)
                w = w.transpose(2, 3, 1, 0)
            elif layout == "depthwise":  # torch (channels, 1, kh, kw) -> TF (kh, kw, channels, 1)
                w = w.transpose(2, 3, 0, 1)
            self._constants[key] = self.tf.constant(np.ascontiguousarray(w))
        return self._constants[key]

    def run(self, module: nn.Module, x):
        tf = self.tf
        if isinstance(module, Clamped):
            return tf.clip_by_value(self.run(module.net, x), 0.0, 1.0)
        if isinstance(module, MIRNet):
            return x + self.run(module.conv_out, self.run(module.rrgs, self.run(module.conv_in, x)))
        if isinstance(module, nn.Sequential):
            for layer in module:
                x = self.run(layer, x)
            return x
        if isinstance(module, RRG):
            return x + self.run(module.conv, self.run(module.mrbs, x))
        if isinstance(module, MRB):
            return self._mrb(module, x)
        if isinstance(module, DAU):
            features = self.run(module.conv2, self.run(module.act, self.run(module.conv1, x)))
            attended = tf.concat([self.run(module.spatial, features), self.run(module.channel, features)], axis=3)
            return x + self.run(module.fuse, attended)
        if isinstance(module, DeploySpatialAttention):
            pooled = tf.concat([self._channel_max(x), tf.reduce_mean(x, axis=3, keepdims=True)], axis=3)
            return x * tf.sigmoid(self.run(module.conv, pooled))
        if isinstance(module, ChannelAttention):
            descriptor = self.run(module.pool, x)
            return x * tf.sigmoid(self.run(module.excite, tf.nn.relu(self.run(module.squeeze, descriptor))))
        if isinstance(module, GlobalPool):
            return tf.reduce_mean(x, axis=[1, 2], keepdims=True)
        if isinstance(module, (ResidualDownsample, ResidualUpsample)):
            return self.run(module.top, x) + self.run(module.bottom, x)
        if isinstance(module, BlurPool):
            padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT")
            return tf.nn.depthwise_conv2d(padded, self._const(module.kernel, "depthwise"), [1, 2, 2, 1], "VALID")
        if isinstance(module, PhaseUpsample):
            return self._phase_upsample(module, x)
        if isinstance(module, nn.Upsample):
            if module.mode != "bilinear" or module.align_corners or module.scale_factor != 2:
                raise NotImplementedError(f"no TF twin for {module}")
            height, width = x.shape[1], x.shape[2]
            return tf.image.resize(x, [2 * height, 2 * width], method="bilinear")  # half-pixel, as torch's
        if isinstance(module, SlopePReLU):
            a = float(module.slope)
            if 0.0 <= a <= 1.0:
                return tf.maximum(x, x * a)
            if a > 1.0:
                return tf.minimum(x, x * a)
            return tf.nn.relu(x) + tf.minimum(x, 0.0) * a  # no NEG: it has no int8 kernel
        if isinstance(module, nn.Conv2d):
            return self._conv(module, x)
        raise NotImplementedError(f"no TF twin for {type(module).__name__}")

    def _conv(self, module: nn.Conv2d, x):
        if module.groups != 1 or module.stride != (1, 1) or module.bias is not None:
            raise NotImplementedError(f"no TF twin for {module}")
        k = module.kernel_size[0]
        if module.padding != (k // 2, k // 2) or k % 2 == 0:
            raise NotImplementedError(f"no TF twin for {module}")
        return self.tf.nn.conv2d(x, self._const(module.weight, "conv"), 1, "SAME")

    def _channel_max(self, x):
        tf = self.tf
        while x.shape[3] > 1:
            half = x.shape[3] // 2
            paired = tf.maximum(x[..., :half], x[..., half : 2 * half])
            x = paired if x.shape[3] % 2 == 0 else tf.concat([paired, x[..., 2 * half :]], axis=3)
        return x

    def _phase_upsample(self, module: PhaseUpsample, x):
        tf = self.tf
        key = (id(module.conv.weight), "phases")
        if key not in self._constants:
            w = module.conv.weight.detach().float().cpu().numpy()  # (out*4, in, 2, 2), out channel c*4 + phase
            cout = w.shape[0] // 4
            # TF's depth_to_space reads channel phase * out + c where pixel_shuffle reads c * 4 + phase.
            w = w.reshape(cout, 4, *w.shape[1:]).transpose(1, 0, 2, 3, 4).reshape(w.shape)
            self._constants[key] = tf.constant(np.ascontiguousarray(w.transpose(2, 3, 1, 0)))
        padded = tf.pad(x, [[0, 0], [0, 1], [0, 1], [0, 0]])
        return tf.nn.depth_to_space(tf.nn.conv2d(padded, self._constants[key], 1, "VALID"), 2)

    def _skff(self, module: DeploySKFF, inputs: list):
        tf = self.tf
        total = inputs[0]
        for x in inputs[1:]:
            total = total + x
        descriptor = self.run(module.squeeze, self.run(module.pool, total))  # (B, 1, 1, C)
        channels = inputs[0].shape[3]
        # Streams side by side in the last axis, where TFLite's softmax works: (B, 1, C, streams).
        logits = tf.concat([tf.reshape(self.run(s, descriptor), [-1, 1, channels, 1]) for s in module.select], axis=3)
        weights = tf.nn.softmax(logits, axis=3)
        fused = None
        for i, x in enumerate(inputs):
            term = x * tf.reshape(weights[..., i], [-1, 1, 1, channels])
            fused = term if fused is None else fused + term
        return fused

    def _mrb(self, module: MRB, x):
        streams, h = [], x
        for j, column in enumerate(module.daus):
            h = self.run(column[0], h if j == 0 else self.run(module.stem[j - 1], h))
            streams.append(h)
        for i, (exchange, fusions) in enumerate(zip(module.exchange, module.fusions), start=1):
            fused = [
                self._skff(fusion, [s if k == j else self.run(exchange[f"{k}to{j}"], s) for k, s in enumerate(streams)])
                for j, fusion in enumerate(fusions)
            ]
            streams = [self.run(column[i], f) for column, f in zip(module.daus, fused)]
        full = [streams[0]] + [self.run(up, s) for up, s in zip(module.to_full, streams[1:])]
        return x + self.run(module.conv_out, self._skff(module.fuse_out, full))


def tflite_flatbuffer(net: nn.Module, height: int, width: int, representative=None) -> bytes:
    """Convert the deployable `net` for a 1xHxWx3 NHWC input: float32, or full-integer int8 (int8 input
    and output) when `representative` yields 1xHxWx3 float32 arrays for the activation ranges."""
    import tensorflow as tf

    mirror = TFMirror(net)

    class Graph(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, height, width, 3], tf.float32, name="low")])
        def serve(self, low):
            return {"enhanced": mirror(low)}

    graph = Graph()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([graph.serve.get_concrete_function()], graph)
    if representative is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([np.asarray(x, np.float32)] for x in representative)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return bytes(converter.convert())
