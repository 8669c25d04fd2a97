"""The architecture: shapes, sizes, weight sharing, gradients, determinism."""

import pytest
import torch

from mirnet import PRESETS, MIRNet, MIRNetConfig, count_parameters, create_model, preset
from mirnet.model import DAU, SKFF, ResidualDownsample

TINY = 4  # channels for fast tests; streams then carry 4, 8, 16 channels


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_keeps_shape(name):
    model = create_model(name, channels=TINY).eval()
    x = torch.rand(2, 3, 16, 24)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


@pytest.mark.parametrize(
    ("name", "rrg", "mrb"),
    [("ablation-3x2", 3, 2), ("ablation-3x3", 3, 3), ("ablation-3x1", 3, 1), ("ablation-1x1", 1, 1)],
)
def test_ablation_presets_have_their_depth(name, rrg, mrb):
    model = create_model(name, channels=8)
    assert len(model.rrgs) == rrg
    assert all(len(group.mrbs) == mrb for group in model.rrgs)
    assert model.config.channels == 8


def test_paper_preset_has_the_official_parameter_count():
    with torch.device("meta"):
        shared = MIRNet(preset("paper"))
    # swz30/MIRNet's MIRNet() reports this many unique parameters (the paper's "31.8M").
    assert count_parameters(shared) == 31_787_419


def test_unsharing_adds_exactly_the_reused_modules():
    with torch.device("meta"):
        shared = MIRNet(preset("paper"))
        unshared = MIRNet(preset("paper-unshared"))
        dau = [count_parameters(DAU(c, 8)) for c in (64, 128, 256)]  # each with its own 1-weight PReLU
        down = [count_parameters(ResidualDownsample(c)) for c in (64, 128)]
        skff = count_parameters(SKFF(64, 3, 8))
    mrbs = 3 * 2
    # Unshared, every MRB gains a second DAU per stream (with its own PReLU), its own stem
    # downsamplers and its own final SKFF; and the 18 first DAUs get their own PReLU weight where the
    # official model has one for all.
    extra = mrbs * (sum(dau) + sum(down) + skff) + (mrbs * 3 - 1)
    assert count_parameters(unshared) - count_parameters(shared) == extra


def test_shared_model_reuses_modules_as_the_official_code():
    model = create_model("paper", channels=8)
    mrb = model.rrgs[0].mrbs[0]
    assert all(column[0] is column[1] for column in mrb.daus)
    preluses = {id(m.act) for m in model.modules() if isinstance(m, DAU)}
    assert len(preluses) == 1
    assert mrb.stem[0] is mrb.exchange[0]["0to1"] and mrb.stem[1] is mrb.exchange[0]["1to2"]
    assert mrb.fuse_out is mrb.fusions[0][0]


def test_unshared_model_uses_every_module_once_per_forward():
    model = create_model("paper", channels=TINY, share_weights=False, daus_per_stream=3)
    calls: dict[int, int] = {}
    hooks = [
        m.register_forward_hook(lambda mod, i, o: calls.__setitem__(id(mod), calls.get(id(mod), 0) + 1))
        for m in model.modules()
        if not list(m.children())  # leaves only: containers are called once per child by design
    ]
    with torch.no_grad():
        model(torch.rand(1, 3, 16, 16))
    for hook in hooks:
        hook.remove()
    leaves = [m for m in model.modules() if not list(m.children())]
    assert len(leaves) == len(calls), "some module was never used"
    assert max(calls.values()) == 1


def test_untying_keeps_the_function_and_frees_the_copies():
    from mirnet.model import untie_weights

    torch.manual_seed(0)
    shared = create_model("compact", channels=8, num_streams=2)
    untied = untie_weights(shared)
    assert untied.config == shared.config.replace(share_weights=False)
    assert count_parameters(untied) == count_parameters(create_model(untied.config))
    assert count_parameters(untied) > count_parameters(shared)
    x = torch.rand(1, 3, 24, 32)
    with torch.no_grad():
        assert torch.equal(untied(x), shared(x))
    first, second = untied.rrgs[0].mrbs[0].daus[0]
    assert first is not second and torch.equal(first.conv1.weight, second.conv1.weight)
    untied(x).mean().backward()  # the two positions of a stream now get gradients of their own
    assert not torch.equal(first.conv1.weight.grad, second.conv1.weight.grad)


@pytest.mark.parametrize("share", [True, False])
def test_gradients_reach_every_parameter(share):
    model = create_model("paper", channels=16, share_weights=share, num_rrg=1)
    x = torch.randn(4, 3, 16, 16) * torch.tensor([0.5, 1.0, 2.0, 4.0]).view(4, 1, 1, 1)
    target = torch.rand(4, 3, 16, 16)
    torch.nn.functional.l1_loss(model(x), target).backward()
    gated = []
    for name, param in model.named_parameters():
        assert param.grad is not None, name  # None: the parameter is not in the graph at all
        # A channel attention squeezes to a ReLU of 1-2 units, which can be off for every image of
        # a batch (a dead unit, as in the official model), silencing that attention's weights.
        if ".channel." in name:
            gated.append(bool(param.grad.abs().sum() > 0))
        else:
            assert param.grad.abs().sum() > 0, name
    assert sum(gated) > len(gated) / 2


@pytest.mark.parametrize("size", [(401, 599), (17, 9), (5, 3), (1, 1)])
def test_any_input_size_comes_back_at_its_size(size):
    model = create_model("ablation-1x1", channels=TINY).eval()
    x = torch.rand(1, 3, *size)
    with torch.no_grad():
        assert model(x).shape == x.shape


def test_padding_is_reflection_and_crop_matches_manual():
    model = create_model("ablation-1x1", channels=TINY).eval()
    x = torch.rand(1, 3, 13, 18)
    padded = torch.nn.functional.pad(x, (0, 2, 0, 3), mode="reflect")  # to multiples of 4
    with torch.no_grad():
        expected = model(padded)[..., :13, :18]
        assert torch.equal(model(x), expected)


def test_pools_compute_the_papers_means_and_max_in_either_layout():
    from mirnet.model import GlobalPool, SpatialAttention

    x = torch.rand(2, 8, 12, 10) - 0.3
    attention = SpatialAttention()
    pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
    expected = x * torch.sigmoid(attention.conv(pooled))
    with torch.no_grad():
        for layout in (torch.contiguous_format, torch.channels_last):
            y = x.contiguous(memory_format=layout)
            torch.testing.assert_close(GlobalPool()(y), x.mean(dim=(2, 3), keepdim=True))
            torch.testing.assert_close(attention(y), expected)
        # In bf16 (the CPU inference path) the sums and the copy keep the result within bf16 rounding.
        low = x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
        mean = x.mean(dim=(2, 3), keepdim=True)
        torch.testing.assert_close(GlobalPool()(low).float(), mean, atol=0.01, rtol=0.01)
        reference = attention(low.float())  # the same bf16-rounded input, in fp32
        torch.testing.assert_close(attention.to(torch.bfloat16)(low).float(), reference, atol=0.02, rtol=0.02)


def test_blur_pool_under_cpu_autocast_equals_padding_in_fp32():
    # The pad is kept in bf16 under autocast (it only copies values): the result must be bit for
    # bit what autocast gives when it pads in fp32 and casts back for the convolution.
    from mirnet.model import BlurPool

    blur = BlurPool(8).eval()
    x = torch.rand(1, 8, 16, 12).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    padded_in_fp32 = torch.nn.functional.pad(x.float(), (1, 1, 1, 1), mode="reflect")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = torch.nn.functional.conv2d(padded_in_fp32, blur.kernel, stride=2, groups=8)
        y = blur(x)
        # Training on a CPU convolves in fp32 and rounds once: the same values up to bf16 rounding.
        trained = blur.train()(x)
    assert y.dtype == torch.bfloat16 and torch.equal(y, expected)
    assert trained.dtype == torch.bfloat16
    torch.testing.assert_close(trained.float(), y.float(), rtol=2**-7, atol=0)


@pytest.mark.parametrize("autocast", [False, True])
def test_training_on_cpu_in_bf16_gives_autograd_gradients(autocast):
    # Training on a CPU in bf16 takes mirnet.cpu_backward's hand-written backward passes and the
    # blur pool in fp32; evaluation mode takes the plain operations. Both compute the same function,
    # so their gradients agree up to the blur pool's rounding: with bf16 weights about 1e-6 of their
    # norm (a wrong PReLU gradient gives about 4e-3); with fp32 weights under autocast, as `mirnet
    # train` runs them, about 6e-4 (5e-7 with the blur pool's plain path), so that case checks
    # only that the fast paths run under autocast and agree roughly. The functions themselves are
    # checked exactly below.
    model = create_model("ablation-1x1", channels=TINY, num_streams=3)
    model = (model if autocast else model.to(torch.bfloat16)).to(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 16, 20).contiguous(memory_format=torch.channels_last)
    results = {}
    for training in (True, False):
        model.train(training).zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            y = model(x if autocast else x.to(torch.bfloat16))
        (y.float() ** 2).mean().backward()
        grads = torch.cat([p.grad.float().flatten() for p in model.parameters()])
        results[training] = (y.detach().float(), grads)
    (y_train, grads_train), (y_eval, grads_eval) = results[True], results[False]
    torch.testing.assert_close(y_train, y_eval, rtol=0.02, atol=0.01)
    assert (grads_train - grads_eval).norm() < (2e-3 if autocast else 1e-5) * grads_eval.norm()


def test_cpu_backward_functions_match_autograd_and_keep_the_layout():
    from mirnet import cpu_backward

    x = (torch.rand(2, 5, 6, 7, dtype=torch.float64) - 0.5).contiguous(memory_format=torch.channels_last)
    with_zeros = x.clone()
    with_zeros[0, :, :2] = 0.0  # where PReLU's gradient must follow torch's rule (the slope side)
    weight = torch.tensor([0.3], dtype=torch.float64)
    cases = [  # each function, and the plain operations it must equal
        (lambda t, w: cpu_backward.prelu(t, w), lambda t, w: torch.prelu(t, w)),
        (lambda t, w: cpu_backward.gradient_in_layout(t).sum(dim=(2, 3), keepdim=True) * w,
         lambda t, w: t.sum(dim=(2, 3), keepdim=True) * w),
        (lambda t, w: cpu_backward.gradient_in_layout(t).contiguous() * w, lambda t, w: t.contiguous() * w),
    ]  # fmt: skip
    for fast, plain in cases:
        assert torch.autograd.gradcheck(fast, (x.clone().requires_grad_(), weight.clone().requires_grad_()))
        inputs = (with_zeros.clone().requires_grad_(), weight.clone().requires_grad_())
        grad_out = torch.rand_like(fast(*inputs))
        fast_grads = torch.autograd.grad(fast(*inputs), inputs, grad_out)
        plain_grads = torch.autograd.grad(plain(*inputs), inputs, grad_out)
        assert torch.equal(fast_grads[0], plain_grads[0])  # the same operations on the same values
        torch.testing.assert_close(fast_grads[1], plain_grads[1])  # a sum, perhaps in another order
        assert fast_grads[0].is_contiguous(memory_format=torch.channels_last)
    # Under CPU autocast PReLU runs in bf16 as torch's does, bit for bit, and its slope's gradient
    # comes back in fp32 as torch's does.
    results = []
    for function in (cpu_backward.prelu, torch.prelu):
        slope, inputs = torch.nn.Parameter(torch.tensor([0.25])), with_zeros.float().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = function(inputs, slope)
        y.backward(torch.ones_like(y))
        results.append((y, inputs.grad, slope.grad))
    (y, grad_x, grad_slope), (y_torch, grad_x_torch, grad_slope_torch) = results
    assert y.dtype == torch.bfloat16 and torch.equal(y, y_torch) and torch.equal(grad_x, grad_x_torch)
    assert grad_slope.dtype == torch.float32
    torch.testing.assert_close(grad_slope, grad_slope_torch, rtol=0.01, atol=0.01)


def test_four_streams_need_multiples_of_eight():
    model = create_model("ablation-1x1", channels=TINY, num_streams=4).eval()
    assert model.size_multiple == 8
    with torch.no_grad():
        assert model(torch.rand(1, 3, 21, 30)).shape == (1, 3, 21, 30)


def test_same_seed_gives_same_model_and_output():
    x = torch.rand(1, 3, 16, 16)
    outputs = []
    for _ in range(2):
        torch.manual_seed(123)
        model = create_model("ablation-3x1", channels=TINY).eval()
        with torch.no_grad():
            outputs.append(model(x))
    torch.manual_seed(124)
    other = create_model("ablation-3x1", channels=TINY).eval()
    assert torch.equal(outputs[0], outputs[1])
    with torch.no_grad():
        assert not torch.equal(outputs[0], other(x))


def test_global_residual_makes_a_zero_output_conv_the_identity():
    model = create_model("ablation-1x1", channels=TINY).eval()
    torch.nn.init.zeros_(model.conv_out.weight)
    x = torch.rand(1, 3, 12, 20)
    with torch.no_grad():
        assert torch.equal(model(x), x)


def test_config_validation_and_overrides():
    with pytest.raises(ValueError, match="channels"):
        MIRNetConfig(channels=0)
    with pytest.raises(ValueError, match="unknown preset"):
        preset("nope")
    with pytest.raises(ValueError, match="unknown MIRNetConfig fields: colour"):
        preset("paper", colour=3)
    with pytest.raises(ValueError, match="share_weights must be true or false"):
        preset("compact", share_weights="false")
    assert preset("ablation-3x3", channels=16) == MIRNetConfig(channels=16, num_rrg=3, num_mrb=3)
    assert MIRNetConfig.from_dict(preset("paper").to_dict()) == preset("paper")
    with pytest.raises(ValueError, match="unknown MIRNetConfig fields"):
        MIRNetConfig.from_dict({"channels": 8, "depth": 2})


def test_macs_of_the_paper_preset():
    from mirnet import count_macs

    with torch.device("meta"):
        model = MIRNet(preset("paper"))
    # ~480 GMACs per 256x256 crop, the figure the project's issues quote for MIRNet.
    assert 470e9 < count_macs(model, 256, 256) < 490e9
