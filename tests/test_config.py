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
    c = c.resolved(size, channels, 10)
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
    ("train.lr=-1", "train.lr must be in (0, 1], got -1.0"),
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


def test_one_config_per_network_and_no_derived_keys():
    from ddpm.nets import MLPConfig, UNetConfig

    c = RunConfig()
    assert isinstance(c.model, UNetConfig) and c.model.attention_resolutions == UNetConfig().attention_resolutions
    mlp = c.with_overrides(["model.architecture=mlp", "model.hidden=64"])
    assert isinstance(mlp.model, MLPConfig) and mlp.model.hidden == 64
    assert RunConfig.from_dict(mlp.to_dict()) == mlp and "base_channels" not in mlp.to_dict()["model"]
    with pytest.raises(DdpmError, match="unknown key 'hidden' in \\[model\\]"):
        c.with_overrides(["model.hidden=64"])  # a U-Net has no hidden width
    with pytest.raises(DdpmError, match="image_size come\\(s\\) from the data; set data.image_size"):
        RunConfig.from_dict({"model": {"image_size": 32}})
    with pytest.raises(DdpmError, match="model.head_channels must be a positive integer, got 0"):
        c.with_overrides(["model.head_channels=0"])


def test_format_2_checkpoint_configs_migrate():
    from ddpm.config import migrate

    old = RunConfig().to_dict()
    old["model"].update(hidden=1024, depth=4)  # format 2 carried both networks' keys in [model]
    assert RunConfig.from_dict(migrate(old, 2)) == RunConfig()
    with pytest.raises(DdpmError, match="unknown key"):
        RunConfig.from_dict(old)


def test_sample_settings_rule():
    c = RunConfig().with_overrides(["sample.sampler=ddim", "sample.eta=0.5", "sample.steps=30"])
    assert c.sample_settings() == c.sample
    s = c.sample_settings(sampler="ddpm")
    assert (s.sampler, s.steps, s.eta) == ("ddpm", 30, 0.0)  # eta is DDIM's: it goes with another sampler
    assert c.sample_settings(steps=7, clip_x0=False).steps == 7
    from ddpm.denoiser import plan_from_settings
    from ddpm.sampling.plan import SamplingPlan

    assert plan_from_settings(s) == SamplingPlan(sampler="ddpm", steps=30, clip_x0=True, guidance=0.0)
    assert plan_from_settings(c.sample_settings(guidance_interval=(0.1, 0.6))).guidance_interval == (0.1, 0.6)
    with pytest.raises(DdpmError, match="sample.guidance_from must be below sample.guidance_to"):
        c.sample_settings(guidance_interval=(0.6, 0.1))
    assert plan_from_settings(c.sample).eta == 0.5
    with pytest.raises(DdpmError, match="sample.eta must be 0 for the dpm-solver\\+\\+ sampler"):
        c.sample_settings(sampler="dpm-solver++", eta=0.3)
