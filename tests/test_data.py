"""Dataset readers on small files written in the exact official formats, and the real MNIST bundle."""
import gzip
import os
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from ddpm.data import load_dataset
from ddpm.errors import DdpmError


def write_idx(path, array: np.ndarray, gz: bool):
    """LeCun's IDX: two zero bytes, type code 0x08 (ubyte), ndim, big-endian int32 dims, data."""
    raw = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


def make_idx_dir(root, n_train=20, n_test=10, gz=True):
    rng = np.random.default_rng(0)
    sfx = ".gz" if gz else ""
    data = {}
    for split, n, prefix in [("train", n_train, "train"), ("test", n_test, "t10k")]:
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(root / f"{prefix}-images-idx3-ubyte{sfx}", images, gz)
        write_idx(root / f"{prefix}-labels-idx1-ubyte{sfx}", labels, gz)
        data[split] = (images, labels)
    return data


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("name", ["mnist-idx", "fashion-mnist"])
def test_idx_reader(tmp_path, gz, name):
    want = make_idx_dir(tmp_path, gz=gz)
    for split in ("train", "test"):
        d = load_dataset(name, root=tmp_path, split=split)
        assert d.images.shape == (len(want[split][0]), 1, 28, 28) and d.images.dtype == torch.uint8
        assert np.array_equal(d.images[:, 0].numpy(), want[split][0])
        assert np.array_equal(d.labels.numpy(), want[split][1])
        x, y = d.batch(torch.arange(3))
        assert x.min() >= -1 and x.max() <= 1
        torch.testing.assert_close(x[0, 0], torch.from_numpy(want[split][0][0]).float() / 127.5 - 1)


def test_truncated_idx_names_the_file(tmp_path):
    make_idx_dir(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DdpmError, match=f"{path} is truncated or corrupt"):
        load_dataset("mnist-idx", root=tmp_path)


def test_corrupt_idx_gz_and_bad_magic(tmp_path):
    make_idx_dir(tmp_path, gz=True)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(DdpmError, match=f"cannot read {path}"):
        load_dataset("mnist-idx", root=tmp_path)
    path.write_bytes(gzip.compress(b"\x01\x02\x03\x04rest"))
    with pytest.raises(DdpmError, match="is not an IDX file"):
        load_dataset("mnist-idx", root=tmp_path)


def test_missing_and_empty_data_dirs(tmp_path):
    with pytest.raises(DdpmError, match="does not exist"):
        load_dataset("mnist-idx", root=tmp_path / "nope")
    with pytest.raises(DdpmError, match="has no train-images-idx3-ubyte or train-images-idx3-ubyte.gz"):
        load_dataset("fashion-mnist", root=tmp_path)
    with pytest.raises(DdpmError, match="holds no images"):
        load_dataset("folder", root=tmp_path)
    with pytest.raises(DdpmError, match="unknown dataset 'imagenet'; expected one of"):
        load_dataset("imagenet")


def write_cifar(root, n=6):
    """CIFAR-10 python version: pickled dicts {b'batch_label', b'labels', b'data' uint8 [N, 3072], b'filenames'}."""
    rng = np.random.default_rng(1)
    root.mkdir(exist_ok=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, n).tolist()
        with open(root / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                         b"filenames": [b"x.png"] * n}, f, protocol=2)
        batches[name] = (data, labels)
    return batches


def test_cifar_reader(tmp_path):
    batches = write_cifar(tmp_path / "cifar")
    d = load_dataset("cifar10", root=tmp_path / "cifar")
    assert d.images.shape == (30, 3, 32, 32) and d.num_classes == 10
    first = batches["data_batch_1"][0][0]
    # rows of 3072 are the R plane, then G, then B, each 32×32 row-major
    assert np.array_equal(d.images[0].numpy(), first.reshape(3, 32, 32))
    assert d.labels[:6].tolist() == batches["data_batch_1"][1]
    t = load_dataset("cifar10", root=tmp_path / "cifar", split="test")
    assert len(t) == 6


def test_cifar_pickle_that_runs_code_is_refused(tmp_path):
    write_cifar(tmp_path / "cifar")

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    (tmp_path / "cifar" / "data_batch_3").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(DdpmError, match="data_batch_3 is not a valid dataset pickle: refusing to load"):
        load_dataset("cifar10", root=tmp_path / "cifar")
    assert not (tmp_path / "pwned").exists()


def test_image_folder_with_classes_and_mixed_sizes(tmp_path, capsys):
    rng = np.random.default_rng(2)
    for cls, n in [("cats", 3), ("dogs", 2)]:
        (tmp_path / cls / "deeper").mkdir(parents=True)
        for i in range(n):
            size = (40 + 10 * i, 30)
            arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / cls / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(tmp_path / cls / "deeper" / "x.jpg")
    # the nested images make the layout not "one level of class folders"; remove them for the labelled case
    for cls in ("cats", "dogs"):
        (tmp_path / cls / "deeper" / "x.jpg").unlink()
    # five images: one held out as the test split (test_fraction 0.1, at least one), four to train on
    d = load_dataset("folder", root=tmp_path, image_size=16, channels=3)
    test = load_dataset("folder", root=tmp_path, image_size=16, channels=3, split="test")
    assert d.images.shape == (4, 3, 16, 16) and test.images.shape == (1, 3, 16, 16)
    assert d.class_names == test.class_names == ["cats", "dogs"]
    assert sorted(d.labels.tolist() + test.labels.tolist()) == [0, 0, 0, 1, 1]
    err = capsys.readouterr().err
    assert err.count("resized and centre-cropped to 16×16") == 2
    gray = load_dataset("folder", root=tmp_path, image_size=8, channels=1)
    assert gray.images.shape == (4, 1, 8, 8)


def test_image_folder_unlabelled_recursive(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    Image.new("RGB", (8, 8), (255, 0, 0)).save(tmp_path / "top.png")
    Image.new("L", (8, 8), 128).save(tmp_path / "a" / "b" / "deep.webp")
    both = [load_dataset("folder", root=tmp_path, image_size=8, channels=3, split=s) for s in ("train", "test")]
    assert [len(d) for d in both] == [1, 1] and both[0].labels is None
    images = torch.cat([d.images for d in both])
    red = images[1] if images[1, 0, 0, 0] == 255 else images[0]
    assert red[:, 0, 0].tolist() == [255, 0, 0]


def test_corrupt_image_names_the_file(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "ok.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage")
    from ddpm.data.folder import split_files

    split = "train" if tmp_path / "broken.png" in split_files(tmp_path, "train", 0.1)[0] else "test"
    with pytest.raises(DdpmError, match=f"cannot read image {tmp_path / 'broken.png'}"):
        load_dataset("folder", root=tmp_path, image_size=8, split=split)


def test_real_mnist_bundle():
    train = load_dataset("mnist")
    test = load_dataset("mnist", split="test")
    assert train.images.shape == (60_000, 1, 28, 28) and test.images.shape == (10_000, 1, 28, 28)
    assert train.num_classes == 10 and set(test.labels.unique().tolist()) == set(range(10))
    # MNIST facts: background is 0, strokes reach 255, about 19% of pixels are ink, class 1 is the largest
    assert train.images.min() == 0 and train.images.max() >= 254
    ink = (train.images > 127).float().mean().item()
    assert 0.1 < ink < 0.2
    assert train.labels.bincount().argmax() == 1 and test.labels.bincount().tolist()[:3] == [980, 1135, 1032]


def write_mnist_bundle(path, seed: int, n: int = 4):
    """The mnist.pkl.gz layout: ((train), (validation), (test)), float32 k/256 images [N, 784], int64 labels."""
    rng = np.random.default_rng(seed)
    split = lambda: (rng.integers(0, 256, (n, 784)).astype(np.float32) / 256, rng.integers(0, 10, n))
    path.write_bytes(gzip.compress(pickle.dumps((split(), split(), split()), protocol=2)))


def test_the_mnist_bundle_is_parsed_once_per_version_and_every_reader_gets_its_own_copy(tmp_path):
    from ddpm.data.formats import read_mnist_bundle

    path = tmp_path / "mnist.pkl.gz"
    write_mnist_bundle(path, seed=0)
    first = read_mnist_bundle(path)
    first["train"][0][:] = 0  # a reader writing into its arrays ...
    second = read_mnist_bundle(path)
    assert second["train"][0].any() and second["train"][0].shape == (8, 1, 28, 28)  # ... changes no other reader's
    write_mnist_bundle(path, seed=1, n=5)  # a new version of the file (another size and time) is read anew
    os.utime(path, ns=(1, 1))
    assert read_mnist_bundle(path)["test"][0].shape == (5, 1, 28, 28)


def test_limit_is_a_fixed_random_subset():
    a = load_dataset("mnist", split="test", limit=1500, seed=3)
    b = load_dataset("mnist", split="test", limit=1500, seed=3)
    c = load_dataset("mnist", split="test", limit=1500, seed=4)
    assert len(a) == 1500 and torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    assert (a.labels.bincount() > 100).all()  # random, so every class is there


def test_resize_and_channels():
    d = load_dataset("mnist", split="test", limit=10, image_size=32, channels=3)
    assert d.images.shape == (10, 3, 32, 32)
    assert torch.equal(d.images[:, 0], d.images[:, 2])


def _folder(root, names):
    root.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (8, 8), i).save(root / name)


def test_folder_test_split_is_held_out_fixed_and_never_trained_on(tmp_path):
    _folder(tmp_path, [f"{c}/{i}.png" for c in ("a", "b") for i in range(20)])
    train = load_dataset("folder", root=tmp_path, image_size=8, channels=1)
    test = load_dataset("folder", root=tmp_path, image_size=8, channels=1, split="test")
    again = load_dataset("folder", root=tmp_path, image_size=8, channels=1, split="test", seed=7)  # the run's seed plays no part
    assert len(train) == 36 and len(test) == 4 and torch.equal(test.images, again.images)
    pixels = lambda d: {int(v) for v in d.images[:, 0, 0, 0]}  # noqa: E731 — each image has its own gray level
    assert not pixels(train) & pixels(test) and len(pixels(train) | pixels(test)) == 40
    assert len(load_dataset("folder", root=tmp_path, image_size=8, channels=1, split="test", test_fraction=0.25)) == 10


def test_folder_with_a_test_subfolder_uses_it(tmp_path):
    _folder(tmp_path, ["train/a/0.png", "train/a/1.png", "train/b/2.png", "test/a/3.png", "test/b/4.png", "test/b/5.png"])
    train = load_dataset("folder", root=tmp_path, image_size=8, channels=1)
    test = load_dataset("folder", root=tmp_path, image_size=8, channels=1, split="test")
    assert len(train) == 3 and len(test) == 3 and train.class_names == test.class_names == ["a", "b"]
    assert test.labels.tolist() == [0, 1, 1]
    _folder(tmp_path, ["test/c/6.png"])
    with pytest.raises(DdpmError, match="class folder\\(s\\) c are not among the training classes a, b"):
        load_dataset("folder", root=tmp_path, image_size=8, channels=1, split="test")


def test_folder_reference_statistics_are_its_held_out_images_at_the_runs_size(tmp_path, monkeypatch):
    from ddpm.metrics.fid import dataset_stats

    monkeypatch.setenv("DDPM_CACHE", str(tmp_path / "cache"))
    _folder(tmp_path / "pics", [f"{i}.png" for i in range(20)])

    class PixelMeans:  # the plumbing under test, not Inception: which images arrive, at which size
        feature = "pixel-means"
        seen: list = []

        def __call__(self, images, progress=None):
            self.seen.append(tuple(images.shape))
            return images.float().mean((2, 3)).repeat(1, 2).numpy() + np.arange(2)

    stats = dataset_stats("folder:test", PixelMeans(), data_dir=str(tmp_path / "pics"), image_size=16, channels=1,
                          test_fraction=0.25)
    assert PixelMeans.seen == [(5, 1, 16, 16)] and stats.num == 5
    assert stats.source == "folder:test (5 images, 16×16, 0.25 of the folder held out)"
    test = load_dataset("folder", root=tmp_path / "pics", image_size=16, channels=1, split="test", test_fraction=0.25)
    assert np.allclose(stats.mu, test.images.float().mean((2, 3)).repeat(1, 2).numpy().mean(0) + np.arange(2))
