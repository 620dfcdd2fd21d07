"""Context vectors: the U-Net's two ways of taking them, the learned null context, classifier-free guidance on them,
where the vectors come from (one-hot labels, a .npy file, JSON sidecars), training and the CLI's refusals."""
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from ddpm.cli import main
from ddpm.config import RunConfig
from ddpm.data import load_dataset
from ddpm.errors import DdpmError
from ddpm.conditioning import one_hot
from ddpm.guidance import ClassifierFreeGuidance
from ddpm.nets import UNet, UNetConfig
from ddpm.sampling import SAMPLERS
from ddpm.sampling.plan import SamplingPlan
from ddpm.schedules import NoiseSchedule
from ddpm.train import Trainer
from ddpm.train.step import train_step
from helpers import sklearn_digits, tiny_config, denoiser_of, generate_with

CPU = torch.device("cpu")


def context_net(mode: str = "scale", k: int = 5) -> UNet:
    net = UNet(UNetConfig(image_size=8, base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention_resolutions=(4,),
                          head_channels=8, dropout=0.0, norm_groups=4, context_dim=k, context_conditioning=mode))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # zero-initialised layers would hide the context's effect
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return net.eval()


@pytest.mark.parametrize("mode", ["scale", "adagn"])
def test_the_context_changes_the_output_and_the_mask_selects_the_learned_null(mode):
    net = context_net(mode)
    x, t = torch.randn(4, 1, 8, 8), torch.tensor([1, 30, 60, 99])
    c = torch.randn(4, 5)
    with_c, null = net(x, t, context=c), net(x, t)
    assert not torch.allclose(with_c, null)
    assert not torch.allclose(net(x, t, context=c + 1), with_c)
    mask = torch.tensor([True, False, True, False])
    mixed = net(x, t, context=c, context_mask=mask)
    torch.testing.assert_close(mixed[mask], with_c[mask])
    torch.testing.assert_close(mixed[~mask], null[~mask])
    with torch.no_grad():  # the null is a learned vector, not zeros: moving it moves the masked rows only
        net.null_context.add_(1.0)
    moved = net(x, t, context=c, context_mask=mask)
    torch.testing.assert_close(moved[mask], with_c[mask])
    assert not torch.allclose(moved[~mask], null[~mask])
    with pytest.raises(ValueError, match=r"context must be \[4, 5\]"):
        net(x, t, context=torch.randn(4, 3))


def test_the_scale_mode_multiplies_the_decoder_features_only():
    """'scale' leaves the encoder's features alone: with every decoder scale layer zeroed, the context has no effect."""
    net = context_net("scale")
    with torch.no_grad():
        for layer in net.context_scales:
            layer.weight.zero_()
            layer.bias.zero_()
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([5, 50])
    torch.testing.assert_close(net(x, t, context=torch.randn(2, 5)), net(x, t, context=torch.randn(2, 5)))
    fresh = UNet(UNetConfig(image_size=8, base_channels=8, channel_mults=(1, 2), attention_resolutions=(4,), head_channels=8,
                            norm_groups=4, context_dim=3))
    assert all(torch.equal(layer.weight, torch.zeros_like(layer.weight)) for layer in fresh.context_scales)


def test_classifier_free_guidance_on_contexts_mixes_the_context_and_null_outputs():
    net = context_net("adagn")
    x, t, c = torch.randn(3, 1, 8, 8), torch.tensor([10, 50, 90]), torch.randn(3, 5)
    cond, uncond = net(x, t, context=c), net(x, t)
    for w in (0.5, 2.0):
        torch.testing.assert_close(ClassifierFreeGuidance(net, w, None)(x, t, context=c), (1 + w) * cond - w * uncond,
                                   rtol=1e-5, atol=1e-5)
    assert torch.equal(ClassifierFreeGuidance(net, 0.0, None)(x, t, context=c), cond)


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_labels_of_a_onehot_model_are_its_one_hot_contexts_in_every_sampler(sampler):
    net, schedule = context_net("scale", k=10), NoiseSchedule.from_name("linear", 50)
    labels = torch.tensor([3, 5, 7])
    common = dict(num=3, shape=(1, 8, 8), sampler=sampler, steps=5, seed=2, guidance=1.0)
    by_labels = generate_with(net, schedule, labels=labels, **common)
    assert torch.equal(by_labels, generate_with(net, schedule, contexts=one_hot(labels, 10), **common))
    mixture = generate_with(net, schedule, contexts=torch.tensor([[0.0] * 3 + [0.5, 0, 0.5] + [0.0] * 4]), **common)
    assert mixture.shape == (3, 1, 8, 8) and not torch.equal(mixture, by_labels)
    with pytest.raises(DdpmError, match="must have 10 numbers"):
        generate_with(net, schedule, contexts=torch.zeros(1, 4), **common)
    with pytest.raises(DdpmError, match="finite"):
        generate_with(net, schedule, contexts=torch.full((1, 10), float("nan")), **common)
    with pytest.raises(DdpmError, match="takes none"):
        generate_with(UNet(UNetConfig(image_size=8, base_channels=8, channel_mults=(1,), attention_resolutions=(), norm_groups=4)),
                 schedule, contexts=torch.zeros(1, 10), **{**common, "guidance": 0.0})


def test_dropped_examples_train_the_null_context_whatever_their_vectors():
    """label_dropout = 1: every example sees the null context, so two different context tensors give the same loss;
    with 0 they do not. The drop decisions are the label dropout's draws (the same share, tested there)."""
    config = tiny_config(data={"context": "onehot"}, train={"label_dropout": 0.0})
    data = sklearn_digits(64)
    config = config.resolved(data.image_size, data.channels, None, context_dim=10)
    x = data.batch(torch.arange(32))[0]
    schedule = NoiseSchedule.from_name("linear", 100)

    def loss(p: float, contexts: torch.Tensor) -> float:
        torch.manual_seed(0)
        model = UNet(config.model)
        with torch.no_grad():  # zero-initialised layers would leave the null context without a gradient
            for p_ in model.parameters():
                p_.add_(torch.randn(p_.shape) * 0.1)
        ema = UNet(config.model)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        c = replace(config, train=replace(config.train, label_dropout=p))
        result = train_step(model, ema, opt, torch.amp.GradScaler("cpu", enabled=False), schedule, x, None, config=c, step=0,
                            noise_gen=torch.Generator().manual_seed(1), context=contexts)
        return result.loss.mean().item(), model.null_context.grad

    a, b = one_hot(torch.arange(32) % 10, 10), one_hot((torch.arange(32) + 3) % 10, 10)
    (all_dropped_a, grad_a), (all_dropped_b, _) = loss(0.9999, a), loss(0.9999, b)
    assert all_dropped_a == all_dropped_b and grad_a is not None and grad_a.abs().sum() > 0
    (kept_a, grad_kept), (kept_b, _) = loss(0.0, a), loss(0.0, b)
    assert kept_a != kept_b
    assert grad_kept is None or grad_kept.abs().sum() == 0  # nothing dropped: the null learns nothing


# -- where vectors come from ----------------------------------------------------------------------------------------

def test_onehot_contexts_are_the_labels_and_a_file_follows_the_dataset_order_under_a_subset(tmp_path):
    data = load_dataset("mnist", context="onehot", limit=50, seed=3)
    assert torch.equal(data.contexts.argmax(1), data.labels) and torch.equal(data.contexts.sum(1), torch.ones(50))
    full = load_dataset("mnist")
    # a file whose row i is image i's mean brightness: after the subset, each image still has its own row
    path = tmp_path / "brightness.npy"
    np.save(path, full.images.float().mean((1, 2, 3)).numpy()[:, None])
    sub = load_dataset("mnist", context=str(path), limit=50, seed=3)
    torch.testing.assert_close(sub.contexts[:, 0], sub.images.float().mean((1, 2, 3)))
    assert load_dataset("mnist", split="test", context=str(path), limit=5).contexts is None  # vectors of the training split


@pytest.mark.parametrize("array, message", [
    (np.zeros((5, 2)), "has 5 rows but the training split has 60000 images"),
    (np.zeros(60000), "must hold numbers of shape [N, k]"),
    (np.full((60000, 2), np.nan), "row 0 is not finite"),
])
def test_a_context_file_that_does_not_fit_is_one_sentence(tmp_path, array, message):
    path = tmp_path / "c.npy"
    np.save(path, array)
    with pytest.raises(DdpmError) as e:
        load_dataset("mnist", context=str(path))
    assert message in str(e.value)


def folder_with_sidecars(root, vectors: dict[str, object]):
    root.mkdir()
    for i, (name, vector) in enumerate(vectors.items()):
        Image.fromarray(np.full((8, 8), 30 * i, dtype=np.uint8)).save(root / f"{name}.png")
        if vector is not None:
            (root / f"{name}.json").write_text(json.dumps(vector))
    return root


def test_json_sidecars_give_each_folder_image_its_vector(tmp_path):
    vectors = {f"im{i}": [float(i), 1.0] if i % 2 else {"context": [float(i), 1.0]} for i in range(8)}
    root = folder_with_sidecars(tmp_path / "f", vectors)
    data = load_dataset("folder", root=root, context="json", image_size=8, channels=1, test_fraction=0.25)
    assert data.contexts.shape == (6, 2)
    # each image's vector is its own: image im{i} is filled with 30·i, its vector starts with i
    torch.testing.assert_close(data.contexts[:, 0] * 30, data.images.float().mean((1, 2, 3)))


@pytest.mark.parametrize("vectors, message", [
    ({"a": [1.0], "b": None, "c": [2.0]}, "has no context sidecar b.json"),
    ({"a": [1.0], "b": [1.0, 2.0], "c": [2.0]}, "has 2 numbers"),
    ({"a": [1.0], "b": "text", "c": [2.0]}, "must hold a list of numbers"),
])
def test_bad_sidecars_are_one_sentence(tmp_path, vectors, message):
    root = folder_with_sidecars(tmp_path / "f", vectors)
    with pytest.raises(DdpmError, match=message):
        load_dataset("folder", root=root, context="json", image_size=8, channels=1, test_fraction=0.01)


@pytest.mark.parametrize("overrides, message", [
    (["data.context=onehot", "data.conditional=true"], "labels or context vectors, not both"),
    (["data.context=onehot", "model.architecture=mlp"], "only the U-Net takes context vectors"),
    (["model.context_dim=4"], "comes from the vectors data.context names"),
    (["data.context=labels"], "must be onehot, json or the path of a .npy file"),
    (["data.context=onehot", "model.context_conditioning=multiply"], "must be one of 'scale', 'adagn'"),
])
def test_context_settings_that_cannot_work_are_refused(overrides, message):
    with pytest.raises(DdpmError, match=message):
        RunConfig().with_overrides(overrides)


def test_a_context_run_resumes_bit_exactly(tmp_path):
    from test_resume import assert_identical, final_tensors

    data = sklearn_digits(100)
    data = replace(data, contexts=one_hot(data.labels, 10))
    config = lambda steps: tiny_config(data={"context": "onehot"}, train={"steps": steps, "checkpoint_every": 4})  # noqa: E731
    Trainer(config(8), tmp_path / "straight", CPU, data=data, quiet=True).run()
    Trainer(config(4), tmp_path / "resumed", CPU, data=data, quiet=True).run()
    trainer = Trainer(None, tmp_path / "resumed", CPU, data=data, quiet=True, resume=True)
    trainer.config = trainer.config.with_overrides(["train.steps=8"])
    trainer.run()
    assert_identical(final_tensors(tmp_path / "straight"), final_tensors(tmp_path / "resumed"))


# -- the CLI ----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def context_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("ctx") / "run"
    assert main(["train", "--out", str(run), "--context", "onehot", "--steps", "2", "--limit", "64", "--batch-size", "32",
                 "--quiet", "--set", "model.base_channels=16", "--set", "model.channel_mults=[1,2]",
                 "--set", "model.attention_resolutions=[14]", "--set", "train.sample_every=2",
                 "--set", "train.progress_samples=20", "--set", "sample.num=20"]) == 0
    return run


def test_a_onehot_run_samples_classes_contexts_and_mixtures(context_run, tmp_path):
    assert (context_run / "progress" / "step_0000002.png").exists()  # the grid: one class per column
    for flags in (["--label", "3"], ["--context", "0,0,0,0.5,0,0.5,0,0,0,0", "--guidance", "2"]):
        out = tmp_path / "s.npz"
        assert main(["sample", str(context_run), "-n", "3", "--steps", "2", "--out", str(out), *flags]) == 0
        assert np.load(out)["arr_0"].shape == (3, 28, 28, 1)


@pytest.mark.parametrize("flags, message", [
    (["--context", "1,0"], "must have 10 numbers for this model, got 2"),
    (["--context", "nan,0,0,0,0,0,0,0,0,0"], "not finite"),
    (["--context", "a,b"], "comma-separated numbers"),
    (["--context", "1,0,0,0,0,0,0,0,0,0", "--label", "2"], "--label or --context, not both"),
])
def test_bad_contexts_at_sampling_are_one_sentence(context_run, tmp_path, capsys, flags, message):
    out = tmp_path / "x.npz"
    assert main(["sample", str(context_run), "-n", "2", "--steps", "2", "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not out.exists()


def test_a_context_for_a_model_without_one_and_a_short_file_for_training_are_refused(context_run, tmp_path, capsys):
    plain = tmp_path / "plain"
    assert main(["train", "--out", str(plain), "--steps", "1", "--limit", "32", "--batch-size", "32", "--quiet",
                 "--set", "train.sample_every=0", "--set", "model.attention_resolutions=[]"]) == 0
    assert main(["sample", str(plain), "-n", "2", "--steps", "2", "--out", str(tmp_path / "x.npz"), "--context", "1,0"]) == 2
    assert "this model takes none" in capsys.readouterr().err
    np.save(tmp_path / "short.npy", np.zeros((10, 3), dtype=np.float32))
    assert main(["train", "--out", str(tmp_path / "new"), "--context", str(tmp_path / "short.npy"), "--steps", "1",
                 "--quiet"]) == 2
    assert "has 10 rows but the training split has 60000 images" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_the_guidance_sweep_rows_are_the_samples_of_each_weight_from_the_same_noise():
    """Each row of ``viz guidance`` is exactly what ``generate`` draws at that weight with the same seed."""
    from ddpm.viz.guidance import guidance_sweep

    net, schedule = context_net("scale", k=10), NoiseSchedule.from_name("linear", 50)
    labels = torch.arange(4)
    weights = (0.0, 1.0, 3.0)
    denoiser = denoiser_of(net, schedule, (1, 8, 8), onehot=True)
    finals, records = guidance_sweep(denoiser, SamplingPlan(sampler="ddpm", steps=5, labels=labels), weights, num=4, seed=7)
    assert finals.shape == (3, 4, 1, 8, 8) and len(records) == 3 and len(records[0].steps) == 5
    for row, w in zip(finals, weights):
        assert torch.equal(row, generate_with(net, schedule, num=4, shape=(1, 8, 8), sampler="ddpm", steps=5, labels=labels,
                                         guidance=w, seed=7))
    assert not torch.equal(finals[0], finals[2])


def test_the_interpolation_holds_each_row_s_noise_and_ends_at_both_contexts():
    """Column 0 is c₁'s samples and the last column c₂'s, exactly as ``generate`` draws them (row r: sample r's noise);
    the columns between differ from both."""
    from ddpm.viz.guidance import interpolation_cells, interpolation_strip

    net, schedule = context_net("adagn", k=10), NoiseSchedule.from_name("linear", 50)
    c1, c2 = one_hot(torch.tensor([3]), 10)[0], one_hot(torch.tensor([5]), 10)[0]
    cells = interpolation_cells(denoiser_of(net, schedule, (1, 8, 8)), SamplingPlan(sampler="ddim", steps=4), c1, c2,
                                frames=4, rows=2, seed=1)
    assert cells.shape == (2, 4, 1, 8, 8)
    common = dict(num=2, shape=(1, 8, 8), sampler="ddim", steps=4, seed=1, clip_x0=True)
    assert torch.equal(cells[:, 0], generate_with(net, schedule, contexts=c1[None], **common))
    assert torch.equal(cells[:, -1], generate_with(net, schedule, contexts=c2[None], **common))
    assert not torch.equal(cells[:, 1], cells[:, 0]) and not torch.equal(cells[:, 1], cells[:, -1])
    assert interpolation_strip(cells, scale=1).size[0] > 4 * 8


def test_viz_guidance_and_interpolation_from_the_command_line(context_run, tmp_path, capsys):
    out = tmp_path / "w.png"
    assert main(["viz", "guidance", str(context_run), "--out", str(out), "--weights", "0,2", "--num", "3", "--steps", "2"]) == 0
    assert out.exists() and out.with_suffix(".gif").exists()
    strip = tmp_path / "walk.png"
    assert main(["viz", "interpolation", str(context_run), "--between", "3", "5", "--frames", "3", "--num", "2", "--steps", "2",
                 "--out", str(strip)]) == 0
    assert strip.exists()
    assert main(["viz", "interpolation", str(context_run), "--between", "3", "1,0", "--out", str(tmp_path / "x.png")]) == 2
    assert "must have 10 numbers" in capsys.readouterr().err


@pytest.mark.slow
def test_the_report_of_a_onehot_run_shows_the_guidance_sweep_and_the_interpolation(context_run):
    assert main(["report", str(context_run), "--no-full-ddpm"]) == 0
    page = (context_run / "report.html").read_text()
    assert "Guidance strength" in page and "From one context to another" in page
    assert (context_run / "report" / "guidance.gif").exists() and (context_run / "report" / "interpolation.png").exists()
