"""Denoiser networks: shapes, what the time and label inputs do, configuration errors, golden sizes."""
import pytest
import torch

from ddpm.config import RunConfig
from ddpm.models import build_model
from ddpm.nets import MLP, MLPConfig, UNet, UNetConfig, build_denoiser
from ddpm.nets.layers import AttentionBlock, ResBlock, timestep_embedding


def randomize(net: torch.nn.Module) -> torch.nn.Module:
    """Zero-initialised output layers make a fresh net output 0; give every weight a value instead."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return net.eval()


def tiny(**kw) -> UNetConfig:
    base = dict(image_size=16, in_channels=1, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                attention_resolutions=(8,), head_channels=8, dropout=0.0, norm_groups=4)
    base.update(kw)
    return UNetConfig(**base)


@pytest.mark.parametrize("size", [28, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("patch", [1, 2])
def test_unet_output_shape(size, channels, patch):
    net = UNet(tiny(image_size=size, in_channels=channels, attention_resolutions=(size // patch // 2,), patch_size=patch))
    x = torch.randn(2, channels, size, size)
    assert net(x, torch.tensor([0, 999])).shape == x.shape


def test_patch_size_2_runs_at_half_resolution_for_a_quarter_of_the_flops():
    from torch.utils.flop_counter import FlopCounterMode

    def flops(patch: int) -> int:
        net = UNet(tiny(image_size=32, attention_resolutions=(), patch_size=patch))
        with FlopCounterMode(display=False) as counter:
            net(torch.randn(1, 1, 32, 32), torch.tensor([5]))
        return counter.get_total_flops()

    assert tiny(image_size=32, patch_size=2).resolutions() == [16, 8]
    # Every convolution sees a quarter of the pixels (the input and output ones are 4× wider in channels,
    # as cheap); the middle attention, quadratic in pixels, shrinks 16×; the time MLP does not shrink.
    assert 0.2 < flops(2) / flops(1) < 0.3


@pytest.mark.parametrize("conditioning", ["adagn", "add"])
def test_time_input_changes_output(conditioning):
    net = randomize(UNet(tiny(time_conditioning=conditioning)))
    x = torch.randn(2, 1, 16, 16)
    a, b = net(x, torch.tensor([10, 10])), net(x, torch.tensor([900, 900]))
    assert (a - b).abs().mean() > 1e-3 * a.abs().mean()


def test_no_time_switch_removes_the_time_input():
    net = randomize(UNet(tiny(use_time=False)))
    assert net.time_embed is None
    x = torch.randn(2, 1, 16, 16)
    assert torch.equal(net(x, torch.tensor([10, 10])), net(x, torch.tensor([900, 900])))
    assert sum(p.numel() for p in net.parameters()) < sum(p.numel() for p in UNet(tiny()).parameters())


def test_class_conditioning_changes_output_and_null_label():
    net = randomize(UNet(tiny(num_classes=10)))
    x, t = torch.randn(2, 1, 16, 16), torch.tensor([500, 500])
    a, b = net(x, t, y=torch.tensor([1, 1])), net(x, t, y=torch.tensor([7, 7]))
    assert (a - b).abs().mean() > 1e-3 * a.abs().mean()
    # y = None is the reserved "no label" index num_classes (for classifier-free guidance)
    assert torch.equal(net(x, t), net(x, t, y=torch.tensor([10, 10])))
    with pytest.raises(ValueError, match="unconditional"):
        UNet(tiny())(x, t, y=torch.tensor([1, 1]))


def test_rescale_skip_changes_output():
    a = randomize(UNet(tiny(rescale_skip=False)))
    b = randomize(UNet(tiny(rescale_skip=True)))
    x = torch.randn(1, 1, 16, 16)
    assert not torch.allclose(a(x, torch.tensor([3])), b(x, torch.tensor([3])))


def test_the_cifar10_preset_is_the_ddpm_papers_model():
    """Ho et al. 2020, Appendix B and the paper's TensorFlow code: 35.7M parameters, one attention head,
    residual blocks returning x + h (no 1/√2), time added to the features (no AdaGN)."""
    net = build_model(RunConfig.from_toml("cifar10").resolved(32, 3, None))
    assert 35.6e6 < sum(p.numel() for p in net.parameters()) < 35.8e6
    attention = [m for m in net.modules() if isinstance(m, AttentionBlock)]
    blocks = [m for m in net.modules() if isinstance(m, ResBlock)]
    assert attention and all(m.heads == 1 and not m.rescale for m in attention)
    assert blocks and all(not m.rescale and not m.adaptive_norm for m in blocks)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(attention_resolutions=(5,)), r"attention_resolutions \[5\] are never reached; the feature maps are \[16, 8\]"),
        (dict(image_size=28, channel_mults=(1, 2, 2, 2)), "image_size/patch_size = 28 must be divisible by 2\\^3"),
        (dict(patch_size=3), "patch_size must be a positive divisor of image_size 16, got 3"),
        (dict(patch_size=2, attention_resolutions=(16,)), r"attention_resolutions \[16\] are never reached; the feature maps are \[8, 4\]"),
        (dict(time_conditioning="film"), "time_conditioning must be 'adagn' or 'add'"),
        (dict(dropout=1.0), r"dropout must be in \[0, 1\)"),
    ],
)
def test_bad_unet_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny(**kwargs)


def test_mlp_interface():
    net = randomize(MLP(MLPConfig(image_size=8, in_channels=1, hidden=32, depth=2)))
    x = torch.randn(3, 1, 8, 8)
    a = net(x, torch.tensor([1, 1, 1]))
    assert a.shape == x.shape
    assert not torch.allclose(a, net(x, torch.tensor([500, 500, 500])))
    flat = randomize(MLP(MLPConfig(image_size=8, hidden=32, depth=2, use_time=False)))
    assert torch.equal(flat(x, torch.tensor([1, 1, 1])), flat(x, torch.tensor([9, 9, 9])))


def test_mlp_input_skip_adds_a_learned_gain_times_x_t_to_the_prediction_channels_only():
    """out = f(h) + g·x on the first C channels: with f's last layer at its zero init and g's bias 0.7, out is 0.7·x
    there and 0 on the learned-variance channels; without input_skip, 0 everywhere."""
    x = torch.randn(3, 1, 8, 8)
    net = MLP(MLPConfig(image_size=8, in_channels=1, hidden=32, depth=2), out_channels=2)
    with torch.no_grad():
        net.skip_gain.bias.fill_(0.7)
    out = net(x, torch.tensor([1, 500, 999]))
    assert out.shape == (3, 2, 8, 8)
    torch.testing.assert_close(out[:, :1], 0.7 * x)
    assert torch.equal(out[:, 1:], torch.zeros_like(x))
    plain = MLP(MLPConfig(image_size=8, in_channels=1, hidden=32, depth=2, input_skip=False))
    assert plain.skip_gain is None
    assert torch.equal(plain(x, torch.tensor([1, 1, 1])), torch.zeros_like(x))


def test_build_denoiser_rejects_unknown_options():
    with pytest.raises(ValueError, match="unknown model option\\(s\\) width for unet"):
        build_denoiser("unet", width=3)
    with pytest.raises(ValueError, match="unknown architecture 'vit'"):
        build_denoiser("vit")


def test_timestep_embedding_golden():
    e = timestep_embedding(torch.tensor([0, 1]), 8)
    assert e.shape == (2, 8)
    torch.testing.assert_close(e[0], torch.tensor([1.0, 1, 1, 1, 0, 0, 0, 0]))
    freqs = torch.tensor([1.0, 0.1, 0.01, 0.001])  # 10000^(−k/4)
    torch.testing.assert_close(e[1], torch.cat([torch.cos(freqs), torch.sin(freqs)]))


@pytest.mark.parametrize("adaptive", [True, False])
def test_resblock_time_injection_by_value(adaptive):
    """AdaGN (ADM §3): h = GN(h)·(1 + s) + b with (s, b) from the embedding; "add" (DDPM): h = GN(h + e).
    Checked with a scale far from 0, where (1 + s)·GN(h) and s·GN(h) differ."""
    torch.manual_seed(0)
    block = ResBlock(4, 4, emb_dim=3, dropout=0.0, adaptive_norm=adaptive, rescale=False, groups=2).double()
    block.out_layers = torch.nn.Identity()  # look at the normalised, conditioned features directly
    with torch.no_grad():
        block.out_norm.weight.uniform_(0.5, 1.5)
        block.out_norm.bias.uniform_(-0.5, 0.5)
    x, emb = torch.randn(2, 4, 5, 5, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64)
    e = block.emb(emb)[:, :, None, None]
    h = block.in_layers(x)
    gn = block.out_norm
    norm = lambda z: torch.nn.functional.group_norm(z, gn.num_groups, gn.weight, gn.bias, gn.eps)  # noqa: E731
    if adaptive:
        scale, shift = e[:, :4], e[:, 4:]
        assert scale.abs().mean() > 0.1
        expected = x + norm(h) * (1 + scale) + shift
    else:
        expected = x + norm(h + e)
    torch.testing.assert_close(block(x, emb), expected, rtol=1e-10, atol=1e-10)
