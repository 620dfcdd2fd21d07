"""Classifier-free guidance: label dropout in training, the guided mix at sampling, and its errors."""
import re

import pytest
import torch

from ddpm.errors import DdpmError
from ddpm.guidance import ClassifierFreeGuidance, drop_labels
from ddpm.nets import UNet, UNetConfig
from ddpm.schedules import NoiseSchedule
from ddpm.train import Trainer
from helpers import sklearn_digits, tiny_config, generate_with
from stats import Z


def conditional_net() -> UNet:
    net = UNet(UNetConfig(image_size=8, base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention_resolutions=(4,),
                          head_channels=8, dropout=0.0, norm_groups=4, num_classes=10))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # zero-initialised output layers would make every prediction 0
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return net.eval()


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_drop_labels_replaces_the_expected_share(p):
    y = torch.arange(20_000) % 10
    dropped = drop_labels(y, p, null_label=10, generator=torch.Generator().manual_seed(1))
    is_null = dropped == 10
    assert torch.equal(dropped[~is_null], y[~is_null])  # the rest are untouched
    share, n = is_null.double().mean().item(), len(y)
    assert abs(share - p) < Z * (p * (1 - p) / n) ** 0.5  # binomial standard error
    assert torch.equal(drop_labels(y, 0.0, 10), y)


def test_guided_output_is_the_weighted_mix_of_conditional_and_unconditional():
    net = conditional_net()
    x, t, y = torch.randn(3, 1, 8, 8), torch.tensor([5, 50, 90]), torch.tensor([1, 4, 7])
    cond, uncond = net(x, t, y), net(x, t, torch.full_like(y, 10))
    assert not torch.allclose(cond, uncond)
    for w in (0.5, 3.0):
        guided = ClassifierFreeGuidance(net, w, null_label=10)(x, t, y)
        torch.testing.assert_close(guided, (1 + w) * cond - w * uncond, rtol=1e-5, atol=1e-5)
    assert torch.equal(ClassifierFreeGuidance(net, 0.0, 10)(x, t, y), cond)  # w = 0: the conditional model
    assert torch.equal(ClassifierFreeGuidance(net, 2.0, 10)(x, t), net(x, t))  # no labels: unconditional
    with pytest.raises(ValueError, match="guidance weight must be ≥ 0"):
        ClassifierFreeGuidance(net, -1.0, 10)


def test_generate_with_guidance_changes_samples_and_refuses_what_cannot_be_guided():
    net, schedule = conditional_net(), NoiseSchedule.from_name("linear", 50)
    labels = torch.arange(4)
    kwargs = dict(num=4, shape=(1, 8, 8), sampler="ddim", steps=5, labels=labels, seed=3)
    plain, guided = generate_with(net, schedule, **kwargs), generate_with(net, schedule, guidance=2.0, **kwargs)
    assert plain.shape == guided.shape == (4, 1, 8, 8) and not torch.equal(plain, guided)
    # without labels a class-conditional model is asked for its classes in turn (0, 1, 2, 3 here)
    del kwargs["labels"]
    assert torch.equal(generate_with(net, schedule, guidance=2.0, **kwargs), guided)
    unconditional = UNet(UNetConfig(image_size=8, base_channels=8, channel_mults=(1,), attention_resolutions=(), norm_groups=4))
    with pytest.raises(ValueError, match="needs a class- or context-conditional model; this one is unconditional"):
        generate_with(unconditional, schedule, num=2, shape=(1, 8, 8), steps=5, labels=labels[:2], guidance=1.0)


@pytest.mark.parametrize("p", [0.0, 0.3])
def test_trainer_drops_labels_at_the_configured_rate(tmp_path, p):
    config = tiny_config(data={"conditional": True}, train={"steps": 20, "label_dropout": p})
    trainer = Trainer(config, tmp_path / "run", torch.device("cpu"), data=sklearn_digits(64), quiet=True)
    seen = []
    trainer.model.register_forward_pre_hook(lambda m, args, kwargs: seen.append(kwargs["y"].clone()), with_kwargs=True)
    trainer.run()
    y = torch.cat(seen)
    share, n = (y == 10).double().mean().item(), len(y)  # 20 steps × 32 labels
    assert abs(share - p) <= Z * (p * (1 - p) / n) ** 0.5
    assert ((y >= 0) & (y <= 10)).all()


def test_generate_refuses_eta_for_a_sampler_that_takes_none():
    net = UNet(UNetConfig(image_size=8, base_channels=8, channel_mults=(1,), attention_resolutions=(), norm_groups=4))
    for sampler in ("ddpm", "dpm-solver++"):  # dropped silently before
        with pytest.raises(DdpmError, match=f"the {re.escape(sampler)} sampler takes no eta"):
            generate_with(net, NoiseSchedule.from_name("linear", 10), num=2, shape=(1, 8, 8), sampler=sampler, steps=3, eta=0.0)
    generate_with(net, NoiseSchedule.from_name("linear", 10), num=2, shape=(1, 8, 8), sampler="ddim", steps=3, eta=0.5)


def test_guidance_of_a_learned_variance_model_guides_the_mean_and_keeps_the_conditional_variance():
    def model(x, t, y):
        shift = y.view(-1, 1, 1, 1).float()
        return torch.cat([x + shift, 10 * x - shift], 1)  # mean part, variance part

    x, t, y = torch.randn(3, 1, 2, 2), torch.tensor([5, 5, 5]), torch.tensor([1, 2, 3])
    out = ClassifierFreeGuidance(model, 2.0, null_label=0)(x, t, y)
    cond, uncond = model(x, t, y), model(x, t, torch.zeros_like(y))
    torch.testing.assert_close(out[:, :1], 3 * cond[:, :1] - 2 * uncond[:, :1])
    torch.testing.assert_close(out[:, 1:], cond[:, 1:])


# -- guidance interval (Kynkäänniemi et al. 2024) ------------------------------------------------------------
class CountingNet(torch.nn.Module):
    """Wraps a net and counts the images it is asked to denoise (one guided pass costs two per sample)."""

    def __init__(self, net):
        super().__init__()
        self.net, self.images, self.calls = net, 0, []
        self.config = net.config

    def forward(self, x, t, y=None):
        self.images += len(x)
        self.calls.append((len(x), int(t[0])))
        return self.net(x, t, y)


def test_a_guidance_interval_guides_inside_and_runs_one_conditional_pass_outside():
    net = conditional_net()
    x, y = torch.randn(3, 1, 8, 8), torch.tensor([1, 4, 7])
    cond_of = lambda t: net(x, t, y)  # noqa: E731
    mix = lambda t, w: (1 + w) * net(x, t, y) - w * net(x, t, torch.full_like(y, 10))  # noqa: E731
    counting = CountingNet(net)
    guide = ClassifierFreeGuidance(counting, 2.0, null_label=10, interval=(0.2, 0.6), num_timesteps=100)
    inside, outside, mixed = torch.tensor([20, 40, 60]), torch.tensor([0, 19, 61]), torch.tensor([10, 30, 99])
    torch.testing.assert_close(guide(x, inside, y), mix(inside, 2.0), rtol=1e-5, atol=1e-5)
    counting.images = 0
    assert torch.equal(guide(x, outside, y), cond_of(outside)) and counting.images == 3  # one pass, no unconditional one
    expected = torch.stack([cond_of(mixed)[0], mix(mixed, 2.0)[1], cond_of(mixed)[2]])  # per sample
    torch.testing.assert_close(guide(x, mixed, y), expected, rtol=1e-5, atol=1e-5)
    full = ClassifierFreeGuidance(net, 2.0, null_label=10, interval=(0.0, 1.0), num_timesteps=100)
    assert torch.equal(full(x, outside, y), ClassifierFreeGuidance(net, 2.0, null_label=10)(x, outside, y))
    for bad in ((0.6, 0.2), (0.3, 0.3), (-0.1, 0.5), (0.5, 1.5)):
        with pytest.raises(DdpmError, match="guidance interval must be lo,hi with 0 ≤ lo < hi ≤ 1"):
            ClassifierFreeGuidance(net, 2.0, 10, interval=bad, num_timesteps=100)


def test_sampling_with_a_guidance_interval_spends_fewer_passes_and_the_full_interval_changes_nothing():
    schedule = NoiseSchedule.from_name("linear", 50)
    kwargs = dict(num=4, shape=(1, 8, 8), sampler="ddpm", steps=10, labels=torch.arange(4), seed=3, guidance=2.0)
    plain = generate_with(conditional_net(), schedule, **kwargs)
    assert torch.equal(generate_with(conditional_net(), schedule, guidance_interval=(0.0, 1.0), **kwargs), plain)
    counting = CountingNet(conditional_net())
    within = generate_with(counting, schedule, guidance_interval=(0.0, 0.5), **kwargs)
    # the steps at t ≤ 0.5·T = 25 are guided (a batch of 2 × 4), the others one conditional pass (4)
    assert all(size == (8 if t <= 25 else 4) for size, t in counting.calls), counting.calls
    assert {size for size, _ in counting.calls} == {4, 8} and not torch.equal(within, plain)
