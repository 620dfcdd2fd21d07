"""Run configs: TOML, presets, overrides, and errors that name the key."""
import pytest

from ddpm.config import RunConfig
from ddpm.errors import DdpmError
from ddpm.models import build_model


def test_defaults_round_trip_through_dict():
    c = RunConfig()
    assert RunConfig.from_dict(c.to_dict()) == c


@pytest.mark.parametrize("preset, size, channels, params", [
    ("mnist-demo", 28, 1, (1.6e6, 1.8e6)),
    ("mnist", 28, 1, (5e6, 9e6)),
    ("fashion-mnist", 28, 1, (5e6, 9e6)),
    ("cifar10", 32, 3, (35.6e6, 35.8e6)),
])
def test_presets_load_and_build(preset, size, channels, params):
    c = RunConfig.from_toml(preset)
    c = c.with_overrides([f"data.image_size={size}", f"data.channels={channels}"])
    n = sum(p.numel() for p in build_model(c).parameters())
    assert params[0] < n < params[1]


def test_toml_file_and_overrides(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[train]\nsteps = 7\nlr = 1e-3\n[diffusion]\nschedule = "cosine"\n')
    c = RunConfig.from_toml(path)
    assert c.train.steps == 7 and c.train.lr == 1e-3 and c.diffusion.schedule == "cosine"
    c = c.with_overrides(["train.steps=9", "diffusion.schedule=sigmoid", "model.channel_mults=[1, 2]", "data.limit=1500"])
    assert c.train.steps == 9 and c.diffusion.schedule == "sigmoid" and c.model.channel_mults == (1, 2) and c.data.limit == 1500


@pytest.mark.parametrize("override, message", [
    ("train.stepz=3", "unknown key 'stepz' in [train]"),
    ("trian.steps=3", "unknown section 'trian'"),
    ("steps=3", "must look like section.key=value"),
    ("train.steps=2.5", "[train] steps must be an integer, got 2.5"),
    ("train.steps=0", "train.steps must be a positive integer"),
    ("train.lr=-1", "train.lr must be positive"),
    ("diffusion.schedule=quadratic", "[diffusion] schedule must be one of 'linear', 'cosine', 'sigmoid', got 'quadratic'"),
    ("train.precision=fp8", "precision must be one of 'fp32', 'bf16', 'fp16'"),
    ("sample.steps=5000", "sample.steps must be in 1..1000"),
    ("model.use_time=1", "[model] use_time must be true or false"),
    ("model.channel_mults=[1, two]", "channel_mults must be a list of integers"),
    ("data.channels=2", "data.channels must be 1 or 3"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(DdpmError) as err:
        RunConfig().with_overrides([override])
    assert message in str(err.value)


def test_bad_toml(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[train\nsteps = 3")
    with pytest.raises(DdpmError, match="is not valid TOML"):
        RunConfig.from_toml(path)
    with pytest.raises(DdpmError, match="cannot read config file"):
        RunConfig.from_toml(tmp_path)
    path.write_text("[training]\nsteps = 3")
    with pytest.raises(DdpmError, match="unknown section\\(s\\) training"):
        RunConfig.from_toml(path)
